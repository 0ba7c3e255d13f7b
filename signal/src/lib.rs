//! Pure-Rust signal analyzers over decoded frames and audio: cuts, scenes, colour, camera,
//! effects, quality, loudness, sound environment, sound events, pacing and calls to action.
//!
//! Layout:
//! - `specs`: the `FrameSpec` each analyzer reads (shared specs mean shared decodes).
//! - `pixels`, `shots`, `motion`, `spectrum`: shared building blocks (per-frame statistics,
//!   shot boundaries, global motion, short-time audio features).
//! - One file per analyzer: `cuts` (cut_analysis), `scenes` (scene_segmentation), `color`
//!   (color_analysis), `camera` (camera_analysis), `effects` (visual_effects), `quality`
//!   (content_quality), `loudness` (audio_analysis), `environment` (audio_environment),
//!   `sound_effects`, `flow` (temporal_flow), `cta` (comment_cta_detection).
//! - `inputs`: reading other analyzers' outputs (transcript, on-screen text).
//!
//! Every analyzer is a plain function from decoded media (and a config with documented
//! defaults, deserialisable from the analyzer's `params`) to a `Serialize` result struct.
//! They never fail: empty input gives an empty, well-formed result.
#![forbid(unsafe_code)]

mod camera;
mod color;
mod cta;
mod cuts;
mod effects;
mod environment;
mod flow;
pub mod inputs;
mod loudness;
mod motion;
mod pixels;
mod quality;
mod scenes;
mod shots;
mod sound_effects;
pub mod specs;
mod spectrum;

pub use camera::{CameraAnalysis, CameraConfig, CameraMotion, CameraSegment, camera_analysis};
pub use color::{ColorAnalysis, ColorConfig, ColorStats, ShotColor, Swatch, color_analysis};
pub use cta::{
    CtaConfig, CtaDetection, CtaHit, CtaPhrase, DEFAULT_CTA_PHRASES, TextSource,
    comment_cta_detection,
};
pub use cuts::{CutAnalysis, CutEvent, Shot, cut_analysis};
pub use effects::{EffectEvent, EffectKind, EffectsConfig, VisualEffects, visual_effects};
pub use environment::{
    AudioEnvironment, EnvSegment, EnvironmentConfig, SoundClass, audio_environment,
};
pub use flow::{
    FlowConfig, Hook, NarrativeSegment, Pace, RateWindow, SegmentRole, SpeechPacing, TemporalFlow,
    temporal_flow,
};
pub use loudness::{AudioAnalysis, AudioAnalysisConfig, audio_analysis};
pub use quality::{ContentQuality, QualityConfig, content_quality};
pub use scenes::{Scene, SceneConfig, SceneSegmentation, Transition, scene_segmentation};
pub use shots::{Blank, CutConfig, TransitionKind};
pub use sound_effects::{
    SoundEffects, SoundEffectsConfig, SoundEvent, SoundEventKind, sound_effects,
};
