//! Greedy decoding of one 30 s window with Whisper's rules, and the window's tokens cut into
//! timed segments. Pure functions over logits: the model is a closure, so the rules are
//! tested without one.

use serde::Serialize;

use super::tokenizer::{EOT, NO_SPEECH, NO_TIMESTAMPS, TIMESTAMP_BEGIN, Tokenizer};

/// Seconds per timestamp token, and mel frames per timestamp step (the encoder halves the
/// 10 ms frames).
pub const SECONDS_PER_TIMESTAMP: f64 = 0.02;
pub const FRAMES_PER_TIMESTAMP: usize = 2;
/// Tokens sampled per window at most: half the decoder's 448 positions, as Whisper does.
pub const DEFAULT_MAX_TOKENS: usize = 224;
/// The first timestamp of a window is at most 1 s in.
pub const DEFAULT_MAX_INITIAL_TIMESTAMP_S: f64 = 1.0;
/// A window counts as silence when the no-speech probability is above this and the text's
/// average log-probability is below [`DEFAULT_LOGPROB_THRESHOLD`] (Whisper's defaults).
pub const DEFAULT_NO_SPEECH_THRESHOLD: f64 = 0.6;
pub const DEFAULT_LOGPROB_THRESHOLD: f64 = -1.0;

/// Token ids never sampled (`always`: non-speech symbols and the task specials) and those not
/// sampled first (`at_begin`: the blank and end-of-text), from the model's `config.json`.
#[derive(Debug, Clone, Default)]
pub struct Suppress {
    pub always: Vec<u32>,
    pub at_begin: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct DecodeOptions {
    pub max_tokens: usize,
    pub max_initial_timestamp_s: f64,
    pub no_speech_threshold: f64,
    pub logprob_threshold: f64,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            max_tokens: DEFAULT_MAX_TOKENS,
            max_initial_timestamp_s: DEFAULT_MAX_INITIAL_TIMESTAMP_S,
            no_speech_threshold: DEFAULT_NO_SPEECH_THRESHOLD,
            logprob_threshold: DEFAULT_LOGPROB_THRESHOLD,
        }
    }
}

/// What greedy decoding made of one window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowTokens {
    /// Sampled tokens (text and timestamps), without the end-of-text.
    pub tokens: Vec<u32>,
    pub avg_logprob: f64,
    pub no_speech_prob: f64,
}

impl WindowTokens {
    pub fn is_silence(&self, opts: &DecodeOptions) -> bool {
        self.no_speech_prob > opts.no_speech_threshold && self.avg_logprob < opts.logprob_threshold
    }
}

fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let log_sum = max + sum.ln();
    logits.iter().map(|&l| l as f64 - log_sum).collect()
}

fn log_sum_exp(values: &[f64]) -> f64 {
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + values.iter().map(|v| (v - max).exp()).sum::<f64>().ln()
}

/// Whisper's logit filters for the token after `sampled`: suppressed ids, no
/// `<|notimestamps|>`, timestamps in pairs that never go back, a timestamp first (at most
/// `max_initial_timestamp_s` in), and a timestamp whenever timestamps together are likelier
/// than any single text token.
pub fn filter_logits(
    logits: &mut [f32],
    sampled: &[u32],
    suppress: &Suppress,
    opts: &DecodeOptions,
) {
    let ts = TIMESTAMP_BEGIN as usize;
    let mut kill = |range: std::ops::Range<usize>| {
        let end = range.end.min(logits.len());
        for l in &mut logits[range.start.min(end)..end] {
            *l = f32::NEG_INFINITY;
        }
    };
    if sampled.is_empty() {
        for &id in &suppress.at_begin {
            kill(id as usize..id as usize + 1);
        }
    }
    for &id in &suppress.always {
        kill(id as usize..id as usize + 1);
    }
    kill(NO_TIMESTAMPS as usize..NO_TIMESTAMPS as usize + 1);
    let is_ts = |t: u32| t >= TIMESTAMP_BEGIN;
    let last_ts = sampled.last().is_some_and(|&t| is_ts(t));
    let penult_ts = sampled.len() < 2 || is_ts(sampled[sampled.len() - 2]);
    if last_ts {
        if penult_ts {
            kill(ts..usize::MAX); // a pair just closed: text (or the end) comes next
        } else {
            kill(0..EOT as usize); // an opening timestamp: its closing one (or the end)
        }
    }
    if let Some(&last) = sampled.iter().rev().find(|&&t| is_ts(t)) {
        let floor = if last_ts && !penult_ts {
            last
        } else {
            last + 1
        };
        kill(ts..floor as usize);
    }
    if sampled.is_empty() {
        kill(0..ts);
        let max_initial = (opts.max_initial_timestamp_s / SECONDS_PER_TIMESTAMP).round() as usize;
        kill(ts + max_initial + 1..usize::MAX);
    }
    let lp = log_softmax(logits);
    if lp.len() > ts {
        let ts_lp = log_sum_exp(&lp[ts..]);
        let text_max = lp[..ts].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if ts_lp > text_max {
            for l in &mut logits[..ts] {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}

/// Greedy decoding of one window. `step(new_tokens)` feeds the tokens after those fed before
/// and returns the logits of the last one; the first call gets the prompt.
pub fn decode_window<E>(
    prompt: &[u32],
    mut step: impl FnMut(&[u32]) -> Result<Vec<f32>, E>,
    suppress: &Suppress,
    opts: &DecodeOptions,
) -> Result<WindowTokens, E> {
    let mut sampled: Vec<u32> = Vec::new();
    let mut sum_logprob = 0.0;
    let mut no_speech_prob = 0.0;
    let mut feed: Vec<u32> = prompt.to_vec();
    for i in 0..opts.max_tokens {
        let mut logits = step(&feed)?;
        if i == 0 {
            // Before any filter, at the start-of-transcript position.
            no_speech_prob = log_softmax(&logits)
                .get(NO_SPEECH as usize)
                .map_or(0.0, |lp| lp.exp());
        }
        filter_logits(&mut logits, &sampled, suppress, opts);
        let (next, _) =
            logits
                .iter()
                .enumerate()
                .fold((EOT as usize, f32::NEG_INFINITY), |best, (i, &l)| {
                    if l > best.1 { (i, l) } else { best }
                });
        sum_logprob += log_softmax(&logits)[next];
        if next as u32 == EOT {
            break;
        }
        sampled.push(next as u32);
        feed = vec![next as u32];
    }
    let avg_logprob = sum_logprob / (sampled.len() + 1) as f64;
    Ok(WindowTokens {
        tokens: sampled,
        avg_logprob,
        no_speech_prob,
    })
}

/// A timed piece of the transcript.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
    pub text: String,
}

/// Cuts a window's tokens at each pair of timestamps into segments (times from `offset_s`,
/// the window's start), and says how many mel frames to advance: to the last closed segment
/// when the window ends inside speech, else the whole window (`size_frames`).
pub fn segments(
    tokens: &[u32],
    offset_s: f64,
    size_frames: usize,
    tokenizer: &Tokenizer,
) -> (Vec<Segment>, usize) {
    let is_ts: Vec<bool> = tokens.iter().map(|&t| t >= TIMESTAMP_BEGIN).collect();
    let time = |t: u32| round2(offset_s + (t - TIMESTAMP_BEGIN) as f64 * SECONDS_PER_TIMESTAMP);
    let n = tokens.len();
    let single_ending = n >= 2 && !is_ts[n - 2] && is_ts[n - 1];
    let mut cuts: Vec<usize> = (0..n.saturating_sub(1))
        .filter(|&i| is_ts[i] && is_ts[i + 1])
        .map(|i| i + 1)
        .collect();
    let mut out = Vec::new();
    if cuts.is_empty() {
        let mut duration = size_frames as f64 * 0.01;
        if let Some(&last) = tokens.iter().rev().find(|&&t| t >= TIMESTAMP_BEGIN)
            && last != TIMESTAMP_BEGIN
        {
            duration = (last - TIMESTAMP_BEGIN) as f64 * SECONDS_PER_TIMESTAMP;
        }
        out.push(Segment {
            start: round2(offset_s),
            end: round2(offset_s + duration),
            text: tokenizer.decode(tokens).trim().to_string(),
        });
        out.retain(|s| !s.text.is_empty());
        return (out, size_frames);
    }
    if single_ending {
        cuts.push(n);
    }
    let mut last = 0;
    for &cut in &cuts {
        let part = &tokens[last..cut];
        out.push(Segment {
            start: time(part[0]),
            end: time(part[part.len() - 1]),
            text: tokenizer.decode(part).trim().to_string(),
        });
        last = cut;
    }
    out.retain(|s| !s.text.is_empty());
    let advance = if single_ending {
        size_frames
    } else {
        (tokens[last - 1] - TIMESTAMP_BEGIN) as usize * FRAMES_PER_TIMESTAMP
    };
    (out, advance)
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: usize = TIMESTAMP_BEGIN as usize + 1501;

    fn logits_with(best: &[(u32, f32)]) -> Vec<f32> {
        let mut l = vec![0.0f32; V];
        for &(id, v) in best {
            l[id as usize] = v;
        }
        l
    }

    fn argmax(l: &[f32]) -> u32 {
        (0..l.len()).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap() as u32
    }

    #[test]
    fn first_token_is_an_early_timestamp() {
        let s = Suppress::default();
        let o = DecodeOptions::default();
        // Text is likelier, and a 5 s timestamp, but only 0..1 s timestamps may come first.
        let mut l = logits_with(&[
            (100, 30.0),
            (TIMESTAMP_BEGIN + 250, 29.0),
            (TIMESTAMP_BEGIN + 10, 5.0),
        ]);
        filter_logits(&mut l, &[], &s, &o);
        assert_eq!(argmax(&l), TIMESTAMP_BEGIN + 10);
    }

    #[test]
    fn timestamps_pair_and_never_go_back() {
        let s = Suppress::default();
        let o = DecodeOptions::default();
        let t = |k: u32| TIMESTAMP_BEGIN + k;
        // After an opening timestamp and text, an earlier timestamp is not allowed.
        let mut l = logits_with(&[(t(3), 40.0), (t(60), 20.0), (300, 19.0)]);
        filter_logits(&mut l, &[t(10), 200], &s, &o);
        assert_eq!(argmax(&l), t(60));
        // After text then a closing timestamp: the next must be a timestamp (or the end).
        let mut l = logits_with(&[(300, 40.0), (t(70), 1.0)]);
        filter_logits(&mut l, &[t(10), 200, t(60)], &s, &o);
        assert!(argmax(&l) >= t(60) || argmax(&l) == EOT);
        // After a closed pair: text, not another timestamp.
        let mut l = logits_with(&[(t(70), 40.0), (300, 1.0)]);
        filter_logits(&mut l, &[t(10), 200, t(60), t(60)], &s, &o);
        assert!(argmax(&l) < TIMESTAMP_BEGIN);
    }

    #[test]
    fn suppressed_tokens_are_never_sampled() {
        let s = Suppress {
            always: vec![100],
            at_begin: vec![],
        };
        let mut l = logits_with(&[(100, 50.0), (101, 10.0)]);
        filter_logits(&mut l, &[TIMESTAMP_BEGIN], &s, &DecodeOptions::default());
        assert_eq!(argmax(&l), 101);
    }

    #[test]
    fn greedy_stops_at_end_of_text_and_reports_no_speech() {
        let script = [TIMESTAMP_BEGIN, 500, TIMESTAMP_BEGIN + 50, EOT];
        let mut k = 0;
        let out = decode_window(
            &[50257],
            |_fed: &[u32]| -> Result<Vec<f32>, ()> {
                let mut l = logits_with(&[(script[k], 20.0), (NO_SPEECH, 19.0)]);
                if k > 0 {
                    l[NO_SPEECH as usize] = 0.0;
                }
                k += 1;
                Ok(l)
            },
            &Suppress::default(),
            &DecodeOptions::default(),
        )
        .unwrap();
        assert_eq!(out.tokens, &script[..3]);
        assert!(out.no_speech_prob > 0.2 && out.no_speech_prob < 0.3);
    }
}
