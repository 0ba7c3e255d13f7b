//! `background_segmentation`: a SegFormer ONNX export (the operator's file). Frames are resized
//! to the model input, ImageNet-normalized, and the per-pixel argmax of the logits gives class
//! shares and the foreground ratio (everything not in the background classes).

use std::sync::Arc;

use media::Frames;
use serde_json::json;

use crate::config::ModelFile;
use crate::error::ModelError;
use crate::imgproc::{self, ChannelOrder, Rgb};
use crate::par;
use crate::params::Params;
use crate::registry::ModelRegistry;
use crate::runtime::{ConvSearch, LoadedModel, ModelSpec, Precision};

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// Frames per run on a GPU at 512 px.
pub const BATCHES: [usize; 2] = [4, 16];
/// Frames prepared per pipeline step.
const CHUNK: usize = 16;

#[derive(Debug, Clone)]
pub struct SegParams {
    /// Input size for exports with dynamic spatial dimensions (SegFormer: 512).
    pub input_size: usize,
    pub batch: usize,
    pub labels: Option<Vec<String>>,
    /// Class indices that count as background (e.g. wall, sky, floor of ADE20K).
    pub background: Vec<usize>,
    /// How many classes the summary lists.
    pub top: usize,
}

impl Default for SegParams {
    fn default() -> Self {
        Self {
            input_size: 512,
            batch: 2,
            labels: None,
            background: vec![0],
            top: 10,
        }
    }
}

impl SegParams {
    pub fn from_params(p: &Params) -> Result<Self, ModelError> {
        let d = Self::default();
        let background = match p.numbers("background_classes")? {
            Some(v) => v.into_iter().map(|x| x as usize).collect(),
            None => d.background,
        };
        Ok(Self {
            input_size: p.usize("input_size", d.input_size)?,
            batch: p.usize("batch_size", d.batch)?.max(1),
            labels: p.strings("labels")?,
            background,
            top: p.usize("top", d.top)?,
        })
    }
}

pub struct SegFormer {
    model: Arc<LoadedModel>,
    width: usize,
    height: usize,
}

impl SegFormer {
    pub fn load(
        registry: &ModelRegistry,
        file: &ModelFile,
        p: &SegParams,
    ) -> Result<Self, ModelError> {
        let key = file
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let size = p.input_size as i64;
        let spec = ModelSpec {
            batches: BATCHES.to_vec(),
            warm: vec![vec![3, size, size]],
            conv_search: ConvSearch::Exhaustive,
            precision: Precision::Fp16,
            ..ModelSpec::default()
        };
        let model = registry.get_spec(file, &key, spec)?;
        model.expect_input(0, &[None, Some(3), None, None], "SegFormer segmentation")?;
        let shape = &model.inputs[0].1;
        let dim = |d: i64| if d > 0 { d as usize } else { p.input_size };
        Ok(Self {
            height: dim(shape[2]),
            width: dim(shape[3]),
            model,
        })
    }

    pub fn provider(&self) -> &'static str {
        self.model.provider.label()
    }

    /// Per-class pixel share of each frame.
    pub fn class_shares(
        &self,
        frames: &[Rgb<'_>],
        p: &SegParams,
    ) -> Result<Vec<Vec<f64>>, ModelError> {
        let plane = 3 * self.width * self.height;
        let chunk = if self.model.provider.is_gpu() {
            CHUNK
        } else {
            p.batch
        };
        let chunks: Vec<&[Rgb<'_>]> = frames.chunks(chunk.max(1)).collect();
        let done = par::pipelined(
            chunks.len(),
            |k| {
                let c = chunks[k];
                let mut input = vec![0f32; c.len() * plane];
                par::fill(&mut input, plane, |i, slot| {
                    let resized = imgproc::resize(c[i], self.width, self.height);
                    imgproc::to_chw(
                        resized.view(),
                        ChannelOrder::Rgb,
                        1.0 / 255.0,
                        IMAGENET_MEAN,
                        IMAGENET_STD,
                        self.width,
                        slot,
                    );
                });
                input
            },
            |k, input| {
                let c = chunks[k];
                let out = self
                    .model
                    .infer(&[3, self.height as i64, self.width as i64], c.len(), &input)?
                    .swap_remove(0);
                if out.shape.len() != 4 {
                    return Err(ModelError::BadShape {
                        path: self.model.file.path.clone(),
                        detail: format!(
                            "output shape {:?}, SegFormer gives logits [batch, classes, h, w]",
                            out.shape
                        ),
                    });
                }
                let (k, hw) = (
                    out.shape[1] as usize,
                    (out.shape[2] * out.shape[3]) as usize,
                );
                Ok(par::map_n(c.len(), |i| {
                    let logits = out.item(i);
                    if k == 0 || hw == 0 {
                        return Vec::new();
                    }
                    let mut counts = vec![0usize; k];
                    // Class-major argmax: each class plane is read in order (pixel-major
                    // strides hw floats per class and misses the cache on every read).
                    let mut best: Vec<(u32, f32)> = logits[..hw].iter().map(|&v| (0, v)).collect();
                    for c in 1..k {
                        let plane = &logits[c * hw..(c + 1) * hw];
                        for (b, &v) in best.iter_mut().zip(plane) {
                            if v > b.1 {
                                *b = (c as u32, v);
                            }
                        }
                    }
                    for (c, _) in best {
                        counts[c as usize] += 1;
                    }
                    counts
                        .into_iter()
                        .map(|c| c as f64 / hw as f64)
                        .collect::<Vec<f64>>()
                }))
            },
        )?;
        let all: Vec<Vec<f64>> = done.into_iter().flatten().collect();
        Ok(all)
    }

    pub fn analyze(&self, frames: &Frames, p: &SegParams) -> Result<serde_json::Value, ModelError> {
        let (w, h) = (frames.width as usize, frames.height as usize);
        let imgs: Vec<Rgb<'_>> = frames.iter().map(|(_, d)| Rgb::new(d, w, h)).collect();
        let shares = self.class_shares(&imgs, p)?;
        let k = shares.first().map_or(0, Vec::len);
        if let Some(labels) = &p.labels
            && labels.len() != k
            && k > 0
        {
            return Err(ModelError::BadShape {
                path: self.model.file.path.clone(),
                detail: format!(
                    "it predicts {k} classes but params.labels has {}",
                    labels.len()
                ),
            });
        }
        let n = shares.len().max(1) as f64;
        let mut mean = vec![0f64; k];
        for s in &shares {
            for (m, v) in mean.iter_mut().zip(s) {
                *m += v / n;
            }
        }
        let fg = |s: &[f64]| 1.0 - p.background.iter().filter_map(|&b| s.get(b)).sum::<f64>();
        let r4 = |v: f64| (v * 1e4).round() / 1e4;
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&a, &b| mean[b].total_cmp(&mean[a]));
        let label = |c: usize| {
            p.labels
                .as_ref()
                .and_then(|l| l.get(c).cloned())
                .unwrap_or_else(|| format!("class_{c}"))
        };
        let classes: Vec<_> = order
            .into_iter()
            .filter(|&c| mean[c] > 0.0)
            .take(p.top)
            .map(|c| json!({ "class_id": c, "label": label(c), "share": r4(mean[c]) }))
            .collect();
        let per_frame: Vec<_> = frames
            .times
            .iter()
            .zip(&shares)
            .map(|(t, s)| json!({ "t": t, "foreground_ratio": r4(fg(s)) }))
            .collect();
        Ok(json!({
            "classes": classes,
            "foreground_ratio": r4(fg(&mean)),
            "background_classes": p.background,
            "frames": per_frame,
        }))
    }
}
