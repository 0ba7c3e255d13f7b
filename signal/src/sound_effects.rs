//! `sound_effects`: transient and impact events (hits, claps, whooshes' attacks, drops) with
//! their times: a sharp jump of short-time energy over the level just before it.

use media::Audio;
use serde::{Deserialize, Serialize};

use crate::spectrum::{HOP, Spectrogram, db};

/// 5 ms energy frames: fine enough to time an attack within a few milliseconds.
const FRAME: usize = 80;
pub const DEFAULT_RISE_DB: f32 = 15.0;
pub const DEFAULT_MIN_LEVEL_DB: f32 = -35.0;
pub const DEFAULT_MIN_GAP_S: f64 = 0.1;
/// Decay (to 20 dB under the peak) up to which an event is an impact rather than the start
/// of a longer sound.
const IMPACT_MAX_DECAY_S: f64 = 0.25;
/// Level before an event: the 100 ms ending 10 ms before it.
const BEFORE_S: f64 = 0.1;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SoundEffectsConfig {
    /// Rise in dB over the preceding 100 ms that marks an event.
    pub rise_db: f32,
    /// Quietest event peak, dBFS.
    pub min_level_db: f32,
    /// Events closer than this are one event.
    pub min_gap_s: f64,
}

impl Default for SoundEffectsConfig {
    fn default() -> Self {
        Self {
            rise_db: DEFAULT_RISE_DB,
            min_level_db: DEFAULT_MIN_LEVEL_DB,
            min_gap_s: DEFAULT_MIN_GAP_S,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SoundEventKind {
    /// Short and gone within a quarter second: a hit, clap, knock, click.
    Impact,
    /// A sharp attack that rings on: a drop, a slam with reverb, a struck note.
    Onset,
}

/// Result of `sound_effects`.
#[derive(Debug, Clone, Serialize)]
pub struct SoundEffects {
    pub events: Vec<SoundEvent>,
    pub impact_count: usize,
    pub events_per_minute: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SoundEvent {
    /// Attack time, seconds.
    pub time_s: f64,
    pub kind: SoundEventKind,
    /// Peak level of the event, dBFS (mean square over 5 ms).
    pub peak_dbfs: f32,
    /// Rise over the level before it, dB.
    pub rise_db: f32,
    /// Time until 20 dB under the peak, seconds.
    pub decay_s: f64,
    /// Spectral flatness at the peak: near 0 tonal, towards 1 noisy (broadband hit).
    pub noisiness: f32,
}

pub fn sound_effects(audio: &Audio, cfg: &SoundEffectsConfig) -> SoundEffects {
    let rate = f64::from(audio.sample_rate);
    let x = &audio.samples;
    let level: Vec<f32> = x
        .chunks(FRAME)
        .map(|c| db(c.iter().map(|v| v * v).sum::<f32>() / c.len().max(1) as f32))
        .collect();
    let frame_s = FRAME as f64 / rate;
    let before = ((BEFORE_S / frame_s).round() as usize).max(1);
    let min_gap = ((cfg.min_gap_s / frame_s).round() as usize).max(1);
    let spec = Spectrogram::new(x, audio.sample_rate);
    let mut events: Vec<SoundEvent> = Vec::new();
    let mut last_event: Option<usize> = None;
    let mut t = before + 2;
    while t < level.len() {
        // Mean power of the 100 ms ending two frames back, in dB.
        let window = &level[t - 2 - before..t - 2];
        let base =
            db(window.iter().map(|l| 10f32.powf(l / 10.0)).sum::<f32>() / window.len() as f32);
        let rise = level[t] - base;
        let sharp = level[t] - level[t - 2] >= 0.7 * cfg.rise_db;
        let recent = last_event.is_some_and(|e| t - e < min_gap);
        if rise < cfg.rise_db || !sharp || recent {
            t += 1;
            continue;
        }
        let peak_end = (t + 10).min(level.len());
        let (peak_frame, peak) = (t..peak_end)
            .map(|i| (i, level[i]))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((t, level[t]));
        if peak < cfg.min_level_db {
            t += 1;
            continue;
        }
        let decay_frames = (peak_frame..level.len())
            .find(|&i| level[i] < peak - 20.0)
            .map(|i| i - peak_frame);
        let decay_s = decay_frames.map_or((level.len() - peak_frame) as f64 * frame_s, |f| {
            f as f64 * frame_s
        });
        // Attack: first sample, from one frame before the jump, reaching a quarter of the peak.
        let peak_amp = 10f32.powf(peak / 20.0) * std::f32::consts::SQRT_2;
        let from = (t - 1) * FRAME;
        let onset = (from..((t + 1) * FRAME).min(x.len()))
            .find(|&i| x[i].abs() >= 0.25 * peak_amp)
            .unwrap_or(t * FRAME);
        let spec_frame = (peak_frame * FRAME / HOP).min(spec.len().saturating_sub(1));
        events.push(SoundEvent {
            time_s: onset as f64 / rate,
            kind: if decay_s <= IMPACT_MAX_DECAY_S {
                SoundEventKind::Impact
            } else {
                SoundEventKind::Onset
            },
            peak_dbfs: peak,
            rise_db: rise,
            decay_s,
            noisiness: spec.flatness.get(spec_frame).copied().unwrap_or(0.0),
        });
        last_event = Some(t);
        t = peak_frame.max(t) + 1;
    }
    let duration = audio.duration_s();
    SoundEffects {
        impact_count: events
            .iter()
            .filter(|e| e.kind == SoundEventKind::Impact)
            .count(),
        events_per_minute: if duration > 0.0 {
            events.len() as f64 * 60.0 / duration
        } else {
            0.0
        },
        events,
    }
}
