//! Reading the outputs of other analyzers that some signal analyzers use when present:
//! a transcript (`speech_transcription`) and on-screen text (`text_overlay`). Read leniently:
//! unknown fields are ignored, and a shape we cannot read counts as missing.

use serde_json::Value;

/// A piece of text with the time it is spoken or shown, when known.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedText {
    pub text: String,
    pub start_s: Option<f64>,
    pub end_s: Option<f64>,
    /// Word timings, when the transcript has them: (word, start, end).
    pub words: Vec<(String, f64, f64)>,
}

fn num(v: &Value, keys: &[&str]) -> Option<f64> {
    keys.iter().find_map(|k| v.get(*k)?.as_f64())
}

fn text(v: &Value, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| v.get(*k)?.as_str().map(str::to_string))
}

/// Transcript `{ "text", "segments": [{ "start", "end", "text", "words"? }] }`: the segments,
/// or the whole text as one untimed segment. `None` when there is nothing readable.
pub fn transcript_segments(v: &Value) -> Option<Vec<TimedText>> {
    if let Some(segments) = v.get("segments").and_then(Value::as_array) {
        let out: Vec<TimedText> = segments
            .iter()
            .filter_map(|s| {
                let words = s
                    .get("words")
                    .and_then(Value::as_array)
                    .map(|ws| {
                        ws.iter()
                            .filter_map(|w| {
                                Some((
                                    text(w, &["word", "text"])?,
                                    num(w, &["start", "start_s"])?,
                                    num(w, &["end", "end_s"])?,
                                ))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Some(TimedText {
                    text: text(s, &["text"])?,
                    start_s: num(s, &["start", "start_s"]),
                    end_s: num(s, &["end", "end_s"]),
                    words,
                })
            })
            .collect();
        if !out.is_empty() {
            return Some(out);
        }
    }
    let whole = text(v, &["text"])?;
    Some(vec![TimedText {
        text: whole,
        start_s: None,
        end_s: None,
        words: Vec::new(),
    }])
}

/// On-screen text `{ "texts": [{ "text", "first_s", "last_s" }] }`.
pub fn ocr_texts(v: &Value) -> Option<Vec<TimedText>> {
    let items = v.get("texts").and_then(Value::as_array)?;
    Some(
        items
            .iter()
            .filter_map(|t| {
                Some(TimedText {
                    text: text(t, &["text"])?,
                    start_s: num(t, &["first_s", "start_s", "start"]),
                    end_s: num(t, &["last_s", "end_s", "end"]),
                    words: Vec::new(),
                })
            })
            .collect(),
    )
}

/// Counts words (for speaking rate).
pub fn word_count(text: &str) -> usize {
    text.split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .count()
}
