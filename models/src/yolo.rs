//! YOLOv8 detection (`object_detection`, `product_detection`) on the operator's ONNX export:
//! letterbox, batched frames, decode of `[B, 4 + classes, N]`, per-class NMS, class names
//! from the export's metadata or from config.

use std::collections::BTreeMap;
use std::sync::Arc;

use media::Frames;
use serde::Serialize;
use serde_json::json;

use crate::config::ModelFile;
use crate::error::ModelError;
use crate::imgproc::{self, Rgb};
use crate::ocr::geometry::iou;
use crate::par;
use crate::params::Params;
use crate::registry::ModelRegistry;
use crate::runtime::{ConvSearch, LoadedModel, ModelSpec, Precision};

/// Grey of the letterbox bars (Ultralytics).
const PAD: u8 = 114;
/// Frames per run on a GPU: 16 at 640 px keep YOLOv8x within a few GiB of activations.
pub const BATCHES: [usize; 2] = [4, 16];
/// Short sides of the input, as fractions of the long side, for exports with dynamic spatial
/// dimensions: a 9:16 (or 16:9) frame fits 3/5 (384 of 640, ultralytics' rectangular
/// letterbox, 40 % fewer pixels than the square), anything squarer takes the square. Two
/// buckets per orientation keep the set of shapes small enough to warm at load.
const SHORT_SIDES: [(usize, usize); 2] = [(3, 5), (1, 1)];
/// Frames prepared per pipeline step (letterboxed while the previous step runs).
const CHUNK: usize = 32;

#[derive(Debug, Clone)]
pub struct YoloParams {
    pub conf: f32,
    pub iou: f32,
    pub batch: usize,
    pub max_det: usize,
    /// Input size for exports with dynamic spatial dimensions.
    pub input_size: usize,
    /// Class names overriding the export's `names` metadata.
    pub classes: Option<Vec<String>>,
}

impl Default for YoloParams {
    fn default() -> Self {
        Self {
            conf: 0.25,
            iou: 0.45,
            batch: 4,
            max_det: 300,
            input_size: 640,
            classes: None,
        }
    }
}

impl YoloParams {
    pub fn from_params(p: &Params) -> Result<Self, ModelError> {
        let d = Self::default();
        Ok(Self {
            conf: p.f32("conf", d.conf)?,
            iou: p.f32("iou", d.iou)?,
            batch: p.usize("batch_size", d.batch)?.max(1),
            max_det: p.usize("max_det", d.max_det)?,
            input_size: p.usize("input_size", d.input_size)?,
            classes: p.strings("classes")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    pub label: String,
    pub class_id: usize,
    pub confidence: f32,
    /// `[x1, y1, x2, y2]` in frame pixels.
    pub bbox: [f32; 4],
}

pub struct Yolo {
    model: Arc<LoadedModel>,
    /// `(width, height)` of an export with fixed spatial dimensions.
    fixed: Option<(usize, usize)>,
    /// Long side of the input of a dynamic export.
    size: usize,
    names: Vec<String>,
}

/// The input `(width, height)` a dynamic export gets for a `fw`x`fh` frame: the long side
/// `size`, the short side the smallest of [`SHORT_SIDES`] that holds the frame's (multiples
/// of 32, the models' stride).
pub fn rect_input(fw: usize, fh: usize, size: usize) -> (usize, usize) {
    let long = fw.max(fh).max(1) as f64;
    let short = (fw.min(fh) as f64 * size as f64 / long).ceil() as usize;
    let side = SHORT_SIDES
        .iter()
        .map(|&(num, den)| (size * num / den).div_ceil(32) * 32)
        .find(|&s| s >= short)
        .unwrap_or(size)
        .min(size.div_ceil(32) * 32);
    if fw >= fh { (size, side) } else { (side, size) }
}

/// Every input shape `[3, height, width]` a dynamic export can be given ([`rect_input`]).
pub fn rect_shapes(size: usize) -> Vec<Vec<i64>> {
    let mut shapes: Vec<Vec<i64>> = Vec::new();
    for &(num, den) in &SHORT_SIDES {
        let side = ((size * num / den).div_ceil(32) * 32).min(size.div_ceil(32) * 32) as i64;
        for s in [vec![3, size as i64, side], vec![3, side, size as i64]] {
            if !shapes.contains(&s) {
                shapes.push(s);
            }
        }
    }
    shapes
}

/// How a frame was fitted into the model input: `input = frame * scale + pad`.
#[derive(Debug, Clone, Copy)]
pub struct Letterbox {
    pub scale: f32,
    pub pad: [f32; 2],
}

impl Yolo {
    pub fn load(
        registry: &ModelRegistry,
        file: &ModelFile,
        p: &YoloParams,
    ) -> Result<Self, ModelError> {
        let key = file
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let size = p.input_size.max(32);
        let spec = ModelSpec {
            batches: BATCHES.to_vec(),
            // Shapes a fixed-size export cannot take are skipped at warm-up.
            warm: rect_shapes(size),
            conv_search: ConvSearch::Exhaustive,
            precision: Precision::Fp16,
            ..ModelSpec::default()
        };
        let model = registry.get_spec(file, &key, spec)?;
        model.expect_input(0, &[None, Some(3), None, None], "YOLOv8 detection")?;
        let shape = &model.inputs[0].1;
        let fixed = match (shape[2], shape[3]) {
            (h, w) if h > 0 && w > 0 => Some((w as usize, h as usize)),
            (h, _) if h > 0 => Some((h as usize, h as usize)),
            (_, w) if w > 0 => Some((w as usize, w as usize)),
            _ => None,
        };
        let names = match &p.classes {
            Some(c) => c.clone(),
            None => model
                .metadata
                .get("names")
                .map(|s| parse_names(s))
                .unwrap_or_default(),
        };
        if let Some((_, out)) = model.outputs.first() {
            let fixed_classes = out
                .get(1)
                .copied()
                .filter(|&c| c > 4)
                .map(|c| c as usize - 4);
            if let Some(n) = fixed_classes
                && !names.is_empty()
                && n != names.len()
            {
                return Err(ModelError::BadShape {
                    path: file.path.clone(),
                    detail: format!(
                        "it predicts {n} classes but {} class names are configured",
                        names.len()
                    ),
                });
            }
        }
        Ok(Self {
            model,
            fixed,
            size,
            names,
        })
    }

    pub fn provider(&self) -> &'static str {
        self.model.provider.label()
    }

    /// The input `(width, height)` for frames of `fw`x`fh`.
    pub fn input_for(&self, fw: usize, fh: usize) -> (usize, usize) {
        self.fixed.unwrap_or_else(|| rect_input(fw, fh, self.size))
    }

    /// Scales the frame into a `width`x`height` input keeping its aspect ratio, centred on
    /// grey bars, and packs it as RGB `/255` CHW into `out`.
    pub fn letterbox(
        frame: Rgb<'_>,
        (width, height): (usize, usize),
        out: &mut [f32],
    ) -> Letterbox {
        let r = (width as f32 / frame.width as f32).min(height as f32 / frame.height as f32);
        let (nw, nh) = (
            ((frame.width as f32 * r).round() as usize).min(width),
            ((frame.height as f32 * r).round() as usize).min(height),
        );
        let (dw, dh) = ((width - nw) as f32 / 2.0, (height - nh) as f32 / 2.0);
        let (left, top) = ((dw - 0.1).round() as usize, (dh - 0.1).round() as usize);
        let resized;
        let src = if (nw, nh) == (frame.width, frame.height) {
            frame
        } else {
            resized = imgproc::resize(frame, nw, nh);
            resized.view()
        };
        let plane = width * height;
        let scale = 1.0 / 255.0;
        out[..3 * plane].fill(PAD as f32 * scale);
        for c in 0..3 {
            let dst = &mut out[c * plane..(c + 1) * plane];
            for y in 0..nh {
                let row = &src.data[y * nw * 3..(y + 1) * nw * 3];
                let d = &mut dst[(top + y) * width + left..(top + y) * width + left + nw];
                for (x, v) in d.iter_mut().enumerate() {
                    *v = row[x * 3 + c] as f32 * scale;
                }
            }
        }
        Letterbox {
            scale: r,
            pad: [left as f32, top as f32],
        }
    }

    /// Detections per frame: frames letterboxed on every core a chunk ahead of inference,
    /// batches padded to [`BATCHES`] on a GPU (`p.batch` frames per run on the CPU).
    pub fn detect(
        &self,
        frames: &[Rgb<'_>],
        p: &YoloParams,
    ) -> Result<Vec<Vec<Detection>>, ModelError> {
        let chunk = if self.model.provider.is_gpu() {
            CHUNK
        } else {
            p.batch.max(1)
        };
        // Runs of frames that share an input shape (every frame of one video does), cut into
        // chunks.
        let mut chunks: Vec<(&[Rgb<'_>], (usize, usize))> = Vec::new();
        let mut start = 0;
        while start < frames.len() {
            let dims = self.input_for(frames[start].width, frames[start].height);
            let mut end = start + 1;
            while end < frames.len()
                && end - start < chunk
                && self.input_for(frames[end].width, frames[end].height) == dims
            {
                end += 1;
            }
            chunks.push((&frames[start..end], dims));
            start = end;
        }
        let done = par::pipelined(
            chunks.len(),
            |k| {
                let (c, dims) = chunks[k];
                let plane = 3 * dims.0 * dims.1;
                let mut input = vec![0f32; c.len() * plane];
                let boxes = par::fill_map(&mut input, plane, |i, slot| {
                    Self::letterbox(c[i], dims, slot)
                });
                (input, boxes)
            },
            |k, (input, boxes)| {
                let (c, (w, h)) = chunks[k];
                let out = self
                    .model
                    .infer(&[3, h as i64, w as i64], c.len(), &input)?
                    .swap_remove(0);
                if out.shape.len() != 3 || out.shape[1] < 5 {
                    return Err(ModelError::BadShape {
                        path: self.model.file.path.clone(),
                        detail: format!(
                            "output shape {:?}, YOLOv8 detection gives [batch, 4 + classes, anchors]",
                            out.shape
                        ),
                    });
                }
                let (rows, n) = (out.shape[1] as usize, out.shape[2] as usize);
                Ok(par::map_n(c.len(), |i| {
                    let pred = out.item(i);
                    self.decode(pred, rows - 4, n, boxes[i], c[i].width, c[i].height, p)
                }))
            },
        )?;
        Ok(done.into_iter().flatten().collect())
    }

    /// The best class score of every anchor of every frame (no threshold, no NMS): for
    /// calibrating a threshold on models with untrained weights.
    pub fn raw_scores(&self, frames: &Frames, _p: &YoloParams) -> Result<Vec<f32>, ModelError> {
        let (w, h) = (frames.width as usize, frames.height as usize);
        let dims = self.input_for(w, h);
        let plane = 3 * dims.0 * dims.1;
        let mut input = vec![0f32; frames.len() * plane];
        for (i, (_, d)) in frames.iter().enumerate() {
            Self::letterbox(
                Rgb::new(d, w, h),
                dims,
                &mut input[i * plane..(i + 1) * plane],
            );
        }
        let out = self
            .model
            .infer(&[3, dims.1 as i64, dims.0 as i64], frames.len(), &input)?
            .swap_remove(0);
        let (rows, n) = (out.shape[1] as usize, out.shape[2] as usize);
        let mut scores = Vec::new();
        for f in 0..frames.len() {
            let pred = out.item(f);
            for a in 0..n {
                scores.push((4..rows).map(|c| pred[c * n + a]).fold(f32::MIN, f32::max));
            }
        }
        Ok(scores)
    }

    /// `[4 + nc, n]` predictions (cx, cy, w, h, class scores) -> detections in frame pixels.
    #[allow(clippy::too_many_arguments)]
    pub fn decode(
        &self,
        pred: &[f32],
        nc: usize,
        n: usize,
        lb: Letterbox,
        fw: usize,
        fh: usize,
        p: &YoloParams,
    ) -> Vec<Detection> {
        let mut cands: Vec<Detection> = Vec::new();
        // Class-major: every class row is contiguous, so the best-class scan reads memory in
        // order (anchor-major strides `n` floats per class and misses the cache every time).
        let mut best: Vec<(usize, f32)> = vec![(0, f32::MIN); n];
        for c in 0..nc {
            let row = &pred[(4 + c) * n..(5 + c) * n];
            for (b, &v) in best.iter_mut().zip(row) {
                if v > b.1 {
                    *b = (c, v);
                }
            }
        }
        for (a, &(class_id, score)) in best.iter().enumerate() {
            if score < p.conf {
                continue;
            }
            let (cx, cy, w, h) = (pred[a], pred[n + a], pred[2 * n + a], pred[3 * n + a]);
            let unbox =
                |v: f32, pad: f32, max: usize| ((v - pad) / lb.scale).clamp(0.0, max as f32);
            let bbox = [
                unbox(cx - w / 2.0, lb.pad[0], fw),
                unbox(cy - h / 2.0, lb.pad[1], fh),
                unbox(cx + w / 2.0, lb.pad[0], fw),
                unbox(cy + h / 2.0, lb.pad[1], fh),
            ];
            let label = self
                .names
                .get(class_id)
                .cloned()
                .unwrap_or_else(|| format!("class_{class_id}"));
            cands.push(Detection {
                label,
                class_id,
                confidence: score,
                bbox,
            });
        }
        nms(cands, p.iou, p.max_det)
    }

    /// The analyzer: detections per frame and a per-class summary.
    pub fn analyze(
        &self,
        frames: &Frames,
        p: &YoloParams,
    ) -> Result<serde_json::Value, ModelError> {
        let (w, h) = (frames.width as usize, frames.height as usize);
        let imgs: Vec<Rgb<'_>> = frames.iter().map(|(_, d)| Rgb::new(d, w, h)).collect();
        let dets = self.detect(&imgs, p)?;
        let (iw, ih) = self.input_for(w, h);
        Ok(summarize(&frames.times, &dets, [iw, ih]))
    }
}

/// Greedy per-class non-maximum suppression, best first, at most `max_det` kept.
pub fn nms(mut cands: Vec<Detection>, iou_max: f32, max_det: usize) -> Vec<Detection> {
    cands.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    let mut keep: Vec<Detection> = Vec::new();
    for c in cands {
        if keep.len() >= max_det {
            break;
        }
        if keep
            .iter()
            .all(|k| k.class_id != c.class_id || iou(k.bbox, c.bbox) <= iou_max)
        {
            keep.push(c);
        }
    }
    keep
}

/// The detection analyzers' result: detections per frame and a per-class summary (frames
/// seen, largest count in one frame, best confidence, first and last time).
pub fn summarize(
    times: &[f64],
    dets: &[Vec<Detection>],
    input_size: [usize; 2],
) -> serde_json::Value {
    let mut classes: BTreeMap<String, (usize, usize, f32, f64, f64)> = BTreeMap::new();
    let mut per_frame = Vec::new();
    for (t, d) in times.iter().zip(dets) {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for det in d {
            *counts.entry(det.label.as_str()).or_default() += 1;
        }
        for (label, count) in counts {
            let best = d
                .iter()
                .filter(|x| x.label == label)
                .map(|x| x.confidence)
                .fold(0.0, f32::max);
            let e = classes
                .entry(label.to_string())
                .or_insert((0, 0, 0.0, *t, *t));
            e.0 += 1;
            e.1 = e.1.max(count);
            e.2 = e.2.max(best);
            e.4 = *t;
        }
        per_frame.push(json!({ "t": t, "detections": d }));
    }
    let n = times.len().max(1) as f64;
    let summary: Vec<_> = classes
        .into_iter()
        .map(|(label, (fr, max_count, conf, first, last))| {
            json!({
                "label": label, "frames": fr, "share_of_frames": (fr as f64 / n * 1000.0).round() / 1000.0,
                "max_count": max_count, "max_confidence": conf, "first_s": first, "last_s": last,
            })
        })
        .collect();
    json!({ "classes": summary, "frames": per_frame, "input_size": input_size })
}

/// Parses Ultralytics' `names` metadata, a Python dict literal like `{0: 'person', 1: 'car'}`.
pub fn parse_names(s: &str) -> Vec<String> {
    let mut out: BTreeMap<usize, String> = BTreeMap::new();
    let body = s.trim().trim_start_matches('{').trim_end_matches('}');
    let mut rest = body;
    while let Some(colon) = rest.find(':') {
        let key = rest[..colon].trim().trim_start_matches(',').trim();
        let after = rest[colon + 1..].trim_start();
        let Some(quote) = after.chars().next().filter(|c| *c == '\'' || *c == '"') else {
            break;
        };
        let Some(end) = after[1..].find(quote) else {
            break;
        };
        if let Ok(k) = key.parse::<usize>() {
            out.insert(k, after[1..1 + end].to_string());
        }
        rest = &after[end + 2..];
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rectangular_inputs_fit_the_frame_in_few_shapes() {
        // TikTok's 9:16 in both orientations, at any resolution: the 384x640 bucket.
        assert_eq!(rect_input(1080, 1920, 640), (384, 640));
        assert_eq!(rect_input(360, 640, 640), (384, 640));
        assert_eq!(rect_input(1920, 1080, 640), (640, 384));
        // Squarer frames take the square; an odd size is never cut.
        assert_eq!(rect_input(720, 960, 640), (640, 640));
        assert_eq!(rect_input(500, 500, 640), (640, 640));
        assert_eq!(rect_input(401, 640, 640), (640, 640));
        assert_eq!(rect_input(3, 7, 640), (384, 640));
        let shapes = rect_shapes(640);
        assert_eq!(shapes.len(), 3, "{shapes:?}");
        for (fw, fh) in [(1080, 1920), (1920, 1080), (999, 1001), (1, 4000)] {
            let (w, h) = rect_input(fw, fh, 640);
            assert!(shapes.contains(&vec![3, h as i64, w as i64]), "{fw}x{fh}");
            let r = (w as f32 / fw as f32).min(h as f32 / fh as f32);
            assert!((fw as f32 * r).round() as usize <= w && (fh as f32 * r).round() as usize <= h);
        }
    }

    #[test]
    fn letterbox_centres_the_frame_on_grey() {
        // 4x2 red frame into 4x4: scale 1, one grey row above and below.
        let red: Vec<u8> = [255u8, 0, 0].repeat(8);
        let mut out = vec![0f32; 3 * 16];
        let lb = Yolo::letterbox(Rgb::new(&red, 4, 2), (4, 4), &mut out);
        assert_eq!(lb.scale, 1.0);
        assert_eq!(lb.pad, [0.0, 1.0]);
        let grey = 114.0 * (1.0f32 / 255.0);
        let one = 255.0 * (1.0f32 / 255.0);
        assert_eq!(&out[0..4], &[grey; 4]);
        assert_eq!(&out[4..12], &[one; 8]);
        assert_eq!(&out[16 + 4..16 + 12], &[0.0; 8]);
        assert_eq!(&out[32 + 12..48], &[grey; 4]);
    }

    #[test]
    fn parses_ultralytics_names() {
        assert_eq!(
            super::parse_names("{0: 'person', 1: \"traffic light\", 2: 'x:y'}"),
            ["person", "traffic light", "x:y"]
        );
    }
}
