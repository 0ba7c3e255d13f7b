//! Voice activity with Silero VAD v6: speech probability per 32 ms window, then speech
//! segments exactly as the `silero-vad` package's `get_speech_timestamps` makes them.

use std::sync::Arc;

use media::Audio;
use serde::Serialize;

use crate::error::ModelError;
use crate::params::Params;
use crate::registry::ModelRegistry;
use crate::runtime::{Input, LoadedModel, ModelSpec};

/// Samples per window at 16 kHz, and the samples of the previous window the model also sees.
const WINDOW: usize = 512;
const CONTEXT: usize = 64;
const RATE: usize = 16_000;

/// `get_speech_timestamps` parameters; defaults are the package's.
#[derive(Debug, Clone)]
pub struct VadParams {
    pub threshold: f32,
    /// Below this a running segment counts as silence (default `threshold - 0.15`).
    pub neg_threshold: Option<f32>,
    pub min_speech_ms: f64,
    pub min_silence_ms: f64,
    pub speech_pad_ms: f64,
    pub max_speech_s: f64,
}

impl Default for VadParams {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            neg_threshold: None,
            min_speech_ms: 250.0,
            min_silence_ms: 100.0,
            speech_pad_ms: 30.0,
            max_speech_s: f64::INFINITY,
        }
    }
}

impl VadParams {
    pub fn from_params(p: &Params) -> Result<Self, ModelError> {
        let d = Self::default();
        let neg = p.f64("neg_threshold", -1.0)?;
        Ok(Self {
            threshold: p.f32("threshold", d.threshold)?,
            neg_threshold: (neg >= 0.0).then_some(neg as f32),
            min_speech_ms: p.f64("min_speech_ms", d.min_speech_ms)?,
            min_silence_ms: p.f64("min_silence_ms", d.min_silence_ms)?,
            speech_pad_ms: p.f64("speech_pad_ms", d.speech_pad_ms)?,
            max_speech_s: p.f64("max_speech_s", d.max_speech_s)?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Segment {
    pub start_s: f64,
    pub end_s: f64,
}

impl Segment {
    pub fn duration(&self) -> f64 {
        self.end_s - self.start_s
    }
}

pub struct Vad {
    model: Arc<LoadedModel>,
}

impl Vad {
    pub fn load(registry: &ModelRegistry) -> Result<Self, ModelError> {
        // One thread: the model is tiny and runs window by window, where thread hand-offs would
        // cost more than they save (the silero package makes the same choice).
        let file = registry.config().fetched_model("silero.vad")?;
        // And the CPU even on a GPU worker: a 32 ms window per run is all launch overhead there.
        let spec = ModelSpec {
            intra_threads: Some(1),
            flush_to_zero: true,
            cpu_only: true,
            ..ModelSpec::default()
        };
        let model = registry.get_spec(&file, "silero.vad", spec)?;
        model.expect_input(0, &[None, None], "Silero VAD")?;
        Ok(Self { model })
    }

    pub fn provider(&self) -> &'static str {
        self.model.provider.label()
    }

    /// Speech probability of each 512-sample window (the last one zero-padded).
    pub fn probabilities(&self, samples: &[f32]) -> Result<Vec<f32>, ModelError> {
        let mut state = vec![0f32; 2 * 128];
        let mut input = vec![0f32; CONTEXT + WINDOW];
        let mut probs = Vec::with_capacity(samples.len() / WINDOW + 1);
        for chunk in samples.chunks(WINDOW) {
            // The first CONTEXT samples are the end of the previous window (zeros at the start).
            input.copy_within(WINDOW.., 0);
            input[CONTEXT..CONTEXT + chunk.len()].copy_from_slice(chunk);
            input[CONTEXT + chunk.len()..].fill(0.0);
            let out = self.model.run(&[
                Input::F32(&[1, (CONTEXT + WINDOW) as i64], &input),
                Input::F32(&[2, 1, 128], &state),
                Input::I64(&[], &[RATE as i64]),
            ])?;
            let [prob, new_state] = &out[..] else {
                return Err(ModelError::BadShape {
                    path: self.model.file.path.clone(),
                    detail: format!("{} outputs, Silero VAD has 2 (output, stateN)", out.len()),
                });
            };
            probs.push(prob.data[0]);
            state.copy_from_slice(&new_state.data);
        }
        Ok(probs)
    }

    /// Speech segments of 16 kHz audio.
    pub fn segments(&self, audio: &Audio, params: &VadParams) -> Result<Vec<Segment>, ModelError> {
        if audio.sample_rate as usize != RATE {
            return Err(ModelError::param(
                "audio",
                format!("Silero VAD needs 16 kHz, got {} Hz", audio.sample_rate),
            ));
        }
        let probs = self.probabilities(&audio.samples)?;
        Ok(timestamps(&probs, audio.samples.len(), params)
            .into_iter()
            .map(|(s, e)| Segment {
                start_s: s as f64 / RATE as f64,
                end_s: e as f64 / RATE as f64,
            })
            .collect())
    }
}

/// Window probabilities -> speech segments in samples, a line-by-line port of
/// `get_speech_timestamps_from_probs` (silero-vad 6.2) so both give the same segments.
pub fn timestamps(probs: &[f32], audio_len: usize, p: &VadParams) -> Vec<(usize, usize)> {
    let sr = RATE as f64;
    let min_speech = sr * p.min_speech_ms / 1000.0;
    let pad = sr * p.speech_pad_ms / 1000.0;
    let max_speech = sr * p.max_speech_s - WINDOW as f64 - 2.0 * pad;
    let min_silence = sr * p.min_silence_ms / 1000.0;
    let min_silence_at_max = sr * 98.0 / 1000.0;
    let neg = p.neg_threshold.unwrap_or((p.threshold - 0.15).max(0.01));

    let mut triggered = false;
    let mut speeches: Vec<(usize, usize)> = Vec::new();
    let mut start: Option<usize> = None;
    let (mut temp_end, mut prev_end, mut next_start) = (0usize, 0usize, 0usize);
    let mut possible_ends: Vec<(usize, usize)> = Vec::new();
    for (i, &prob) in probs.iter().enumerate() {
        let cur = WINDOW * i;
        if prob >= p.threshold && temp_end != 0 {
            let sil = cur - temp_end;
            if sil as f64 > min_silence_at_max {
                possible_ends.push((temp_end, sil));
            }
            temp_end = 0;
            if next_start < prev_end {
                next_start = cur;
            }
        }
        if prob >= p.threshold && !triggered {
            triggered = true;
            start = Some(cur);
            continue;
        }
        if triggered && start.is_some_and(|s| (cur - s) as f64 > max_speech) {
            let s = start.take().unwrap_or(0);
            // Python's max() keeps the first of equal maxima.
            let longest = possible_ends.iter().fold(
                None,
                |best: Option<(usize, usize)>, &(e, d)| match best {
                    Some((_, bd)) if bd >= d => best,
                    _ => Some((e, d)),
                },
            );
            if let Some((end, dur)) = longest {
                speeches.push((s, end));
                next_start = end + dur;
                if next_start < end + cur {
                    start = Some(next_start);
                } else {
                    triggered = false;
                }
            } else {
                speeches.push((s, cur));
                triggered = false;
            }
            prev_end = 0;
            next_start = 0;
            temp_end = 0;
            possible_ends.clear();
            if !triggered {
                continue;
            }
        }
        if prob < neg && triggered {
            if temp_end == 0 {
                temp_end = cur;
            }
            if ((cur - temp_end) as f64) < min_silence {
                continue;
            }
            if let Some(s) = start.take()
                && (temp_end - s) as f64 > min_speech
            {
                speeches.push((s, temp_end));
            }
            prev_end = 0;
            next_start = 0;
            temp_end = 0;
            triggered = false;
            possible_ends.clear();
        }
    }
    if let Some(s) = start
        && (audio_len - s) as f64 > min_speech
    {
        speeches.push((s, audio_len));
    }
    // Pad each segment, splitting short gaps between neighbours in the middle.
    let n = speeches.len();
    for i in 0..n {
        if i == 0 {
            speeches[0].0 = (speeches[0].0 as f64 - pad).max(0.0) as usize;
        }
        if i + 1 < n {
            let gap = speeches[i + 1].0 as i64 - speeches[i].1 as i64;
            if (gap as f64) < 2.0 * pad {
                speeches[i].1 = (speeches[i].1 as i64 + gap.div_euclid(2)) as usize;
                speeches[i + 1].0 = (speeches[i + 1].0 as i64 - gap.div_euclid(2)).max(0) as usize;
            } else {
                speeches[i].1 = (speeches[i].1 as f64 + pad).min(audio_len as f64) as usize;
                speeches[i + 1].0 = (speeches[i + 1].0 as f64 - pad).max(0.0) as usize;
            }
        } else {
            speeches[i].1 = (speeches[i].1 as f64 + pad).min(audio_len as f64) as usize;
        }
    }
    speeches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_speech_becomes_one_padded_segment() {
        // 10 silent windows, 20 speech windows, 10 silent windows.
        let probs: Vec<f32> = (0..40)
            .map(|i| if (10..30).contains(&i) { 0.9 } else { 0.05 })
            .collect();
        let segs = timestamps(&probs, 40 * WINDOW, &VadParams::default());
        assert_eq!(segs, vec![(10 * WINDOW - 480, 30 * WINDOW + 480)]);
    }

    #[test]
    fn short_blips_are_dropped() {
        let probs: Vec<f32> = (0..40).map(|i| if i == 10 { 0.9 } else { 0.05 }).collect();
        assert!(timestamps(&probs, 40 * WINDOW, &VadParams::default()).is_empty());
    }
}
