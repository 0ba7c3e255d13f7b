//! `audio_environment`: shares of speech, music, silence and noise over time.
//!
//! Each second is classified from classic speech/music discrimination features (Scheirer &
//! Slaney 1997 and successors): level, the share of low-energy frames (speech pauses between
//! syllables), spectral flatness (noise is flat, tones are peaky) and pitch stability (notes
//! hold a pitch; voices glide). Explainable and cheap; a model-based classifier may replace it.

use std::collections::BTreeMap;

use media::Audio;
use serde::{Deserialize, Serialize};

use crate::spectrum::{Spectrogram, db};

pub const DEFAULT_WINDOW_S: f64 = 1.0;
/// Below this level (dBFS) a window is silence.
pub const DEFAULT_SILENCE_DB: f32 = -50.0;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnvironmentConfig {
    pub window_s: f64,
    pub silence_db: f32,
}

impl Default for EnvironmentConfig {
    fn default() -> Self {
        Self {
            window_s: DEFAULT_WINDOW_S,
            silence_db: DEFAULT_SILENCE_DB,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SoundClass {
    Speech,
    Music,
    Silence,
    Noise,
}

/// Result of `audio_environment`.
#[derive(Debug, Clone, Serialize)]
pub struct AudioEnvironment {
    /// Share of the duration per class; all four present, summing to 1.
    pub shares: BTreeMap<SoundClass, f64>,
    pub dominant: Option<SoundClass>,
    /// Runs of one class.
    pub timeline: Vec<EnvSegment>,
    pub window_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvSegment {
    pub start_s: f64,
    pub end_s: f64,
    pub class: SoundClass,
}

/// The features behind one window's class, kept for tests and tuning.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowFeatures {
    /// Median frame level, dBFS.
    pub level_db: f32,
    pub low_energy: f32,
    pub flatness: f32,
    pub band_flatness: f32,
    pub pitch_stability: f32,
}

pub(crate) fn window_features(
    spec: &Spectrogram,
    lo: usize,
    hi: usize,
    silence_db: f32,
) -> WindowFeatures {
    let energy = &spec.energy[lo..hi];
    let mean = energy.iter().sum::<f32>() / energy.len().max(1) as f32;
    let low_energy =
        energy.iter().filter(|&&e| e < 0.5 * mean).count() as f32 / energy.len().max(1) as f32;
    let loud: Vec<usize> = (lo..hi)
        .filter(|&i| db(spec.energy[i]) > silence_db)
        .collect();
    let flatness = loud.iter().map(|&i| spec.flatness[i]).sum::<f32>() / loud.len().max(1) as f32;
    let band_flatness =
        loud.iter().map(|&i| spec.band_flatness[i]).sum::<f32>() / loud.len().max(1) as f32;
    let steady = loud
        .windows(2)
        .filter(|w| w[1] == w[0] + 1 && spec.peak_bin[w[0]].abs_diff(spec.peak_bin[w[1]]) <= 1)
        .count();
    let pitch_stability = steady as f32 / loud.len().saturating_sub(1).max(1) as f32;
    // The median, not the mean: a sound starting in the last frames of a silent window must
    // not make the whole window loud.
    let mut sorted = energy.to_vec();
    sorted.sort_by(f32::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    WindowFeatures {
        level_db: db(median),
        low_energy,
        flatness,
        band_flatness,
        pitch_stability,
    }
}

/// Band flatness of steady noise (white, pink, brown read 0.5 and up; voiced speech and
/// music well below).
const BAND_NOISE: f32 = 0.55;

pub(crate) fn classify(f: &WindowFeatures, silence_db: f32) -> SoundClass {
    if f.level_db < silence_db {
        SoundClass::Silence
    } else if f.flatness >= 0.25 && f.pitch_stability < 0.5 {
        SoundClass::Noise
    } else if f.band_flatness >= BAND_NOISE && f.low_energy < 0.25 {
        // Coloured noise: flat within bands and without pauses. (Its tilted spectrum keeps the
        // strongest bin in place, so pitch stability says nothing here.)
        SoundClass::Noise
    } else if f.pitch_stability >= 0.7 && f.low_energy < 0.3 {
        // Held notes without pauses.
        SoundClass::Music
    } else if f.low_energy >= 0.2 || f.pitch_stability < 0.5 {
        SoundClass::Speech
    } else {
        SoundClass::Music
    }
}

/// Class of each window: (start_s, end_s, class).
pub(crate) fn classify_windows(
    spec: &Spectrogram,
    cfg: &EnvironmentConfig,
) -> Vec<(f64, f64, SoundClass)> {
    let per_window = ((cfg.window_s.max(0.1) * spec.rate).round() as usize).max(1);
    let mut out = Vec::new();
    let mut lo = 0;
    while lo < spec.len() {
        let hi = (lo + per_window).min(spec.len());
        // A last scrap under half a window joins the previous one.
        if hi - lo < per_window / 2 && !out.is_empty() {
            break;
        }
        let features = window_features(spec, lo, hi, cfg.silence_db);
        let class = classify(&features, cfg.silence_db);
        out.push((lo as f64 / spec.rate, hi as f64 / spec.rate, class));
        lo = hi;
    }
    out
}

pub fn audio_environment(audio: &Audio, cfg: &EnvironmentConfig) -> AudioEnvironment {
    let spec = Spectrogram::new(&audio.samples, audio.sample_rate);
    from_windows(
        &classify_windows(&spec, cfg),
        audio.duration_s(),
        cfg.window_s,
    )
}

pub(crate) fn from_windows(
    windows: &[(f64, f64, SoundClass)],
    duration_s: f64,
    window_s: f64,
) -> AudioEnvironment {
    let mut timeline: Vec<EnvSegment> = Vec::new();
    for &(start_s, end_s, class) in windows {
        match timeline.last_mut() {
            Some(last) if last.class == class => last.end_s = end_s,
            _ => timeline.push(EnvSegment {
                start_s,
                end_s,
                class,
            }),
        }
    }
    if let Some(last) = timeline.last_mut() {
        last.end_s = last.end_s.max(duration_s);
    }
    let total: f64 = timeline.iter().map(|s| s.end_s - s.start_s).sum();
    let mut shares: BTreeMap<SoundClass, f64> = [
        SoundClass::Speech,
        SoundClass::Music,
        SoundClass::Silence,
        SoundClass::Noise,
    ]
    .into_iter()
    .map(|c| (c, 0.0))
    .collect();
    for s in &timeline {
        *shares.entry(s.class).or_default() += (s.end_s - s.start_s) / total.max(1e-9);
    }
    let dominant = if total > 0.0 {
        shares
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(c, _)| *c)
    } else {
        None
    };
    AudioEnvironment {
        shares,
        dominant,
        timeline,
        window_s,
    }
}
