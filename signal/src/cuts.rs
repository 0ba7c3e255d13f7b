//! `cut_analysis`: hard cuts with confidence, the shot list, and cuts per minute.

use media::Frames;
use serde::Serialize;

use crate::pixels::FrameStats;
use crate::shots::{self, Boundaries, CutConfig, ShotSpan};

/// Result of `cut_analysis`.
#[derive(Debug, Clone, Serialize)]
pub struct CutAnalysis {
    /// Hard cuts in time order.
    pub cuts: Vec<CutEvent>,
    /// Shots between cuts and gradual transitions, covering the whole video.
    pub shots: Vec<Shot>,
    pub cut_count: usize,
    pub shot_count: usize,
    /// Hard cuts per minute of video.
    pub cuts_per_minute: f64,
    pub average_shot_s: f64,
    pub duration_s: f64,
    /// Frames examined and their rate.
    pub frames_analyzed: usize,
    pub sample_fps: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CutEvent {
    /// Time of the first frame of the new shot, seconds.
    pub time_s: f64,
    /// 0.5 (just past the threshold) ..= 1 (twice the threshold or more).
    pub confidence: f32,
    /// Change score of the cut frame (0..1: half colour histogram, half luma difference).
    pub score: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Shot {
    pub index: usize,
    pub start_s: f64,
    pub end_s: f64,
    pub duration_s: f64,
}

/// Duration covered by frames: the last frame lasts one frame interval.
pub fn frames_duration(frames: &Frames) -> f64 {
    match frames.times.last() {
        Some(last) => last + 1.0 / shots::frame_rate(&frames.times),
        None => 0.0,
    }
}

/// Start/end time of a shot span.
pub fn span_times(frames: &Frames, span: ShotSpan) -> (f64, f64) {
    let start = frames.times.get(span.start).copied().unwrap_or(0.0);
    let end = frames
        .times
        .get(span.end)
        .copied()
        .unwrap_or_else(|| frames_duration(frames));
    (start, end)
}

pub fn shot_list(frames: &Frames, b: &Boundaries) -> Vec<Shot> {
    b.shots
        .iter()
        .enumerate()
        .map(|(index, &span)| {
            let (start_s, end_s) = span_times(frames, span);
            Shot {
                index,
                start_s,
                end_s,
                duration_s: end_s - start_s,
            }
        })
        .collect()
}

pub fn cut_analysis(frames: &Frames, cfg: &CutConfig) -> CutAnalysis {
    let stats = FrameStats::new(frames);
    let b = shots::detect(&stats, &frames.times, cfg);
    from_boundaries(frames, &b)
}

pub(crate) fn from_boundaries(frames: &Frames, b: &Boundaries) -> CutAnalysis {
    let duration_s = frames_duration(frames);
    let cuts: Vec<CutEvent> = b
        .cuts
        .iter()
        .map(|c| CutEvent {
            time_s: frames.times[c.frame],
            confidence: c.confidence,
            score: c.score,
        })
        .collect();
    let shots = shot_list(frames, b);
    CutAnalysis {
        cut_count: cuts.len(),
        shot_count: shots.len(),
        cuts_per_minute: if duration_s > 0.0 {
            cuts.len() as f64 * 60.0 / duration_s
        } else {
            0.0
        },
        average_shot_s: if shots.is_empty() {
            0.0
        } else {
            duration_s / shots.len() as f64
        },
        duration_s,
        frames_analyzed: frames.len(),
        sample_fps: shots::frame_rate(&frames.times),
        cuts,
        shots,
    }
}
