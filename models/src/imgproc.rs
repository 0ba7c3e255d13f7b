//! Small image operations on packed RGB24 buffers: resizing, cropping, warping and tensor
//! packing. Written here rather than pulled from a crate because each model needs the exact
//! arithmetic its training pipeline (OpenCV) used, and these few functions are that.

/// A borrowed packed RGB24 image.
#[derive(Clone, Copy)]
pub struct Rgb<'a> {
    pub data: &'a [u8],
    pub width: usize,
    pub height: usize,
}

/// An owned packed RGB24 image.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    pub data: Vec<u8>,
    pub width: usize,
    pub height: usize,
}

impl RgbImage {
    pub fn view(&self) -> Rgb<'_> {
        Rgb {
            data: &self.data,
            width: self.width,
            height: self.height,
        }
    }
}

impl<'a> Rgb<'a> {
    pub fn new(data: &'a [u8], width: usize, height: usize) -> Self {
        debug_assert_eq!(data.len(), width * height * 3);
        Self {
            data,
            width,
            height,
        }
    }

    #[inline]
    fn px(&self, x: usize, y: usize, c: usize) -> f32 {
        self.data[(y * self.width + x) * 3 + c] as f32
    }
}

/// Source coordinate table for one axis of a bilinear resize, OpenCV's INTER_LINEAR convention
/// (pixel centres aligned: `src = (dst + 0.5) * scale - 0.5`, clamped to the edge).
fn linear_taps(src_len: usize, dst_len: usize) -> Vec<(usize, usize, f32)> {
    let scale = src_len as f32 / dst_len as f32;
    (0..dst_len)
        .map(|d| {
            let s = ((d as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (s.floor() as usize).min(src_len - 1);
            let i1 = (i0 + 1).min(src_len - 1);
            (i0, i1, s - i0 as f32)
        })
        .collect()
}

/// Bilinear resize (OpenCV INTER_LINEAR).
pub fn resize(src: Rgb<'_>, width: usize, height: usize) -> RgbImage {
    let mut out = vec![0u8; width * height * 3];
    if src.width == 0 || src.height == 0 || width == 0 || height == 0 {
        return RgbImage {
            data: out,
            width,
            height,
        };
    }
    let xs = linear_taps(src.width, width);
    let ys = linear_taps(src.height, height);
    let row = src.width * 3;
    for (dy, &(y0, y1, fy)) in ys.iter().enumerate() {
        let r0 = &src.data[y0 * row..(y0 + 1) * row];
        let r1 = &src.data[y1 * row..(y1 + 1) * row];
        let dst = &mut out[dy * width * 3..(dy + 1) * width * 3];
        for (dx, &(x0, x1, fx)) in xs.iter().enumerate() {
            for c in 0..3 {
                let top = r0[x0 * 3 + c] as f32 * (1.0 - fx) + r0[x1 * 3 + c] as f32 * fx;
                let bottom = r1[x0 * 3 + c] as f32 * (1.0 - fx) + r1[x1 * 3 + c] as f32 * fx;
                dst[dx * 3 + c] = (top * (1.0 - fy) + bottom * fy).round() as u8;
            }
        }
    }
    RgbImage {
        data: out,
        width,
        height,
    }
}

/// Area-average resize for shrinking (OpenCV INTER_AREA for integer-ish ratios); falls back
/// to bilinear when enlarging, as OpenCV does.
pub fn resize_area(src: Rgb<'_>, width: usize, height: usize) -> RgbImage {
    if width >= src.width || height >= src.height {
        return resize(src, width, height);
    }
    let sx = src.width as f32 / width as f32;
    let sy = src.height as f32 / height as f32;
    let mut out = vec![0u8; width * height * 3];
    for dy in 0..height {
        let (y0, y1) = (
            (dy as f32 * sy) as usize,
            (((dy + 1) as f32 * sy).ceil() as usize).min(src.height),
        );
        for dx in 0..width {
            let (x0, x1) = (
                (dx as f32 * sx) as usize,
                (((dx + 1) as f32 * sx).ceil() as usize).min(src.width),
            );
            let mut acc = [0f32; 3];
            for y in y0..y1 {
                for x in x0..x1 {
                    for (c, a) in acc.iter_mut().enumerate() {
                        *a += src.px(x, y, c);
                    }
                }
            }
            let n = ((y1 - y0) * (x1 - x0)).max(1) as f32;
            for c in 0..3 {
                out[(dy * width + dx) * 3 + c] = (acc[c] / n).round() as u8;
            }
        }
    }
    RgbImage {
        data: out,
        width,
        height,
    }
}

/// Copies the rectangle `[x, x+w) x [y, y+h)`; parts outside the image are filled with `fill`.
pub fn crop(src: Rgb<'_>, x: i64, y: i64, w: usize, h: usize, fill: u8) -> RgbImage {
    let mut out = vec![fill; w * h * 3];
    for oy in 0..h {
        let sy = y + oy as i64;
        if sy < 0 || sy >= src.height as i64 {
            continue;
        }
        for ox in 0..w {
            let sx = x + ox as i64;
            if sx < 0 || sx >= src.width as i64 {
                continue;
            }
            let s = (sy as usize * src.width + sx as usize) * 3;
            out[(oy * w + ox) * 3..(oy * w + ox) * 3 + 3].copy_from_slice(&src.data[s..s + 3]);
        }
    }
    RgbImage {
        data: out,
        width: w,
        height: h,
    }
}

/// Samples the quadrilateral `quad` (tl, tr, br, bl) into a `w x h` image with a perspective
/// map and bilinear interpolation, replicating the border (like OpenCV's warpPerspective with
/// BORDER_REPLICATE). This straightens rotated text lines.
pub fn warp_quad(src: Rgb<'_>, quad: &[[f32; 2]; 4], w: usize, h: usize) -> RgbImage {
    let m = perspective_to_quad(quad, w as f32, h as f32);
    let mut out = vec![0u8; w * h * 3];
    let maxx = src.width as f32 - 1.0;
    let maxy = src.height as f32 - 1.0;
    for oy in 0..h {
        for ox in 0..w {
            let (u, v) = (ox as f32, oy as f32);
            let den = m[6] * u + m[7] * v + 1.0;
            let x = ((m[0] * u + m[1] * v + m[2]) / den).clamp(0.0, maxx);
            let y = ((m[3] * u + m[4] * v + m[5]) / den).clamp(0.0, maxy);
            let (x0, y0) = (x.floor() as usize, y.floor() as usize);
            let (x1, y1) = ((x0 + 1).min(src.width - 1), (y0 + 1).min(src.height - 1));
            let (fx, fy) = (x - x0 as f32, y - y0 as f32);
            for c in 0..3 {
                let top = src.px(x0, y0, c) * (1.0 - fx) + src.px(x1, y0, c) * fx;
                let bot = src.px(x0, y1, c) * (1.0 - fx) + src.px(x1, y1, c) * fx;
                out[(oy * w + ox) * 3 + c] = (top * (1.0 - fy) + bot * fy).round() as u8;
            }
        }
    }
    RgbImage {
        data: out,
        width: w,
        height: h,
    }
}

/// The homography taking the rectangle (0,0)-(w,h) to `quad`, as 8 coefficients
/// (`m[8]` = 1), solved by Gaussian elimination on the standard 8x8 system.
fn perspective_to_quad(quad: &[[f32; 2]; 4], w: f32, h: f32) -> [f32; 8] {
    let src = [[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]];
    let mut a = [[0f64; 9]; 8];
    for i in 0..4 {
        let (u, v) = (src[i][0] as f64, src[i][1] as f64);
        let (x, y) = (quad[i][0] as f64, quad[i][1] as f64);
        a[2 * i] = [u, v, 1.0, 0.0, 0.0, 0.0, -u * x, -v * x, x];
        a[2 * i + 1] = [0.0, 0.0, 0.0, u, v, 1.0, -u * y, -v * y, y];
    }
    for col in 0..8 {
        let pivot = (col..8)
            .max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs()))
            .unwrap_or(col);
        a.swap(col, pivot);
        let d = a[col][col];
        if d.abs() < 1e-12 {
            continue;
        }
        for v in &mut a[col][col..] {
            *v /= d;
        }
        let pivot_row = a[col];
        for (r, row) in a.iter_mut().enumerate() {
            if r != col {
                let f = row[col];
                for (v, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                    *v -= f * p;
                }
            }
        }
    }
    let mut m = [0f32; 8];
    for (i, row) in a.iter().enumerate() {
        m[i] = row[8] as f32;
    }
    m
}

/// Rotates by 180 degrees (text lines the classifier finds upside down).
pub fn rotate180(img: &RgbImage) -> RgbImage {
    let mut data = Vec::with_capacity(img.data.len());
    for px in img.data.chunks_exact(3).rev() {
        data.extend_from_slice(px);
    }
    RgbImage {
        data,
        width: img.width,
        height: img.height,
    }
}

/// Rotates 90 degrees counter-clockwise (numpy's `rot90`), for tall crops of vertical text.
pub fn rotate90_ccw(img: &RgbImage) -> RgbImage {
    let (w, h) = (img.width, img.height);
    let mut data = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let (nx, ny) = (y, w - 1 - x);
            let d = (ny * h + nx) * 3;
            data[d..d + 3].copy_from_slice(&img.data[(y * w + x) * 3..(y * w + x) * 3 + 3]);
        }
    }
    RgbImage {
        data,
        width: h,
        height: w,
    }
}

/// Channel order a model was trained with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ChannelOrder {
    Rgb,
    /// OpenCV-trained models (PP-OCR).
    Bgr,
}

/// Writes `img` as planar CHW f32 into `out` (length 3 * `out_w` * `img.height`), left-aligned
/// in rows of `out_w` (the rest stays as it was, e.g. zero padding), as
/// `(byte * scale - mean[c]) / std[c]` per output channel.
pub fn to_chw(
    img: Rgb<'_>,
    order: ChannelOrder,
    scale: f32,
    mean: [f32; 3],
    std: [f32; 3],
    out_w: usize,
    out: &mut [f32],
) {
    let plane = out_w * img.height;
    for c in 0..3 {
        let src_c = if order == ChannelOrder::Bgr { 2 - c } else { c };
        let (m, inv) = (mean[c], 1.0 / std[c]);
        let dst = &mut out[c * plane..(c + 1) * plane];
        for y in 0..img.height {
            let row = &img.data[y * img.width * 3..(y + 1) * img.width * 3];
            let drow = &mut dst[y * out_w..y * out_w + img.width];
            for (x, d) in drow.iter_mut().enumerate() {
                *d = (row[x * 3 + src_c] as f32 * scale - m) * inv;
            }
        }
    }
}

/// Mean absolute difference of two equally sized byte buffers, sampled every `step` bytes.
pub fn mean_abs_diff(a: &[u8], b: &[u8], step: usize) -> f32 {
    if a.len() != b.len() || a.is_empty() {
        return f32::INFINITY;
    }
    let step = step.max(1);
    let (mut sum, mut n) = (0u64, 0u64);
    let mut i = 0;
    while i < a.len() {
        sum += a[i].abs_diff(b[i]) as u64;
        n += 1;
        i += step;
    }
    sum as f32 / n as f32
}
