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
use crate::params::Params;
use crate::registry::ModelRegistry;
use crate::runtime::{Input, LoadedModel};

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
    alphabet: Vec<String>,
}

impl Ocr {
    pub fn load(registry: &ModelRegistry) -> Result<Self, ModelError> {
        let det = registry.fetched("ppocr.det")?;
        det.expect_input(0, &[None, Some(3), None, None], "PP-OCR detection")?;
        let cls = registry.fetched("ppocr.cls")?;
        cls.expect_input(
            0,
            &[None, Some(3), None, None],
            "PP-OCR line classification",
        )?;
        let rec = registry.fetched("ppocr.rec")?;
        rec.expect_input(
            0,
            &[None, Some(3), Some(rec::REC_H as i64), None],
            "PP-OCR recognition",
        )?;
        let alphabet = rec::alphabet(&rec)?;
        Ok(Self {
            det,
            cls,
            rec,
            alphabet,
        })
    }

    pub fn provider(&self) -> &'static str {
        self.det.provider.label()
    }

    /// Detects text regions in one frame.
    pub fn detect(&self, frame: Rgb<'_>, params: &DetParams) -> Result<Vec<TextBox>, ModelError> {
        let mut input = Vec::new();
        let (w, h) = det::preprocess(frame, params, &mut input);
        let out = self
            .det
            .run(&[Input::F32(&[1, 3, h as i64, w as i64], &input)])?;
        let map = &out[0];
        let (mh, mw) = (
            map.shape[map.shape.len() - 2] as usize,
            map.shape[map.shape.len() - 1] as usize,
        );
        Ok(det::postprocess(
            &map.data[..mh * mw],
            mw,
            mh,
            frame.width,
            frame.height,
            params,
        ))
    }

    /// Reads every text line of one image (no frame skipping): the plain PP-OCR pipeline.
    pub fn read(&self, frame: Rgb<'_>, params: &OcrParams) -> Result<Vec<Line>, ModelError> {
        let boxes = self.detect(frame, &params.det)?;
        let mut crops: Vec<RgbImage> = boxes
            .iter()
            .map(|b| rec::crop_line(frame, &b.quad))
            .collect();
        if params.use_cls && !crops.is_empty() {
            rec::classify(&self.cls, &mut crops, params.rec_batch)?;
        }
        let texts = rec::recognize(&self.rec, &self.alphabet, &crops, params.rec_batch)?;
        Ok(boxes
            .iter()
            .zip(texts)
            .filter(|(_, (t, c))| !t.trim().is_empty() && *c >= params.text_score)
            .map(|(b, (text, confidence))| Line {
                text,
                confidence,
                quad: b.quad,
            })
            .collect())
    }

    /// The `text_overlay` pipeline over sampled frames.
    pub fn run(&self, frames: &Frames, params: &OcrParams) -> Result<OcrResult, ModelError> {
        let (w, h) = (frames.width as usize, frames.height as usize);
        let mut stats = OcrStats {
            frames: frames.len(),
            ..Default::default()
        };
        let mut per_frame: Vec<Vec<Line>> = Vec::with_capacity(frames.len());
        // State of the last analyzed frame: its pixels, thumbnail and lines.
        let mut last_frame: Vec<u8> = Vec::new();
        let mut last_thumb: Option<Vec<u8>> = None;
        let mut last_lines: Vec<Line> = Vec::new();
        for (_, data) in frames.iter() {
            let frame = Rgb::new(data, w, h);
            let thumb = thumbnail(frame);
            if let Some(prev) = &last_thumb
                && imgproc::mean_abs_diff(prev, &thumb, 1) < params.frame_diff
            {
                per_frame.push(last_lines.clone());
                continue;
            }
            stats.frames_analyzed += 1;
            let boxes = self.detect(frame, &params.det)?;
            // Reuse the text of lines found where an earlier line was, over unchanged pixels.
            let mut texts: Vec<Option<(String, f32)>> = vec![None; boxes.len()];
            for (i, b) in boxes.iter().enumerate() {
                let same = last_lines.iter().find(|l| {
                    same_place(&l.quad, &b.quad)
                        && region_diff(&last_frame, data, w, h, &l.quad, &b.quad) < params.line_diff
                });
                if let Some(l) = same {
                    texts[i] = Some((l.text.clone(), l.confidence));
                    stats.lines_reused += 1;
                }
            }
            let todo: Vec<usize> = (0..boxes.len()).filter(|&i| texts[i].is_none()).collect();
            if !todo.is_empty() {
                let mut crops: Vec<RgbImage> = todo
                    .iter()
                    .map(|&i| rec::crop_line(frame, &boxes[i].quad))
                    .collect();
                if params.use_cls {
                    rec::classify(&self.cls, &mut crops, params.rec_batch)?;
                }
                let read = rec::recognize(&self.rec, &self.alphabet, &crops, params.rec_batch)?;
                stats.lines_recognized += read.len();
                for (&i, r) in todo.iter().zip(read) {
                    texts[i] = Some(r);
                }
            }
            // Lines below the score stay in the reuse cache (with their text) so an unchanged
            // low-confidence region is not recognized again and again.
            last_lines = boxes
                .iter()
                .zip(texts)
                .map(|(b, t)| {
                    let (text, confidence) = t.unwrap_or_default();
                    Line {
                        text,
                        confidence,
                        quad: b.quad,
                    }
                })
                .collect();
            last_thumb = Some(thumb);
            last_frame.clear();
            last_frame.extend_from_slice(data);
            per_frame.push(last_lines.clone());
        }
        for lines in &mut per_frame {
            lines.retain(|l| !l.text.trim().is_empty() && l.confidence >= params.text_score);
        }
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
