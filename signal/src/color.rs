//! `color_analysis`: dominant palette per shot and overall (k-means in CIE L*a*b*, where
//! distances match perceived colour differences), brightness, saturation, warmth, contrast
//! and colourfulness.
//!
//! Pixels are binned into a fine Lab histogram first and k-means runs on the weighted bins:
//! the same answer as clustering every pixel to within a bin's width, at a fraction of the
//! cost, and deterministic (seeded from the heaviest bin, no randomness).

use media::Frames;
use serde::{Deserialize, Serialize};

use crate::cuts::span_times;
use crate::pixels::{FrameStats, color_name, lab_to_rgb, rgb_to_hsv, rgb_to_lab};
use crate::shots::{self, CutConfig};

pub const DEFAULT_COLOR_SAMPLE_FPS: f64 = 2.0;
pub const DEFAULT_PALETTE_SIZE: usize = 5;
/// Every n-th pixel in each direction: 1 in 4 pixels of a 160 px frame is plenty for shares.
const PIXEL_STEP: usize = 2;
const KMEANS_ITERATIONS: usize = 20;
/// Chroma (Lab) below which a colour counts as neutral for the dominant hue.
const NEUTRAL_CHROMA: f32 = 12.0;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ColorConfig {
    pub cuts: CutConfig,
    /// Frames per second looked at (of those decoded).
    pub sample_fps: f64,
    /// Colours per palette.
    pub palette_size: usize,
}

impl Default for ColorConfig {
    fn default() -> Self {
        Self {
            cuts: CutConfig::default(),
            sample_fps: DEFAULT_COLOR_SAMPLE_FPS,
            palette_size: DEFAULT_PALETTE_SIZE,
        }
    }
}

/// Result of `color_analysis`.
#[derive(Debug, Clone, Serialize)]
pub struct ColorAnalysis {
    pub overall: ColorStats,
    pub shots: Vec<ShotColor>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShotColor {
    pub index: usize,
    pub start_s: f64,
    pub end_s: f64,
    #[serde(flatten)]
    pub stats: ColorStats,
}

#[derive(Debug, Clone, Serialize)]
pub struct ColorStats {
    /// Largest share first; shares sum to 1.
    pub palette: Vec<Swatch>,
    /// Name of the most common clearly coloured swatch ("red", "blue"...), or "neutral" when
    /// the picture is black/gray/white.
    pub dominant_hue: String,
    /// HSV hue (degrees) of that swatch.
    pub dominant_hue_deg: Option<f32>,
    /// Mean L* / 100: 0 black ..= 1 white.
    pub brightness: f32,
    /// Mean HSV saturation, 0 ..= 1.
    pub saturation: f32,
    /// Mean (R - B) / 255: positive warm (red/orange), negative cool (blue).
    pub warmth: f32,
    /// RMS contrast: standard deviation of L* / 100.
    pub contrast: f32,
    /// Hasler-Süsstrunk colourfulness (0 gray; above ~0.5 very colourful), scaled to 0..1 by /255.
    pub colorfulness: f32,
    pub frames_sampled: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Swatch {
    pub hex: String,
    pub rgb: [u8; 3],
    pub lab: [f32; 3],
    pub share: f32,
    pub name: &'static str,
}

/// Accumulates pixels of a set of frames.
struct Accumulator {
    /// Lab histogram bins: weight and Lab sums.
    bins: Vec<(f32, [f32; 3])>,
    pixels: f64,
    sum_l: f64,
    sum_l2: f64,
    sum_sat: f64,
    sum_warm: f64,
    rg: (f64, f64),
    yb: (f64, f64),
    frames: usize,
}

/// Bins: L in steps of 5, a and b in steps of 6 over -128..128.
const BL: usize = 21;
const BA: usize = 43;

impl Accumulator {
    fn new() -> Self {
        Self {
            bins: vec![(0.0, [0.0; 3]); BL * BA * BA],
            pixels: 0.0,
            sum_l: 0.0,
            sum_l2: 0.0,
            sum_sat: 0.0,
            sum_warm: 0.0,
            rg: (0.0, 0.0),
            yb: (0.0, 0.0),
            frames: 0,
        }
    }

    fn add_frame(&mut self, rgb: &[u8], width: usize, lab_cache: &mut LabCache) {
        self.frames += 1;
        for row in rgb.chunks_exact(width * 3).step_by(PIXEL_STEP) {
            for px in row.chunks_exact(3).step_by(PIXEL_STEP) {
                let c = [px[0], px[1], px[2]];
                let lab = lab_cache.get(c);
                let bl = ((lab[0] / 5.0) as usize).min(BL - 1);
                let ba = (((lab[1] + 128.0) / 6.0) as usize).min(BA - 1);
                let bb = (((lab[2] + 128.0) / 6.0) as usize).min(BA - 1);
                let bin = &mut self.bins[(bl * BA + ba) * BA + bb];
                bin.0 += 1.0;
                for (sum, v) in bin.1.iter_mut().zip(lab) {
                    *sum += v;
                }
                let (_, sat, _) = rgb_to_hsv(c);
                let (r, g, b) = (f64::from(c[0]), f64::from(c[1]), f64::from(c[2]));
                self.pixels += 1.0;
                self.sum_l += f64::from(lab[0]);
                self.sum_l2 += f64::from(lab[0]) * f64::from(lab[0]);
                self.sum_sat += f64::from(sat);
                self.sum_warm += (r - b) / 255.0;
                let (rg, yb) = (r - g, 0.5 * (r + g) - b);
                self.rg = (self.rg.0 + rg, self.rg.1 + rg * rg);
                self.yb = (self.yb.0 + yb, self.yb.1 + yb * yb);
            }
        }
    }

    fn finish(&self, k: usize) -> ColorStats {
        let n = self.pixels.max(1.0);
        let mean_l = self.sum_l / n;
        let var_l = (self.sum_l2 / n - mean_l * mean_l).max(0.0);
        let moments = |(s, s2): (f64, f64)| {
            let m = s / n;
            (m, (s2 / n - m * m).max(0.0).sqrt())
        };
        let ((mrg, srg), (myb, syb)) = (moments(self.rg), moments(self.yb));
        let colorfulness = (srg.hypot(syb) + 0.3 * mrg.hypot(myb)) / 255.0;
        let palette = kmeans(&self.bins, k);
        let dominant = palette
            .iter()
            .find(|s| s.lab[1].hypot(s.lab[2]) >= NEUTRAL_CHROMA);
        ColorStats {
            dominant_hue: dominant.map_or("neutral", |s| s.name).to_string(),
            dominant_hue_deg: dominant.map(|s| rgb_to_hsv(s.rgb).0),
            palette,
            brightness: (mean_l / 100.0) as f32,
            saturation: (self.sum_sat / n) as f32,
            warmth: (self.sum_warm / n) as f32,
            contrast: (var_l.sqrt() / 100.0) as f32,
            colorfulness: colorfulness as f32,
            frames_sampled: self.frames,
        }
    }
}

/// Lab of each RGB colour seen, since a frame repeats colours a lot and cbrt/powf are slow.
struct LabCache(std::collections::HashMap<[u8; 3], [f32; 3]>);

impl LabCache {
    fn get(&mut self, c: [u8; 3]) -> [f32; 3] {
        *self.0.entry(c).or_insert_with(|| rgb_to_lab(c))
    }
}

fn kmeans(bins: &[(f32, [f32; 3])], k: usize) -> Vec<Swatch> {
    let points: Vec<(f32, [f32; 3])> = bins
        .iter()
        .filter(|(w, _)| *w > 0.0)
        .map(|(w, s)| (*w, [s[0] / w, s[1] / w, s[2] / w]))
        .collect();
    let total: f32 = points.iter().map(|p| p.0).sum();
    if points.is_empty() {
        return Vec::new();
    }
    let dist = |a: &[f32; 3], b: &[f32; 3]| (0..3).map(|i| (a[i] - b[i]).powi(2)).sum::<f32>();
    // Seeds: the heaviest bin, then repeatedly the bin with the most weight far from all
    // seeds (a deterministic k-means++).
    let heaviest = points
        .iter()
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|p| p.1)
        .unwrap_or_default();
    let mut centers = vec![heaviest];
    while centers.len() < k.min(points.len()) {
        let next = points
            .iter()
            .map(|(w, p)| {
                (
                    w * centers.iter().map(|c| dist(p, c)).fold(f32::MAX, f32::min),
                    p,
                )
            })
            .max_by(|a, b| a.0.total_cmp(&b.0));
        match next {
            Some((score, p)) if score > 0.0 => centers.push(*p),
            _ => break,
        }
    }
    let mut weights = vec![0f32; centers.len()];
    for _ in 0..KMEANS_ITERATIONS {
        let mut sums = vec![[0f32; 3]; centers.len()];
        weights.iter_mut().for_each(|w| *w = 0.0);
        for (w, p) in &points {
            let nearest = (0..centers.len())
                .min_by(|&a, &b| dist(p, &centers[a]).total_cmp(&dist(p, &centers[b])))
                .unwrap_or(0);
            weights[nearest] += w;
            for i in 0..3 {
                sums[nearest][i] += w * p[i];
            }
        }
        let mut moved = 0f32;
        for (c, (s, w)) in centers.iter_mut().zip(sums.iter().zip(&weights)) {
            if *w > 0.0 {
                let new = [s[0] / w, s[1] / w, s[2] / w];
                moved = moved.max(dist(c, &new));
                *c = new;
            }
        }
        if moved < 0.01 {
            break;
        }
    }
    let mut swatches: Vec<Swatch> = centers
        .iter()
        .zip(&weights)
        .filter(|(_, w)| **w > 0.0)
        .map(|(lab, w)| {
            let rgb = lab_to_rgb(*lab);
            Swatch {
                hex: format!("#{:02x}{:02x}{:02x}", rgb[0], rgb[1], rgb[2]),
                rgb,
                lab: lab.map(|v| (v * 10.0).round() / 10.0),
                share: w / total,
                name: color_name(rgb),
            }
        })
        .collect();
    swatches.sort_by(|a, b| b.share.total_cmp(&a.share));
    swatches
}

pub fn color_analysis(frames: &Frames, cfg: &ColorConfig) -> ColorAnalysis {
    let stats = FrameStats::new(frames);
    let b = shots::detect(&stats, &frames.times, &cfg.cuts);
    let step = (shots::frame_rate(&frames.times) / cfg.sample_fps.max(0.01))
        .round()
        .max(1.0) as usize;
    let width = frames.width as usize;
    let mut cache = LabCache(Default::default());
    let mut overall = Accumulator::new();
    let mut per_shot = Vec::with_capacity(b.shots.len());
    for (index, span) in b.shots.iter().enumerate() {
        let core: Vec<usize> = (span.start..span.end)
            .filter(|&i| !b.in_transition(i))
            .collect();
        let mut picked: Vec<usize> = core.iter().copied().step_by(step).collect();
        if picked.is_empty() {
            // A shot shorter than the sampling step still gets its middle frame.
            picked.extend(core.get(core.len() / 2));
        }
        let mut acc = Accumulator::new();
        for &i in &picked {
            acc.add_frame(frames.frame(i), width, &mut cache);
            overall.add_frame(frames.frame(i), width, &mut cache);
        }
        let (start_s, end_s) = span_times(frames, *span);
        per_shot.push(ShotColor {
            index,
            start_s,
            end_s,
            stats: acc.finish(cfg.palette_size),
        });
    }
    ColorAnalysis {
        overall: overall.finish(cfg.palette_size + 1),
        shots: per_shot,
    }
}
