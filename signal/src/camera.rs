//! `camera_analysis`: per segment camera motion (static, pan, tilt, zoom, shake) from the
//! global motion between frames about a tenth of a second apart, within each shot.

use std::collections::BTreeMap;

use media::Frames;
use serde::{Deserialize, Serialize};

use crate::cuts::span_times;
use crate::motion;
use crate::pixels::FrameStats;
use crate::shots::{self, Boundaries, CutConfig};

/// Frames compared are this far apart: enough displacement to measure a slow pan at 160 px.
const PAIR_SPACING_S: f64 = 0.1;
pub const DEFAULT_PAN_MIN: f64 = 0.04;
pub const DEFAULT_ZOOM_MIN: f64 = 0.04;
pub const DEFAULT_SHAKE_MIN: f64 = 0.12;
pub const DEFAULT_MIN_SEGMENT_S: f64 = 0.5;
/// Moving-average window for the motion series, seconds.
const SMOOTH_S: f64 = 0.5;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CameraConfig {
    pub cuts: CutConfig,
    /// Pan/tilt speed (frame widths or heights per second) below which the camera is still.
    pub pan_min: f64,
    /// Zoom rate (relative scale change per second) below which there is no zoom.
    pub zoom_min: f64,
    /// Jitter (frame widths per second, around the smoothed motion) that counts as shake.
    pub shake_min: f64,
    /// Shorter segments are merged into their neighbour.
    pub min_segment_s: f64,
}

impl Default for CameraConfig {
    fn default() -> Self {
        Self {
            cuts: CutConfig::default(),
            pan_min: DEFAULT_PAN_MIN,
            zoom_min: DEFAULT_ZOOM_MIN,
            shake_min: DEFAULT_SHAKE_MIN,
            min_segment_s: DEFAULT_MIN_SEGMENT_S,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraMotion {
    Static,
    PanLeft,
    PanRight,
    TiltUp,
    TiltDown,
    ZoomIn,
    ZoomOut,
    Shake,
}

/// Result of `camera_analysis`.
#[derive(Debug, Clone, Serialize)]
pub struct CameraAnalysis {
    pub segments: Vec<CameraSegment>,
    /// Share of the analysed time per motion.
    pub shares: BTreeMap<CameraMotion, f64>,
    /// The motion with the largest share.
    pub dominant: Option<CameraMotion>,
    /// Share of time the camera moves (not static).
    pub moving_share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CameraSegment {
    pub start_s: f64,
    pub end_s: f64,
    pub shot: usize,
    pub motion: CameraMotion,
    /// Mean camera pan, frame widths per second, + = right.
    pub pan_speed: f64,
    /// Mean camera tilt, frame heights per second, + = up.
    pub tilt_speed: f64,
    /// Mean zoom rate per second, + = in.
    pub zoom_rate: f64,
}

/// Motion of the content between two frames of one shot, normalised per second.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PairMotion {
    pub shot: usize,
    pub start_s: f64,
    pub end_s: f64,
    /// Content velocity, frame widths/heights per second (+ = right/down).
    pub vx: f64,
    pub vy: f64,
    /// Relative scale change per second (+ = content grows).
    pub zoom: f64,
    pub reliable: bool,
}

/// Global motion of consecutive frame pairs inside shots (never across a cut or transition).
pub(crate) fn motion_series(
    frames: &Frames,
    stats: &FrameStats,
    b: &Boundaries,
) -> Vec<PairMotion> {
    let fps = shots::frame_rate(&frames.times);
    let k = ((PAIR_SPACING_S * fps).round() as usize).max(1);
    let (w, h) = (stats.width, stats.height);
    let mut out = Vec::new();
    for (shot, span) in b.shots.iter().enumerate() {
        let mut i = span.start;
        while i + k < span.end {
            let j = i + k;
            if !(i..=j).any(|f| b.in_transition(f)) {
                let m = motion::estimate(&stats.luma[i], &stats.luma[j], w, h);
                let dt = (frames.times[j] - frames.times[i]).max(1e-6);
                out.push(PairMotion {
                    shot,
                    start_s: frames.times[i],
                    end_s: frames.times[j],
                    vx: m.dx / w as f64 / dt,
                    vy: m.dy / h as f64 / dt,
                    zoom: m.zoom / dt,
                    reliable: m.reliable,
                });
            }
            i = j;
        }
    }
    out
}

fn classify(vx: f64, vy: f64, zoom: f64, cfg: &CameraConfig) -> CameraMotion {
    let shift = vx.abs().max(vy.abs());
    // A zoom moves the frame edges by half the frame per unit of scale change.
    if zoom.abs() >= cfg.zoom_min && zoom.abs() * 0.5 >= shift * 0.5 {
        return if zoom > 0.0 {
            CameraMotion::ZoomIn
        } else {
            CameraMotion::ZoomOut
        };
    }
    if shift < cfg.pan_min {
        CameraMotion::Static
    } else if vx.abs() >= vy.abs() {
        // Content moving left means the camera turns right.
        if vx < 0.0 {
            CameraMotion::PanRight
        } else {
            CameraMotion::PanLeft
        }
    } else if vy > 0.0 {
        CameraMotion::TiltUp
    } else {
        CameraMotion::TiltDown
    }
}

fn moving_average(values: &[f64], half: usize) -> Vec<f64> {
    (0..values.len())
        .map(|i| {
            let lo = i.saturating_sub(half);
            let hi = (i + half + 1).min(values.len());
            values[lo..hi].iter().sum::<f64>() / (hi - lo) as f64
        })
        .collect()
}

pub fn camera_analysis(frames: &Frames, cfg: &CameraConfig) -> CameraAnalysis {
    let stats = FrameStats::new(frames);
    let b = shots::detect(&stats, &frames.times, &cfg.cuts);
    let series = motion_series(frames, &stats, &b);
    let half = ((SMOOTH_S / PAIR_SPACING_S / 2.0).round() as usize).max(1);
    let mut segments: Vec<CameraSegment> = Vec::new();
    for (shot, span) in b.shots.iter().enumerate() {
        let pairs: Vec<&PairMotion> = series.iter().filter(|p| p.shot == shot).collect();
        let (shot_start, shot_end) = span_times(frames, *span);
        if pairs.is_empty() {
            segments.push(CameraSegment {
                start_s: shot_start,
                end_s: shot_end,
                shot,
                motion: CameraMotion::Static,
                pan_speed: 0.0,
                tilt_speed: 0.0,
                zoom_rate: 0.0,
            });
            continue;
        }
        // Flat pictures (no texture) give no motion: count them as still.
        let get = |f: fn(&PairMotion) -> f64| -> Vec<f64> {
            pairs
                .iter()
                .map(|p| if p.reliable { f(p) } else { 0.0 })
                .collect()
        };
        let (vx, vy, zoom) = (get(|p| p.vx), get(|p| p.vy), get(|p| p.zoom));
        let (sx, sy) = (moving_average(&vx, half), moving_average(&vy, half));
        let sz = moving_average(&zoom, half);
        let jitter: Vec<f64> = (0..pairs.len())
            .map(|i| (vx[i] - sx[i]).hypot(vy[i] - sy[i]))
            .collect();
        let jitter = moving_average(&jitter, half * 2);
        for (i, p) in pairs.iter().enumerate() {
            let motion = if jitter[i] >= cfg.shake_min {
                CameraMotion::Shake
            } else {
                classify(sx[i], sy[i], sz[i], cfg)
            };
            // Segments tile the shot: the first starts at the shot start, the last ends at its end.
            let start_s = if i == 0 { shot_start } else { p.start_s };
            let end_s = if i + 1 == pairs.len() {
                shot_end
            } else {
                p.end_s
            };
            match segments.last_mut() {
                Some(last) if last.shot == shot && last.motion == motion => {
                    let (a, b) = (last.end_s - last.start_s, end_s - start_s);
                    let blend = |x: f64, y: f64| (x * a + y * b) / (a + b).max(1e-9);
                    last.pan_speed = blend(last.pan_speed, -sx[i]);
                    last.tilt_speed = blend(last.tilt_speed, sy[i]);
                    last.zoom_rate = blend(last.zoom_rate, sz[i]);
                    last.end_s = end_s;
                }
                _ => segments.push(CameraSegment {
                    start_s,
                    end_s,
                    shot,
                    motion,
                    pan_speed: -sx[i],
                    tilt_speed: sy[i],
                    zoom_rate: sz[i],
                }),
            }
        }
    }
    let segments = absorb_short(segments, cfg.min_segment_s);
    summarize(segments)
}

/// Merges segments shorter than `min_s` into the previous segment of the same shot (or the
/// next one), so a single noisy estimate does not become its own segment.
fn absorb_short(segments: Vec<CameraSegment>, min_s: f64) -> Vec<CameraSegment> {
    let mut out: Vec<CameraSegment> = Vec::new();
    let mut pending: Option<CameraSegment> = None;
    for seg in segments {
        let mut seg = seg;
        if let Some(p) = pending.take() {
            if p.shot == seg.shot {
                seg.start_s = p.start_s;
            } else {
                out.push(p);
            }
        }
        let short = seg.end_s - seg.start_s < min_s;
        match out.last_mut() {
            Some(last) if short && last.shot == seg.shot => last.end_s = seg.end_s,
            _ if short => pending = Some(seg),
            _ => out.push(seg),
        }
    }
    out.extend(pending);
    // Neighbours that now carry the same motion become one.
    let mut merged: Vec<CameraSegment> = Vec::new();
    for seg in out {
        match merged.last_mut() {
            Some(last) if last.shot == seg.shot && last.motion == seg.motion => {
                last.end_s = seg.end_s
            }
            _ => merged.push(seg),
        }
    }
    merged
}

fn summarize(segments: Vec<CameraSegment>) -> CameraAnalysis {
    let total: f64 = segments.iter().map(|s| s.end_s - s.start_s).sum();
    let mut shares: BTreeMap<CameraMotion, f64> = BTreeMap::new();
    for s in &segments {
        *shares.entry(s.motion).or_default() += (s.end_s - s.start_s) / total.max(1e-9);
    }
    let dominant = shares
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(m, _)| *m);
    let moving_share = 1.0 - shares.get(&CameraMotion::Static).copied().unwrap_or(0.0);
    CameraAnalysis {
        segments,
        shares,
        dominant,
        moving_share: if total > 0.0 { moving_share } else { 0.0 },
    }
}
