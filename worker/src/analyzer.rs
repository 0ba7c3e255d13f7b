//! The one trait every analyzer implements, and the context a task hands it.
//!
//! An analyzer is a value registered once per worker process (models stay loaded in it);
//! `run` is called once per task, concurrently up to the stage's limit.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use media::MediaError;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// What produced a result. Every outcome in Redis carries it, so a synthetic (slot-holding)
/// result can never pass for a real one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Holds the slot for expected seconds x scale and returns nothing real: tests/benchmarks.
    Synthetic,
    /// Pure Rust signal processing.
    Rust,
    /// ONNX Runtime; the string names the execution provider that ran it ("cpu", "cuda").
    Onnx(String),
    /// A model server over HTTP (OpenAI-compatible).
    Http,
}

impl Backend {
    pub fn label(&self) -> String {
        match self {
            Backend::Synthetic => "synthetic".into(),
            Backend::Rust => "rust".into(),
            Backend::Onnx(ep) => format!("onnx:{ep}"),
            Backend::Http => "http".into(),
        }
    }
}

/// How a failed run ends. The runner turns these into broker actions.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AnalyzerError {
    /// May work on a later attempt (network, server 5xx): retried with backoff.
    #[error("{0}")]
    Transient(String),
    /// Will not work on this input (corrupt video, bad model file): recorded as `failed`.
    #[error("{0}")]
    Permanent(String),
    /// Nothing to analyze (no audio track, no endpoint configured): recorded as `skipped`.
    #[error("{0}")]
    Skipped(String),
    /// The machine is short of a resource (GPU out of memory): the task goes back to the
    /// queue without counting as an attempt of the analyzer.
    #[error("{0}")]
    Requeue(String),
}

impl From<MediaError> for AnalyzerError {
    fn from(e: MediaError) -> Self {
        if e.is_requeue() {
            AnalyzerError::Requeue(e.to_string())
        } else if e.is_skip() {
            AnalyzerError::Skipped(e.to_string())
        } else if e.is_transient() {
            AnalyzerError::Transient(e.to_string())
        } else {
            AnalyzerError::Permanent(e.to_string())
        }
    }
}

/// Everything one task gives its analyzer.
pub struct TaskContext {
    pub job_id: String,
    pub analyzer: String,
    /// 1 on the first run of this task.
    pub attempt: u32,
    /// The job's video reference (path or URL), as submitted.
    pub video: String,
    /// The job's media, fetched and decoded lazily, at most once per worker process and job.
    pub media: Arc<media::Media>,
    /// Final `ok` results of the analyzers this one depends on (or may use), by name.
    pub deps: BTreeMap<String, serde_json::Value>,
    /// The analyzer's `params` table from `config/fleet.toml` (empty object when absent).
    pub params: serde_json::Value,
    /// Cancelled when the worker shuts down past its grace period or the job is cancelled.
    pub cancel: CancellationToken,
}

#[async_trait]
pub trait Analyzer: Send + Sync + 'static {
    /// Which implementation this is; written into every outcome.
    fn backend(&self) -> Backend;

    /// Run on one task. The returned JSON is stored as the outcome's `result`.
    async fn run(&self, ctx: &TaskContext) -> Result<serde_json::Value, AnalyzerError>;

    /// The frames `run` will ask the job's media for, given the analyzer's `params` and the
    /// probed video; `None` when it reads no frames (or will not get that far, e.g. no model
    /// configured). The worker decodes every spec of a job's analyzers in one pass, so this
    /// must name exactly the spec `run` asks for.
    fn frame_spec(
        &self,
        _params: &serde_json::Value,
        _probe: &media::Probe,
    ) -> Option<media::FrameSpec> {
        None
    }

    /// What is wrong with the analyzer's `params` table (wrong types, values out of range,
    /// keys the analyzer does not know where its config says so), checked once when the
    /// worker starts, so that a typo stops the start instead of failing every task. Model
    /// files are not opened here: a missing model is a `skipped` result, not a bad config.
    fn check_params(&self, _params: &serde_json::Value) -> Result<(), String> {
        Ok(())
    }

    /// Loads and warms what `run` will need (model sessions, their declared shapes), blocking,
    /// so that a fresh worker's first task does not pay for it (`FLEET_PRELOAD_MODELS=1`).
    /// `Ok(false)` when there is nothing to load (no model configured or shipped).
    fn preload(&self, _name: &str, _params: &serde_json::Value) -> Result<bool, String> {
        Ok(false)
    }
}
