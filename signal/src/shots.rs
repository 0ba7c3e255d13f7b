//! Shot boundaries from consecutive frames: hard cuts, fades through black/white, dissolves
//! and flashes. Shared by the cut, scene, colour, camera, effects and pacing analyzers, so
//! they all see the same shots.
//!
//! - Cuts: a frame-change score (colour histogram + luma difference) that stands out from
//!   its neighbourhood (an adaptive threshold, so fast motion is not a cut), unless the
//!   picture returns within a quarter second (a flash).
//! - Fades: a run of blank (black or white) frames, entered and/or left by a steady ramp of
//!   contrast; a fade-out followed by a fade-in is one transition.
//! - Dissolves: frames that are a blend of the frames before and after them (a linear
//!   path between two pictures), which motion does not produce.

use serde::{Deserialize, Serialize};

use crate::pixels::FrameStats;

/// Defaults of [`CutConfig`].
pub const DEFAULT_CUT_THRESHOLD: f32 = 0.2;
pub const DEFAULT_CUT_MIN_RATIO: f32 = 2.5;
pub const DEFAULT_MIN_SHOT_S: f64 = 0.15;
/// Luma difference (0..=255) that counts as a full change in the cut score.
const LUMA_FULL_CHANGE: f32 = 64.0;
/// Neighbourhood of the adaptive threshold, each side.
const BASELINE_WINDOW_S: f64 = 0.5;
/// A picture that comes back within this is a flash, not two cuts.
const FLASH_MAX_S: f64 = 0.25;
/// Blank-frame test: luma mean near black/white with little contrast.
const BLANK_DARK: f32 = 24.0;
const BLANK_BRIGHT: f32 = 230.0;
const BLANK_MAX_STD: f32 = 12.0;
/// Contrast energy (distance from the blank level plus luma std) must grow by at least this
/// per frame along a fade ramp.
const FADE_STEP: f32 = 0.5;
const FADE_MAX_S: f64 = 3.0;
/// A fade ramp ends when the energy has not risen for this long.
const FADE_PLATEAU_S: f64 = 0.2;
/// How far the (smoothed) energy may dip along a ramp, luma levels.
const FADE_TOLERANCE: f32 = 3.0;
/// A ramp must bring at least this much energy, and no frame more than this share of it.
const FADE_MIN_RISE: f32 = 20.0;
const FADE_MAX_JUMP: f32 = 0.4;
/// Dissolve test: half-window, least change across it, and how far off the blend line the
/// middle frame may be (as a share of the change).
const DISSOLVE_HALF_WINDOW_S: f64 = 0.25;
const DISSOLVE_MIN_CHANGE: f32 = 0.2;
const DISSOLVE_MAX_RESIDUAL: f64 = 0.3;
/// Largest luma step (0..=255) between two frames of a dissolve: blends of 0.3 s and longer.
const DISSOLVE_MAX_STEP: f32 = 16.0;

/// Parameters of hard-cut detection (analyzer `params`, all optional).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CutConfig {
    /// How far (0..1) a frame's change score must rise above its neighbourhood.
    pub threshold: f32,
    /// How many times the neighbourhood's median change the score must be.
    pub min_ratio: f32,
    /// Shortest shot; of two cuts closer than this the weaker is dropped.
    pub min_shot_s: f64,
}

impl Default for CutConfig {
    fn default() -> Self {
        Self {
            threshold: DEFAULT_CUT_THRESHOLD,
            min_ratio: DEFAULT_CUT_MIN_RATIO,
            min_shot_s: DEFAULT_MIN_SHOT_S,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionKind {
    /// From blank (black/white) into the picture.
    FadeIn,
    /// From the picture into blank.
    FadeOut,
    /// Out to blank and into the next shot: one transition.
    FadeOutIn,
    /// One picture blended into the next.
    Dissolve,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blank {
    Black,
    White,
}

#[derive(Debug, Clone)]
pub struct Cut {
    /// First frame of the new shot.
    pub frame: usize,
    pub score: f32,
    pub confidence: f32,
}

#[derive(Debug, Clone)]
pub struct Gradual {
    pub kind: TransitionKind,
    /// First frame that changes and first frame after the change (inclusive range).
    pub start: usize,
    pub end: usize,
    pub via: Option<Blank>,
}

#[derive(Debug, Clone, Copy)]
pub struct Flash {
    pub start: usize,
    /// First frame after the flash.
    pub end: usize,
}

/// A shot as a half-open frame range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShotSpan {
    pub start: usize,
    pub end: usize,
}

pub struct Boundaries {
    pub cuts: Vec<Cut>,
    pub gradual: Vec<Gradual>,
    pub flashes: Vec<Flash>,
    /// Change score of frame i against frame i-1 (0 for the first frame).
    pub scores: Vec<f32>,
    pub shots: Vec<ShotSpan>,
}

impl Boundaries {
    /// Whether frame `i` is part of a gradual transition or a flash (not a shot's own look).
    pub fn in_transition(&self, i: usize) -> bool {
        self.gradual.iter().any(|g| (g.start..=g.end).contains(&i))
            || self.flashes.iter().any(|f| (f.start..f.end).contains(&i))
    }
}

/// Change score of two frames, 0 (same) ..= 1: colour histogram distance (blind to motion)
/// and the luma difference left after the best global shift (so a pan over fine texture,
/// whose raw pixel difference is large, scores low while a new picture scores high).
pub fn pair_score(stats: &FrameStats, a: usize, b: usize) -> f32 {
    0.5 * stats.hist_dist(a, b) + 0.5 * (stats.moved_diff(a, b) / LUMA_FULL_CHANGE).min(1.0)
}

/// Frames per second of a frame sequence (from its times).
pub fn frame_rate(times: &[f64]) -> f64 {
    match times {
        [first, .., last] if last > first => (times.len() - 1) as f64 / (last - first),
        _ => 30.0,
    }
}

pub fn detect(stats: &FrameStats, times: &[f64], cfg: &CutConfig) -> Boundaries {
    let n = stats.len();
    let fps = frame_rate(times);
    let frames_of = |s: f64| ((s * fps).round() as usize).max(1);
    let scores: Vec<f32> = (0..n)
        .map(|i| {
            if i == 0 {
                0.0
            } else {
                pair_score(stats, i - 1, i)
            }
        })
        .collect();
    let gradual = merge_overlaps(
        fades(
            stats,
            frames_of(FADE_MAX_S),
            frames_of(FADE_PLATEAU_S).max(3),
        ),
        dissolves(stats, frames_of(DISSOLVE_HALF_WINDOW_S).max(2)),
    );
    let (cuts, flashes) = cuts(stats, &scores, &gradual, cfg, &frames_of);
    let shots = shot_spans(n, &cuts, &gradual);
    Boundaries {
        cuts,
        gradual,
        flashes,
        scores,
        shots,
    }
}

fn cuts(
    stats: &FrameStats,
    scores: &[f32],
    gradual: &[Gradual],
    cfg: &CutConfig,
    frames_of: &dyn Fn(f64) -> usize,
) -> (Vec<Cut>, Vec<Flash>) {
    let n = scores.len();
    let window = frames_of(BASELINE_WINDOW_S).max(3);
    let flash_max = frames_of(FLASH_MAX_S);
    let mut cuts: Vec<Cut> = Vec::new();
    let mut flashes: Vec<Flash> = Vec::new();
    let mut i = 1;
    while i < n {
        let s = scores[i];
        let inside_gradual = gradual.iter().any(|g| g.start < i && i <= g.end);
        let is_peak = s >= scores[i - 1] && (i + 1 >= n || s >= scores[i + 1]);
        if s < cfg.threshold || inside_gradual || !is_peak {
            i += 1;
            continue;
        }
        let lo = i.saturating_sub(window);
        let hi = (i + window + 1).min(n);
        let mut around: Vec<f32> = (lo.max(1)..hi)
            .filter(|&j| j + 1 < i || j > i + 1)
            .map(|j| scores[j])
            .collect();
        around.sort_by(f32::total_cmp);
        let baseline = around.get(around.len() / 2).copied().unwrap_or(0.0);
        let excess = s - baseline;
        if excess < cfg.threshold || s < cfg.min_ratio * baseline {
            i += 1;
            continue;
        }
        // The picture before the change comes back soon: a flash (or one glitched frame).
        let back = (i + 1..=(i + flash_max).min(n - 1))
            .find(|&j| pair_score(stats, i - 1, j) < (0.35 * s).min(cfg.threshold));
        if let Some(end) = back {
            flashes.push(Flash { start: i, end });
            i = end + 1;
            continue;
        }
        let confidence = 0.5 + 0.5 * ((excess - cfg.threshold) / cfg.threshold).clamp(0.0, 1.0);
        let cut = Cut {
            frame: i,
            score: s,
            confidence,
        };
        match cuts.last_mut() {
            Some(last) if i - last.frame < frames_of(cfg.min_shot_s) => {
                if s > last.score {
                    *last = cut;
                }
            }
            _ => cuts.push(cut),
        }
        i += 1;
    }
    (cuts, flashes)
}

fn blank_kind(stats: &FrameStats, i: usize) -> Option<Blank> {
    let (mean, std) = (stats.mean[i], stats.std[i]);
    if std > BLANK_MAX_STD {
        None
    } else if mean < BLANK_DARK {
        Some(Blank::Black)
    } else if mean > BLANK_BRIGHT {
        Some(Blank::White)
    } else {
        None
    }
}

/// Frames of fade ramp next to a blank frame at `edge`, walking in direction `dir`: the
/// picture's contrast energy (distance from the blank level plus luma std, median of 5 frames
/// so motion and noise do not break it) keeps rising until it levels off, never falls back by
/// more than [`FADE_TOLERANCE`], and no single frame brings more than [`FADE_MAX_JUMP`] of the
/// whole rise (that is a cut out of the blank). Linear, eased and slow fades over moving,
/// textured pictures all pass; a picture that merely drifts next to a blank frame does not.
fn ramp(
    stats: &FrameStats,
    level: f32,
    edge: usize,
    dir: isize,
    max_len: usize,
    plateau: usize,
) -> usize {
    let n = stats.len() as isize;
    let energy = |j: isize| (stats.mean[j as usize] - level).abs() + stats.std[j as usize];
    let smooth = |j: isize| {
        let mut v: Vec<f32> = (j - 2..=j + 2)
            .filter(|&k| (0..n).contains(&k))
            // The blank run itself is not part of the ramp's picture.
            .filter(|&k| (k - edge as isize) * dir > 0)
            .map(energy)
            .collect();
        v.sort_by(f32::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let base = energy(edge as isize);
    let (mut peak, mut rise_at, mut k) = (base, 0usize, 0usize);
    let mut max_jump = 0.0f32;
    loop {
        let j = edge as isize + dir * (k as isize + 1);
        if !(0..n).contains(&j) || k >= max_len || k - rise_at >= plateau {
            break;
        }
        let e = smooth(j);
        if e < peak - FADE_TOLERANCE {
            break;
        }
        max_jump = max_jump.max(energy(j) - energy(j - dir));
        k += 1;
        if e > peak + FADE_STEP + 0.01 * peak {
            peak = e;
            rise_at = k;
        }
    }
    let rise = peak - base;
    if rise < FADE_MIN_RISE || max_jump > FADE_MAX_JUMP * rise {
        return 0;
    }
    rise_at
}

fn fades(stats: &FrameStats, max_len: usize, plateau: usize) -> Vec<Gradual> {
    let n = stats.len();
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        let Some(via) = blank_kind(stats, i) else {
            i += 1;
            continue;
        };
        let b0 = i;
        while i + 1 < n && blank_kind(stats, i + 1) == Some(via) {
            i += 1;
        }
        let b1 = i;
        i += 1;
        let level = if via == Blank::Black { 0.0 } else { 255.0 };
        let (out_len, in_len) = (
            ramp(stats, level, b0, -1, max_len, plateau),
            ramp(stats, level, b1, 1, max_len, plateau),
        );
        let (start, end) = (b0 - out_len, b1 + in_len);
        // Three frames of ramp at least: one dark frame after a bright one is a cut.
        let (fade_out, fade_in) = (out_len >= 3, in_len >= 3);
        let kind = match (fade_out, fade_in) {
            (true, true) => TransitionKind::FadeOutIn,
            (true, false) => TransitionKind::FadeOut,
            (false, true) => TransitionKind::FadeIn,
            (false, false) => continue,
        };
        let (start, end) = match kind {
            TransitionKind::FadeOut => (start, b1),
            TransitionKind::FadeIn => (b0, end),
            _ => (start, end),
        };
        out.push(Gradual {
            kind,
            start,
            end,
            via: Some(via),
        });
    }
    out
}

/// Projection of frame `m` on the line from frame `a` to frame `b`: the blend weight of `b`
/// and the distance from the line relative to the `a`-`b` distance. `None` when `a` and `b`
/// hardly differ (no line to be on).
fn blend(stats: &FrameStats, a: usize, m: usize, b: usize) -> Option<(f64, f64)> {
    // Block means: the pictures of a dissolve may move, and fine texture moving by a pixel
    // would throw every pixel off the line; blocks keep the blend and average the motion out.
    let (pa, pm, pb) = (&stats.blocks[a], &stats.blocks[m], &stats.blocks[b]);
    let (mut dd, mut de, mut ee) = (0f64, 0f64, 0f64);
    for ((&x, &y), &z) in pa.iter().zip(pm).zip(pb) {
        let d = f64::from(z - x);
        let e = f64::from(y - x);
        dd += d * d;
        de += d * e;
        ee += e * e;
    }
    // At least ~10 luma levels RMS of change.
    if dd < 100.0 * pa.len() as f64 {
        return None;
    }
    let alpha = de / dd;
    let residual = ((ee - de * de / dd).max(0.0) / dd).sqrt();
    Some((alpha, residual))
}

fn dissolves(stats: &FrameStats, k: usize) -> Vec<Gradual> {
    let n = stats.len();
    let mut out = Vec::new();
    if n < 2 * k + 1 {
        return out;
    }
    let on_blend_path = |m: usize| {
        // A blend with a blank frame is a fade; the fade detector owns those.
        blank_kind(stats, m - k).is_none()
            && blank_kind(stats, m + k).is_none()
            // A jump inside the window is a cut or a flash, not a blend. (Luma only: a blend of
            // flat colours moves whole regions across histogram bins at once.)
            && (m - k + 1..=m + k).all(|j| stats.moved_diff(j - 1, j) < DISSOLVE_MAX_STEP)
            && pair_score(stats, m - k, m + k) >= DISSOLVE_MIN_CHANGE
            && blend(stats, m - k, m, m + k).is_some_and(|(alpha, residual)| {
                (0.15..=0.85).contains(&alpha) && residual <= DISSOLVE_MAX_RESIDUAL
            })
    };
    let mut m = k;
    while m + k < n {
        if !on_blend_path(m) {
            m += 1;
            continue;
        }
        let first = m;
        while m + 1 + k < n && on_blend_path(m + 1) {
            m += 1;
        }
        let (lo, hi) = (first - k, m + k);
        m += 1;
        // Where the blend weight leaves 0 and reaches 1 between the two pictures.
        // A dissolve's weight grows linearly: fit a line through the frames clearly inside
        // it and take where the line leaves 0 and reaches 1 (motion makes single frames noisy
        // near the ends, where the weight is read against pictures that moved on).
        let alpha = |j: usize| blend(stats, lo, j, hi).map_or(0.0, |(a, _)| a);
        let inside: Vec<(f64, f64)> = (lo..=hi)
            .map(|j| (j as f64, alpha(j)))
            .filter(|(_, a)| (0.15..=0.85).contains(a))
            .collect();
        let fit = line_fit(&inside).filter(|(slope, _)| *slope > 0.0);
        let (start, end) = match fit {
            Some((slope, icept)) => {
                let at =
                    |a: f64| ((a - icept) / slope).round().clamp(lo as f64, hi as f64) as usize;
                (at(0.0), at(1.0))
            }
            None => {
                let start = (lo..=hi).rev().find(|&j| alpha(j) <= 0.05).unwrap_or(lo);
                (
                    start,
                    (start..=hi).find(|&j| alpha(j) >= 0.95).unwrap_or(hi),
                )
            }
        };
        if end > start + 1 {
            out.push(Gradual {
                kind: TransitionKind::Dissolve,
                start,
                end,
                via: None,
            });
        }
    }
    out
}

/// Least-squares line (slope, intercept) through at least 3 points.
fn line_fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (sxx, sxy) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx).powi(2), b + (x - mx) * (y - my))
    });
    (sxx > 0.0).then(|| {
        let slope = sxy / sxx;
        (slope, my - slope * mx)
    })
}

/// Fades first; a dissolve overlapping a fade is dropped (the fade explains the change), and
/// overlapping dissolves become one.
fn merge_overlaps(fades: Vec<Gradual>, dissolves: Vec<Gradual>) -> Vec<Gradual> {
    let mut out = fades;
    for d in dissolves {
        if out
            .iter()
            .any(|g| g.start <= d.end && d.start <= g.end && g.kind != TransitionKind::Dissolve)
        {
            continue;
        }
        match out
            .iter_mut()
            .find(|g| g.start <= d.end && d.start <= g.end)
        {
            Some(g) => {
                g.start = g.start.min(d.start);
                g.end = g.end.max(d.end);
            }
            None => out.push(d),
        }
    }
    out.sort_by_key(|g| g.start);
    out
}

fn shot_spans(n: usize, cuts: &[Cut], gradual: &[Gradual]) -> Vec<ShotSpan> {
    let mut starts: Vec<usize> = cuts.iter().map(|c| c.frame).collect();
    starts.extend(
        gradual
            .iter()
            .filter(|g| matches!(g.kind, TransitionKind::FadeOutIn | TransitionKind::Dissolve))
            .map(|g| (g.start + g.end).div_ceil(2)),
    );
    starts.retain(|&s| s > 0 && s < n);
    starts.sort_unstable();
    starts.dedup();
    let mut spans = Vec::with_capacity(starts.len() + 1);
    let mut prev = 0;
    for s in starts {
        spans.push(ShotSpan {
            start: prev,
            end: s,
        });
        prev = s;
    }
    if n > 0 {
        spans.push(ShotSpan {
            start: prev,
            end: n,
        });
    }
    spans
}
