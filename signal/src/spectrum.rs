//! Short-time features of 16 kHz mono audio, computed once and read by the audio analyzers:
//! 32 ms Hann windows every 10 ms, power spectrum, energy, zero crossings, centroid,
//! flatness and spectral flux.

use std::sync::Arc;

use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

pub const WINDOW: usize = 512;
/// 10 ms at 16 kHz: 100 feature frames per second.
pub const HOP: usize = 160;
pub const BINS: usize = WINDOW / 2 + 1;

pub struct Spectrogram {
    /// Feature frames per second.
    pub rate: f64,
    /// Mean square of the samples in each window (linear power, full scale sine = 0.5).
    pub energy: Vec<f32>,
    pub zcr: Vec<f32>,
    /// Spectral centroid, Hz.
    pub centroid: Vec<f32>,
    /// Spectral flatness (geometric / arithmetic mean of the power spectrum), 0 tonal ..= 1 white.
    pub flatness: Vec<f32>,
    /// Flatness within 8 equal bands above 125 Hz, averaged: coloured noise (pink, brown) is
    /// flat within each band though not across them; tones and harmonics stay peaky.
    pub band_flatness: Vec<f32>,
    /// Positive log-magnitude change from the previous frame, summed over bins: onsets.
    pub flux: Vec<f32>,
    /// Bin of the strongest spectral peak above 80 Hz (for pitch stability).
    pub peak_bin: Vec<u16>,
}

impl Spectrogram {
    pub fn new(samples: &[f32], sample_rate: u32) -> Self {
        let frames = if samples.len() >= WINDOW {
            (samples.len() - WINDOW) / HOP + 1
        } else {
            0
        };
        let fft: Arc<dyn rustfft::Fft<f32>> = FftPlanner::new().plan_fft_forward(WINDOW);
        let hann: Vec<f32> = (0..WINDOW)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / WINDOW as f32).cos())
            .collect();
        let bin_hz = sample_rate as f32 / WINDOW as f32;
        let low_bin = (80.0 / bin_hz).ceil() as usize;
        let mut s = Spectrogram {
            rate: f64::from(sample_rate) / HOP as f64,
            energy: Vec::with_capacity(frames),
            zcr: Vec::with_capacity(frames),
            centroid: Vec::with_capacity(frames),
            flatness: Vec::with_capacity(frames),
            band_flatness: Vec::with_capacity(frames),
            flux: Vec::with_capacity(frames),
            peak_bin: Vec::with_capacity(frames),
        };
        let mut buf = vec![Complex::new(0f32, 0f32); WINDOW];
        let mut scratch = vec![Complex::new(0f32, 0f32); fft.get_inplace_scratch_len()];
        let mut prev_log = vec![0f32; BINS];
        for f in 0..frames {
            let chunk = &samples[f * HOP..f * HOP + WINDOW];
            s.energy
                .push(chunk.iter().map(|x| x * x).sum::<f32>() / WINDOW as f32);
            let crossings = chunk
                .windows(2)
                .filter(|w| (w[0] >= 0.0) != (w[1] >= 0.0))
                .count();
            s.zcr.push(crossings as f32 / WINDOW as f32);
            for ((b, &x), &w) in buf.iter_mut().zip(chunk).zip(&hann) {
                *b = Complex::new(x * w, 0.0);
            }
            fft.process_with_scratch(&mut buf, &mut scratch);
            let power: Vec<f32> = buf[..BINS].iter().map(|c| c.norm_sqr() + 1e-12).collect();
            let total: f32 = power.iter().sum();
            let weighted: f32 = power
                .iter()
                .enumerate()
                .map(|(i, p)| i as f32 * bin_hz * p)
                .sum();
            s.centroid.push(weighted / total);
            let log_mean = power.iter().map(|p| p.ln()).sum::<f32>() / BINS as f32;
            s.flatness
                .push((log_mean.exp() / (total / BINS as f32)).clamp(0.0, 1.0));
            s.band_flatness.push(band_flatness(&power));
            let mut flux = 0f32;
            for (prev, p) in prev_log.iter_mut().zip(&power) {
                // log(1 + C*|X|) compresses the dynamics, as in onset-detection practice.
                let l = (1.0 + 1000.0 * p.sqrt()).ln();
                flux += (l - *prev).max(0.0);
                *prev = l;
            }
            s.flux.push(if f == 0 { 0.0 } else { flux });
            let peak = (low_bin..BINS)
                .max_by(|&a, &b| power[a].total_cmp(&power[b]))
                .unwrap_or(0);
            s.peak_bin.push(peak as u16);
        }
        s
    }

    pub fn len(&self) -> usize {
        self.energy.len()
    }
}

/// Power (mean square) to dBFS, where a full-scale square wave is 0 dB.
pub fn db(power: f32) -> f32 {
    10.0 * power.max(1e-12).log10()
}

fn band_flatness(power: &[f32]) -> f32 {
    const BANDS: usize = 8;
    let (lo, hi) = (4, power.len());
    let width = (hi - lo) / BANDS;
    let mut sum = 0.0;
    for b in 0..BANDS {
        let band = &power[lo + b * width..lo + (b + 1) * width];
        let log_mean = band.iter().map(|p| p.ln()).sum::<f32>() / band.len() as f32;
        let mean = band.iter().sum::<f32>() / band.len() as f32;
        sum += (log_mean.exp() / mean).clamp(0.0, 1.0);
    }
    sum / BANDS as f32
}
