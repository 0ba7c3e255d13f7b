//! `audio_analysis`: EBU R128 integrated loudness and loudness range (crate `ebur128`, a
//! port of libebur128), RMS, sample and true peak, spectral centroid, and the tempo where
//! music is present (autocorrelation of the onset envelope, with a prior around 120 BPM as
//! in librosa's beat tracker).

use ebur128::{EbuR128, Mode};
use media::Audio;
use serde::{Deserialize, Serialize};

use crate::environment::{EnvironmentConfig, SoundClass, classify_windows};
use crate::spectrum::{Spectrogram, db};

pub const DEFAULT_MIN_BPM: f64 = 50.0;
pub const DEFAULT_MAX_BPM: f64 = 200.0;
/// Share of music windows from which a tempo is reported.
pub const DEFAULT_MIN_MUSIC_SHARE: f64 = 0.2;
/// Centre and width (octaves) of the tempo prior.
const PRIOR_BPM: f64 = 120.0;
const PRIOR_OCTAVES: f64 = 1.0;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AudioAnalysisConfig {
    pub min_bpm: f64,
    pub max_bpm: f64,
    pub min_music_share: f64,
    pub environment: EnvironmentConfig,
}

impl Default for AudioAnalysisConfig {
    fn default() -> Self {
        Self {
            min_bpm: DEFAULT_MIN_BPM,
            max_bpm: DEFAULT_MAX_BPM,
            min_music_share: DEFAULT_MIN_MUSIC_SHARE,
            environment: EnvironmentConfig::default(),
        }
    }
}

/// Result of `audio_analysis`.
#[derive(Debug, Clone, Serialize)]
pub struct AudioAnalysis {
    /// EBU R128 integrated loudness, LUFS; absent for digital silence.
    pub integrated_lufs: Option<f64>,
    /// EBU R128 loudness range, LU.
    pub loudness_range_lu: Option<f64>,
    /// RMS level, dBFS (a full-scale sine is -3 dBFS).
    pub rms_dbfs: f64,
    /// Highest sample, dBFS.
    pub sample_peak_dbfs: f64,
    /// Highest inter-sample peak (4x oversampled), dBTP.
    pub true_peak_dbtp: f64,
    /// Mean spectral centroid of non-silent frames, Hz (brightness of the sound).
    pub spectral_centroid_hz: Option<f64>,
    /// Tempo, when music is present and a beat is found.
    pub tempo_bpm: Option<f64>,
    /// Normalised autocorrelation at the chosen beat period, 0..1.
    pub tempo_confidence: f64,
    /// Share of the audio classified as music (see `audio_environment`).
    pub music_share: f64,
    pub duration_s: f64,
    pub sample_rate: u32,
}

fn to_db(linear: f64) -> f64 {
    20.0 * linear.max(1e-10).log10()
}

/// EBU R128 measurements: (integrated LUFS, range LU, sample peak, true peak), linear peaks.
fn r128(audio: &Audio) -> (Option<f64>, Option<f64>, f64, f64) {
    let Ok(mut meter) = EbuR128::new(
        1,
        audio.sample_rate,
        Mode::I | Mode::LRA | Mode::SAMPLE_PEAK | Mode::TRUE_PEAK,
    ) else {
        return (None, None, 0.0, 0.0);
    };
    if meter.add_frames_f32(&audio.samples).is_err() {
        return (None, None, 0.0, 0.0);
    }
    let finite = |v: Result<f64, _>| v.ok().filter(|x: &f64| x.is_finite());
    (
        finite(meter.loudness_global()),
        finite(meter.loudness_range()),
        meter.sample_peak(0).unwrap_or(0.0),
        meter.true_peak(0).unwrap_or(0.0),
    )
}

/// Tempo (BPM) and its confidence from the onset envelope.
pub(crate) fn tempo(spec: &Spectrogram, min_bpm: f64, max_bpm: f64) -> (Option<f64>, f64) {
    let n = spec.flux.len();
    // Remove the slow trend so the autocorrelation sees beats, not loudness changes.
    let half = (spec.rate * 0.25) as usize;
    let env: Vec<f64> = (0..n)
        .map(|i| {
            let lo = i.saturating_sub(half);
            let hi = (i + half + 1).min(n);
            let local =
                spec.flux[lo..hi].iter().map(|&v| f64::from(v)).sum::<f64>() / (hi - lo) as f64;
            (f64::from(spec.flux[i]) - local).max(0.0)
        })
        .collect();
    let acf = |lag: usize| -> f64 { env.iter().zip(&env[lag..]).map(|(a, b)| a * b).sum::<f64>() };
    let zero = acf(0);
    let min_lag = (60.0 / max_bpm * spec.rate).floor().max(1.0) as usize;
    let max_lag = (60.0 / min_bpm * spec.rate).ceil() as usize;
    if zero <= 0.0 || min_lag >= max_lag || n < 2 * max_lag {
        return (None, 0.0);
    }
    let values: Vec<f64> = (min_lag - 1..=max_lag + 1).map(|l| acf(l) / zero).collect();
    let prior = |lag: f64| {
        let octaves = (60.0 * spec.rate / lag / PRIOR_BPM).log2() / PRIOR_OCTAVES;
        (-0.5 * octaves * octaves).exp()
    };
    let best = (1..values.len() - 1)
        .max_by(|&a, &b| {
            let (la, lb) = ((min_lag - 1 + a) as f64, (min_lag - 1 + b) as f64);
            (values[a] * prior(la)).total_cmp(&(values[b] * prior(lb)))
        })
        .unwrap_or(1);
    let (l, m, r) = (values[best - 1], values[best], values[best + 1]);
    let denom = l - 2.0 * m + r;
    let offset = if denom < 0.0 {
        (0.5 * (l - r) / denom).clamp(-0.5, 0.5)
    } else {
        0.0
    };
    let lag = (min_lag - 1 + best) as f64 + offset;
    let bpm = 60.0 * spec.rate / lag;
    (Some((bpm * 10.0).round() / 10.0), m.clamp(0.0, 1.0))
}

pub fn audio_analysis(audio: &Audio, cfg: &AudioAnalysisConfig) -> AudioAnalysis {
    let (integrated, range, sample_peak, true_peak) = r128(audio);
    let n = audio.samples.len().max(1) as f64;
    let mean_square = audio
        .samples
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        / n;
    let spec = Spectrogram::new(&audio.samples, audio.sample_rate);
    let voiced: Vec<f64> = (0..spec.len())
        .filter(|&i| db(spec.energy[i]) > cfg.environment.silence_db)
        .map(|i| f64::from(spec.centroid[i]))
        .collect();
    let windows = classify_windows(&spec, &cfg.environment);
    let music_share = windows.iter().filter(|w| w.2 == SoundClass::Music).count() as f64
        / windows.len().max(1) as f64;
    let (bpm, confidence) = tempo(&spec, cfg.min_bpm, cfg.max_bpm);
    AudioAnalysis {
        integrated_lufs: integrated,
        loudness_range_lu: range,
        rms_dbfs: 10.0 * mean_square.max(1e-20).log10(),
        sample_peak_dbfs: to_db(sample_peak),
        true_peak_dbtp: to_db(true_peak),
        spectral_centroid_hz: (!voiced.is_empty())
            .then(|| voiced.iter().sum::<f64>() / voiced.len() as f64),
        tempo_bpm: bpm.filter(|_| music_share >= cfg.min_music_share),
        tempo_confidence: confidence,
        music_share,
        duration_s: audio.duration_s(),
        sample_rate: audio.sample_rate,
    }
}
