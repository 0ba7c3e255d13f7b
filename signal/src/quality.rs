//! `content_quality`: a classical, explainable technical-quality score from frames at full
//! resolution: sharpness, exposure, noise, blockiness, resolution and bitrate, each scored
//! 0..1 and combined by fixed weights into 0..100.
//!
//! - Sharpness: the no-reference blur metric of Crété-Roffet et al. (2007): how much of the
//!   picture's local variation survives a further blur (a blurred picture loses little).
//! - Noise: Immerkær's fast noise estimate (1996), the response to a Laplacian-difference
//!   kernel that cancels smooth structure.
//! - Blockiness: luma steps across the 8-pixel coding grid relative to steps elsewhere;
//!   only meaningful at the coded resolution, so it is left out when frames were scaled.

use media::{Frames, Probe};
use serde::{Deserialize, Serialize};

use crate::pixels::luma;

/// Weights of the parts in the overall score (renormalised over the parts present).
const WEIGHTS: [(Part, f64); 6] = [
    (Part::Sharpness, 0.30),
    (Part::Exposure, 0.20),
    (Part::Noise, 0.15),
    (Part::Blockiness, 0.15),
    (Part::Resolution, 0.10),
    (Part::Bitrate, 0.10),
];
/// Short side that scores full marks for resolution.
pub const DEFAULT_FULL_RESOLUTION: u32 = 1080;
/// Bits per pixel per frame that score full marks (H.264 looks clean from about here).
pub const DEFAULT_FULL_BPP: f64 = 0.1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Sharpness,
    Exposure,
    Noise,
    Blockiness,
    Resolution,
    Bitrate,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QualityConfig {
    pub full_resolution: u32,
    pub full_bpp: f64,
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self {
            full_resolution: DEFAULT_FULL_RESOLUTION,
            full_bpp: DEFAULT_FULL_BPP,
        }
    }
}

/// Result of `content_quality`.
#[derive(Debug, Clone, Serialize)]
pub struct ContentQuality {
    /// 0 (unwatchable) ..= 100 (technically clean), the weighted mean of the part scores.
    pub score: f64,
    pub sharpness: Measure,
    pub exposure: Exposure,
    pub noise: Measure,
    /// Absent when the frames were scaled (the coding grid is gone).
    pub blockiness: Option<Measure>,
    pub resolution: Resolution,
    /// Absent when the container states no bitrate.
    pub bitrate: Option<Bitrate>,
    pub frames_analyzed: usize,
}

/// A raw measurement and its 0..1 score.
#[derive(Debug, Clone, Serialize)]
pub struct Measure {
    pub value: f64,
    pub score: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Exposure {
    /// Mean luma 0..1.
    pub mean_luma: f64,
    /// Share of pixels crushed to black (< 16) and blown to white (> 239).
    pub shadows_clipped: f64,
    pub highlights_clipped: f64,
    pub score: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Resolution {
    pub width: u32,
    pub height: u32,
    pub score: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bitrate {
    pub bits_per_second: u64,
    pub bits_per_pixel: f64,
    pub score: f64,
}

struct Luma {
    data: Vec<f32>,
    w: usize,
    h: usize,
}

impl Luma {
    fn at(&self, x: usize, y: usize) -> f32 {
        self.data[y * self.w + x]
    }
}

/// Crété-Roffet blur: 0 sharp ..= 1 fully blurred.
fn blur_metric(p: &Luma) -> f64 {
    const RADIUS: usize = 4; // a 9-tap box blur
    let mut per_direction = [0f64; 2];
    for (dir, out) in per_direction.iter_mut().enumerate() {
        let (w, h) = (p.w, p.h);
        let (outer, inner) = if dir == 0 { (h, w) } else { (w, h) };
        let (mut sum_f, mut sum_v) = (0f64, 0f64);
        for o in 0..outer {
            let line: Vec<f32> = (0..inner)
                .map(|i| if dir == 0 { p.at(i, o) } else { p.at(o, i) })
                .collect();
            let blurred: Vec<f32> = (0..inner)
                .map(|i| {
                    let lo = i.saturating_sub(RADIUS);
                    let hi = (i + RADIUS + 1).min(inner);
                    line[lo..hi].iter().sum::<f32>() / (hi - lo) as f32
                })
                .collect();
            for i in 1..inner {
                let d_f = (line[i] - line[i - 1]).abs();
                let d_b = (blurred[i] - blurred[i - 1]).abs();
                sum_f += f64::from(d_f);
                sum_v += f64::from((d_f - d_b).max(0.0));
            }
        }
        *out = if sum_f > 0.0 {
            (sum_f - sum_v) / sum_f
        } else {
            1.0
        };
    }
    per_direction[0].max(per_direction[1])
}

/// Immerkær noise sigma in luma levels (0..=255).
fn noise_sigma(p: &Luma) -> f64 {
    if p.w < 3 || p.h < 3 {
        return 0.0;
    }
    let mut sum = 0f64;
    for y in 1..p.h - 1 {
        for x in 1..p.w - 1 {
            let v = p.at(x - 1, y - 1) - 2.0 * p.at(x, y - 1) + p.at(x + 1, y - 1)
                - 2.0 * p.at(x - 1, y)
                + 4.0 * p.at(x, y)
                - 2.0 * p.at(x + 1, y)
                + p.at(x - 1, y + 1)
                - 2.0 * p.at(x, y + 1)
                + p.at(x + 1, y + 1);
            sum += f64::from(v.abs());
        }
    }
    let count = ((p.w - 2) * (p.h - 2)) as f64;
    sum * (std::f64::consts::PI / 2.0).sqrt() / (6.0 * count)
}

/// Mean luma step across the 8-pixel grid over the mean step elsewhere, minus one
/// (0 = no visible grid).
fn blockiness(p: &Luma) -> f64 {
    let (mut at_grid, mut n_grid, mut off_grid, mut n_off) = (0f64, 0usize, 0f64, 0usize);
    for y in 0..p.h {
        for x in 1..p.w {
            let d = f64::from((p.at(x, y) - p.at(x - 1, y)).abs());
            if x % 8 == 0 {
                at_grid += d;
                n_grid += 1;
            } else {
                off_grid += d;
                n_off += 1;
            }
        }
    }
    for y in 1..p.h {
        for x in 0..p.w {
            let d = f64::from((p.at(x, y) - p.at(x, y - 1)).abs());
            if y % 8 == 0 {
                at_grid += d;
                n_grid += 1;
            } else {
                off_grid += d;
                n_off += 1;
            }
        }
    }
    let (grid, off) = (
        at_grid / n_grid.max(1) as f64,
        off_grid / n_off.max(1) as f64,
    );
    if off <= 1e-6 {
        0.0
    } else {
        (grid / off - 1.0).max(0.0)
    }
}

pub fn content_quality(frames: &Frames, probe: &Probe, cfg: &QualityConfig) -> ContentQuality {
    let (w, h) = (frames.width as usize, frames.height as usize);
    let native = frames.width == probe.width && frames.height == probe.height;
    let (mut blur, mut sigma, mut blocks) = (0f64, 0f64, 0f64);
    let (mut mean, mut dark, mut bright) = (0f64, 0f64, 0f64);
    let n = frames.len().max(1) as f64;
    for (_, rgb) in frames.iter() {
        let data: Vec<f32> = rgb
            .chunks_exact(3)
            .map(|p| f32::from(luma(p[0], p[1], p[2])))
            .collect();
        let total = data.len().max(1) as f64;
        mean += data.iter().map(|&v| f64::from(v)).sum::<f64>() / total / 255.0;
        dark += data.iter().filter(|&&v| v < 16.0).count() as f64 / total;
        bright += data.iter().filter(|&&v| v > 239.0).count() as f64 / total;
        let plane = Luma { data, w, h };
        blur += blur_metric(&plane);
        sigma += noise_sigma(&plane);
        if native {
            blocks += blockiness(&plane);
        }
    }
    let (blur, sigma, blocks) = (blur / n, sigma / n, blocks / n);
    let (mean, dark, bright) = (mean / n, dark / n, bright / n);

    let sharpness = Measure {
        value: 1.0 - blur,
        score: ((0.75 - blur) / 0.45).clamp(0.0, 1.0),
    };
    // Noise below 1.5 levels is invisible; 10 levels is heavy grain.
    let noise = Measure {
        value: sigma,
        score: (1.0 - (sigma - 1.5) / 8.5).clamp(0.0, 1.0),
    };
    let off_mid = ((mean - 0.45).abs() - 0.15).max(0.0) / 0.35;
    let exposure = Exposure {
        mean_luma: mean,
        shadows_clipped: dark,
        highlights_clipped: bright,
        score: ((1.0 - off_mid) * (1.0 - (2.0 * (dark + bright)).min(1.0))).clamp(0.0, 1.0),
    };
    let blockiness = native.then(|| Measure {
        value: blocks,
        score: (1.0 - blocks / 0.5).clamp(0.0, 1.0),
    });
    let short_side = probe.width.min(probe.height);
    let resolution = Resolution {
        width: probe.width,
        height: probe.height,
        score: (f64::from(short_side) / f64::from(cfg.full_resolution.max(1))).min(1.0),
    };
    let pixels_per_second = f64::from(probe.width) * f64::from(probe.height) * probe.fps.max(1.0);
    let bitrate = probe.bit_rate.map(|bps| {
        let bpp = bps as f64 / pixels_per_second;
        Bitrate {
            bits_per_second: bps,
            bits_per_pixel: bpp,
            score: (bpp / cfg.full_bpp).min(1.0),
        }
    });
    let part_score = |part: Part| match part {
        Part::Sharpness => Some(sharpness.score),
        Part::Exposure => Some(exposure.score),
        Part::Noise => Some(noise.score),
        Part::Blockiness => blockiness.as_ref().map(|b| b.score),
        Part::Resolution => Some(resolution.score),
        Part::Bitrate => bitrate.as_ref().map(|b| b.score),
    };
    let (sum, weight) = WEIGHTS
        .iter()
        .filter_map(|&(part, w)| part_score(part).map(|s| (s * w, w)))
        .fold((0.0, 0.0), |acc, (s, w)| (acc.0 + s, acc.1 + w));
    ContentQuality {
        score: if frames.is_empty() {
            0.0
        } else {
            (100.0 * sum / weight.max(1e-9)).round()
        },
        sharpness,
        exposure,
        noise,
        blockiness,
        resolution,
        bitrate,
        frames_analyzed: frames.len(),
    }
}
