//! `comment_cta_detection`: calls to action ("link in bio", "follow for more", "Link in der
//! Bio", "folgt mir"...) in the transcript and the on-screen text, with times.
//!
//! Text and phrases are compared as lowercase word sequences (punctuation ignored); a phrase
//! matches when its words appear in order with at most `max_gap` other words between them,
//! so "follow me for more" matches "follow for more". Overlapping matches keep the longest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::inputs::{TimedText, ocr_texts, transcript_segments};

/// Built-in phrases: (language, category, phrase). Config replaces (`phrases`) or extends
/// (`extra_phrases`) them.
pub const DEFAULT_CTA_PHRASES: &[(&str, &str, &str)] = &[
    ("en", "follow", "follow for more"),
    ("en", "follow", "follow me"),
    ("en", "follow", "follow us"),
    ("en", "follow", "hit follow"),
    ("en", "follow", "follow for part 2"),
    ("en", "like", "like this video"),
    ("en", "like", "smash that like"),
    ("en", "like", "hit the like"),
    ("en", "like", "drop a like"),
    ("en", "like", "leave a like"),
    ("en", "like", "double tap"),
    ("en", "comment", "comment below"),
    ("en", "comment", "let me know in the comments"),
    ("en", "comment", "tell me in the comments"),
    ("en", "comment", "drop a comment"),
    ("en", "comment", "leave a comment"),
    ("en", "comment", "comment your"),
    ("en", "share", "share this"),
    ("en", "share", "send this to"),
    ("en", "share", "tag a friend"),
    ("en", "share", "tag someone"),
    ("en", "save", "save this"),
    ("en", "save", "save for later"),
    ("en", "subscribe", "subscribe"),
    ("en", "subscribe", "turn on notifications"),
    ("en", "link", "link in bio"),
    ("en", "link", "link in my bio"),
    ("en", "link", "link below"),
    ("en", "link", "click the link"),
    ("en", "link", "check the link"),
    ("en", "link", "swipe up"),
    ("en", "link", "use code"),
    ("en", "link", "shop now"),
    ("de", "follow", "folgt mir"),
    ("de", "follow", "folg mir"),
    ("de", "follow", "folge mir"),
    ("de", "follow", "folgt für mehr"),
    ("de", "follow", "folg für mehr"),
    ("de", "follow", "lasst ein abo da"),
    ("de", "follow", "lass ein abo da"),
    ("de", "follow", "abonniert"),
    ("de", "like", "lasst ein like da"),
    ("de", "like", "lass ein like da"),
    ("de", "like", "gebt mir ein like"),
    ("de", "like", "daumen hoch"),
    ("de", "comment", "schreibt in die kommentare"),
    ("de", "comment", "schreib in die kommentare"),
    ("de", "comment", "schreibt es in die kommentare"),
    ("de", "comment", "lasst einen kommentar da"),
    ("de", "comment", "lass einen kommentar da"),
    ("de", "comment", "kommentiert"),
    ("de", "share", "teilt das"),
    ("de", "share", "teil das"),
    ("de", "share", "teilt das video"),
    ("de", "share", "markiert eure"),
    ("de", "share", "markiere deine"),
    ("de", "save", "speichert das"),
    ("de", "save", "speicher dir das"),
    ("de", "link", "link in der bio"),
    ("de", "link", "link in meiner bio"),
    ("de", "link", "link ist in der bio"),
    ("de", "link", "link unten"),
    ("de", "link", "mit dem code"),
    ("de", "link", "rabattcode"),
];

pub const DEFAULT_MAX_GAP: usize = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CtaPhrase {
    pub text: String,
    pub category: String,
    #[serde(default)]
    pub lang: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CtaConfig {
    /// The phrase list (defaults: [`DEFAULT_CTA_PHRASES`]); giving it replaces the defaults.
    pub phrases: Vec<CtaPhrase>,
    /// Added to `phrases`.
    pub extra_phrases: Vec<CtaPhrase>,
    /// Other words allowed between two words of a phrase.
    pub max_gap: usize,
}

impl Default for CtaConfig {
    fn default() -> Self {
        Self {
            phrases: DEFAULT_CTA_PHRASES
                .iter()
                .map(|(lang, category, text)| CtaPhrase {
                    text: text.to_string(),
                    category: category.to_string(),
                    lang: lang.to_string(),
                })
                .collect(),
            extra_phrases: Vec::new(),
            max_gap: DEFAULT_MAX_GAP,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextSource {
    Transcript,
    OnScreen,
}

/// Result of `comment_cta_detection`.
#[derive(Debug, Clone, Serialize)]
pub struct CtaDetection {
    pub has_cta: bool,
    /// In time order (untimed hits last).
    pub hits: Vec<CtaHit>,
    /// Hits per category.
    pub counts: BTreeMap<String, usize>,
    pub first_cta_s: Option<f64>,
    /// Inputs that were read ("speech_transcription", "text_overlay").
    pub sources_used: Vec<String>,
    /// Inputs that were absent or unreadable, so their calls to action could not be found.
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CtaHit {
    pub phrase: String,
    pub category: String,
    pub lang: String,
    pub source: TextSource,
    /// The words that matched (lowercased, without punctuation).
    pub matched: String,
    pub start_s: Option<f64>,
    pub end_s: Option<f64>,
    /// Times interpolated within a transcript segment (no word timings).
    pub time_estimated: bool,
}

/// Lowercase words without punctuation ("Link in der Bio!" -> ["link", "in", "der", "bio"]).
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Where `phrase` occurs in `tokens`: (first, last) token index of each match.
fn find(tokens: &[String], phrase: &[String], max_gap: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let Some(first) = phrase.first() else {
        return out;
    };
    for start in (0..tokens.len()).filter(|&i| &tokens[i] == first) {
        let mut at = start;
        let matched = phrase[1..].iter().all(|word| {
            let found =
                (at + 1..(at + 2 + max_gap).min(tokens.len())).find(|&j| &tokens[j] == word);
            found.inspect(|&j| at = j).is_some()
        });
        if matched {
            out.push((start, at));
        }
    }
    out
}

pub fn comment_cta_detection(
    transcript: Option<&Value>,
    ocr: Option<&Value>,
    cfg: &CtaConfig,
) -> CtaDetection {
    let phrases: Vec<(&CtaPhrase, Vec<String>)> = cfg
        .phrases
        .iter()
        .chain(&cfg.extra_phrases)
        .map(|p| (p, words(&p.text)))
        .filter(|(_, w)| !w.is_empty())
        .collect();
    let mut sources_used = Vec::new();
    let mut missing = Vec::new();
    let mut hits = Vec::new();
    let inputs = [
        (
            "speech_transcription",
            TextSource::Transcript,
            transcript.and_then(transcript_segments),
        ),
        (
            "text_overlay",
            TextSource::OnScreen,
            ocr.and_then(ocr_texts),
        ),
    ];
    for (name, source, items) in inputs {
        let Some(items) = items else {
            missing.push(name.to_string());
            continue;
        };
        sources_used.push(name.to_string());
        for item in &items {
            hits.extend(match_item(item, source, &phrases, cfg.max_gap));
        }
    }
    hits.sort_by(|a, b| {
        a.start_s
            .unwrap_or(f64::MAX)
            .total_cmp(&b.start_s.unwrap_or(f64::MAX))
    });
    let mut counts = BTreeMap::new();
    for h in &hits {
        *counts.entry(h.category.clone()).or_insert(0) += 1;
    }
    CtaDetection {
        has_cta: !hits.is_empty(),
        first_cta_s: hits.iter().filter_map(|h| h.start_s).reduce(f64::min),
        hits,
        counts,
        sources_used,
        missing,
    }
}

fn match_item(
    item: &TimedText,
    source: TextSource,
    phrases: &[(&CtaPhrase, Vec<String>)],
    max_gap: usize,
) -> Vec<CtaHit> {
    // Tokens with their times: from word timings when present, else spread over the segment.
    let (tokens, times): (Vec<String>, Vec<Option<(f64, f64)>>) = if item.words.is_empty() {
        let tokens = words(&item.text);
        let n = tokens.len().max(1) as f64;
        let times = (0..tokens.len())
            .map(|i| match (item.start_s, item.end_s) {
                (Some(s), Some(e)) if source == TextSource::Transcript => {
                    Some((s + (e - s) * i as f64 / n, s + (e - s) * (i + 1) as f64 / n))
                }
                (Some(s), e) => Some((s, e.unwrap_or(s))),
                _ => None,
            })
            .collect();
        (tokens, times)
    } else {
        item.words
            .iter()
            .flat_map(|(w, s, e)| words(w).into_iter().map(move |t| (t, Some((*s, *e)))))
            .unzip()
    };
    let mut found: Vec<(usize, usize, &CtaPhrase)> = Vec::new();
    for (phrase, pw) in phrases {
        for (a, b) in find(&tokens, pw, max_gap) {
            found.push((a, b, phrase));
        }
    }
    // Longest first (then the phrase with more words: an exact match beats one with a
    // skipped word); drop matches overlapping a kept one.
    found.sort_by_key(|(a, b, p)| {
        (
            std::cmp::Reverse(b - a),
            std::cmp::Reverse(words(&p.text).len()),
            *a,
        )
    });
    let mut kept: Vec<(usize, usize, &CtaPhrase)> = Vec::new();
    for f in found {
        if kept.iter().all(|k| f.1 < k.0 || f.0 > k.1) {
            kept.push(f);
        }
    }
    let estimated = source == TextSource::Transcript && item.words.is_empty();
    kept.into_iter()
        .map(|(a, b, phrase)| CtaHit {
            phrase: phrase.text.clone(),
            category: phrase.category.clone(),
            lang: phrase.lang.clone(),
            source,
            matched: tokens[a..=b].join(" "),
            start_s: times[a].map(|t| t.0),
            end_s: times[b].map(|t| t.1),
            time_estimated: estimated,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_with_gaps_and_punctuation() {
        let t = words("Follow me, for MORE!");
        assert_eq!(find(&t, &words("follow for more"), 1), vec![(0, 3)]);
        assert!(find(&t, &words("follow for more"), 0).is_empty());
        assert!(find(&words("the following formula"), &words("follow"), 1).is_empty());
    }
}
