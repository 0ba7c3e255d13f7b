//! The versioned wire and storage types. Only this module derives them.
//!
//! Between fleet processes they travel as MessagePack (see `codec`); the intake also takes
//! JSON. Outcomes are stored in Redis as JSON so any client can read them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of every message this build writes. Readers accept versions up to this one.
pub const SCHEMA_VERSION: u16 = 1;

/// What a pipeline submits (AMQP `fleet.jobs` or `POST /v1/jobs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// Schema version; absent means 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v: Option<u16>,
    /// A local path (as the workers see it) or an http(s) URL.
    #[schema(min_length = 1, max_length = 4096)]
    pub video: String,
    /// Subset of analyzers to run; absent = every enabled analyzer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analyzers: Option<Vec<String>>,
    /// Submitting the same key again returns the first job instead of starting another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,128}$")]
    pub idempotency_key: Option<String>,
    /// Passed through untouched into the job's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

/// One analyzer of one job, on a stage queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMessage {
    pub v: u16,
    pub job_id: String,
    pub analyzer: String,
    pub stage: String,
    pub video: String,
    /// Analyzers whose `ok` results this task reads (its `needs` and `uses` in the job).
    #[serde(default)]
    pub inputs: Vec<String>,
    pub published_at_ms: u64,
}

/// Worker → dispatcher: an analyzer's outcome was stored. Idempotent; may arrive twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeNotice {
    pub v: u16,
    pub job_id: String,
    pub analyzer: String,
    pub status: OutcomeStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutcomeStatus {
    Ok,
    Failed,
    Skipped,
}

impl OutcomeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeStatus::Ok => "ok",
            OutcomeStatus::Failed => "failed",
            OutcomeStatus::Skipped => "skipped",
        }
    }
}

/// An analyzer's final outcome: the JSON value of field `<analyzer>` in `{prefix}:job:{id}:results`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Outcome {
    pub status: OutcomeStatus,
    #[serde(default)]
    pub result: Option<serde_json::Value>,
    #[serde(default)]
    pub error: Option<String>,
    pub duration_ms: u64,
    /// The worker that recorded it (`dispatcher` for outcomes the dispatcher decides).
    pub worker: String,
    /// Runs of the analyzer, across retries and redeliveries.
    pub attempts: u32,
    /// `synthetic`, `rust`, `onnx:<provider>`, `http`, or `none` when nothing ran.
    pub backend: String,
    pub stage: String,
    #[serde(default)]
    pub started_at_ms: u64,
    #[serde(default)]
    pub finished_at_ms: u64,
}

/// Job states, stored in the job hash's `status` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Completed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "completed" => JobStatus::Completed,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Cancelled)
    }
}

/// One analyzer in a job's plan, fixed at intake so a config change cannot alter a running job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedTask {
    pub analyzer: String,
    pub stage: String,
    #[serde(default)]
    pub needs: Vec<String>,
    #[serde(default)]
    pub uses: Vec<String>,
}

/// Published on `{prefix}.events` (routing key `job.completed` / `job.cancelled`), as JSON
/// for the Python pipelines. At-least-once: a consumer may see one job's event twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobEvent {
    pub v: u16,
    pub event: String,
    pub job_id: String,
    pub status: JobStatus,
    pub total: usize,
    pub ok: usize,
    pub failed: BTreeMap<String, String>,
    pub skipped: BTreeMap<String, String>,
    pub at_ms: u64,
}
