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
    let mut boxes = merge_line_fragments(boxes, frame_w as f32, frame_h as f32);
    sort_reading_order(&mut boxes);
    boxes
}

/// Joins pieces of one line that the detector split (words on a busy background, a caption
/// whose shadow broke the probability map between letters): near-horizontal boxes of about
/// the same height, overlapping vertically, less than one line height apart. Rotated text
/// and boxes far apart stay as they are. A joined line grows by half its height on each
/// side: the pieces end where the detector lost the letters, and the recognizer reads past
/// background fine.
pub fn merge_line_fragments(boxes: Vec<TextBox>, frame_w: f32, frame_h: f32) -> Vec<TextBox> {
    let upright = |b: &TextBox| {
        let [tl, tr, ..] = b.quad;
        (tr[1] - tl[1]).abs() <= 0.1 * (tr[0] - tl[0]).abs().max(1.0)
    };
    let mut items: Vec<(TextBox, bool)> = boxes.into_iter().map(|b| (b, false)).collect();
    loop {
        let mut merged = false;
        'outer: for i in 0..items.len() {
            for j in 0..items.len() {
                if i == j || !upright(&items[i].0) || !upright(&items[j].0) {
                    continue;
                }
                let (a, b) = (items[i].0.bounds(), items[j].0.bounds());
                if a[0] > b[0] {
                    continue;
                }
                let (ha, hb) = (a[3] - a[1], b[3] - b[1]);
                let h = ha.min(hb);
                let overlap = a[3].min(b[3]) - a[1].max(b[1]);
                let gap = b[0] - a[2];
                let similar = ha.max(hb) <= 1.5 * h.max(1.0);
                if similar && overlap >= 0.6 * h && gap <= h && gap > -0.5 * h {
                    let u = [
                        a[0].min(b[0]),
                        a[1].min(b[1]),
                        a[2].max(b[2]),
                        a[3].max(b[3]),
                    ];
                    let score = (items[i].0.score + items[j].0.score) / 2.0;
                    let joined = TextBox {
                        quad: [[u[0], u[1]], [u[2], u[1]], [u[2], u[3]], [u[0], u[3]]],
                        score,
                    };
                    let (hi, lo) = (i.max(j), i.min(j));
                    items.swap_remove(hi);
                    items[lo] = (joined, true);
                    merged = true;
                    break 'outer;
                }
            }
        }
        if !merged {
            break;
        }
    }
    items
        .into_iter()
        .map(|(b, joined)| {
            if !joined {
                return b;
            }
            let u = b.bounds();
            let pad = 0.5 * (u[3] - u[1]);
            let (x0, x1) = ((u[0] - pad).max(0.0), (u[2] + pad).min(frame_w - 1.0));
            let (y0, y1) = (u[1].max(0.0), u[3].min(frame_h - 1.0));
            TextBox {
                quad: [[x0, y0], [x1, y0], [x1, y1], [x0, y1]],
                score: b.score,
            }
        })
        .collect()
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

    fn rect(x0: f32, y0: f32, x1: f32, y1: f32) -> TextBox {
        TextBox {
            quad: [[x0, y0], [x1, y0], [x1, y1], [x0, y1]],
            score: 0.8,
        }
    }

    #[test]
    fn pieces_of_one_line_are_joined_and_other_lines_are_not() {
        // "NEW" "DROP" "FRIDAY" split by the detector; a second line below; a far-away box.
        let boxes = vec![
            rect(10.0, 100.0, 60.0, 130.0),
            rect(75.0, 101.0, 140.0, 131.0),
            rect(150.0, 99.0, 240.0, 129.0),
            rect(10.0, 160.0, 200.0, 190.0),
            rect(400.0, 100.0, 450.0, 130.0),
        ];
        let mut out = merge_line_fragments(boxes, 1000.0, 1000.0);
        out.sort_by(|a, b| {
            a.bounds()[1]
                .total_cmp(&b.bounds()[1])
                .then(a.bounds()[0].total_cmp(&b.bounds()[0]))
        });
        let b: Vec<[f32; 4]> = out.iter().map(|b| b.bounds()).collect();
        assert_eq!(
            b,
            vec![
                [0.0, 99.0, 256.0, 131.0],
                [400.0, 100.0, 450.0, 130.0],
                [10.0, 160.0, 200.0, 190.0]
            ]
        );
    }

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
