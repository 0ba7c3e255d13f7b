//! Per-frame building blocks: luma planes, colour histograms, colour-space conversions.

use media::Frames;

/// Rec. 601 luma in 0..=255 from 8-bit RGB, integer weights summing to 256.
#[inline]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((77 * u32::from(r) + 150 * u32::from(g) + 29 * u32::from(b)) >> 8) as u8
}

/// Bins per channel of [`Histogram`]: 4 x 4 x 4 = 64 colours, coarse enough that motion and
/// noise barely move pixels between bins, fine enough to tell shots apart.
const HIST_LEVELS: usize = 4;
pub const HIST_BINS: usize = HIST_LEVELS * HIST_LEVELS * HIST_LEVELS;

/// Normalised RGB histogram (sums to 1).
pub type Histogram = [f32; HIST_BINS];

/// What every frame-based analyzer computes first, once per frame.
pub struct FrameStats {
    pub width: usize,
    pub height: usize,
    /// Luma planes, one per frame, row-major.
    pub luma: Vec<Vec<u8>>,
    pub hist: Vec<Histogram>,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Block means of each luma plane ([`BLOCK`] x [`BLOCK`] pixels), row-major, and the
    /// block grid's size: what [`moved_diff`](Self::moved_diff) compares.
    pub blocks: Vec<Vec<f32>>,
    pub blocks_w: usize,
    pub blocks_h: usize,
}

/// Block size of [`FrameStats::blocks`]: at the 160 px analysis size a block is 1/40 of the
/// width, coarse enough that fine texture and sub-pixel motion average out.
pub const BLOCK: usize = 4;
/// Largest global shift, in blocks each way, that [`FrameStats::moved_diff`] tries (12 px of
/// 160 per frame: a whip pan).
const MAX_SHIFT: isize = 3;

impl FrameStats {
    pub fn new(frames: &Frames) -> Self {
        let (width, height) = (frames.width as usize, frames.height as usize);
        let n = frames.len();
        let mut stats = FrameStats {
            width,
            height,
            luma: Vec::with_capacity(n),
            hist: Vec::with_capacity(n),
            mean: Vec::with_capacity(n),
            std: Vec::with_capacity(n),
            blocks: Vec::with_capacity(n),
            blocks_w: (width / BLOCK).max(1),
            blocks_h: (height / BLOCK).max(1),
        };
        for (_, rgb) in frames.iter() {
            let mut plane = Vec::with_capacity(width * height);
            let mut counts = [0u32; HIST_BINS];
            let (mut sum, mut sum2) = (0u64, 0u64);
            for px in rgb.chunks_exact(3) {
                let y = luma(px[0], px[1], px[2]);
                plane.push(y);
                sum += u64::from(y);
                sum2 += u64::from(y) * u64::from(y);
                let bin = (usize::from(px[0]) >> 6) * 16
                    + (usize::from(px[1]) >> 6) * 4
                    + (usize::from(px[2]) >> 6);
                counts[bin] += 1;
            }
            let total = plane.len().max(1) as f64;
            let mean = sum as f64 / total;
            let var = (sum2 as f64 / total - mean * mean).max(0.0);
            let mut hist = [0f32; HIST_BINS];
            for (h, c) in hist.iter_mut().zip(counts) {
                *h = c as f32 / total as f32;
            }
            stats.blocks.push(block_means(
                &plane,
                width,
                height,
                stats.blocks_w,
                stats.blocks_h,
            ));
            stats.luma.push(plane);
            stats.hist.push(hist);
            stats.mean.push(mean as f32);
            stats.std.push(var.sqrt() as f32);
        }
        stats
    }

    pub fn len(&self) -> usize {
        self.luma.len()
    }

    /// Mean absolute luma difference of two frames, 0..=255.
    pub fn luma_diff(&self, a: usize, b: usize) -> f32 {
        mean_abs_diff(&self.luma[a], &self.luma[b])
    }

    /// Mean absolute difference (0..=255) of the two frames' block means after the global
    /// shift (up to [`MAX_SHIFT`] blocks each way) that makes them most alike: near zero for
    /// the same picture moved by a pan, tilt or shake, large for a different picture. The
    /// overlap must cover at least half of the frame.
    pub fn moved_diff(&self, a: usize, b: usize) -> f32 {
        let (w, h) = (self.blocks_w as isize, self.blocks_h as isize);
        let (pa, pb) = (&self.blocks[a], &self.blocks[b]);
        let mut best = f32::MAX;
        for dy in -MAX_SHIFT..=MAX_SHIFT {
            for dx in -MAX_SHIFT..=MAX_SHIFT {
                let (x0, x1) = (dx.max(0), (w + dx).min(w));
                let (y0, y1) = (dy.max(0), (h + dy).min(h));
                let cells = (x1 - x0).max(0) * (y1 - y0).max(0);
                if cells * 2 < w * h {
                    continue;
                }
                let mut sum = 0.0f32;
                for y in y0..y1 {
                    let ra = &pa[(y * w) as usize..((y + 1) * w) as usize];
                    let rb = &pb[((y - dy) * w) as usize..((y - dy + 1) * w) as usize];
                    for x in x0..x1 {
                        sum += (ra[x as usize] - rb[(x - dx) as usize]).abs();
                    }
                }
                best = best.min(sum / cells as f32);
            }
        }
        if best == f32::MAX { 0.0 } else { best }
    }

    /// Histogram distance of two frames: half the L1 distance, 0 (same) ..= 1 (disjoint).
    pub fn hist_dist(&self, a: usize, b: usize) -> f32 {
        hist_dist(&self.hist[a], &self.hist[b])
    }
}

fn block_means(plane: &[u8], width: usize, height: usize, bw: usize, bh: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; bw * bh];
    if width == 0 || height == 0 {
        return out;
    }
    let (sx, sy) = ((width / bw).max(1), (height / bh).max(1));
    for by in 0..bh {
        for bx in 0..bw {
            let mut sum = 0u32;
            for y in by * sy..((by + 1) * sy).min(height) {
                let row = &plane[y * width..(y + 1) * width];
                sum += row[bx * sx..((bx + 1) * sx).min(width)]
                    .iter()
                    .map(|&v| u32::from(v))
                    .sum::<u32>();
            }
            out[by * bw + bx] = sum as f32 / (sx * sy) as f32;
        }
    }
    out
}

pub fn mean_abs_diff(a: &[u8], b: &[u8]) -> f32 {
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    sum as f32 / a.len().max(1) as f32
}

pub fn hist_dist(a: &Histogram, b: &Histogram) -> f32 {
    0.5 * a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>()
}

/// sRGB 8-bit to CIE L*a*b* (D65). Perceptual distances for palettes.
pub fn rgb_to_lab(rgb: [u8; 3]) -> [f32; 3] {
    let lin = |c: u8| {
        let c = f32::from(c) / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let (r, g, b) = (lin(rgb[0]), lin(rgb[1]), lin(rgb[2]));
    let x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.950_47;
    let y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    let z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.088_83;
    let f = |t: f32| {
        if t > 0.008_856 {
            t.cbrt()
        } else {
            7.787 * t + 16.0 / 116.0
        }
    };
    let (fx, fy, fz) = (f(x), f(y), f(z));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

pub fn lab_to_rgb(lab: [f32; 3]) -> [u8; 3] {
    let fy = (lab[0] + 16.0) / 116.0;
    let fx = fy + lab[1] / 500.0;
    let fz = fy - lab[2] / 200.0;
    let inv = |f: f32| {
        if f.powi(3) > 0.008_856 {
            f.powi(3)
        } else {
            (f - 16.0 / 116.0) / 7.787
        }
    };
    let (x, y, z) = (inv(fx) * 0.950_47, inv(fy), inv(fz) * 1.088_83);
    let r = 3.2406 * x - 1.5372 * y - 0.4986 * z;
    let g = -0.9689 * x + 1.8758 * y + 0.0415 * z;
    let b = 0.0557 * x - 0.2040 * y + 1.0570 * z;
    let gamma = |c: f32| {
        let c = c.clamp(0.0, 1.0);
        let v = if c <= 0.003_130_8 {
            12.92 * c
        } else {
            1.055 * c.powf(1.0 / 2.4) - 0.055
        };
        (v * 255.0).round() as u8
    };
    [gamma(r), gamma(g), gamma(b)]
}

/// HSV hue in degrees (0..360) and saturation, value in 0..=1.
pub fn rgb_to_hsv(rgb: [u8; 3]) -> (f32, f32, f32) {
    let [r, g, b] = rgb.map(|c| f32::from(c) / 255.0);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = max - min;
    let hue = if delta <= f32::EPSILON {
        0.0
    } else if max == r {
        60.0 * ((g - b) / delta).rem_euclid(6.0)
    } else if max == g {
        60.0 * ((b - r) / delta + 2.0)
    } else {
        60.0 * ((r - g) / delta + 4.0)
    };
    let sat = if max <= f32::EPSILON {
        0.0
    } else {
        delta / max
    };
    (hue, sat, max)
}

/// A plain colour name for a swatch, so results read without a colour picker.
pub fn color_name(rgb: [u8; 3]) -> &'static str {
    let (h, s, v) = rgb_to_hsv(rgb);
    if v < 0.15 {
        return "black";
    }
    if s < 0.18 {
        return if v > 0.85 { "white" } else { "gray" };
    }
    match h {
        h if !(15.0..345.0).contains(&h) => "red",
        h if h < 45.0 => "orange",
        h if h < 70.0 => "yellow",
        h if h < 165.0 => "green",
        h if h < 195.0 => "cyan",
        h if h < 255.0 => "blue",
        h if h < 290.0 => "purple",
        _ => "magenta",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_round_trips() {
        for rgb in [[255, 0, 0], [0, 128, 255], [30, 30, 30], [250, 240, 10]] {
            let back = lab_to_rgb(rgb_to_lab(rgb));
            for c in 0..3 {
                assert!(rgb[c].abs_diff(back[c]) <= 2, "{rgb:?} -> {back:?}");
            }
        }
        let white = rgb_to_lab([255, 255, 255]);
        assert!((white[0] - 100.0).abs() < 0.5 && white[1].abs() < 0.5);
    }

    #[test]
    fn names_colours() {
        assert_eq!(color_name([250, 10, 10]), "red");
        assert_eq!(color_name([10, 200, 20]), "green");
        assert_eq!(color_name([20, 40, 230]), "blue");
        assert_eq!(color_name([5, 5, 5]), "black");
        assert_eq!(color_name([128, 128, 128]), "gray");
    }
}
