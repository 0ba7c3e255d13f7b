//! `speech_emotion`: an ONNX audio classifier (the operator's file, e.g. a wav2vec2 emotion
//! model exported with `input_values [batch, samples]` -> `logits [batch, labels]`), run over
//! fixed windows of the 16 kHz audio with configurable labels.

use std::sync::Arc;

use media::Audio;
use serde_json::json;

use crate::config::ModelFile;
use crate::error::ModelError;
use crate::params::Params;
use crate::registry::ModelRegistry;
use crate::runtime::{Input, LoadedModel};

#[derive(Debug, Clone)]
pub struct EmotionParams {
    pub labels: Vec<String>,
    pub window_s: f64,
    /// Windows shorter than this (the tail) are not classified.
    pub min_window_s: f64,
    /// Zero-mean unit-variance per window, as wav2vec2's feature extractor does.
    pub normalize: bool,
    /// Apply softmax to the outputs (off when the export already ends in one).
    pub softmax: bool,
}

impl EmotionParams {
    pub fn from_params(p: &Params) -> Result<Self, ModelError> {
        let labels = p
            .strings("labels")?
            .ok_or_else(|| ModelError::NotConfigured {
                analyzer: p.analyzer().to_string(),
                what: "emotion labels (params.labels)".into(),
                fix:
                    "list the model's output classes in order as params.labels in config/fleet.toml"
                        .into(),
            })?;
        Ok(Self {
            labels,
            window_s: p.f64("window_s", 5.0)?,
            min_window_s: p.f64("min_window_s", 1.0)?,
            normalize: p.bool("normalize", true)?,
            softmax: p.bool("softmax", true)?,
        })
    }
}

pub struct Emotion {
    model: Arc<LoadedModel>,
}

impl Emotion {
    pub fn load(
        registry: &ModelRegistry,
        file: &ModelFile,
        p: &EmotionParams,
    ) -> Result<Self, ModelError> {
        let model = registry.get(file)?;
        model.expect_input(
            0,
            &[None, None],
            "audio classification (input_values [batch, samples])",
        )?;
        if let Some(&k) = model.outputs.first().and_then(|(_, s)| s.get(1))
            && k > 0
            && k as usize != p.labels.len()
        {
            return Err(ModelError::BadShape {
                path: file.path.clone(),
                detail: format!(
                    "it predicts {k} classes but params.labels has {}",
                    p.labels.len()
                ),
            });
        }
        Ok(Self { model })
    }

    pub fn provider(&self) -> &'static str {
        self.model.provider.label()
    }

    /// Class probabilities of one window.
    pub fn classify(&self, window: &[f32], p: &EmotionParams) -> Result<Vec<f32>, ModelError> {
        let mut x = window.to_vec();
        if p.normalize {
            let n = x.len() as f64;
            let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            let inv = 1.0 / (var + 1e-7).sqrt();
            for v in &mut x {
                *v = ((*v as f64 - mean) * inv) as f32;
            }
        }
        let out = self
            .model
            .run(&[Input::F32(&[1, x.len() as i64], &x)])?
            .swap_remove(0);
        if out.data.len() != p.labels.len() {
            return Err(ModelError::BadShape {
                path: self.model.file.path.clone(),
                detail: format!("{} outputs for {} labels", out.data.len(), p.labels.len()),
            });
        }
        Ok(if p.softmax {
            softmax(&out.data)
        } else {
            out.data
        })
    }

    pub fn analyze(
        &self,
        audio: &Audio,
        p: &EmotionParams,
    ) -> Result<serde_json::Value, ModelError> {
        let rate = audio.sample_rate as f64;
        let win = ((p.window_s * rate) as usize).max(1);
        let min = (p.min_window_s * rate) as usize;
        let mut windows = Vec::new();
        let mut sum = vec![0f32; p.labels.len()];
        for (i, chunk) in audio.samples.chunks(win).enumerate() {
            if chunk.len() < min.max(1) {
                continue;
            }
            let probs = self.classify(chunk, p)?;
            for (s, v) in sum.iter_mut().zip(&probs) {
                *s += v;
            }
            let (best, conf) = argmax(&probs);
            let start = (i * win) as f64 / rate;
            windows.push(json!({
                "start_s": start, "end_s": start + chunk.len() as f64 / rate,
                "label": p.labels[best], "confidence": conf,
            }));
        }
        if windows.is_empty() {
            return Err(ModelError::NoInput(format!(
                "audio shorter than {} s",
                p.min_window_s
            )));
        }
        let n = windows.len() as f32;
        let mean: Vec<f32> = sum.iter().map(|s| s / n).collect();
        let (best, conf) = argmax(&mean);
        let probabilities: serde_json::Map<String, serde_json::Value> = p
            .labels
            .iter()
            .zip(&mean)
            .map(|(l, v)| (l.clone(), json!(v)))
            .collect();
        Ok(
            json!({ "label": p.labels[best], "confidence": conf, "probabilities": probabilities, "windows": windows }),
        )
    }
}

pub fn softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().copied().fold(f32::MIN, f32::max);
    let exp: Vec<f32> = x.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|v| v / sum).collect()
}

fn argmax(x: &[f32]) -> (usize, f32) {
    x.iter()
        .enumerate()
        .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b })
}
