//! Why a model could not run, with messages that name the file and the fix.

use std::path::PathBuf;

/// What the caller should do with a failure. The worker adapter maps these onto its outcomes
/// (skipped, failed, retried, requeued) so the decision lives next to the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Nothing to do here (no model or endpoint configured, no input): `skipped`.
    Skip,
    /// Will not work until someone fixes files or config: `failed`.
    Fail,
    /// May work on a later attempt (server overloaded, network): retry with backoff.
    Retry,
    /// The device is short of memory: give the task back without counting an attempt.
    Requeue,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "ONNX Runtime library not found ({detail}): run scripts/setup-models.sh and set \
         ORT_DYLIB_PATH to the libonnxruntime.so.1.31.x it prints"
    )]
    RuntimeMissing { detail: String },

    #[error("ONNX Runtime could not start from {path}: {reason}")]
    RuntimeLoad { path: PathBuf, reason: String },

    #[error("model file {path} is missing: {fix}")]
    ModelMissing { path: PathBuf, fix: String },

    #[error(
        "model file {path} has sha256 {actual}, expected {expected}: the file is corrupt or a \
         different version ({fix})"
    )]
    ChecksumMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
        fix: String,
    },

    #[error("model file {path} does not fit this analyzer: {detail}")]
    BadShape { path: PathBuf, detail: String },

    #[error("{analyzer}: {what} not configured ({fix})")]
    NotConfigured {
        analyzer: String,
        what: String,
        fix: String,
    },

    #[error("invalid analyzer parameter {name}: {reason}")]
    BadParam { name: String, reason: String },

    #[error("model file {path} could not be loaded: {reason}")]
    Load { path: PathBuf, reason: String },

    #[error("inference with {model} failed: {reason}")]
    Inference { model: String, reason: String },

    #[error("out of device memory running {model}: {reason}")]
    OutOfMemory { model: String, reason: String },

    #[error("nothing to analyze: {0}")]
    NoInput(String),

    #[error("reading {path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

impl ModelError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ModelError::NotConfigured { .. } | ModelError::NoInput(_) => ErrorClass::Skip,
            ModelError::OutOfMemory { .. } => ErrorClass::Requeue,
            _ => ErrorClass::Fail,
        }
    }

    /// Wraps an ONNX Runtime failure during a run, telling device memory exhaustion apart:
    /// that one goes back to the queue instead of failing the analyzer.
    pub(crate) fn inference(model: &str, err: impl std::fmt::Display) -> Self {
        let reason = err.to_string();
        let lower = reason.to_ascii_lowercase();
        let oom = [
            "out of memory",
            "failed to allocate memory",
            "cudaerrormemoryallocation",
        ]
        .iter()
        .any(|needle| lower.contains(needle));
        if oom {
            ModelError::OutOfMemory {
                model: model.to_string(),
                reason,
            }
        } else {
            ModelError::Inference {
                model: model.to_string(),
                reason,
            }
        }
    }

    pub(crate) fn param(name: &str, reason: impl Into<String>) -> Self {
        ModelError::BadParam {
            name: name.to_string(),
            reason: reason.into(),
        }
    }
}
