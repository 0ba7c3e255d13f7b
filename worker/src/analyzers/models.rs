//! The neural-network analyzers (crate `models`) behind the `Analyzer` trait.
//!
//! Thin on purpose: read the analyzer's `params`, get the decoded media from the job's shared
//! `Media`, run the ONNX pipeline on the blocking pool (or call the model server), and map the
//! crate's error classes onto outcomes: not configured -> `skipped`, bad or missing model file
//! -> `failed` (the message names the file and the fix), server overloaded -> retried, device
//! out of memory -> requeued. Sessions live in `ModelRegistry::global()`, shared by every
//! analyzer of the process and unloaded when idle (or by the GPU memory guard).

use std::sync::{Arc, Mutex};

use ::models::age::{self, AgeGender};
use ::models::emotion::{Emotion, EmotionParams};
use ::models::facemesh::{self, FaceMesh, GazeParams};
use ::models::faces::{Mtcnn, MtcnnParams};
use ::models::nanodet::{self, NanoDet, NanoDetParams};
use ::models::ocr::{Ocr, OcrParams};
use ::models::segformer::{SegFormer, SegParams};
use ::models::selfie::{Selfie, SelfieParams};
use ::models::server::{self, ServerError, ServerParams};
use ::models::speech;
use ::models::vad::{Vad, VadParams};
use ::models::whisper::{Whisper, WhisperParams};
use ::models::yolo::{Yolo, YoloParams};
use ::models::{ErrorClass, ModelError, ModelFile, ModelRegistry, Params};
use async_trait::async_trait;
use common::config::FleetConfig;
use media::FrameSpec;
use serde_json::{Value, json};

use crate::analyzer::{Analyzer, AnalyzerError, Backend, TaskContext};
use crate::analyzers::Registry;

const TRANSCRIPT: &str = "speech_transcription";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    TextOverlay,
    SpeechRate,
    SpeechFlow,
    AgeEstimation,
    EyeTracking,
    Detection,
    ProductDetection,
    Segmentation,
    SpeechEmotion,
}

#[derive(Clone, Copy, Debug)]
enum ServerKind {
    VideoChat { prompt: &'static str },
}

const TEMPORAL_PROMPT: &str = "You are analyzing a short social-media video from frames in time order. \
Answer with one JSON object only, with keys: \"summary\" (string), \"scenes\" (list of {\"start_s\", \"end_s\", \
\"description\"}), \"actions\" (list of strings), \"on_screen_text\" (list of strings), \"products\" (list of strings), \
\"mood\" (string).";
const CAPTION_PROMPT: &str = "Write one caption per frame describing what happens. Answer with one JSON object only: \
{\"captions\": [{\"t\": seconds, \"caption\": string}]}.";

pub fn register(reg: &mut Registry, config: &FleetConfig) {
    let onnx = |kind| -> Arc<dyn Analyzer> {
        Arc::new(OnnxAnalyzer {
            kind,
            last_provider: Mutex::new(None),
        })
    };
    reg.insert("text_overlay", onnx(Kind::TextOverlay));
    reg.insert("speech_rate", onnx(Kind::SpeechRate));
    reg.insert("speech_flow", onnx(Kind::SpeechFlow));
    reg.insert("age_estimation", onnx(Kind::AgeEstimation));
    reg.insert("eye_tracking", onnx(Kind::EyeTracking));
    reg.insert("object_detection", onnx(Kind::Detection));
    reg.insert("product_detection", onnx(Kind::ProductDetection));
    reg.insert("background_segmentation", onnx(Kind::Segmentation));
    reg.insert("speech_emotion", onnx(Kind::SpeechEmotion));
    let http = server::client();
    let served = |kind| -> Arc<dyn Analyzer> {
        Arc::new(ServerAnalyzer {
            kind,
            http: http.clone(),
        })
    };
    reg.insert(
        "qwen2_vl_temporal",
        served(ServerKind::VideoChat {
            prompt: TEMPORAL_PROMPT,
        }),
    );
    reg.insert(
        "streaming_dense_captioning",
        served(ServerKind::VideoChat {
            prompt: CAPTION_PROMPT,
        }),
    );
    // A configured Whisper server takes precedence (large models, other languages); without
    // one, Whisper tiny.en runs in process.
    let endpoint = config
        .analyzers
        .get(TRANSCRIPT)
        .and_then(|a| a.params.get("endpoint"))
        .and_then(Value::as_str)
        .is_some_and(|e| !e.trim().is_empty());
    reg.insert(
        TRANSCRIPT,
        Arc::new(Transcription {
            server: endpoint,
            http,
            last_provider: Mutex::new(None),
        }),
    );
}

/// Runs the parameter parsers a task of `kind` runs, without loading anything.
fn check_kind(kind: Kind, params: &Value) -> Result<(), String> {
    let p = Params::new("", params);
    if let Some((fps, side)) = default_sampling(kind) {
        frame_spec(&p, fps, side).map_err(|e| e.to_string())?;
    }
    // The errors name the analyzer first; the caller already does.
    parse_kind(kind, &p, params).map_err(|e| e.to_string().trim_start_matches(": ").to_string())
}

fn parse_kind(kind: Kind, p: &Params<'_>, params: &Value) -> Result<(), ModelError> {
    let operator_model = params
        .get("model")
        .and_then(Value::as_str)
        .is_some_and(|m| !m.is_empty());
    match kind {
        Kind::TextOverlay => {
            OcrParams::from_params(p)?;
        }
        Kind::AgeEstimation | Kind::EyeTracking => {
            p.f32("min_face", MtcnnParams::default().min_face)?;
            if kind == Kind::EyeTracking {
                GazeParams::from_params(p)?;
            } else {
                p.usize("max_gap_frames", 1)?;
            }
        }
        Kind::Detection | Kind::ProductDetection if operator_model => {
            YoloParams::from_params(p)?;
        }
        Kind::Detection => {
            NanoDetParams::from_params(p, None)?;
        }
        Kind::ProductDetection => {
            NanoDetParams::from_params(p, Some(&nanodet::PRODUCT_CLASSES[..]))?;
        }
        Kind::Segmentation if operator_model => {
            SegParams::from_params(p)?;
        }
        Kind::Segmentation => {
            SelfieParams::from_params(p)?;
        }
        // No model configured is a `skipped` result, not a bad config; labels are checked
        // once there is a model.
        Kind::SpeechEmotion if !operator_model => {}
        Kind::SpeechEmotion => {
            EmotionParams::from_params(p)?;
        }
        Kind::SpeechRate | Kind::SpeechFlow => {
            VadParams::from_params(p)?;
            if kind == Kind::SpeechFlow {
                p.f64("min_pause_s", speech::DEFAULT_MIN_PAUSE_S)?;
                p.f64("long_pause_s", speech::DEFAULT_LONG_PAUSE_S)?;
            }
        }
    }
    Ok(())
}

fn model_err(e: ModelError) -> AnalyzerError {
    classify(e.class(), e.to_string())
}

fn server_err(e: ServerError) -> AnalyzerError {
    classify(e.class(), e.to_string())
}

fn classify(class: ErrorClass, msg: String) -> AnalyzerError {
    match class {
        ErrorClass::Skip => AnalyzerError::Skipped(msg),
        ErrorClass::Fail => AnalyzerError::Permanent(msg),
        ErrorClass::Retry => AnalyzerError::Transient(msg),
        ErrorClass::Requeue => AnalyzerError::Requeue(msg),
    }
}

/// The frame sampling an analyzer asks for: `params.fps` and `params.max_side`.
fn frame_spec(p: &Params, fps: f64, max_side: usize) -> Result<FrameSpec, AnalyzerError> {
    let fps = p.f64("fps", fps).map_err(model_err)?;
    let side = p.usize("max_side", max_side).map_err(model_err)?;
    Ok(FrameSpec::at_fps(
        (fps * 1000.0).round().max(1.0) as u32,
        side as u32,
    ))
}

/// The default sampling (fps, longest side) of a frame-reading ONNX analyzer; `None` for the
/// audio ones.
fn default_sampling(kind: Kind) -> Option<(f64, usize)> {
    match kind {
        Kind::SpeechRate | Kind::SpeechFlow | Kind::SpeechEmotion => None,
        Kind::TextOverlay => Some((2.0, 960)),
        Kind::Detection | Kind::ProductDetection => Some((1.0, 640)),
        Kind::Segmentation => Some((0.5, 512)),
        Kind::AgeEstimation | Kind::EyeTracking => Some((2.0, 640)),
    }
}

/// Sampling of the video-chat analyzers: one frame a second at 448 px.
const CHAT_SAMPLING: (f64, usize) = (1.0, 448);

/// The final result of a dependency, whether given as a whole outcome or as the result.
fn dep<'a>(ctx: &'a TaskContext, name: &str) -> Option<&'a Value> {
    let v = ctx.deps.get(name)?;
    match (v.get("status"), v.get("result")) {
        (Some(_), Some(result)) => Some(result),
        _ => Some(v),
    }
}

struct OnnxAnalyzer {
    kind: Kind,
    /// The provider of this analyzer's last run; before one, what the registry expects.
    last_provider: Mutex<Option<&'static str>>,
}

#[async_trait]
impl Analyzer for OnnxAnalyzer {
    fn backend(&self) -> Backend {
        let last = self.last_provider.lock().ok().and_then(|p| *p);
        let provider = last.unwrap_or_else(|| ModelRegistry::global().expected_provider().label());
        Backend::Onnx(provider.to_string())
    }

    fn frame_spec(&self, params: &Value, probe: &media::Probe) -> Option<FrameSpec> {
        let (fps, side) = default_sampling(self.kind)?;
        probe.has_video.then_some(())?;
        frame_spec(&Params::new("", params), fps, side).ok()
    }

    fn check_params(&self, params: &Value) -> Result<(), String> {
        check_kind(self.kind, params)
    }

    /// The pipeline once over two black 9:16 frames of the analyzer's frame spec: every model
    /// it uses loads and warms through the same code as a task (audio analyzers load in well
    /// under a second and are not preloaded).
    fn preload(&self, name: &str, params: &Value) -> Result<bool, String> {
        let Some((fps, side)) = default_sampling(self.kind) else {
            return Ok(false);
        };
        let p = Params::new(name, params);
        let spec = frame_spec(&p, fps, side).map_err(|e| e.to_string())?;
        let height = spec.max_side.max(2) & !1;
        let width = ((height as u64 * 9 / 16) as u32).max(2) & !1;
        let frames = media::Frames {
            spec,
            width,
            height,
            times: vec![0.0, 0.5],
            data: vec![0; 2 * width as usize * height as usize * 3],
        };
        match frames_job(self.kind, name, params, &frames) {
            Ok((_, provider)) => {
                if let Ok(mut last) = self.last_provider.lock() {
                    *last = Some(provider);
                }
                Ok(true)
            }
            Err(ModelError::ModelMissing { .. } | ModelError::NotConfigured { .. }) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn run(&self, ctx: &TaskContext) -> Result<Value, AnalyzerError> {
        let params = ctx.params.clone();
        let name = ctx.analyzer.clone();
        let p = Params::new(&name, &params);
        let kind = self.kind;
        // Fetch the media here (async, shared with the job's other analyzers), then compute
        // on the blocking pool.
        let job: Box<dyn FnOnce() -> Result<(Value, &'static str), ModelError> + Send> = match kind
        {
            Kind::SpeechRate | Kind::SpeechFlow | Kind::SpeechEmotion => {
                let audio = ctx.media.audio().await?;
                let transcript = dep(ctx, TRANSCRIPT)
                    .and_then(|t| t.get("text"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                Box::new(move || audio_job(kind, &name, &params, &audio, transcript.as_deref()))
            }
            _ => {
                let (fps, side) = default_sampling(kind).unwrap_or((2.0, 640));
                let frames = ctx.media.frames(frame_spec(&p, fps, side)?).await?;
                Box::new(move || frames_job(kind, &name, &params, &frames))
            }
        };
        if ctx.cancel.is_cancelled() {
            return Err(AnalyzerError::Transient(
                "cancelled before the model ran".into(),
            ));
        }
        let (mut result, provider) = tokio::task::spawn_blocking(job)
            .await
            .map_err(|e| AnalyzerError::Permanent(format!("model pipeline panicked: {e}")))?
            .map_err(model_err)?;
        if let Ok(mut last) = self.last_provider.lock() {
            *last = Some(provider);
        }
        if let Some(obj) = result.as_object_mut() {
            obj.insert("execution_provider".into(), json!(provider));
        }
        Ok(result)
    }
}

fn frames_job(
    kind: Kind,
    name: &str,
    params: &Value,
    frames: &media::Frames,
) -> Result<(Value, &'static str), ModelError> {
    let reg = ModelRegistry::global();
    let p = Params::new(name, params);
    let mtcnn = || -> Result<MtcnnParams, ModelError> {
        let d = MtcnnParams::default();
        Ok(MtcnnParams {
            min_face: p.f32("min_face", d.min_face)?,
            ..d
        })
    };
    match kind {
        Kind::TextOverlay => {
            let ocr = Ocr::load(reg)?;
            let out = ocr.run(frames, &OcrParams::from_params(&p)?)?;
            let mut v = serde_json::to_value(&out).unwrap_or_default();
            v["model"] = json!("PP-OCRv6 small det + rec, PP-OCR mobile v2.0 cls");
            Ok((v, ocr.provider()))
        }
        Kind::AgeEstimation => {
            let ag = AgeGender::load(reg)?;
            let obs = ag.observe(frames, &mtcnn()?)?;
            let tracks = age::age_tracks(&obs, &frames.times, p.usize("max_gap_frames", 1)?);
            let with_faces = obs
                .iter()
                .map(|o| o.frame)
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            let v = json!({
                "faces": tracks, "frames": frames.len(), "frames_with_faces": with_faces,
                "model": "mtcnn + agegender age-v1, gender-v1",
            });
            Ok((v, ag.provider()))
        }
        Kind::EyeTracking => {
            let mt = Mtcnn::load(reg)?;
            let gp = GazeParams::from_params(&p)?;
            match FaceMesh::load(reg) {
                Ok(mesh) => {
                    let mut v = mesh.analyze(&mt, frames, &mtcnn()?, &gp)?;
                    v["model"] = json!(format!("{} + {}", facemesh::MESH_ID, facemesh::IRIS_ID));
                    Ok((v, mesh.provider()))
                }
                // Without the MediaPipe models (an install from before they were shipped):
                // MTCNN's five landmarks, saying so.
                Err(ModelError::ModelMissing { path, .. }) => {
                    let mut v = age::eye_tracking(&mt, frames, &mtcnn()?)?;
                    v["model"] = json!("mtcnn");
                    v["fallback"] = json!(format!(
                        "{} is missing (run scripts/setup-models.sh): no iris gaze",
                        path.display()
                    ));
                    Ok((v, mt.provider()))
                }
                Err(e) => Err(e),
            }
        }
        Kind::Detection | Kind::ProductDetection => {
            // An operator's YOLOv8 export takes precedence over the shipped NanoDet.
            if params
                .get("model")
                .and_then(Value::as_str)
                .is_some_and(|m| !m.is_empty())
            {
                let yp = YoloParams::from_params(&p)?;
                let file = ModelFile::from_params(name, params, "model")?;
                let yolo = Yolo::load(reg, &file, &yp)?;
                let mut v = yolo.analyze(frames, &yp)?;
                v["model"] = json!(model_stem(&file));
                return Ok((v, yolo.provider()));
            }
            let keep = (kind == Kind::ProductDetection).then_some(&nanodet::PRODUCT_CLASSES[..]);
            let np = NanoDetParams::from_params(&p, keep)?;
            let det = NanoDet::load(reg).map_err(|e| absent_as_skip(e, name, "NanoDet"))?;
            Ok((det.analyze(frames, &np)?, det.provider()))
        }
        Kind::Segmentation => {
            // An operator's SegFormer export (class maps) takes precedence over the person mask.
            if params
                .get("model")
                .and_then(Value::as_str)
                .is_some_and(|m| !m.is_empty())
            {
                let sp = SegParams::from_params(&p)?;
                let file = ModelFile::from_params(name, params, "model")?;
                let seg = SegFormer::load(reg, &file, &sp)?;
                let mut v = seg.analyze(frames, &sp)?;
                v["model"] = json!(model_stem(&file));
                return Ok((v, seg.provider()));
            }
            let sp = SelfieParams::from_params(&p)?;
            let seg =
                Selfie::load(reg).map_err(|e| absent_as_skip(e, name, "selfie segmentation"))?;
            Ok((seg.analyze(frames, &sp)?, seg.provider()))
        }
        Kind::SpeechRate | Kind::SpeechFlow | Kind::SpeechEmotion => {
            unreachable!("audio analyzers take the audio path")
        }
    }
}

/// A shipped default model the setup has not fetched: the analyzer is skipped with the fix
/// (the rest of the install still runs), where a damaged file still fails it.
fn absent_as_skip(e: ModelError, analyzer: &str, what: &str) -> ModelError {
    match e {
        ModelError::ModelMissing { path, .. } => ModelError::NotConfigured {
            analyzer: analyzer.to_string(),
            what: format!("the {what} model ({} is missing)", path.display()),
            fix: "run scripts/setup-models.sh, or set params.model and params.sha256 to an \
                  operator model"
                .to_string(),
        },
        e => e,
    }
}

fn model_stem(file: &ModelFile) -> String {
    file.path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn audio_job(
    kind: Kind,
    name: &str,
    params: &Value,
    audio: &media::Audio,
    transcript: Option<&str>,
) -> Result<(Value, &'static str), ModelError> {
    let reg = ModelRegistry::global();
    let p = Params::new(name, params);
    if kind == Kind::SpeechEmotion {
        let ep = EmotionParams::from_params(&p)?;
        let emo = Emotion::load(reg, &ModelFile::from_params(name, params, "model")?, &ep)?;
        return Ok((emo.analyze(audio, &ep)?, emo.provider()));
    }
    let vad = Vad::load(reg)?;
    let segments = vad.segments(audio, &VadParams::from_params(&p)?)?;
    let v = if kind == Kind::SpeechRate {
        let mut v = serde_json::to_value(speech::speech_rate(
            &audio.samples,
            audio.sample_rate,
            &segments,
            transcript,
        ))
        .unwrap_or_default();
        v["speech_segments"] = json!(segments);
        v
    } else {
        let min_pause = p.f64("min_pause_s", speech::DEFAULT_MIN_PAUSE_S)?;
        let long_pause = p.f64("long_pause_s", speech::DEFAULT_LONG_PAUSE_S)?;
        let mut v = speech::speech_flow(&segments, audio.duration_s(), min_pause, long_pause);
        v["speech_segments"] = json!(segments);
        // With a transcript: words per minute and per run between pauses, fillers.
        v["method"] = json!(if transcript.is_some() {
            "transcript"
        } else {
            "acoustic"
        });
        if let Some(text) = transcript {
            let speech_s = v["speech_s"].as_f64().unwrap_or(0.0);
            let pauses = v["pause_count"].as_u64().unwrap_or(0) as usize;
            v["transcript"] = speech::transcript_flow(text, speech_s, pauses);
        }
        v
    };
    let mut v = v;
    v["model"] = json!("silero-vad 6.2.3");
    Ok((v, vad.provider()))
}

struct ServerAnalyzer {
    kind: ServerKind,
    http: server::Client,
}

#[async_trait]
impl Analyzer for ServerAnalyzer {
    fn backend(&self) -> Backend {
        Backend::Http
    }

    fn frame_spec(&self, params: &Value, probe: &media::Probe) -> Option<FrameSpec> {
        // Every served analyzer reads frames (video chat); transcription is an ONNX analyzer.
        let p = Params::new("", params);
        // Without a server the analyzer is skipped before it reads a frame.
        ServerParams::from_params(&p, "").ok()?;
        probe.has_video.then_some(())?;
        frame_spec(&p, CHAT_SAMPLING.0, CHAT_SAMPLING.1).ok()
    }

    async fn run(&self, ctx: &TaskContext) -> Result<Value, AnalyzerError> {
        let p = Params::new(&ctx.analyzer, &ctx.params);
        let call = async {
            match self.kind {
                ServerKind::VideoChat { prompt } => {
                    let sp = ServerParams::from_params(&p, "Qwen/Qwen2-VL-7B-Instruct")
                        .map_err(server_err)?;
                    let (fps, side) = CHAT_SAMPLING;
                    let frames = ctx.media.frames(frame_spec(&p, fps, side)?).await?;
                    let picks = server::pick_frames(
                        &frames,
                        p.usize("max_frames", server::DEFAULT_MAX_FRAMES)
                            .map_err(model_err)?,
                    );
                    let prompt = p.str("prompt").map_err(model_err)?.unwrap_or(prompt);
                    let max_tokens = p.usize("max_tokens", 1024).map_err(model_err)?;
                    server::chat_frames(&self.http, &sp, &frames, &picks, prompt, max_tokens)
                        .await
                        .map_err(server_err)
                }
            }
        };
        tokio::select! {
            r = call => r,
            _ = ctx.cancel.cancelled() => Err(AnalyzerError::Transient("cancelled while waiting for the model server".into())),
        }
    }
}

/// `speech_transcription`: the OpenAI-compatible server when `params.endpoint` is set, else
/// Whisper tiny.en in process (English only).
struct Transcription {
    server: bool,
    http: server::Client,
    last_provider: Mutex<Option<&'static str>>,
}

#[async_trait]
impl Analyzer for Transcription {
    fn backend(&self) -> Backend {
        if self.server {
            return Backend::Http;
        }
        let last = self.last_provider.lock().ok().and_then(|p| *p);
        let provider = last.unwrap_or_else(|| ModelRegistry::global().expected_provider().label());
        Backend::Onnx(provider.to_string())
    }

    async fn run(&self, ctx: &TaskContext) -> Result<Value, AnalyzerError> {
        let p = Params::new(&ctx.analyzer, &ctx.params);
        if self.server {
            let sp = ServerParams::from_params(&p, "whisper-1").map_err(server_err)?;
            let audio = ctx.media.audio().await?;
            let language = p.str("language").map_err(model_err)?;
            let call = server::transcribe(&self.http, &sp, &audio, language);
            let mut result = tokio::select! {
                r = call => r.map_err(server_err)?,
                _ = ctx.cancel.cancelled() => return Err(AnalyzerError::Transient("cancelled while waiting for the model server".into())),
            };
            result["backend"] = json!("server");
            return Ok(result);
        }
        let wp = WhisperParams::from_params(&p).map_err(model_err)?;
        let audio = ctx.media.audio().await?;
        if ctx.cancel.is_cancelled() {
            return Err(AnalyzerError::Transient(
                "cancelled before the model ran".into(),
            ));
        }
        let (mut result, provider) = tokio::task::spawn_blocking(move || {
            let whisper = Whisper::load(ModelRegistry::global())?;
            let t = whisper.transcribe(&audio, &wp)?;
            Ok::<_, ModelError>((
                serde_json::to_value(&t).unwrap_or_default(),
                whisper.provider(),
            ))
        })
        .await
        .map_err(|e| AnalyzerError::Permanent(format!("transcription panicked: {e}")))?
        .map_err(model_err)?;
        if let Ok(mut last) = self.last_provider.lock() {
            *last = Some(provider);
        }
        result["execution_provider"] = json!(provider);
        Ok(result)
    }
}
