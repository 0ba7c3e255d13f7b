//! The Prometheus registry of one process and the metric families the fleet exports.
//!
//! Every process serves it as text on `/metrics`. Labels are low-cardinality by design:
//! analyzer and stage names come from the config, never job ids.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub analyzer: String,
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub analyzer: String,
    pub stage: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GpuLabels {
    pub gpu: String,
}

/// One loaded model: its file stem, the execution provider and the precision it runs in.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
    pub provider: String,
    pub precision: String,
}

fn duration_histogram() -> Histogram {
    // 5 ms .. ~10 min
    Histogram::new(exponential_buckets(0.005, 2.0, 18))
}

/// All metric families; a process registers all and uses the ones that apply to it.
pub struct Metrics {
    registry: Registry,
    pub tasks_started: Family<TaskLabels, Counter>,
    pub tasks_finished: Family<OutcomeLabels, Counter>,
    pub task_retries: Family<TaskLabels, Counter>,
    pub task_duration: Family<TaskLabels, Histogram, fn() -> Histogram>,
    pub in_flight: Family<StageLabels, Gauge>,
    pub stage_limit: Family<StageLabels, Gauge>,
    pub dead_lettered: Family<ReasonLabels, Counter>,
    /// Tasks acked without running, by reason (`job gone`: the job's record is not in Redis).
    pub tasks_dropped: Family<ReasonLabels, Counter>,
    /// Task leases by event: `handed over` (a delivery acked before the broker's deadline),
    /// `lost` (a worker stopped a task another took), `recovered` (republished by the
    /// dispatcher), `cleared` (owner gone, the broker still had the message).
    pub leases: Family<ReasonLabels, Counter>,
    pub jobs_submitted: Counter,
    /// Times the dispatcher saw Redis lose the fleet's data (its epoch key vanished or changed).
    pub redis_state_lost: Counter,
    pub jobs_completed: Counter,
    pub job_latency: Histogram,
    pub gpu_memory_used_bytes: Family<GpuLabels, Gauge>,
    pub gpu_memory_total_bytes: Family<GpuLabels, Gauge>,
    pub gpu_utilization_percent: Family<GpuLabels, Gauge>,
    pub gpu_temperature_celsius: Family<GpuLabels, Gauge>,
    pub gpu_paused: Family<GpuLabels, Gauge>,
    /// Device memory each resident model took when it loaded (NVML, before/after the load);
    /// a model leaves the family when it is unloaded.
    pub model_device_bytes: Family<ModelLabels, Gauge>,
    /// Sampled by the dispatcher from the broker when `/metrics` is scraped.
    pub queue_ready: Family<QueueLabels, Gauge>,
    pub queue_consumers: Family<QueueLabels, Gauge>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("fleet");
        let m = Metrics {
            tasks_started: Family::default(),
            tasks_finished: Family::default(),
            task_retries: Family::default(),
            task_duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            in_flight: Family::default(),
            stage_limit: Family::default(),
            dead_lettered: Family::default(),
            tasks_dropped: Family::default(),
            leases: Family::default(),
            jobs_submitted: Counter::default(),
            redis_state_lost: Counter::default(),
            jobs_completed: Counter::default(),
            job_latency: duration_histogram(),
            gpu_memory_used_bytes: Family::default(),
            gpu_memory_total_bytes: Family::default(),
            gpu_utilization_percent: Family::default(),
            gpu_temperature_celsius: Family::default(),
            gpu_paused: Family::default(),
            model_device_bytes: Family::default(),
            queue_ready: Family::default(),
            queue_consumers: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "tasks_started",
            "Tasks a worker started",
            m.tasks_started.clone(),
        );
        registry.register(
            "tasks_finished",
            "Tasks with a recorded outcome",
            m.tasks_finished.clone(),
        );
        registry.register(
            "task_retries",
            "Analyzer runs retried after a transient error",
            m.task_retries.clone(),
        );
        registry.register(
            "task_duration_seconds",
            "Analyzer run time",
            m.task_duration.clone(),
        );
        registry.register(
            "in_flight",
            "Tasks running now per stage",
            m.in_flight.clone(),
        );
        registry.register(
            "stage_limit",
            "Concurrency limit (prefetch) per stage",
            m.stage_limit.clone(),
        );
        registry.register(
            "dead_lettered",
            "Messages sent to the dead-letter queue",
            m.dead_lettered.clone(),
        );
        registry.register(
            "tasks_dropped",
            "Tasks acked without running (their job's record is gone, or another worker runs them)",
            m.tasks_dropped.clone(),
        );
        registry.register(
            "leases",
            "Task lease events (handed over, lost, recovered, cleared)",
            m.leases.clone(),
        );
        registry.register(
            "redis_state_lost",
            "Times Redis lost the fleet's data (epoch key gone or changed)",
            m.redis_state_lost.clone(),
        );
        registry.register(
            "jobs_submitted",
            "Jobs accepted at intake",
            m.jobs_submitted.clone(),
        );
        registry.register(
            "jobs_completed",
            "Jobs with every analyzer final",
            m.jobs_completed.clone(),
        );
        registry.register(
            "job_latency_seconds",
            "Submit to completion",
            m.job_latency.clone(),
        );
        registry.register(
            "gpu_memory_used_bytes",
            "NVML memory used",
            m.gpu_memory_used_bytes.clone(),
        );
        registry.register(
            "gpu_memory_total_bytes",
            "NVML memory total",
            m.gpu_memory_total_bytes.clone(),
        );
        registry.register(
            "gpu_utilization_percent",
            "NVML GPU utilization",
            m.gpu_utilization_percent.clone(),
        );
        registry.register(
            "gpu_temperature_celsius",
            "NVML temperature",
            m.gpu_temperature_celsius.clone(),
        );
        registry.register(
            "gpu_paused",
            "1 while the memory guard stops new work",
            m.gpu_paused.clone(),
        );
        registry.register(
            "model_device_bytes",
            "GPU memory a resident model took at load, measured through NVML",
            m.model_device_bytes.clone(),
        );
        registry.register(
            "queue_messages_ready",
            "Messages waiting in a fleet queue (sampled by the dispatcher)",
            m.queue_ready.clone(),
        );
        registry.register(
            "queue_consumers",
            "Consumers on a fleet queue (sampled by the dispatcher)",
            m.queue_consumers.clone(),
        );
        Arc::new(Metrics { registry, ..m })
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

pub fn task_labels(analyzer: &str, stage: &str) -> TaskLabels {
    TaskLabels {
        analyzer: analyzer.into(),
        stage: stage.into(),
    }
}

pub fn queue_labels(queue: &str) -> QueueLabels {
    QueueLabels {
        queue: queue.into(),
    }
}

pub fn stage_labels(stage: &str) -> StageLabels {
    StageLabels {
        stage: stage.into(),
    }
}
