//! `scene_segmentation`: shots grouped into scenes, and the gradual transitions (fades,
//! dissolves) with their start and end.
//!
//! Shots that look alike (colour histogram) within a few shots of each other tie everything
//! between them into one scene, so shot/reverse-shot stays one scene; a fade through black or
//! white always starts a new scene, as editors use it.

use media::Frames;
use serde::{Deserialize, Serialize};

use crate::cuts::span_times;
use crate::pixels::{FrameStats, HIST_BINS, Histogram, hist_dist};
use crate::shots::{self, Blank, CutConfig, TransitionKind};

pub const DEFAULT_SCENE_THRESHOLD: f32 = 0.5;
pub const DEFAULT_SCENE_LOOKBACK: usize = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SceneConfig {
    /// Cut detection settings (shared with `cut_analysis`).
    pub cuts: CutConfig,
    /// Histogram distance (0..1) under which a shot belongs to the current scene.
    pub threshold: f32,
    /// How many earlier shots each shot is compared with.
    pub lookback: usize,
}

impl Default for SceneConfig {
    fn default() -> Self {
        Self {
            cuts: CutConfig::default(),
            threshold: DEFAULT_SCENE_THRESHOLD,
            lookback: DEFAULT_SCENE_LOOKBACK,
        }
    }
}

/// Result of `scene_segmentation`.
#[derive(Debug, Clone, Serialize)]
pub struct SceneSegmentation {
    pub scenes: Vec<Scene>,
    pub transitions: Vec<Transition>,
    pub scene_count: usize,
    pub shot_count: usize,
    pub average_scene_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Scene {
    pub index: usize,
    pub start_s: f64,
    pub end_s: f64,
    /// Indices into the shot list (as `cut_analysis` numbers them).
    pub shots: Vec<usize>,
}

/// A gradual transition.
#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    pub kind: TransitionKind,
    pub start_s: f64,
    pub end_s: f64,
    pub duration_s: f64,
    /// For fades: the blank colour passed through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<Blank>,
}

pub fn transitions(frames: &Frames, b: &shots::Boundaries) -> Vec<Transition> {
    b.gradual
        .iter()
        .map(|g| {
            let start_s = frames.times[g.start];
            let end_s = frames.times[g.end];
            Transition {
                kind: g.kind,
                start_s,
                end_s,
                duration_s: end_s - start_s,
                via: g.via,
            }
        })
        .collect()
}

pub fn scene_segmentation(frames: &Frames, cfg: &SceneConfig) -> SceneSegmentation {
    let stats = FrameStats::new(frames);
    let b = shots::detect(&stats, &frames.times, &cfg.cuts);
    let signatures: Vec<Histogram> = b
        .shots
        .iter()
        .map(|span| {
            let mut sum = [0f32; HIST_BINS];
            let mut count = 0usize;
            for i in (span.start..span.end).filter(|&i| !b.in_transition(i)) {
                for (s, h) in sum.iter_mut().zip(&stats.hist[i]) {
                    *s += h;
                }
                count += 1;
            }
            sum.map(|s| s / count.max(1) as f32)
        })
        .collect();
    // Overlapping links (Hanjalic et al. 1999): a shot that looks like one of the last
    // `lookback` shots ties every shot between them into one scene.
    let n = b.shots.len();
    let mut tied = vec![false; n.saturating_sub(1)];
    for j in 1..n {
        for i in j.saturating_sub(cfg.lookback.max(1))..j {
            if hist_dist(&signatures[i], &signatures[j]) < cfg.threshold {
                tied[i..j].iter_mut().for_each(|t| *t = true);
                break;
            }
        }
    }
    let mut scenes: Vec<Scene> = Vec::new();
    for (shot, span) in b.shots.iter().enumerate() {
        let after_fade = b.gradual.iter().any(|g| {
            g.kind == TransitionKind::FadeOutIn && g.start < span.start && span.start <= g.end + 1
        });
        let joins = shot > 0 && tied[shot - 1] && !after_fade;
        let (start_s, end_s) = span_times(frames, *span);
        match scenes.last_mut() {
            Some(scene) if joins => {
                scene.shots.push(shot);
                scene.end_s = end_s;
            }
            _ => scenes.push(Scene {
                index: scenes.len(),
                start_s,
                end_s,
                shots: vec![shot],
            }),
        }
    }
    let duration: f64 = scenes.last().map_or(0.0, |s| s.end_s);
    SceneSegmentation {
        scene_count: scenes.len(),
        shot_count: b.shots.len(),
        average_scene_s: if scenes.is_empty() {
            0.0
        } else {
            duration / scenes.len() as f64
        },
        transitions: transitions(frames, &b),
        scenes,
    }
}
