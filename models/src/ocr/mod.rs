//! `text_overlay`: PP-OCR detection -> (angle classification) -> recognition over sampled
//! frames, skipping frames and lines that did not change, and folding per-frame lines into
//! texts with their first and last time on screen.

pub mod det;
pub mod geometry;
pub mod rec;

use std::sync::Arc;

use media::Frames;
use serde::Serialize;

use self::det::{DetParams, TextBox};
use self::geometry::iou;
use crate::error::ModelError;
use crate::imgproc::{self, Rgb, RgbImage};
use crate::par;
use crate::params::Params;
use crate::registry::ModelRegistry;
use crate::runtime::{ConvSearch, LoadedModel, ModelSpec, Precision};

/// Settings of `text_overlay` (analyzer params of the same names).
#[derive(Debug, Clone)]
pub struct OcrParams {
    pub det: DetParams,
    pub use_cls: bool,
    pub rec_batch: usize,
    /// Lines with a lower recognition confidence are dropped (rapidocr `text_score`).
    pub text_score: f32,
    /// Mean absolute difference (0-255) of a frame's thumbnail to the last analyzed frame
    /// under which the frame counts as unchanged and is not analyzed again.
    pub frame_diff: f32,
    /// The same for a text line's pixels: under it the line's earlier text is reused.
    pub line_diff: f32,
    /// A text may vanish for this many sampled frames and still count as one appearance.
    pub max_gap_frames: usize,
}

impl Default for OcrParams {
    fn default() -> Self {
        Self {
            det: DetParams::default(),
            use_cls: true,
            rec_batch: 6,
            text_score: 0.5,
            frame_diff: 0.5,
            line_diff: 2.0,
            max_gap_frames: 1,
        }
    }
}

impl OcrParams {
    pub fn from_params(p: &Params) -> Result<Self, ModelError> {
        let d = Self::default();
        Ok(Self {
            det: DetParams {
                limit_side_len: p.usize("limit_side_len", d.det.limit_side_len)?,
                thresh: p.f32("det_thresh", d.det.thresh)?,
                box_thresh: p.f32("box_thresh", d.det.box_thresh)?,
                unclip_ratio: p.f32("unclip_ratio", d.det.unclip_ratio)?,
                ..d.det
            },
            use_cls: p.bool("use_cls", d.use_cls)?,
            rec_batch: p.usize("rec_batch", d.rec_batch)?.max(1),
            text_score: p.f32("text_score", d.text_score)?,
            frame_diff: p.f32("frame_diff", d.frame_diff)?,
            line_diff: p.f32("line_diff", d.line_diff)?,
            max_gap_frames: p.usize("max_gap_frames", d.max_gap_frames)?,
        })
    }
}

/// One recognized line in one frame.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub text: String,
    pub confidence: f32,
    /// Corners tl, tr, br, bl in frame pixels.
    pub quad: [[f32; 2]; 4],
}

/// A text on screen: one line's text over consecutive sampled frames.
#[derive(Debug, Clone, Serialize)]
pub struct OverlayText {
    pub text: String,
    /// Mean recognition confidence over its frames (4 decimals).
    pub confidence: f64,
    /// `[x, y, width, height]` in frame pixels where it was first seen.
    pub bbox: [f32; 4],
    pub first_s: f64,
    pub last_s: f64,
    pub frames: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct OcrStats {
    pub frames: usize,
    /// Frames the detector ran on (the others were unchanged).
    pub frames_analyzed: usize,
    pub lines_recognized: usize,
    /// Lines whose pixels had not changed, so their earlier text was kept.
    pub lines_reused: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct OcrResult {
    pub texts: Vec<OverlayText>,
    /// Lines per sampled frame, in frame order (times in `Frames::times`).
    #[serde(skip)]
    pub per_frame: Vec<Vec<Line>>,
    pub stats: OcrStats,
    pub execution_provider: &'static str,
}

/// The three PP-OCR models, loaded through the registry.
pub struct Ocr {
    det: Arc<LoadedModel>,
    cls: Arc<LoadedModel>,
    rec: Arc<LoadedModel>,
    /// The recognizer returns its greedy CTC path (`ppocr.rec.greedy`), not every class.
    greedy: bool,
    alphabet: Vec<String>,
}

/// Which recognizer output the pipeline reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecHead {
    /// The greedy CTC path computed in the graph (`ppocr.rec.greedy`, built by the setup): 2
    /// values a step come back instead of 18710, so batches of lines pay on a GPU. An install
    /// without that file falls back to [`RecHead::Probabilities`].
    Greedy,
    /// Every class's probability per step (`ppocr.rec` as fetched), the argmax taken here.
    Probabilities,
}

/// Frames per detector run on a GPU (padded up to it): the DB network at 736x1312 is
/// large enough that 8 fill an H200 and stay within a few GiB.
pub const DET_BATCH: usize = 8;
/// Line crops per classifier / recognizer run on a GPU, and the smaller bucket below it.
pub const REC_BATCHES: [usize; 2] = [8, 32];

impl Ocr {
    pub fn load(registry: &ModelRegistry) -> Result<Self, ModelError> {
        Self::load_with(registry, &DetParams::default())
    }

    /// Which recognizer output this pipeline reads.
    pub fn rec_head(&self) -> RecHead {
        if self.greedy {
            RecHead::Greedy
        } else {
            RecHead::Probabilities
        }
    }

    /// Loads the three models with the detector's buckets for `det` (its `limit_side_len`).
    pub fn load_with(registry: &ModelRegistry, det: &DetParams) -> Result<Self, ModelError> {
        Self::load_head(registry, det, RecHead::Greedy)
    }

    /// Like [`load_with`](Self::load_with), with the recognizer output to read.
    pub fn load_head(
        registry: &ModelRegistry,
        det: &DetParams,
        head: RecHead,
    ) -> Result<Self, ModelError> {
        let det_spec = ModelSpec {
            batches: vec![DET_BATCH],
            warm: det::canvases(det.limit_side_len)
                .iter()
                .map(|c| vec![3, c.height as i64, c.width as i64])
                .collect(),
            // Five shapes, searched once at load: the detector is where the time goes.
            conv_search: ConvSearch::Exhaustive,
            // FP32: with the FP16 detector and classifier the texts differed from FP32 on
            // 21 of 60 frames of the H200 benchmark (docs/bench-gpu.md); FP32 batches of 8
            // cost 4.9 ms a frame there.
            precision: Precision::Fp32,
            ..ModelSpec::default()
        };
        let det = registry.fetched_spec("ppocr.det", det_spec)?;
        det.expect_input(0, &[None, Some(3), None, None], "PP-OCR detection")?;
        let cls = registry.fetched_spec(
            "ppocr.cls",
            ModelSpec {
                batches: REC_BATCHES.to_vec(),
                warm: vec![vec![3, rec::CLS_H as i64, rec::CLS_W as i64]],
                conv_search: ConvSearch::Heuristic,
                precision: Precision::Fp32,
                ..ModelSpec::default()
            },
        )?;
        cls.expect_input(
            0,
            &[None, Some(3), None, None],
            "PP-OCR line classification",
        )?;
        let rec_spec = |greedy: bool| ModelSpec {
            // The greedy head in batches of 8 and 32 lines: from Python the recognizer runs
            // 32 lines at 640 px in 20.3 ms on the H200 (0.63 ms a line, one line alone 3.9
            // ms). With every class's probability coming back, one line per run: a batch of
            // 32 then took 5.3 ms a line in our pipeline (192 MB of output), one line alone
            // 3.3-3.8 ms (docs/bench-gpu.md). On the CPU batches run at their size either way.
            batches: if greedy {
                REC_BATCHES.to_vec()
            } else {
                vec![1]
            },
            max_run: (!greedy).then_some(1),
            warm: rec::WIDTHS
                .iter()
                .map(|&w| vec![3, rec::REC_H as i64, w as i64])
                .collect(),
            // Six widths: a heuristic pick per shape, no timing.
            conv_search: ConvSearch::Heuristic,
            precision: Precision::Fp32,
            ..ModelSpec::default()
        };
        let greedy_model = match head {
            RecHead::Greedy => match registry.fetched_spec("ppocr.rec.greedy", rec_spec(true)) {
                Ok(m) => Some(m),
                Err(ModelError::ModelMissing { .. }) => None,
                Err(e) => return Err(e),
            },
            RecHead::Probabilities => None,
        };
        let greedy = greedy_model.is_some();
        let rec = match greedy_model {
            Some(m) => m,
            None => registry.fetched_spec("ppocr.rec", rec_spec(false))?,
        };
        rec.expect_input(
            0,
            &[None, Some(3), Some(rec::REC_H as i64), None],
            "PP-OCR recognition",
        )?;
        let alphabet = rec::alphabet(&rec)?;
        if greedy {
            let classes = rec
                .metadata
                .get("classes")
                .and_then(|c| c.parse::<usize>().ok());
            if !classes.is_some_and(|c| c == alphabet.len() || c + 1 == alphabet.len()) {
                return Err(ModelError::BadShape {
                    path: rec.file.path.clone(),
                    detail: format!(
                        "`classes` metadata {classes:?} does not match its {}-symbol dictionary",
                        alphabet.len()
                    ),
                });
            }
        }
        Ok(Self {
            det,
            cls,
            rec,
            greedy,
            alphabet,
        })
    }

    pub fn provider(&self) -> &'static str {
        self.det.provider.label()
    }

    /// The three sessions (for reports: provider, precision, warm-up, device memory).
    pub fn models(&self) -> [&LoadedModel; 3] {
        [&self.det, &self.cls, &self.rec]
    }

    /// Detects text regions in one frame.
    pub fn detect(&self, frame: Rgb<'_>, params: &DetParams) -> Result<Vec<TextBox>, ModelError> {
        Ok(self
            .detect_batch(&[frame], params)?
            .pop()
            .unwrap_or_default())
    }

    /// Detects text regions in each frame: frames of one canvas run as batches, the next
    /// batch prepared while the current one runs.
    pub fn detect_batch(
        &self,
        frames: &[Rgb<'_>],
        params: &DetParams,
    ) -> Result<Vec<Vec<TextBox>>, ModelError> {
        let canvases = det::canvases(params.limit_side_len);
        let fits: Vec<_> = frames
            .iter()
            .map(|f| crate::shapes::fit(f.width, f.height, &canvases))
            .collect();
        let mut out: Vec<Vec<TextBox>> = vec![Vec::new(); frames.len()];
        // Group by canvas (a video's frames share one), in chunks of the GPU batch.
        let mut groups: Vec<(crate::shapes::Canvas, Vec<usize>)> = Vec::new();
        for (i, f) in fits.iter().enumerate() {
            match groups.iter_mut().find(|(c, _)| *c == f.canvas) {
                Some((_, v)) => v.push(i),
                None => groups.push((f.canvas, vec![i])),
            }
        }
        let chunk = if self.det.provider.is_gpu() {
            DET_BATCH
        } else {
            DET_BATCH.min(4)
        };
        let chunks: Vec<(crate::shapes::Canvas, &[usize])> = groups
            .iter()
            .flat_map(|(c, idx)| idx.chunks(chunk).map(move |ch| (*c, ch)))
            .collect();
        let results = par::pipelined(
            chunks.len(),
            |k| {
                let (c, idx) = chunks[k];
                let plane = 3 * c.width * c.height;
                let mut input = vec![0f32; idx.len() * plane];
                par::fill(&mut input, plane, |slot, buf| {
                    let i = idx[slot];
                    det::pack(frames[i], &fits[i], buf);
                });
                input
            },
            |k, input| {
                let (c, idx) = chunks[k];
                let outs =
                    self.det
                        .infer(&[3, c.height as i64, c.width as i64], idx.len(), &input)?;
                let map = &outs[0];
                let (mh, mw) = (
                    map.shape[map.shape.len() - 2] as usize,
                    map.shape[map.shape.len() - 1] as usize,
                );
                Ok::<_, ModelError>(par::map_n(idx.len(), |slot| {
                    let i = idx[slot];
                    let pred = &map.item(slot)[..mh * mw];
                    det::postprocess_fit(pred, mw, mh, &fits[i], frames[i], params)
                }))
            },
        )?;
        for ((_, idx), boxes) in chunks.iter().zip(results) {
            for (&i, b) in idx.iter().zip(boxes) {
                out[i] = b;
            }
        }
        Ok(out)
    }

    /// The detector's probability map of one frame at the frame's own rounded size (no
    /// buckets), for diagnostics.
    pub fn probability_map(
        &self,
        frame: Rgb<'_>,
        params: &DetParams,
    ) -> Result<(Vec<f32>, usize, usize), ModelError> {
        let mut input = Vec::new();
        let (w, h) = det::preprocess(frame, params, &mut input);
        let out = self.det.infer(&[3, h as i64, w as i64], 1, &input)?;
        let map = &out[0];
        let (mh, mw) = (
            map.shape[map.shape.len() - 2] as usize,
            map.shape[map.shape.len() - 1] as usize,
        );
        Ok((map.data[..mh * mw].to_vec(), mw, mh))
    }

    /// Reads every text line of one image (no frame skipping): the plain PP-OCR pipeline.
    pub fn read(&self, frame: Rgb<'_>, params: &OcrParams) -> Result<Vec<Line>, ModelError> {
        Ok(self.read_batch(&[frame], params)?.pop().unwrap_or_default())
    }

    /// [`read`](Self::read) for several images, batched across them.
    pub fn read_batch(
        &self,
        frames: &[Rgb<'_>],
        params: &OcrParams,
    ) -> Result<Vec<Vec<Line>>, ModelError> {
        let boxes = self.detect_batch(frames, &params.det)?;
        let jobs: Vec<(usize, usize)> = boxes
            .iter()
            .enumerate()
            .flat_map(|(f, b)| (0..b.len()).map(move |k| (f, k)))
            .collect();
        let texts = self.recognize_lines(frames, &boxes, &jobs, params)?;
        let mut out: Vec<Vec<Line>> = vec![Vec::new(); frames.len()];
        for (&(f, k), (text, confidence)) in jobs.iter().zip(texts) {
            if !text.trim().is_empty() && confidence >= params.text_score {
                out[f].push(Line {
                    text,
                    confidence,
                    quad: boxes[f][k].quad,
                });
            }
        }
        Ok(out)
    }

    /// Crops, orients and reads the lines `jobs` (frame, box) in batches across frames.
    fn recognize_lines(
        &self,
        frames: &[Rgb<'_>],
        boxes: &[Vec<TextBox>],
        jobs: &[(usize, usize)],
        params: &OcrParams,
    ) -> Result<Vec<(String, f32)>, ModelError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut crops: Vec<RgbImage> =
            par::map(jobs, |&(f, k)| rec::crop_line(frames[f], &boxes[f][k].quad));
        let batch = if self.rec.provider.is_gpu() {
            REC_BATCHES[1]
        } else {
            params.rec_batch
        };
        if params.use_cls {
            rec::classify(&self.cls, &mut crops, batch)?;
        }
        rec::recognize(&self.rec, &self.alphabet, &crops, batch, self.greedy)
    }

    /// The `text_overlay` pipeline over sampled frames.
    pub fn run(&self, frames: &Frames, params: &OcrParams) -> Result<OcrResult, ModelError> {
        let (w, h) = (frames.width as usize, frames.height as usize);
        let imgs: Vec<Rgb<'_>> = frames.iter().map(|(_, d)| Rgb::new(d, w, h)).collect();
        let mut stats = OcrStats {
            frames: frames.len(),
            ..Default::default()
        };
        // Which frames changed since the last analyzed one (thumbnails only: no model yet).
        let thumbs = par::map(&imgs, |f| thumbnail(*f));
        let mut analyzed: Vec<usize> = Vec::new();
        let mut source: Vec<usize> = Vec::with_capacity(imgs.len());
        for (i, thumb) in thumbs.iter().enumerate() {
            let changed = analyzed.last().is_none_or(|&last| {
                imgproc::mean_abs_diff(&thumbs[last], thumb, 1) >= params.frame_diff
            });
            if changed {
                analyzed.push(i);
            }
            source.push(*analyzed.last().expect("the first frame is analyzed"));
        }
        stats.frames_analyzed = analyzed.len();
        let det_frames: Vec<Rgb<'_>> = analyzed.iter().map(|&i| imgs[i]).collect();
        let boxes = self.detect_batch(&det_frames, &params.det)?;
        // Reuse the text of lines found where the previous analyzed frame had one, over
        // unchanged pixels; the rest are read in one batched pass.
        let mut texts: Vec<Vec<Option<(String, f32)>>> =
            boxes.iter().map(|b| vec![None; b.len()]).collect();
        let mut reuse: Vec<Vec<Option<(usize, usize)>>> =
            boxes.iter().map(|b| vec![None; b.len()]).collect();
        for a in 1..analyzed.len() {
            let (prev, cur) = (analyzed[a - 1], analyzed[a]);
            for (k, b) in boxes[a].iter().enumerate() {
                let same = boxes[a - 1].iter().position(|l| {
                    same_place(&l.quad, &b.quad)
                        && region_diff(imgs[prev].data, imgs[cur].data, w, h, &l.quad, &b.quad)
                            < params.line_diff
                });
                if let Some(j) = same {
                    reuse[a][k] = Some((a - 1, j));
                    stats.lines_reused += 1;
                }
            }
        }
        let jobs: Vec<(usize, usize)> = (0..boxes.len())
            .flat_map(|a| (0..boxes[a].len()).map(move |k| (a, k)))
            .filter(|&(a, k)| reuse[a][k].is_none())
            .collect();
        let read = self.recognize_lines(&det_frames, &boxes, &jobs, params)?;
        stats.lines_recognized = read.len();
        for (&(a, k), r) in jobs.iter().zip(read) {
            texts[a][k] = Some(r);
        }
        // Reused lines take their text from the chain of earlier frames.
        for a in 0..boxes.len() {
            for k in 0..boxes[a].len() {
                if let Some((pa, pk)) = reuse[a][k] {
                    texts[a][k] = texts[pa][pk].clone();
                }
            }
        }
        let lines: Vec<Vec<Line>> = boxes
            .iter()
            .zip(texts)
            .map(|(b, t)| {
                b.iter()
                    .zip(t)
                    .map(|(b, t)| {
                        let (text, confidence) = t.unwrap_or_default();
                        Line {
                            text,
                            confidence,
                            quad: b.quad,
                        }
                    })
                    .filter(|l| !l.text.trim().is_empty() && l.confidence >= params.text_score)
                    .collect()
            })
            .collect();
        let pos: std::collections::HashMap<usize, usize> =
            analyzed.iter().enumerate().map(|(a, &i)| (i, a)).collect();
        let per_frame: Vec<Vec<Line>> = source.iter().map(|s| lines[pos[s]].clone()).collect();
        let texts = track(&per_frame, &frames.times, params.max_gap_frames);
        Ok(OcrResult {
            texts,
            per_frame,
            stats,
            execution_provider: self.provider(),
        })
    }
}

/// A 64-pixel-wide grey thumbnail: cheap to compare, and blind to encoder noise.
fn thumbnail(frame: Rgb<'_>) -> Vec<u8> {
    let tw = 64.min(frame.width).max(1);
    let th = (frame.height * tw / frame.width.max(1)).max(1);
    let small = imgproc::resize_area(frame, tw, th);
    small
        .data
        .chunks_exact(3)
        .map(|p| ((p[0] as u32 * 299 + p[1] as u32 * 587 + p[2] as u32 * 114) / 1000) as u8)
        .collect()
}

/// Detected boxes of the same text jitter by a pixel or two between frames.
fn same_place(a: &[[f32; 2]; 4], b: &[[f32; 2]; 4]) -> bool {
    a.iter()
        .zip(b)
        .all(|(p, q)| (p[0] - q[0]).abs() <= 3.0 && (p[1] - q[1]).abs() <= 3.0)
}

/// Mean absolute difference of two frames over the union of two boxes' bounds.
fn region_diff(
    a: &[u8],
    b: &[u8],
    w: usize,
    h: usize,
    qa: &[[f32; 2]; 4],
    qb: &[[f32; 2]; 4],
) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    let (ba, bb) = (bounds(qa), bounds(qb));
    let x0 = ba[0].min(bb[0]).max(0.0) as usize;
    let y0 = ba[1].min(bb[1]).max(0.0) as usize;
    let x1 = (ba[2].max(bb[2]) as usize + 1).min(w);
    let y1 = (ba[3].max(bb[3]) as usize + 1).min(h);
    let (mut sum, mut n) = (0u64, 0u64);
    for y in y0..y1 {
        let (ra, rb) = (
            &a[(y * w + x0) * 3..(y * w + x1) * 3],
            &b[(y * w + x0) * 3..(y * w + x1) * 3],
        );
        sum += ra
            .iter()
            .zip(rb)
            .map(|(p, q)| p.abs_diff(*q) as u64)
            .sum::<u64>();
        n += ra.len() as u64;
    }
    if n == 0 {
        f32::INFINITY
    } else {
        sum as f32 / n as f32
    }
}

fn bounds(q: &[[f32; 2]; 4]) -> [f32; 4] {
    let xs = q.map(|p| p[0]);
    let ys = q.map(|p| p[1]);
    [
        xs.iter().copied().fold(f32::MAX, f32::min),
        ys.iter().copied().fold(f32::MAX, f32::min),
        xs.iter().copied().fold(f32::MIN, f32::max),
        ys.iter().copied().fold(f32::MIN, f32::max),
    ]
}

/// Folds per-frame lines into appearances: the same text in an overlapping place in frames
/// at most `max_gap` sampled frames apart is one appearance.
pub fn track(per_frame: &[Vec<Line>], times: &[f64], max_gap: usize) -> Vec<OverlayText> {
    struct Open {
        text: OverlayText,
        last_frame: usize,
        last_box: [f32; 4],
        conf_sum: f32,
    }
    let mut open: Vec<Open> = Vec::new();
    let mut done: Vec<OverlayText> = Vec::new();
    for (fi, lines) in per_frame.iter().enumerate() {
        for line in lines {
            let b = bounds(&line.quad);
            let hit = open.iter_mut().find(|o| {
                o.text.text == line.text && o.last_frame < fi && iou(o.last_box, b) > 0.3
            });
            match hit {
                Some(o) => {
                    o.last_frame = fi;
                    o.last_box = b;
                    o.conf_sum += line.confidence;
                    o.text.frames += 1;
                    o.text.last_s = times[fi];
                }
                None => open.push(Open {
                    text: OverlayText {
                        text: line.text.clone(),
                        confidence: 0.0,
                        bbox: [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                        first_s: times[fi],
                        last_s: times[fi],
                        frames: 1,
                    },
                    last_frame: fi,
                    last_box: b,
                    conf_sum: line.confidence,
                }),
            }
        }
        let (gone, keep): (Vec<Open>, Vec<Open>) =
            open.into_iter().partition(|o| fi - o.last_frame > max_gap);
        open = keep;
        done.extend(gone.into_iter().map(|o| finish(o.text, o.conf_sum)));
    }
    done.extend(open.into_iter().map(|o| finish(o.text, o.conf_sum)));
    done.sort_by(|a, b| {
        a.first_s
            .total_cmp(&b.first_s)
            .then(a.bbox[1].total_cmp(&b.bbox[1]))
    });
    fn finish(mut t: OverlayText, conf_sum: f32) -> OverlayText {
        t.confidence = ((conf_sum as f64 / t.frames as f64) * 1e4).round() / 1e4;
        t
    }
    done
}
