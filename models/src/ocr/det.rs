//! PP-OCR text detection (DB): resize to multiples of 32, run, binarize the probability map
//! and turn its regions into scored quadrilaterals, as rapidocr's `DBPostProcess`.

use super::geometry::{Pt, convex_hull, dist, in_convex, min_area_rect, order_clockwise, regions};
use crate::imgproc::{self, ChannelOrder, Rgb};
use crate::shapes::{self, Canvas, Fit};

/// DB parameters; the defaults are rapidocr's.
#[derive(Debug, Clone)]
pub struct DetParams {
    /// The shorter side is scaled up to at least this many pixels (rapidocr `limit_type: min`).
    pub limit_side_len: usize,
    pub thresh: f32,
    pub box_thresh: f32,
    pub unclip_ratio: f32,
    pub max_candidates: usize,
    pub use_dilation: bool,
}

impl Default for DetParams {
    fn default() -> Self {
        Self {
            limit_side_len: 736,
            thresh: 0.3,
            box_thresh: 0.5,
            unclip_ratio: 1.6,
            max_candidates: 1000,
            use_dilation: true,
        }
    }
}

/// A detected text region in frame pixels: corners tl, tr, br, bl (integers) and DB score.
#[derive(Debug, Clone, PartialEq)]
pub struct TextBox {
    pub quad: [Pt; 4],
    pub score: f32,
}

impl TextBox {
    /// Axis-aligned bounds `[x0, y0, x1, y1]`.
    pub fn bounds(&self) -> [f32; 4] {
        let xs = self.quad.map(|p| p[0]);
        let ys = self.quad.map(|p| p[1]);
        let min = |v: [f32; 4]| v.iter().copied().fold(f32::MAX, f32::min);
        let max = |v: [f32; 4]| v.iter().copied().fold(f32::MIN, f32::max);
        [min(xs), min(ys), max(xs), max(ys)]
    }
}

/// The model input size for a frame: the shorter side raised to `limit_side_len`, both sides
/// rounded to multiples of 32.
pub fn input_size(width: usize, height: usize, limit_side_len: usize) -> (usize, usize) {
    let ratio = if width.min(height) < limit_side_len {
        limit_side_len as f64 / width.min(height) as f64
    } else {
        1.0
    };
    let round32 = |v: f64| ((((v as usize) as f64) / 32.0).round() as usize * 32).max(32);
    (
        round32(width as f64 * ratio),
        round32(height as f64 * ratio),
    )
}

/// The detector's input canvases: 9:16, 3:4 and 1:1 in both orientations with the short
/// side at `limit_side_len` (multiples of 32). A frame is scaled to fit the one it fills best
/// and padded with black, so a GPU session sees five shapes whatever the video's size.
pub fn canvases(limit_side_len: usize) -> Vec<Canvas> {
    shapes::orientations(limit_side_len, 32)
}

/// Packs one frame into its canvas as the detector's `[3, H, W]` input (BGR,
/// `(x/255 - 0.5) / 0.5`).
pub fn pack(frame: Rgb<'_>, fit: &Fit, out: &mut [f32]) {
    let canvas = shapes::letterbox(frame, fit, 0);
    imgproc::to_chw(
        canvas.view(),
        ChannelOrder::Bgr,
        1.0 / 255.0,
        [0.5; 3],
        [0.5; 3],
        fit.canvas.width,
        out,
    );
}

/// DB post-processing of a canvas-sized probability map into boxes in frame pixels: only the
/// frame's part of the canvas counts, coordinates are divided by the fit's scale.
pub fn postprocess_fit(
    pred: &[f32],
    w: usize,
    h: usize,
    fit: &Fit,
    frame: Rgb<'_>,
    params: &DetParams,
) -> Vec<TextBox> {
    let inv = 1.0 / fit.scale;
    boxes_from_map(
        pred,
        w,
        h,
        (fit.width.min(w), fit.height.min(h)),
        (inv, inv),
        (frame.width, frame.height),
        params,
    )
}

/// Packs one frame as the detector's `[3, H, W]` input (BGR, `(x/255 - 0.5) / 0.5`) at its
/// own rounded size (rapidocr's way, without buckets).
pub fn preprocess(frame: Rgb<'_>, params: &DetParams, out: &mut Vec<f32>) -> (usize, usize) {
    let (w, h) = input_size(frame.width, frame.height, params.limit_side_len);
    let resized = imgproc::resize(frame, w, h);
    out.clear();
    out.resize(3 * w * h, 0.0);
    imgproc::to_chw(
        resized.view(),
        ChannelOrder::Bgr,
        1.0 / 255.0,
        [0.5; 3],
        [0.5; 3],
        w,
        out,
    );
    (w, h)
}

/// DB post-processing of one `[H, W]` probability map into boxes in frame pixels.
pub fn postprocess(
    pred: &[f32],
    w: usize,
    h: usize,
    frame_w: usize,
    frame_h: usize,
    params: &DetParams,
) -> Vec<TextBox> {
    boxes_from_map(
        pred,
        w,
        h,
        (w, h),
        (frame_w as f32 / w as f32, frame_h as f32 / h as f32),
        (frame_w, frame_h),
        params,
    )
}

/// Boxes from the map's `content` part (top left), scaled by `scale` into a frame of `frame`
/// pixels.
fn boxes_from_map(
    pred: &[f32],
    w: usize,
    h: usize,
    content: (usize, usize),
    scale: (f32, f32),
    frame: (usize, usize),
    params: &DetParams,
) -> Vec<TextBox> {
    let (frame_w, frame_h) = frame;
    let (cw, ch) = content;
    let mut mask: Vec<u8> = pred
        .iter()
        .enumerate()
        .map(|(i, &p)| (p > params.thresh && i % w < cw && i / w < ch) as u8)
        .collect();
    if params.use_dilation {
        // OpenCV's dilate with a 2x2 kernel (anchor at its centre): each pixel takes the max of
        // itself and its left, upper and upper-left neighbours.
        let src = mask.clone();
        for y in 0..h {
            for x in 0..w {
                let mut v = src[y * w + x];
                if x > 0 {
                    v |= src[y * w + x - 1];
                }
                if y > 0 {
                    v |= src[(y - 1) * w + x];
                    if x > 0 {
                        v |= src[(y - 1) * w + x - 1];
                    }
                }
                mask[y * w + x] = v;
            }
        }
    }
    let mut boxes = Vec::new();
    for spans in regions(&mask, w, h).into_iter().take(params.max_candidates) {
        let pts: Vec<Pt> = spans
            .iter()
            .flat_map(|&(y, a, b)| [[a as f32, y as f32], [b as f32, y as f32]])
            .collect();
        let rect = min_area_rect(&convex_hull(pts));
        if rect.short_side() < 3.0 {
            continue;
        }
        let quad = order_clockwise(rect.corners());
        let score = box_score(pred, w, h, &quad);
        if score < params.box_thresh {
            continue;
        }
        let grown = rect.expanded(rect.area() * params.unclip_ratio / rect.perimeter());
        if grown.short_side() < 5.0 {
            continue;
        }
        let (sx, sy) = scale;
        let scaled = order_clockwise(grown.corners()).map(|[x, y]| {
            [
                (x * sx).round().clamp(0.0, frame_w as f32),
                (y * sy).round().clamp(0.0, frame_h as f32),
            ]
        });
        // rapidocr's filter_det_res: clip into the image, drop slivers.
        let quad = order_clockwise(scaled).map(|[x, y]| {
            [
                x.min(frame_w as f32 - 1.0).floor(),
                y.min(frame_h as f32 - 1.0).floor(),
            ]
        });
        if dist(quad[0], quad[1]) as i32 <= 3 || dist(quad[0], quad[3]) as i32 <= 3 {
            continue;
        }
        boxes.push(TextBox { quad, score });
    }
    sort_reading_order(&mut boxes);
    boxes
}

/// Mean probability inside the (integer-truncated) quad, rapidocr's `box_score_fast`.
fn box_score(pred: &[f32], w: usize, h: usize, quad: &[Pt; 4]) -> f32 {
    let q = quad.map(|[x, y]| [x.trunc(), y.trunc()]);
    let clampi = |v: f32, hi: usize| (v.max(0.0) as usize).min(hi - 1);
    let xmin = clampi(
        quad.iter().map(|p| p[0]).fold(f32::MAX, f32::min).floor(),
        w,
    );
    let xmax = clampi(quad.iter().map(|p| p[0]).fold(f32::MIN, f32::max).ceil(), w);
    let ymin = clampi(
        quad.iter().map(|p| p[1]).fold(f32::MAX, f32::min).floor(),
        h,
    );
    let ymax = clampi(quad.iter().map(|p| p[1]).fold(f32::MIN, f32::max).ceil(), h);
    let (mut sum, mut n) = (0f64, 0usize);
    for y in ymin..=ymax {
        for x in xmin..=xmax {
            if in_convex(&q, [x as f32, y as f32]) {
                sum += pred[y * w + x] as f64;
                n += 1;
            }
        }
    }
    if n == 0 { 0.0 } else { (sum / n as f64) as f32 }
}

/// Top-to-bottom lines (boxes whose tops are within 10 px share a line), left to right within
/// a line, as rapidocr's `sorted_boxes`.
fn sort_reading_order(boxes: &mut [TextBox]) {
    boxes.sort_by(|a, b| a.quad[0][1].total_cmp(&b.quad[0][1]));
    let mut line = 0usize;
    let mut keyed: Vec<(usize, f32, TextBox)> = Vec::with_capacity(boxes.len());
    for (i, b) in boxes.iter().enumerate() {
        if i > 0 && b.quad[0][1] - boxes[i - 1].quad[0][1] >= 10.0 {
            line += 1;
        }
        keyed.push((line, b.quad[0][0], b.clone()));
    }
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    for (slot, (_, _, b)) in boxes.iter_mut().zip(keyed) {
        *slot = b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_size_rounds_to_32_after_raising_the_short_side() {
        assert_eq!(input_size(720, 1280, 736), (736, 1312));
        assert_eq!(input_size(1920, 1080, 736), (1920, 1088));
    }

    #[test]
    fn one_block_of_text_probability_becomes_one_grown_box() {
        let (w, h) = (64, 32);
        let mut pred = vec![0.0f32; w * h];
        for y in 10..20 {
            for x in 8..40 {
                pred[y * w + x] = 0.9;
            }
        }
        let boxes = postprocess(&pred, w, h, w * 2, h * 2, &DetParams::default());
        assert_eq!(boxes.len(), 1);
        let b = &boxes[0];
        // The score averages the undilated map over the dilated box: 0.9 * 320 / 363.
        assert!((b.score - 0.7934).abs() < 1e-3, "{b:?}");
        // The region (8..40 x 10..20 after dilation) grows by area*1.6/perimeter each side.
        let [x0, y0, x1, y1] = b.bounds();
        assert!(x0 < 16.0 && x1 > 78.0 && y0 < 20.0 && y1 > 38.0, "{b:?}");
    }
}
