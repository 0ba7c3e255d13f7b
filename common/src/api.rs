//! The bodies of the dispatcher's HTTP API: the Rust side of its OpenAPI contract
//! (`/openapi.json`, generated from these types with `utoipa`). `message` holds what travels
//! over AMQP and sits in Redis; this module holds what travels over HTTP. Clients (the `fleet`
//! CLI, `clients/python`) read these fields; add fields, never rename them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::message::{JobStatus, Outcome, OutcomeStatus};

/// Every error answer: one line that says what to fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    pub error: String,
}

/// `202` answer of `POST /v1/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SubmitAnswer {
    pub job_id: String,
    /// `false` when the idempotency key or job id named an existing job, which is returned.
    pub created: bool,
}

/// Analyzers of a job with a final outcome, by status.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    /// Analyzers with a final outcome (`ok + failed + skipped`).
    pub done: usize,
    /// Analyzers in the job's plan.
    pub total: usize,
    pub ok: usize,
    pub failed: usize,
    pub skipped: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct StageProgress {
    pub done: usize,
    pub total: usize,
}

/// `GET /v1/jobs/{id}`: status and progress, also per stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    pub job_id: String,
    pub status: JobStatus,
    pub video: String,
    pub created_at_ms: u64,
    /// Set once the job is completed or cancelled.
    pub completed_at_ms: Option<u64>,
    pub progress: Progress,
    /// Stage name → analyzers done/total on it.
    pub stages: BTreeMap<String, StageProgress>,
}

/// `GET /v1/jobs/{id}/result`: the status fields and every outcome so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobResult {
    #[serde(flatten)]
    pub job: JobView,
    /// Analyzer → outcome, for every analyzer with a final outcome.
    pub analyzers: BTreeMap<String, Outcome>,
    /// Analyzer → error, for the failed ones.
    pub failed: BTreeMap<String, Option<String>>,
    /// The request's `metadata`, passed through (null when none was given).
    pub metadata: serde_json::Value,
    /// The request as accepted.
    pub request: serde_json::Value,
}

/// `GET /v1/jobs`: the most recent jobs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobView>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// How many jobs (default 20, at most 500).
    #[param(minimum = 0)]
    pub limit: Option<usize>,
}

/// `POST /v1/jobs/{id}/cancel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CancelAnswer {
    pub job_id: String,
    /// The job's status after the request (`cancelled`, or `completed` when it had finished).
    pub status: JobStatus,
}

/// `GET /readyz`: whether each dependency is reachable, and why not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    pub redis: bool,
    pub amqp: bool,
    /// When this dispatcher last saw Redis lose the fleet's data (its epoch key vanished or
    /// changed: a restart without persistence, a flush, another server): jobs from before
    /// then are gone. Absent while it never happened in this process's lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_lost_at_ms: Option<u64>,
    /// What is not ready and why (empty when ready), e.g. how long RabbitMQ has been away
    /// and what the last attempt to reach it said. Only with the operator's token, when one
    /// is configured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// One fleet queue as the broker reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueDepth {
    pub queue: String,
    /// Ready (not yet delivered) messages; `null` when the broker could not tell.
    pub ready: Option<u32>,
    /// Consumers attached; `null` when the broker could not tell.
    pub consumers: Option<u32>,
}

/// One consumer on a fleet queue: a worker's stage consumer, or a dispatcher's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Consumer {
    /// The process, from the consumer tag: the worker's `--name` (`dispatcher@<host>` for
    /// dispatchers).
    pub process: String,
    /// The consumer tag: `<process>/<stage or queue>`.
    pub tag: String,
    pub queue: String,
    /// Its prefetch: the concurrency limit it enforces.
    pub prefetch: Option<u32>,
    /// The peer address the broker sees.
    pub host: Option<String>,
}

/// `POST /ui/login`: the web view's sign-in form.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
pub struct LoginForm {
    /// The dispatcher's `FLEET_API_TOKEN`.
    pub token: String,
}

/// `GET /ui/api/overview`: what the web view's front page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Overview {
    pub prefix: String,
    pub jobs: Vec<JobView>,
    pub queues: Vec<QueueDepth>,
    /// Who consumes the queues, when the RabbitMQ management API is configured
    /// (`FLEET_RABBITMQ_API`); empty otherwise.
    pub consumers: Vec<Consumer>,
    /// Why `consumers` is empty, when it is.
    pub consumers_note: Option<String>,
    /// Stage name → its concurrency limit.
    pub stage_limits: BTreeMap<String, u32>,
    pub at_ms: u64,
}

/// Where one task of a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Waiting for its dependencies: not published yet.
    Waiting,
    /// Published to its stage queue, no outcome yet.
    Queued,
    Ok,
    Failed,
    Skipped,
}

impl From<OutcomeStatus> for TaskState {
    fn from(s: OutcomeStatus) -> Self {
        match s {
            OutcomeStatus::Ok => TaskState::Ok,
            OutcomeStatus::Failed => TaskState::Failed,
            OutcomeStatus::Skipped => TaskState::Skipped,
        }
    }
}

/// One bar of a job's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TimelineTask {
    pub analyzer: String,
    pub stage: String,
    pub state: TaskState,
    /// From the outcome; absent while the task has none.
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
    pub worker: Option<String>,
    pub backend: Option<String>,
    pub attempts: Option<u32>,
}

/// `GET /ui/api/jobs/{id}`: one job as a timeline (a lane per stage, a bar per analyzer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Timeline {
    pub job: JobView,
    /// Stages in the fleet's order (the lanes).
    pub stages: Vec<String>,
    pub tasks: Vec<TimelineTask>,
}
