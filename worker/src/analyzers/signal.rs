//! The pure-Rust signal analyzers (crate `signal`) behind the `Analyzer` trait.
//!
//! Thin on purpose: read the analyzer's `params` into its config (unknown keys are an
//! error, so a typo in `config/fleet.toml` does not pass silently), get the decoded media
//! from the job's shared `Media`, run the analysis on the blocking pool (it is CPU work),
//! and return the result as JSON. Media errors map through `AnalyzerError::from`: no audio
//! track is `skipped`, a corrupt file `failed`, a network error retried.

use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use media::{Audio, FrameSpec, Frames, MediaError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::analyzer::{Analyzer, AnalyzerError, Backend, TaskContext};
use crate::analyzers::Registry;

/// Names of the model analyzers whose output some signal analyzers use when present.
const TRANSCRIPT: &str = "speech_transcription";
const ON_SCREEN_TEXT: &str = "text_overlay";
/// `temporal_flow` needs it: the pacing uses the cuts `cut_analysis` reported.
const CUTS: &str = "cut_analysis";

pub fn register(reg: &mut Registry) {
    use signal::specs;
    reg.insert(
        "cut_analysis",
        frames(specs::CUT_SPEC, signal::cut_analysis),
    );
    reg.insert(
        "scene_segmentation",
        frames(specs::SCENE_SPEC, signal::scene_segmentation),
    );
    reg.insert(
        "color_analysis",
        frames(specs::COLOR_SPEC, signal::color_analysis),
    );
    reg.insert(
        "camera_analysis",
        frames(specs::CAMERA_SPEC, signal::camera_analysis),
    );
    reg.insert(
        "visual_effects",
        frames(specs::EFFECTS_SPEC, signal::visual_effects),
    );
    reg.insert("audio_analysis", audio(signal::audio_analysis));
    reg.insert("audio_environment", audio(signal::audio_environment));
    reg.insert("sound_effects", audio(signal::sound_effects));
    reg.insert("content_quality", Arc::new(ContentQuality));
    reg.insert("temporal_flow", Arc::new(TemporalFlow));
    reg.insert("comment_cta_detection", Arc::new(CtaDetection));
}

/// The analyzer's config from its `params` table (absent or empty = defaults).
fn params<C: DeserializeOwned + Default>(ctx: &TaskContext) -> Result<C, AnalyzerError> {
    match &ctx.params {
        serde_json::Value::Null => Ok(C::default()),
        serde_json::Value::Object(map) if map.is_empty() => Ok(C::default()),
        p => serde_json::from_value(p.clone()).map_err(|e| {
            AnalyzerError::Permanent(format!(
                "bad params for {} in the config: {e}",
                ctx.analyzer
            ))
        }),
    }
}

/// [`Analyzer::check_params`] for analyzers whose params deserialize into `C`.
fn check<C: DeserializeOwned + Default>(params: &serde_json::Value) -> Result<(), String> {
    match params {
        serde_json::Value::Null => Ok(()),
        serde_json::Value::Object(map) if map.is_empty() => Ok(()),
        p => serde_json::from_value::<C>(p.clone())
            .map(drop)
            .map_err(|e| e.to_string()),
    }
}

/// Runs CPU-bound work off the async threads and serialises its result.
async fn blocking<R: Serialize + Send + 'static>(
    work: impl FnOnce() -> R + Send + 'static,
) -> Result<serde_json::Value, AnalyzerError> {
    let result = tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AnalyzerError::Permanent(format!("analysis panicked: {e}")))?;
    serde_json::to_value(result)
        .map_err(|e| AnalyzerError::Permanent(format!("result is not JSON: {e}")))
}

/// A dependency's result: the stored `result` when given a whole outcome, else the value.
fn dep<'a>(ctx: &'a TaskContext, name: &str) -> Option<&'a serde_json::Value> {
    let v = ctx.deps.get(name)?;
    match (v.get("status"), v.get("result")) {
        (Some(_), Some(result)) => Some(result),
        _ => Some(v),
    }
}

/// Audio when there is some; `None` for no (usable) track, an error only when a retry may help.
async fn optional_audio(ctx: &TaskContext) -> Result<Option<Arc<Audio>>, AnalyzerError> {
    match ctx.media.audio().await {
        Ok(a) => Ok(Some(a)),
        Err(e) if e.is_transient() => Err(e.into()),
        Err(_) => Ok(None),
    }
}

struct FrameAnalyzer<C, R> {
    spec: FrameSpec,
    analyze: fn(&Frames, &C) -> R,
    _config: PhantomData<fn() -> C>,
}

fn frames<C, R>(spec: FrameSpec, analyze: fn(&Frames, &C) -> R) -> Arc<dyn Analyzer>
where
    C: DeserializeOwned + Default + Send + Sync + 'static,
    R: Serialize + Send + 'static,
{
    Arc::new(FrameAnalyzer {
        spec,
        analyze,
        _config: PhantomData,
    })
}

#[async_trait]
impl<C, R> Analyzer for FrameAnalyzer<C, R>
where
    C: DeserializeOwned + Default + Send + Sync + 'static,
    R: Serialize + Send + 'static,
{
    fn backend(&self) -> Backend {
        Backend::Rust
    }

    fn frame_spec(&self, _: &serde_json::Value, _: &media::Probe) -> Option<FrameSpec> {
        Some(self.spec)
    }

    fn check_params(&self, params: &serde_json::Value) -> Result<(), String> {
        check::<C>(params)
    }

    async fn run(&self, ctx: &TaskContext) -> Result<serde_json::Value, AnalyzerError> {
        let cfg: C = params(ctx)?;
        let frames = ctx.media.frames(self.spec).await?;
        let analyze = self.analyze;
        blocking(move || analyze(&frames, &cfg)).await
    }
}

struct AudioAnalyzer<C, R> {
    analyze: fn(&Audio, &C) -> R,
    _config: PhantomData<fn() -> C>,
}

fn audio<C, R>(analyze: fn(&Audio, &C) -> R) -> Arc<dyn Analyzer>
where
    C: DeserializeOwned + Default + Send + Sync + 'static,
    R: Serialize + Send + 'static,
{
    Arc::new(AudioAnalyzer {
        analyze,
        _config: PhantomData,
    })
}

#[async_trait]
impl<C, R> Analyzer for AudioAnalyzer<C, R>
where
    C: DeserializeOwned + Default + Send + Sync + 'static,
    R: Serialize + Send + 'static,
{
    fn backend(&self) -> Backend {
        Backend::Rust
    }

    fn check_params(&self, params: &serde_json::Value) -> Result<(), String> {
        check::<C>(params)
    }

    async fn run(&self, ctx: &TaskContext) -> Result<serde_json::Value, AnalyzerError> {
        let cfg: C = params(ctx)?;
        // No audio track: `skipped: no audio track`.
        let audio = ctx.media.audio().await?;
        let analyze = self.analyze;
        blocking(move || analyze(&audio, &cfg)).await
    }
}

struct ContentQuality;

/// `content_quality` samples about a dozen full-size frames, spread over the duration.
fn quality_spec(probe: &media::Probe) -> Option<FrameSpec> {
    probe
        .has_video
        .then(|| signal::specs::quality_spec(probe.duration_s))
}

#[async_trait]
impl Analyzer for ContentQuality {
    fn backend(&self) -> Backend {
        Backend::Rust
    }

    fn frame_spec(&self, _: &serde_json::Value, probe: &media::Probe) -> Option<FrameSpec> {
        quality_spec(probe)
    }

    fn check_params(&self, params: &serde_json::Value) -> Result<(), String> {
        check::<signal::QualityConfig>(params)
    }

    async fn run(&self, ctx: &TaskContext) -> Result<serde_json::Value, AnalyzerError> {
        let cfg: signal::QualityConfig = params(ctx)?;
        let probe = ctx.media.probe().await?;
        let Some(spec) = quality_spec(&probe) else {
            return Err(MediaError::NoVideoStream.into());
        };
        let frames = ctx.media.frames(spec).await?;
        blocking(move || signal::content_quality(&frames, &probe, &cfg)).await
    }
}

struct TemporalFlow;

#[async_trait]
impl Analyzer for TemporalFlow {
    fn backend(&self) -> Backend {
        Backend::Rust
    }

    fn frame_spec(&self, _: &serde_json::Value, _: &media::Probe) -> Option<FrameSpec> {
        Some(signal::specs::FLOW_SPEC)
    }

    fn check_params(&self, params: &serde_json::Value) -> Result<(), String> {
        check::<signal::FlowConfig>(params)
    }

    async fn run(&self, ctx: &TaskContext) -> Result<serde_json::Value, AnalyzerError> {
        let cfg: signal::FlowConfig = params(ctx)?;
        let frames = ctx.media.frames(signal::specs::FLOW_SPEC).await?;
        let audio = optional_audio(ctx).await?;
        let transcript = dep(ctx, TRANSCRIPT).cloned();
        let text = dep(ctx, ON_SCREEN_TEXT).cloned();
        let cuts = dep(ctx, CUTS).cloned();
        blocking(move || {
            signal::temporal_flow(
                &frames,
                audio.as_deref(),
                transcript.as_ref(),
                text.as_ref(),
                cuts.as_ref(),
                &cfg,
            )
        })
        .await
    }
}

struct CtaDetection;

#[async_trait]
impl Analyzer for CtaDetection {
    fn backend(&self) -> Backend {
        Backend::Rust
    }

    fn check_params(&self, params: &serde_json::Value) -> Result<(), String> {
        check::<signal::CtaConfig>(params)
    }

    async fn run(&self, ctx: &TaskContext) -> Result<serde_json::Value, AnalyzerError> {
        let cfg: signal::CtaConfig = params(ctx)?;
        let transcript = dep(ctx, TRANSCRIPT).cloned();
        let text = dep(ctx, ON_SCREEN_TEXT).cloned();
        blocking(move || signal::comment_cta_detection(transcript.as_ref(), text.as_ref(), &cfg))
            .await
    }
}
