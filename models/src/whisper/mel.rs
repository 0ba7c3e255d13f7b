//! Whisper's log-mel front end: 80 Slaney mel bins of a 400-point (25 ms) STFT every 160
//! samples (10 ms) at 16 kHz, log10, clamped to 8 below the maximum, then `(x + 4) / 4`.
//!
//! As Whisper's `transcribe`, the audio gets 30 s of silence appended before the STFT, so the
//! last window is always full and the clamp sees the same maximum whichever window is read.

use std::sync::Arc;

use rustfft::FftPlanner;
use rustfft::num_complex::Complex32;

pub const SAMPLE_RATE: u32 = 16_000;
pub const N_FFT: usize = 400;
pub const HOP: usize = 160;
pub const N_MELS: usize = 80;
/// Mel frames in one 30 s window (the encoder's fixed input).
pub const N_FRAMES: usize = 3000;
/// Samples in one 30 s window.
pub const N_SAMPLES: usize = N_FRAMES * HOP;
const BINS: usize = N_FFT / 2 + 1;

/// `[80, 201]` triangular filters over 0–8 kHz on the Slaney mel scale with Slaney area
/// normalisation (what librosa's `filters.mel(sr=16000, n_fft=400, n_mels=80)` gives and
/// Whisper was trained with), row-major.
pub fn mel_filters() -> Vec<f32> {
    let to_mel = |f: f64| {
        if f >= 1000.0 {
            15.0 + (f / 1000.0).ln() / (6.4f64.ln() / 27.0)
        } else {
            f / (200.0 / 3.0)
        }
    };
    let to_hz = |m: f64| {
        if m >= 15.0 {
            1000.0 * ((6.4f64.ln() / 27.0) * (m - 15.0)).exp()
        } else {
            m * (200.0 / 3.0)
        }
    };
    let top = to_mel(f64::from(SAMPLE_RATE) / 2.0);
    let hz: Vec<f64> = (0..N_MELS + 2)
        .map(|i| to_hz(top * i as f64 / (N_MELS + 1) as f64))
        .collect();
    let mut out = vec![0.0f32; N_MELS * BINS];
    for m in 0..N_MELS {
        let enorm = 2.0 / (hz[m + 2] - hz[m]);
        for b in 0..BINS {
            let f = f64::from(SAMPLE_RATE) / 2.0 * b as f64 / (BINS - 1) as f64;
            let lower = (f - hz[m]) / (hz[m + 1] - hz[m]);
            let upper = (hz[m + 2] - f) / (hz[m + 2] - hz[m + 1]);
            out[m * BINS + b] = (lower.min(upper).max(0.0) * enorm) as f32;
        }
    }
    out
}

/// The normalised log-mel of a whole recording plus the appended 30 s of silence.
pub struct LogMel {
    /// `[80, frames]`, row-major (one row per mel bin).
    data: Vec<f32>,
    frames: usize,
}

impl LogMel {
    /// `samples`: 16 kHz mono.
    pub fn compute(samples: &[f32]) -> Self {
        let len = samples.len() + N_SAMPLES;
        let at = |i: usize| samples.get(i).copied().unwrap_or(0.0);
        // numpy's "reflect" padding (the edge sample is not repeated) of N_FFT / 2 each side.
        let pad = N_FFT / 2;
        let padded = |i: usize| -> f32 {
            if i < pad {
                at(pad - i)
            } else if i - pad < len {
                at(i - pad)
            } else {
                at(2 * len - 2 - (i - pad))
            }
        };
        let frames = len / HOP; // 1 + len / HOP frames, of which Whisper drops the last
        let window: Vec<f32> = (0..N_FFT)
            .map(|n| {
                (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos()) as f32
            })
            .collect();
        let fft: Arc<dyn rustfft::Fft<f32>> = FftPlanner::new().plan_fft_forward(N_FFT);
        let filters = mel_filters();
        let mut data = vec![0.0f32; N_MELS * frames];
        let mut buf = vec![Complex32::default(); N_FFT];
        let mut scratch = vec![Complex32::default(); fft.get_inplace_scratch_len()];
        let mut power = vec![0.0f32; BINS];
        // Frames past the audio and its reflection are all zeros: one value for all of them.
        let silent_from = (samples.len() + pad).div_ceil(HOP) + 1;
        let mut silent_column: Option<Vec<f32>> = None;
        for t in 0..frames {
            if t >= silent_from
                && let Some(col) = &silent_column
            {
                for m in 0..N_MELS {
                    data[m * frames + t] = col[m];
                }
                continue;
            }
            for (n, slot) in buf.iter_mut().enumerate() {
                *slot = Complex32::new(padded(t * HOP + n) * window[n], 0.0);
            }
            fft.process_with_scratch(&mut buf, &mut scratch);
            for (p, c) in power.iter_mut().zip(&buf) {
                *p = c.norm_sqr();
            }
            let mut col = [0.0f32; N_MELS];
            for (m, slot) in col.iter_mut().enumerate() {
                let row = &filters[m * BINS..(m + 1) * BINS];
                let e: f32 = row.iter().zip(&power).map(|(w, p)| w * p).sum();
                *slot = e.max(1e-10).log10();
                data[m * frames + t] = *slot;
            }
            if t >= silent_from {
                silent_column = Some(col.to_vec());
            }
        }
        let max = data.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for v in &mut data {
            *v = (v.max(max - 8.0) + 4.0) / 4.0;
        }
        Self { data, frames }
    }

    /// Frames that hold the recording (without the appended silence).
    pub fn content_frames(&self) -> usize {
        self.frames - N_FRAMES
    }

    /// `[80, 3000]` starting at frame `start` (zeros past the end, as Whisper's pad_or_trim).
    pub fn window(&self, start: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; N_MELS * N_FRAMES];
        let end = (start + N_FRAMES).min(self.frames);
        if start < end {
            for m in 0..N_MELS {
                let row = &self.data[m * self.frames..(m + 1) * self.frames];
                out[m * N_FRAMES..m * N_FRAMES + (end - start)].copy_from_slice(&row[start..end]);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_slaney_triangles() {
        let f = mel_filters();
        // Each filter peaks once and is zero outside its two neighbours' centres; the
        // area normalisation makes the peaks fall as the filters widen above 1 kHz.
        let peak = |m: usize| {
            f[m * BINS..(m + 1) * BINS]
                .iter()
                .copied()
                .fold(0.0f32, f32::max)
        };
        assert!(peak(5) > 0.0 && peak(79) > 0.0);
        assert!(peak(79) < peak(40) && peak(40) < peak(10));
        // The first bin (0 Hz) belongs to no filter; 8 kHz only to the last.
        assert_eq!(f[0], 0.0);
        assert!((0..N_MELS - 1).all(|m| f[m * BINS + BINS - 1] == 0.0));
    }

    #[test]
    fn shape_and_silence() {
        let mel = LogMel::compute(&vec![0.0; 16_000]);
        assert_eq!(mel.content_frames(), 100);
        let w = mel.window(0);
        assert_eq!(w.len(), N_MELS * N_FRAMES);
        // All silence: log10(1e-10) everywhere, normalised to (-10 + 4) / 4.
        assert!(w.iter().all(|v| (v + 1.5).abs() < 1e-6));
    }

    #[test]
    fn a_tone_lands_in_its_mel_bin() {
        let tone: Vec<f32> = (0..16_000)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16_000.0).sin() * 0.5)
            .collect();
        let mel = LogMel::compute(&tone);
        let w = mel.window(0);
        let col = 50;
        let best = (0..N_MELS)
            .max_by(|&a, &b| w[a * N_FRAMES + col].total_cmp(&w[b * N_FRAMES + col]))
            .unwrap();
        // 1 kHz is mel 15 on the Slaney scale; filter m is centred on mel 45.25 * (m + 1) / 81.
        assert!((24..=27).contains(&best), "best bin {best}");
    }
}
