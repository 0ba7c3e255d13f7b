//! `temporal_flow`: pacing from cuts and speech: shot rate over time, the hook in the first
//! seconds, and narrative segments (hook, body parts of one pace, outro).
//!
//! Speech comes from the transcript when `speech_transcription` ran (words per minute), else
//! from the audio (share of speech windows); on-screen text from `text_overlay` when present.
//! What was missing is listed in the result.

use media::{Audio, Frames};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cuts::frames_duration;
use crate::environment::{EnvironmentConfig, SoundClass, classify_windows};
use crate::inputs::{ocr_texts, transcript_segments, word_count};
use crate::pixels::FrameStats;
use crate::shots::{self, CutConfig};
use crate::spectrum::Spectrogram;

pub const DEFAULT_HOOK_S: f64 = 3.0;
pub const DEFAULT_WINDOW_S: f64 = 5.0;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowConfig {
    pub cuts: CutConfig,
    /// Length of the hook, seconds from the start.
    pub hook_s: f64,
    /// Window of the shot-rate curve, seconds.
    pub window_s: f64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            cuts: CutConfig::default(),
            hook_s: DEFAULT_HOOK_S,
            window_s: DEFAULT_WINDOW_S,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pace {
    /// Under 10 cuts per minute.
    Slow,
    /// 10 to 25.
    Medium,
    /// 25 to 45.
    Fast,
    /// 45 and more.
    VeryFast,
}

impl Pace {
    pub fn of(cuts_per_minute: f64) -> Pace {
        match cuts_per_minute {
            c if c < 10.0 => Pace::Slow,
            c if c < 25.0 => Pace::Medium,
            c if c < 45.0 => Pace::Fast,
            _ => Pace::VeryFast,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentRole {
    Hook,
    Body,
    Outro,
}

/// Result of `temporal_flow`.
#[derive(Debug, Clone, Serialize)]
pub struct TemporalFlow {
    pub duration_s: f64,
    pub cut_count: usize,
    pub cuts_per_minute: f64,
    pub average_shot_s: f64,
    pub pace: Pace,
    /// Shot rate (and speech) per window.
    pub rate_curve: Vec<RateWindow>,
    pub hook: Hook,
    pub segments: Vec<NarrativeSegment>,
    pub speech: SpeechPacing,
    /// Inputs not available, and what was done instead.
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RateWindow {
    pub start_s: f64,
    pub end_s: f64,
    pub cuts: usize,
    pub cuts_per_minute: f64,
    /// Share of the window with speech (from the transcript's segments, else the audio).
    pub speech_share: Option<f64>,
    /// Words per minute spoken in the window (transcript only).
    pub words_per_minute: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Hook {
    pub window_s: f64,
    pub cuts: usize,
    /// Mean frame-to-frame change in the hook over the mean of the whole video (1 = same).
    pub visual_activity: f64,
    /// When speech starts, seconds (transcript or audio).
    pub speech_starts_s: Option<f64>,
    /// Whether on-screen text appears in the hook (needs `text_overlay`).
    pub text_on_screen: Option<bool>,
    /// 0..1: a share of the hook signals present (cut, above-average motion, speech in the first
    /// second and a half, text on screen).
    pub score: f64,
    pub signals: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NarrativeSegment {
    pub role: SegmentRole,
    pub start_s: f64,
    pub end_s: f64,
    pub pace: Pace,
    pub cuts_per_minute: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SpeechPacing {
    /// "transcript", "audio" or "none".
    pub source: String,
    pub speech_share: Option<f64>,
    pub words_per_minute: Option<f64>,
}

/// Speech intervals and optional word counts, from the transcript or the audio.
struct Speech {
    source: &'static str,
    intervals: Vec<(f64, f64, usize)>,
    words: bool,
}

fn speech(
    audio: Option<&Audio>,
    transcript: Option<&Value>,
    missing: &mut Vec<String>,
) -> Option<Speech> {
    let segments = transcript.and_then(transcript_segments);
    let timed: Vec<(f64, f64, usize)> = segments
        .iter()
        .flatten()
        .filter_map(|s| Some((s.start_s?, s.end_s?, word_count(&s.text))))
        .collect();
    if !timed.is_empty() {
        return Some(Speech {
            source: "transcript",
            intervals: timed,
            words: true,
        });
    }
    missing.push(if transcript.is_some() {
        "speech_transcription has no timed segments: speech estimated from the audio".into()
    } else {
        "speech_transcription: speech estimated from the audio, no words per minute".into()
    });
    let Some(audio) = audio else {
        missing.push("audio: no audio track, no speech pacing".into());
        return None;
    };
    let spec = Spectrogram::new(&audio.samples, audio.sample_rate);
    let intervals = classify_windows(&spec, &EnvironmentConfig::default())
        .into_iter()
        .filter(|w| w.2 == SoundClass::Speech)
        .map(|(s, e, _)| (s, e, 0))
        .collect();
    Some(Speech {
        source: "audio",
        intervals,
        words: false,
    })
}

fn overlap(a: (f64, f64), b: (f64, f64)) -> f64 {
    (a.1.min(b.1) - a.0.max(b.0)).max(0.0)
}

/// The cut times and shot count `cut_analysis` reported (its result JSON), if it has them.
fn reported_cuts(cuts: &Value) -> Option<(Vec<f64>, usize)> {
    let times = cuts
        .get("cuts")?
        .as_array()?
        .iter()
        .map(|c| c.get("time_s").and_then(Value::as_f64))
        .collect::<Option<Vec<f64>>>()?;
    let shots = cuts.get("shots")?.as_array()?.len();
    Some((times, shots))
}

/// `cuts` is `cut_analysis`'s result (the job's dependency): its cuts are the pacing's, so the
/// two analyzers never disagree about where the cuts are. Without it (run alone, or an
/// unreadable result) the cuts are detected here with `cfg.cuts`, and `missing` says so.
pub fn temporal_flow(
    frames: &Frames,
    audio: Option<&Audio>,
    transcript: Option<&Value>,
    ocr: Option<&Value>,
    cuts: Option<&Value>,
    cfg: &FlowConfig,
) -> TemporalFlow {
    // The change scores (visual activity) come from the frames either way.
    let stats = FrameStats::new(frames);
    let b = shots::detect(&stats, &frames.times, &cfg.cuts);
    let duration = frames_duration(frames);
    let mut missing = Vec::new();
    let (cut_times, shot_count) = match cuts.and_then(reported_cuts) {
        Some(reported) => reported,
        None => {
            if cuts.is_some() {
                missing.push("cut_analysis: result unreadable, cuts detected here".into());
            }
            let times = b.cuts.iter().map(|c| frames.times[c.frame]).collect();
            (times, b.shots.len())
        }
    };
    let speech = speech(audio, transcript, &mut missing);
    let per_minute = |count: usize, span: f64| {
        if span > 0.0 {
            count as f64 * 60.0 / span
        } else {
            0.0
        }
    };

    let mut rate_curve = Vec::new();
    let mut start = 0.0;
    while start < duration {
        let end = (start + cfg.window_s.max(0.5)).min(duration);
        let cuts = cut_times.iter().filter(|&&t| t >= start && t < end).count();
        let speech_share = speech.as_ref().map(|s| {
            s.intervals
                .iter()
                .map(|&(a, b, _)| overlap((a, b), (start, end)))
                .sum::<f64>()
                / (end - start)
        });
        let words_per_minute = speech.as_ref().filter(|s| s.words).map(|s| {
            let words: f64 = s
                .intervals
                .iter()
                .map(|&(a, b, n)| n as f64 * overlap((a, b), (start, end)) / (b - a).max(1e-6))
                .sum();
            words * 60.0 / (end - start)
        });
        rate_curve.push(RateWindow {
            start_s: start,
            end_s: end,
            cuts,
            cuts_per_minute: per_minute(cuts, end - start),
            speech_share: speech_share.map(|s| s.min(1.0)),
            words_per_minute,
        });
        start = end;
    }

    // Hook: the first seconds.
    let hook_end = cfg.hook_s.min(duration);
    let hook_cuts = cut_times.iter().filter(|&&t| t < hook_end).count();
    let mean_of = |range: std::ops::Range<usize>| {
        let n = range.len().max(1) as f64;
        range.map(|i| f64::from(b.scores[i])).sum::<f64>() / n
    };
    let hook_frames = frames.times.iter().take_while(|&&t| t < hook_end).count();
    let overall = mean_of(1..b.scores.len());
    let visual_activity = if overall > 0.0 {
        mean_of(1..hook_frames.max(1)) / overall
    } else {
        1.0
    };
    let speech_starts_s = speech
        .as_ref()
        .and_then(|s| s.intervals.iter().map(|i| i.0).reduce(f64::min));
    let text_on_screen = match ocr.and_then(ocr_texts) {
        Some(texts) => Some(texts.iter().any(|t| t.start_s.is_none_or(|s| s < hook_end))),
        None => {
            missing.push("text_overlay: on-screen text in the hook unknown".into());
            None
        }
    };
    let mut signals = Vec::new();
    if hook_cuts > 0 {
        signals.push(format!("{hook_cuts} cut(s) in the first {hook_end:.1} s"));
    }
    if visual_activity > 1.2 {
        signals.push(format!("{visual_activity:.1}x the video's visual change"));
    }
    if speech_starts_s.is_some_and(|s| s <= 1.5) {
        signals.push("speech within 1.5 s".into());
    }
    if text_on_screen == Some(true) {
        signals.push("text on screen".into());
    }
    let possible = if text_on_screen.is_some() { 4.0 } else { 3.0 };
    let hook = Hook {
        window_s: hook_end,
        cuts: hook_cuts,
        visual_activity,
        speech_starts_s,
        text_on_screen,
        score: signals.len() as f64 / possible,
        signals,
    };

    let segments = narrative_segments(&rate_curve, &cut_times, hook_end, duration);
    let total_speech = speech
        .as_ref()
        .map(|s| s.intervals.iter().map(|i| i.1 - i.0).sum::<f64>());
    let total_words = speech
        .as_ref()
        .filter(|s| s.words)
        .map(|s| s.intervals.iter().map(|i| i.2).sum::<usize>());
    TemporalFlow {
        duration_s: duration,
        cut_count: cut_times.len(),
        cuts_per_minute: per_minute(cut_times.len(), duration),
        average_shot_s: duration / shot_count.max(1) as f64,
        pace: Pace::of(per_minute(cut_times.len(), duration)),
        rate_curve,
        hook,
        segments,
        speech: SpeechPacing {
            source: speech.as_ref().map_or("none", |s| s.source).to_string(),
            speech_share: total_speech.map(|s| (s / duration.max(1e-6)).min(1.0)),
            words_per_minute: total_words
                .zip(total_speech)
                .and_then(|(w, s)| (s > 0.0).then(|| w as f64 * 60.0 / s)),
        },
        missing,
    }
}

/// Hook, then body runs of one pace (from the rate curve), then an outro of the last
/// window when the video is long enough to have one.
fn narrative_segments(
    curve: &[RateWindow],
    cuts: &[f64],
    hook_end: f64,
    duration: f64,
) -> Vec<NarrativeSegment> {
    let rate = |a: f64, b: f64| {
        let n = cuts.iter().filter(|&&t| t >= a && t < b).count();
        if b > a {
            n as f64 * 60.0 / (b - a)
        } else {
            0.0
        }
    };
    let mut out = vec![NarrativeSegment {
        role: SegmentRole::Hook,
        start_s: 0.0,
        end_s: hook_end,
        pace: Pace::of(rate(0.0, hook_end)),
        cuts_per_minute: rate(0.0, hook_end),
    }];
    let outro_start = if duration >= 15.0 {
        duration - DEFAULT_HOOK_S
    } else {
        duration
    };
    for w in curve {
        let (a, b) = (w.start_s.max(hook_end), w.end_s.min(outro_start));
        if b - a < 0.5 {
            continue;
        }
        let pace = Pace::of(rate(a, b));
        match out.last_mut() {
            Some(last) if last.role == SegmentRole::Body && last.pace == pace => last.end_s = b,
            _ => out.push(NarrativeSegment {
                role: SegmentRole::Body,
                start_s: a,
                end_s: b,
                pace,
                cuts_per_minute: 0.0,
            }),
        }
    }
    if outro_start < duration {
        out.push(NarrativeSegment {
            role: SegmentRole::Outro,
            start_s: outro_start,
            end_s: duration,
            pace: Pace::Slow,
            cuts_per_minute: 0.0,
        });
    }
    for seg in &mut out {
        seg.cuts_per_minute = rate(seg.start_s, seg.end_s);
        seg.pace = Pace::of(seg.cuts_per_minute);
    }
    out
}
