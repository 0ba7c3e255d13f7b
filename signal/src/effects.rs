//! `visual_effects`: fades and dissolves, flashes, freeze frames, rapid zooms and slow motion
//! (repeated frames), each with its times.

use std::collections::BTreeMap;

use media::Frames;
use serde::{Deserialize, Serialize};

use crate::camera::motion_series;
use crate::cuts::frames_duration;
use crate::pixels::FrameStats;
use crate::shots::{self, CutConfig, TransitionKind};

/// Luma difference (0..=255) under which two frames are the same picture.
const SAME_FRAME: f32 = 0.35;
/// Luma difference above which a frame pair shows motion.
const MOVING_FRAME: f32 = 1.0;
pub const DEFAULT_FLASH_RISE: f32 = 40.0;
pub const DEFAULT_FREEZE_MIN_S: f64 = 0.4;
pub const DEFAULT_RAPID_ZOOM: f64 = 0.5;
const FLASH_MAX_S: f64 = 0.3;
const SLOW_MOTION_WINDOW_S: f64 = 1.0;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EffectsConfig {
    pub cuts: CutConfig,
    /// Rise of mean luma (0..=255) in one frame that starts a flash.
    pub flash_rise: f32,
    /// Shortest run of identical frames inside a moving shot that is a freeze frame.
    pub freeze_min_s: f64,
    /// Zoom rate (relative scale change per second) of a rapid zoom.
    pub rapid_zoom: f64,
}

impl Default for EffectsConfig {
    fn default() -> Self {
        Self {
            cuts: CutConfig::default(),
            flash_rise: DEFAULT_FLASH_RISE,
            freeze_min_s: DEFAULT_FREEZE_MIN_S,
            rapid_zoom: DEFAULT_RAPID_ZOOM,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectKind {
    FadeIn,
    FadeOut,
    FadeOutIn,
    Dissolve,
    Flash,
    FreezeFrame,
    RapidZoomIn,
    RapidZoomOut,
    SlowMotion,
}

/// Result of `visual_effects`.
#[derive(Debug, Clone, Serialize)]
pub struct VisualEffects {
    /// In time order.
    pub events: Vec<EffectEvent>,
    pub counts: BTreeMap<EffectKind, usize>,
    /// Effects per minute of video.
    pub effects_per_minute: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EffectEvent {
    pub kind: EffectKind,
    pub start_s: f64,
    pub end_s: f64,
    /// Size of the effect: luma rise for a flash (0..=255), zoom rate per second for a zoom,
    /// share of repeated frames for slow motion; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strength: Option<f64>,
}

pub fn visual_effects(frames: &Frames, cfg: &EffectsConfig) -> VisualEffects {
    let stats = FrameStats::new(frames);
    let b = shots::detect(&stats, &frames.times, &cfg.cuts);
    let fps = shots::frame_rate(&frames.times);
    let t = |i: usize| {
        frames
            .times
            .get(i)
            .copied()
            .unwrap_or_else(|| frames_duration(frames))
    };
    let mut events = Vec::new();

    for g in &b.gradual {
        let kind = match g.kind {
            TransitionKind::FadeIn => EffectKind::FadeIn,
            TransitionKind::FadeOut => EffectKind::FadeOut,
            TransitionKind::FadeOutIn => EffectKind::FadeOutIn,
            TransitionKind::Dissolve => EffectKind::Dissolve,
        };
        events.push(EffectEvent {
            kind,
            start_s: t(g.start),
            end_s: t(g.end),
            strength: None,
        });
    }

    // Flashes: a jump up in brightness that comes back down soon.
    let flash_max = ((FLASH_MAX_S * fps).round() as usize).max(1);
    let n = stats.len();
    let mut i = 1;
    while i < n {
        let rise = stats.mean[i] - stats.mean[i - 1];
        if rise >= cfg.flash_rise {
            let back = (i + 1..(i + 1 + flash_max).min(n))
                .find(|&j| stats.mean[j] - stats.mean[i - 1] < cfg.flash_rise * 0.5);
            if let Some(end) = back {
                events.push(EffectEvent {
                    kind: EffectKind::Flash,
                    start_s: t(i),
                    end_s: t(end),
                    strength: Some(f64::from(rise)),
                });
                i = end;
            }
        }
        i += 1;
    }

    // Freeze frames and slow motion: repeated pictures inside a shot that otherwise moves.
    let diffs: Vec<f32> = (0..n)
        .map(|i| {
            if i == 0 {
                0.0
            } else {
                stats.luma_diff(i - 1, i)
            }
        })
        .collect();
    let freeze_min = ((cfg.freeze_min_s * fps).round() as usize).max(2);
    let window = ((SLOW_MOTION_WINDOW_S * fps).round() as usize).max(4);
    for span in &b.shots {
        let pairs = span.start + 1..span.end;
        let moving = pairs.clone().filter(|&i| diffs[i] > MOVING_FRAME).count();
        if moving * 4 < pairs.len() {
            continue; // a still shot repeats frames by nature
        }
        let mut i = span.start + 1;
        while i < span.end {
            if diffs[i] >= SAME_FRAME {
                i += 1;
                continue;
            }
            let start = i - 1;
            while i < span.end && diffs[i] < SAME_FRAME {
                i += 1;
            }
            if i - 1 - start >= freeze_min {
                events.push(EffectEvent {
                    kind: EffectKind::FreezeFrame,
                    start_s: t(start),
                    end_s: t(i - 1),
                    strength: None,
                });
            }
        }
        let mut w = span.start + 1;
        while w + window <= span.end {
            let same = (w..w + window).filter(|&i| diffs[i] < SAME_FRAME).count();
            let moved = (w..w + window).filter(|&i| diffs[i] > MOVING_FRAME).count();
            let share = same as f64 / window as f64;
            // Slowed-down footage repeats frames in short runs (2x: every other frame); a long
            // run is a freeze frame instead.
            let longest_run = (w..w + window)
                .fold((0, 0), |(run, best), i| {
                    let run = if diffs[i] < SAME_FRAME { run + 1 } else { 0 };
                    (run, best.max(run))
                })
                .1;
            if (0.3..=0.8).contains(&share) && longest_run <= 3 && same + moved >= window * 9 / 10 {
                match events.last_mut() {
                    Some(e) if e.kind == EffectKind::SlowMotion && e.end_s >= t(w) => {
                        e.end_s = t(w + window)
                    }
                    _ => events.push(EffectEvent {
                        kind: EffectKind::SlowMotion,
                        start_s: t(w),
                        end_s: t(w + window),
                        strength: Some(share),
                    }),
                }
            }
            w += window / 2;
        }
    }

    // Rapid zooms: two or more consecutive motion estimates zooming fast the same way.
    let series = motion_series(frames, &stats, &b);
    let mut k = 0;
    while k < series.len() {
        let z = series[k].zoom;
        if !series[k].reliable || z.abs() < cfg.rapid_zoom {
            k += 1;
            continue;
        }
        let start = k;
        while k + 1 < series.len()
            && series[k + 1].shot == series[start].shot
            && series[k + 1].reliable
            && series[k + 1].zoom.abs() >= cfg.rapid_zoom
            && series[k + 1].zoom.signum() == z.signum()
        {
            k += 1;
        }
        if k > start {
            let mean =
                series[start..=k].iter().map(|p| p.zoom).sum::<f64>() / (k + 1 - start) as f64;
            events.push(EffectEvent {
                kind: if z > 0.0 {
                    EffectKind::RapidZoomIn
                } else {
                    EffectKind::RapidZoomOut
                },
                start_s: series[start].start_s,
                end_s: series[k].end_s,
                strength: Some(mean),
            });
        }
        k += 1;
    }

    events.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    let mut counts = BTreeMap::new();
    for e in &events {
        *counts.entry(e.kind).or_insert(0) += 1;
    }
    let duration = frames_duration(frames);
    VisualEffects {
        effects_per_minute: if duration > 0.0 {
            events.len() as f64 * 60.0 / duration
        } else {
            0.0
        },
        events,
        counts,
    }
}
