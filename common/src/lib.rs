//! What every fleet process shares: config, wire messages, codec, topology, Redis layout, broker and telemetry plumbing.
//!
//! Layout:
//! - `config`: `config/fleet.toml` + environment → a validated [`FleetConfig`]; every problem reported at once.
//! - `message`: the versioned wire and storage types (the only place that derives them).
//! - `api`: the bodies of the dispatcher's HTTP API (the types behind `/openapi.json`).
//! - `auth`: bearer tokens, compared in constant time.
//! - `ids`: the one id grammar (job ids, idempotency keys, client names).
//! - `text`: untrusted text bounded for headers and answers, escaped for logs.
//! - `codec`: the only place that calls rmp-serde; JSON/MessagePack by content type.
//! - `stage`: the stage names and worker classes (shared by `config` and `topology`).
//! - `topology`: the only place that names exchanges and queues, and declares them.
//! - `redis_conn`: the Redis connection; every command bounded in time, the reconnect's wait included.
//! - `store`: the Redis layout (`{prefix}:job:{id}` ...) and its operations.
//! - `backoff`: the one retry/backoff policy type ([`backoff::RECONNECT`]); its cap holds with jitter.
//! - `retry`: the one retry helper for a step made while a message is held ([`retry::hold`]);
//!   errors say whether they are transient or permanent ([`retry::Classify`]).
//! - `headers`: the AMQP header vocabulary (names, reading a header whoever wrote it).
//! - `broker`: a reconnecting AMQP handle with publisher confirms.
//! - `consume`: one supervised consumer (the dispatcher's queues); `slots`: a worker's stage as
//!   consumers of prefetch 1, one per slot, whose long tasks hand their delivery over.
//! - `telemetry`: logging/tracing setup and W3C trace context in AMQP headers.
//! - `metrics`: Prometheus registry shared by a process.
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod backoff;
pub mod broker;
pub mod codec;
pub mod config;
pub mod consume;
pub mod headers;
pub mod ids;
pub mod message;
pub mod metrics;
pub mod redis_conn;
pub mod retry;
pub mod slots;
pub mod stage;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod topology;

pub use config::{ConfigError, FleetConfig};
pub use message::{JobRequest, Outcome, OutcomeStatus, TaskMessage};
pub use stage::StageClass;
pub use store::Store;
pub use topology::Topology;

/// Milliseconds since the Unix epoch: the one clock written into messages and Redis.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
