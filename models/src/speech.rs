//! `speech_rate` and `speech_flow` from voice-activity segments (pure functions: the VAD runs
//! once and both build on its segments).

use serde::Serialize;
use serde_json::json;

use crate::vad::Segment;

/// Gaps between speech segments at least this long count as pauses (shorter ones are the
/// normal closures between words and syllables).
pub const DEFAULT_MIN_PAUSE_S: f64 = 0.25;
/// Pauses at least this long break fluency (hesitations, not breaths).
pub const DEFAULT_LONG_PAUSE_S: f64 = 1.0;

#[derive(Debug, Clone, Serialize)]
pub struct SpeechRate {
    pub speech_s: f64,
    /// `transcript` when a transcript (from `speech_transcription`) gave the words,
    /// `acoustic` when syllables were counted from the loudness envelope.
    pub method: &'static str,
    pub words: Option<usize>,
    pub words_per_minute: Option<f64>,
    pub syllables: usize,
    pub syllables_per_minute: f64,
}

/// Rate over speech time only, so pauses do not lower it. With a transcript, words are
/// counted in it and syllables estimated from its vowel groups; without one, syllable nuclei
/// are counted as loudness peaks inside the speech segments.
pub fn speech_rate(
    samples: &[f32],
    rate: u32,
    segments: &[Segment],
    transcript: Option<&str>,
) -> SpeechRate {
    let speech_s: f64 = segments.iter().map(Segment::duration).sum();
    let per_min = |n: usize| {
        if speech_s > 0.0 {
            round2(n as f64 * 60.0 / speech_s)
        } else {
            0.0
        }
    };
    match transcript.filter(|t| !t.trim().is_empty()) {
        Some(text) => {
            let words: Vec<&str> = text
                .split_whitespace()
                .filter(|w| w.chars().any(char::is_alphanumeric))
                .collect();
            let syllables: usize = words.iter().map(|w| vowel_groups(w).max(1)).sum();
            SpeechRate {
                speech_s: round2(speech_s),
                method: "transcript",
                words: Some(words.len()),
                words_per_minute: Some(per_min(words.len())),
                syllables,
                syllables_per_minute: per_min(syllables),
            }
        }
        None => {
            let syllables = segments
                .iter()
                .map(|s| envelope_peaks(samples, rate, s))
                .sum();
            SpeechRate {
                speech_s: round2(speech_s),
                method: "acoustic",
                words: None,
                words_per_minute: None,
                syllables,
                syllables_per_minute: per_min(syllables),
            }
        }
    }
}

/// Groups of consecutive vowels (including y and accented vowels): a common syllable estimate.
fn vowel_groups(word: &str) -> usize {
    let vowel =
        |c: char| "aeiouyäöüàáâéèêëíìîïóòôúùûæøå".contains(c.to_lowercase().next().unwrap_or(c));
    let mut groups = 0;
    let mut prev = false;
    for c in word.chars() {
        let v = vowel(c);
        if v && !prev {
            groups += 1;
        }
        prev = v;
    }
    groups
}

/// Syllable nuclei in one segment: peaks of the 10 ms RMS envelope (smoothed over 50 ms) that
/// rise 25% above the dips on both sides and lie at least 100 ms apart.
fn envelope_peaks(samples: &[f32], rate: u32, seg: &Segment) -> usize {
    let hop = (rate as usize / 100).max(1);
    let a = ((seg.start_s * rate as f64) as usize).min(samples.len());
    let b = ((seg.end_s * rate as f64) as usize).min(samples.len());
    let env: Vec<f32> = samples[a..b]
        .chunks(hop)
        .map(|c| (c.iter().map(|x| x * x).sum::<f32>() / c.len() as f32).sqrt())
        .collect();
    if env.len() < 3 {
        return 0;
    }
    let smooth: Vec<f32> = (0..env.len())
        .map(|i| {
            let (lo, hi) = (i.saturating_sub(2), (i + 3).min(env.len()));
            env[lo..hi].iter().sum::<f32>() / (hi - lo) as f32
        })
        .collect();
    let floor = smooth.iter().copied().fold(f32::MAX, f32::min);
    let peak_max = smooth.iter().copied().fold(0.0, f32::max);
    let min_height = floor + 0.1 * (peak_max - floor);
    let mut count = 0;
    let mut last_peak: Option<usize> = None;
    let mut dip = smooth[0];
    for i in 1..smooth.len() - 1 {
        dip = dip.min(smooth[i]);
        let is_peak =
            smooth[i] >= smooth[i - 1] && smooth[i] > smooth[i + 1] && smooth[i] > min_height;
        if is_peak && smooth[i] > dip * 1.25 && last_peak.is_none_or(|p| i - p >= 10) {
            count += 1;
            last_peak = Some(i);
            dip = smooth[i];
        }
    }
    count
}

#[derive(Debug, Clone, Serialize)]
pub struct Pause {
    pub start_s: f64,
    pub end_s: f64,
    pub duration_s: f64,
}

/// Pauses, talk ratio and a fluency score from the speech segments of `duration_s` of audio.
pub fn speech_flow(
    segments: &[Segment],
    duration_s: f64,
    min_pause_s: f64,
    long_pause_s: f64,
) -> serde_json::Value {
    let speech_s: f64 = segments.iter().map(Segment::duration).sum();
    let pauses: Vec<Pause> = segments
        .windows(2)
        .map(|w| Pause {
            start_s: round2(w[0].end_s),
            end_s: round2(w[1].start_s),
            duration_s: round2(w[1].start_s - w[0].end_s),
        })
        .filter(|p| p.duration_s >= min_pause_s)
        .collect();
    let long: f64 = pauses
        .iter()
        .filter(|p| p.duration_s >= long_pause_s)
        .map(|p| p.duration_s)
        .sum();
    let pause_total: f64 = pauses.iter().map(|p| p.duration_s).sum();
    let span = match (segments.first(), segments.last()) {
        (Some(a), Some(b)) => b.end_s - a.start_s,
        _ => 0.0,
    };
    // Fluency: the share of the speaking span not lost to long pauses (1 = no hesitations).
    let fluency = if speech_s > 0.0 {
        speech_s / (speech_s + long)
    } else {
        0.0
    };
    json!({
        "duration_s": round2(duration_s),
        "speech_s": round2(speech_s),
        "talk_ratio": if duration_s > 0.0 { round3(speech_s / duration_s) } else { 0.0 },
        "segments": segments.len(),
        "mean_segment_s": if segments.is_empty() { 0.0 } else { round2(speech_s / segments.len() as f64) },
        "pause_count": pauses.len(),
        "pauses_per_minute": if span > 0.0 { round2(pauses.len() as f64 * 60.0 / span) } else { 0.0 },
        "mean_pause_s": if pauses.is_empty() { 0.0 } else { round2(pause_total / pauses.len() as f64) },
        "longest_pause_s": pauses.iter().map(|p| p.duration_s).fold(0.0, f64::max),
        "long_pause_count": pauses.iter().filter(|p| p.duration_s >= long_pause_s).count(),
        "fluency": round3(fluency),
        "pauses": pauses,
    })
}

/// Hesitation words counted by `speech_flow` when a transcript exists (Whisper drops many of
/// them, so the count is a lower bound).
pub const FILLERS: &[&str] = &["um", "uh", "erm", "er", "hmm", "ah", "äh", "ähm", "öh"];

/// What `speech_flow` adds from a transcript: words, words per minute of speech, words per
/// run between pauses, and filler words.
pub fn transcript_flow(text: &str, speech_s: f64, pause_count: usize) -> serde_json::Value {
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .collect::<String>()
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect();
    let fillers = words
        .iter()
        .filter(|w| FILLERS.contains(&w.as_str()))
        .count();
    json!({
        "words": words.len(),
        "words_per_minute": if speech_s > 0.0 { round2(words.len() as f64 * 60.0 / speech_s) } else { 0.0 },
        "words_per_run": round2(words.len() as f64 / (pause_count + 1) as f64),
        "fillers": fillers,
    })
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_and_talk_ratio() {
        let segs = [
            Segment {
                start_s: 1.0,
                end_s: 3.0,
            },
            Segment {
                start_s: 3.1,
                end_s: 4.0,
            },
            Segment {
                start_s: 5.5,
                end_s: 7.0,
            },
        ];
        let v = speech_flow(&segs, 10.0, DEFAULT_MIN_PAUSE_S, DEFAULT_LONG_PAUSE_S);
        assert_eq!(v["pause_count"], 1);
        assert_eq!(v["longest_pause_s"], 1.5);
        assert_eq!(v["talk_ratio"], 0.44);
        assert_eq!(v["fluency"], 0.746);
    }

    #[test]
    fn transcript_rate_counts_words_over_speech_time() {
        let segs = [Segment {
            start_s: 0.0,
            end_s: 30.0,
        }];
        let r = speech_rate(
            &[],
            16_000,
            &segs,
            Some("hello there my friend, how are you"),
        );
        assert_eq!(r.words, Some(7));
        assert_eq!(r.words_per_minute, Some(14.0));
        // Vowel groups: hel-lo, the-re, my, friend, how, a-re, you (silent e counts).
        assert_eq!(r.syllables, 10);
    }
}
