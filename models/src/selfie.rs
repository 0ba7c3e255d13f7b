//! `background_segmentation` by default: MediaPipe selfie segmentation (Apache-2.0), a
//! person/background mask per frame, converted at setup from the `.tflite` in the mediapipe
//! wheel (its custom transposed convolution becomes a standard ConvTranspose).
//!
//! Frames are fitted into 256 x 256 with their aspect kept (centred on black bars: squeezing a
//! 9:16 frame into the square input loses small people on busy backgrounds, measured in
//! `models/tests/segmentation_accuracy.rs`), in `[0, 1]`; the model gives the person
//! probability per pixel, and only the frame's part of the input counts. From the mask: the person's share of the frame
//! and box, and statistics of what is behind them (brightness, colour, texture, and how much
//! the background moves from one sampled frame to the next).

use std::sync::Arc;

use media::Frames;
use serde::Serialize;
use serde_json::json;

use crate::error::ModelError;
use crate::imgproc::{self, Rgb, RgbImage};
use crate::par;
use crate::params::Params;
use crate::registry::ModelRegistry;
use crate::runtime::{ConvSearch, LoadedModel, ModelSpec, Precision};

pub const MODEL_ID: &str = "mediapipe.selfie";
pub const MODEL_NAME: &str = "mediapipe selfie_segmentation (256x256, person mask)";
pub const SIDE: usize = 256;
/// Frames per run on a GPU.
pub const BATCHES: [usize; 2] = [8, 32];
const CHUNK: usize = 32;

#[derive(Debug, Clone)]
pub struct SelfieParams {
    /// Person probability from which a pixel counts as person.
    pub threshold: f32,
    /// Share of the frame from which a frame counts as showing a person.
    pub min_person_share: f64,
    pub batch: usize,
}

impl Default for SelfieParams {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            min_person_share: 0.01,
            batch: 4,
        }
    }
}

impl SelfieParams {
    pub fn from_params(p: &Params) -> Result<Self, ModelError> {
        let d = Self::default();
        Ok(Self {
            threshold: p.f32("threshold", d.threshold)?,
            min_person_share: p.f64("min_person_share", d.min_person_share)?,
            batch: p.usize("batch_size", d.batch)?.max(1),
        })
    }
}

/// One frame's person mask at [`SIDE`] x [`SIDE`] (probabilities), with the letterboxed
/// frame; `content` is where the frame sits in both: `[left, top, width, height]`.
pub struct Mask {
    pub prob: Vec<f32>,
    pub image: RgbImage,
    pub content: [usize; 4],
}

impl Mask {
    /// The input pixels that show the frame, by index.
    fn pixels(&self) -> impl Iterator<Item = usize> + '_ {
        let [l, t, w, h] = self.content;
        (t..t + h).flat_map(move |y| (l..l + w).map(move |x| y * SIDE + x))
    }

    /// Share of the frame that is person.
    pub fn share(&self, threshold: f32) -> f64 {
        let n = self.content[2] * self.content[3];
        self.pixels().filter(|&i| self.prob[i] >= threshold).count() as f64 / n.max(1) as f64
    }

    /// The person probability at a point of the frame given as shares of its width and height.
    pub fn at(&self, fx: f64, fy: f64) -> f32 {
        let [l, t, w, h] = self.content;
        let x = l + ((fx * w as f64) as usize).min(w.saturating_sub(1));
        let y = t + ((fy * h as f64) as usize).min(h.saturating_sub(1));
        self.prob[y * SIDE + x]
    }
}

/// `frame` fitted into the input square, aspect kept, centred on black.
fn letterbox(frame: Rgb<'_>) -> (RgbImage, [usize; 4]) {
    let r = (SIDE as f32 / frame.width as f32).min(SIDE as f32 / frame.height as f32);
    let w = ((frame.width as f32 * r).round() as usize).clamp(1, SIDE);
    let h = ((frame.height as f32 * r).round() as usize).clamp(1, SIDE);
    let (l, t) = ((SIDE - w) / 2, (SIDE - h) / 2);
    let small = imgproc::resize_area(frame, w, h);
    let mut data = vec![0u8; SIDE * SIDE * 3];
    for y in 0..h {
        let dst = ((t + y) * SIDE + l) * 3;
        data[dst..dst + w * 3].copy_from_slice(&small.data[y * w * 3..(y + 1) * w * 3]);
    }
    let image = RgbImage {
        data,
        width: SIDE,
        height: SIDE,
    };
    (image, [l, t, w, h])
}

/// What is behind the person in one frame.
#[derive(Debug, Clone, Serialize)]
pub struct BackgroundStats {
    /// Mean luma (0-255, BT.601).
    pub luma: f32,
    /// Mean colour (RGB).
    pub rgb: [f32; 3],
    /// Mean absolute luma gradient between neighbouring pixels: 0 for a flat wall, tens for
    /// foliage, crowds or patterns.
    pub texture: f32,
}

pub struct Selfie {
    model: Arc<LoadedModel>,
}

impl Selfie {
    pub fn load(registry: &ModelRegistry) -> Result<Self, ModelError> {
        let side = SIDE as i64;
        let spec = ModelSpec {
            batches: BATCHES.to_vec(),
            warm: vec![vec![side, side, 3]],
            conv_search: ConvSearch::Exhaustive,
            precision: Precision::Fp16,
            ..ModelSpec::default()
        };
        let model = registry.fetched_spec(MODEL_ID, spec)?;
        model.expect_input(
            0,
            &[None, Some(side), Some(side), Some(3)],
            "selfie segmentation",
        )?;
        Ok(Self { model })
    }

    pub fn provider(&self) -> &'static str {
        self.model.provider.label()
    }

    /// The person mask of every frame.
    pub fn masks(&self, frames: &[Rgb<'_>], p: &SelfieParams) -> Result<Vec<Mask>, ModelError> {
        let plane = SIDE * SIDE * 3;
        let chunk = if self.model.provider.is_gpu() {
            CHUNK
        } else {
            p.batch
        };
        let chunks: Vec<&[Rgb<'_>]> = frames.chunks(chunk.max(1)).collect();
        let side = SIDE as i64;
        let done = par::pipelined(
            chunks.len(),
            |k| {
                let c = chunks[k];
                let images = par::map_n(c.len(), |i| letterbox(c[i]));
                let mut input = vec![0f32; c.len() * plane];
                par::fill(&mut input, plane, |i, slot| {
                    for (d, &s) in slot.iter_mut().zip(&images[i].0.data) {
                        *d = s as f32 / 255.0;
                    }
                });
                (input, images)
            },
            |k, (input, images)| {
                let n = chunks[k].len();
                let out = self
                    .model
                    .infer(&[side, side, 3], n, &input)?
                    .swap_remove(0);
                if out.item_len() != SIDE * SIDE {
                    return Err(ModelError::BadShape {
                        path: self.model.file.path.clone(),
                        detail: format!("output shape {:?}, want [batch, 256, 256, 1]", out.shape),
                    });
                }
                Ok(images
                    .into_iter()
                    .enumerate()
                    .map(|(i, (image, content))| Mask {
                        prob: out.item(i).to_vec(),
                        image,
                        content,
                    })
                    .collect::<Vec<_>>())
            },
        )?;
        Ok(done.into_iter().flatten().collect())
    }

    pub fn analyze(
        &self,
        frames: &Frames,
        p: &SelfieParams,
    ) -> Result<serde_json::Value, ModelError> {
        let (w, h) = (frames.width as usize, frames.height as usize);
        let imgs: Vec<Rgb<'_>> = frames.iter().map(|(_, d)| Rgb::new(d, w, h)).collect();
        let masks = self.masks(&imgs, p)?;
        let r4 = |v: f64| (v * 1e4).round() / 1e4;
        let r1 = |v: f32| (v * 10.0).round() / 10.0;
        let mut per_frame = Vec::with_capacity(masks.len());
        let (mut share_sum, mut with_person) = (0.0, 0usize);
        let (mut luma, mut texture, mut rgb) = (0.0f64, 0.0f64, [0.0f64; 3]);
        let mut motion: Vec<f32> = Vec::new();
        for (k, (t, m)) in frames.times.iter().zip(&masks).enumerate() {
            let share = m.share(p.threshold);
            share_sum += share;
            let person = share >= p.min_person_share;
            with_person += person as usize;
            let bg = background_stats(m, p.threshold);
            luma += bg.luma as f64;
            texture += bg.texture as f64;
            for (sum, v) in rgb.iter_mut().zip(bg.rgb) {
                *sum += v as f64;
            }
            if k > 0 {
                motion.push(background_change(&masks[k - 1], m, p.threshold));
            }
            let bbox = person.then(|| person_box(m, p.threshold)).flatten();
            per_frame.push(json!({
                "t": t,
                "person_share": r4(share),
                "person_bbox": bbox.map(|b| [r4(b[0]), r4(b[1]), r4(b[2]), r4(b[3])]),
                "background": { "luma": r1(bg.luma), "texture": r1(bg.texture), "rgb": bg.rgb.map(r1) },
            }));
        }
        let n = masks.len().max(1) as f64;
        let mean_motion = if motion.is_empty() {
            0.0
        } else {
            motion.iter().sum::<f32>() / motion.len() as f32
        };
        Ok(json!({
            "model": MODEL_NAME,
            "person_share": r4(share_sum / n),
            // The share of the picture in front of the background (SegFormer's key too).
            "foreground_ratio": r4(share_sum / n),
            "frames_with_person": with_person,
            "person_frame_share": r4(with_person as f64 / n),
            "background": {
                "luma": r1((luma / n) as f32),
                "texture": r1((texture / n) as f32),
                "rgb": rgb.map(|v| r1((v / n) as f32)),
                // Mean absolute luma change of background pixels between sampled frames.
                "motion": r1(mean_motion),
            },
            "frames": per_frame,
        }))
    }
}

fn luma_of(px: &[u8]) -> f32 {
    0.299 * px[0] as f32 + 0.587 * px[1] as f32 + 0.114 * px[2] as f32
}

/// Statistics of the frame's pixels the mask calls background.
pub fn background_stats(m: &Mask, threshold: f32) -> BackgroundStats {
    let img = &m.image;
    let [l, t, w, h] = m.content;
    let (mut n, mut luma, mut rgb, mut grad, mut gn) =
        (0usize, 0.0f64, [0.0f64; 3], 0.0f64, 0usize);
    for y in t..t + h {
        for x in l..l + w {
            let i = y * img.width + x;
            if m.prob[i] >= threshold {
                continue;
            }
            let px = &img.data[i * 3..i * 3 + 3];
            n += 1;
            let here = luma_of(px);
            luma += here as f64;
            for (sum, &v) in rgb.iter_mut().zip(px) {
                *sum += v as f64;
            }
            if x + 1 < l + w && m.prob[i + 1] < threshold {
                grad += (luma_of(&img.data[(i + 1) * 3..(i + 1) * 3 + 3]) - here).abs() as f64;
                gn += 1;
            }
            if y + 1 < t + h && m.prob[i + img.width] < threshold {
                let j = i + img.width;
                grad += (luma_of(&img.data[j * 3..j * 3 + 3]) - here).abs() as f64;
                gn += 1;
            }
        }
    }
    let nn = n.max(1) as f64;
    BackgroundStats {
        luma: (luma / nn) as f32,
        rgb: rgb.map(|v| (v / nn) as f32),
        texture: (grad / gn.max(1) as f64) as f32,
    }
}

/// Mean absolute luma change of the pixels that are background in both frames.
fn background_change(a: &Mask, b: &Mask, threshold: f32) -> f32 {
    let (mut sum, mut n) = (0.0f64, 0usize);
    for i in a.pixels() {
        if a.prob[i] < threshold && b.prob.get(i).is_some_and(|&p| p < threshold) {
            let (pa, pb) = (
                &a.image.data[i * 3..i * 3 + 3],
                &b.image.data[i * 3..i * 3 + 3],
            );
            sum += (luma_of(pa) - luma_of(pb)).abs() as f64;
            n += 1;
        }
    }
    (sum / n.max(1) as f64) as f32
}

/// The box around the person pixels, as shares of the frame `[x1, y1, x2, y2]`.
pub fn person_box(m: &Mask, threshold: f32) -> Option<[f64; 4]> {
    let (mut x1, mut y1, mut x2, mut y2) = (usize::MAX, usize::MAX, 0usize, 0usize);
    for i in m.pixels() {
        if m.prob[i] >= threshold {
            let (x, y) = (i % SIDE, i / SIDE);
            x1 = x1.min(x);
            y1 = y1.min(y);
            x2 = x2.max(x + 1);
            y2 = y2.max(y + 1);
        }
    }
    let [l, t, w, h] = m.content;
    (x1 != usize::MAX).then(|| {
        let (w, h) = (w as f64, h as f64);
        [
            (x1 - l) as f64 / w,
            (y1 - t) as f64 / h,
            (x2 - l) as f64 / w,
            (y2 - t) as f64 / h,
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_stats_skip_the_person() {
        // Left half person (black), right half background: a white/grey vertical stripe pattern.
        let mut data = vec![0u8; SIDE * SIDE * 3];
        let mut prob = vec![0.0f32; SIDE * SIDE];
        for y in 0..SIDE {
            for x in 0..SIDE {
                let i = y * SIDE + x;
                if x < SIDE / 2 {
                    prob[i] = 0.9;
                } else {
                    let v = if x % 2 == 0 { 200 } else { 100 };
                    data[i * 3..i * 3 + 3].copy_from_slice(&[v, v, v]);
                }
            }
        }
        let m = Mask {
            prob,
            image: RgbImage {
                data,
                width: SIDE,
                height: SIDE,
            },
            content: [0, 0, SIDE, SIDE],
        };
        assert!((m.share(0.5) - 0.5).abs() < 1e-9);
        let bg = background_stats(&m, 0.5);
        assert!((bg.luma - 150.0).abs() < 0.5, "{bg:?}");
        // Horizontal neighbours differ by 100, vertical ones by 0.
        assert!((bg.texture - 50.0).abs() < 1.0, "{bg:?}");
        assert_eq!(person_box(&m, 0.5), Some([0.0, 0.0, 0.5, 1.0]));
    }
}
