//! Runs analyzers on stage tasks: GPU workers pinned to a device, CPU workers scaled out.
//!
//! Layout:
//! - `analyzer`: the one trait every analyzer implements, and its task context.
//! - `analyzers`: the registry (name → implementation) and the families (synthetic, signal, models).
//! - `runner`: one task from delivery to ack (claim, retries, store, notify).
//! - `lease`: a running task's lease kept (renewals, the delivery's hand-over before the
//!   broker's deadline).
//! - `residency`: the GPU worker's model-residency policy, following the memory guard.
//! - `health`: `/healthz`, `/readyz`, `/metrics`.
#![forbid(unsafe_code)]

pub mod analyzer;
pub mod analyzers;
pub mod health;
pub mod lease;
pub mod residency;
pub mod runner;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use common::broker::Broker;
use common::config::{FleetConfig, StageClass};
use common::metrics::{Metrics, stage_labels};
use common::slots::{self, Deadline, SlotSpec};
use common::store::WorkerInfo;
use common::{Store, Topology};
use media::MediaCache;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use crate::analyzer::{Analyzer, AnalyzerError, Backend, TaskContext};
pub use crate::analyzers::{Backends, Registry};

/// How one worker process runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub class: StageClass,
    /// Name written into outcomes and used as the AMQP connection name.
    pub name: String,
    pub backends: Backends,
    /// The GPU this worker is pinned to (registered with the worker for `fleet gpus`).
    pub gpu: Option<WorkerGpu>,
}

/// The pinned device as NVML and ONNX Runtime name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerGpu {
    pub uuid: String,
    pub index: u32,
    pub cuda_device_id: i32,
}

/// How long a registration lives without a refresh, and how often it is refreshed.
const REGISTRATION_TTL: Duration = Duration::from_secs(30);
const REGISTRATION_EVERY: Duration = Duration::from_secs(10);

/// Keeps this worker's registration fresh until `shutdown`, then deletes it.
async fn keep_registered(store: Store, info: WorkerInfo, shutdown: CancellationToken) {
    loop {
        if let Err(e) = store.register_worker(&info, REGISTRATION_TTL).await {
            tracing::debug!(error = %e, "worker registration not refreshed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(REGISTRATION_EVERY) => {}
        }
    }
    let _ = store.unregister_worker(&info.name).await;
}

/// Runs a worker until `shutdown` fires, then drains in-flight tasks within the grace period.
/// `accepting` gates new work (the GPU memory guard drives it; `None` = always open).
pub async fn run(
    config: Arc<FleetConfig>,
    opts: WorkerOptions,
    health: Option<TcpListener>,
    accepting: Option<watch::Receiver<bool>>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let c = &config.connections;
    let stages = config.stages_of(opts.class);
    if stages.is_empty() {
        anyhow::bail!(
            "the config has no {} stage for this worker to consume",
            opts.class
        );
    }
    let store = Store::connect(&c.redis_url, &c.prefix, config.result_ttl).await?;
    common::store::Persistence::warn_if_volatile(store.persistence().await);
    let info = WorkerInfo {
        name: opts.name.clone(),
        class: opts.class.to_string(),
        host: std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default(),
        pid: std::process::id(),
        gpu_uuid: opts.gpu.as_ref().map(|g| g.uuid.clone()),
        gpu_index: opts.gpu.as_ref().map(|g| g.index),
        cuda_device_id: opts.gpu.as_ref().map(|g| g.cuda_device_id),
        started_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    };
    let topology = Topology::new(&c.prefix);
    let broker = Broker::connect(
        &c.amqp_url,
        &opts.name,
        topology.clone(),
        config.delivery_limit,
        &shutdown,
    )
    .await?;
    let registration = tokio::spawn(keep_registered(store.clone(), info, shutdown.clone()));
    let registry = Registry::build(&config, opts.backends);
    let cuda_device = opts
        .gpu
        .as_ref()
        .and_then(|g| u32::try_from(g.cuda_device_id).ok());
    let media_cfg =
        settings::media_config(&config, cuda_device).map_err(|e| anyhow::anyhow!("{e}"))?;
    let accepting = accepting.unwrap_or_else(|| watch::channel(true).1);
    let work_cancel = CancellationToken::new();
    let deadline = Deadline::new(config.consumer_timeout);
    let shared = Arc::new(runner::Shared {
        stages: stages.iter().map(|s| s.name.clone()).collect(),
        config: config.clone(),
        store,
        broker: broker.clone(),
        registry,
        media: MediaCache::new(Arc::new(media_cfg)),
        metrics: metrics.clone(),
        name: opts.name.clone(),
        accepting,
        shutdown: shutdown.clone(),
        work_cancel: work_cancel.clone(),
        deadline: deadline.clone(),
    });

    let health_task = health.map(|l| {
        let app = health::router(shared.clone());
        let s = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(l, app)
                .with_graceful_shutdown(async move { s.cancelled().await })
                .await;
        })
    });

    if preload_wanted() {
        preload(&shared).await;
    }

    let consumers = stages.iter().map(|stage| {
        metrics
            .stage_limit
            .get_or_create(&stage_labels(&stage.name))
            .set(stage.concurrency as i64);
        let spec = SlotSpec {
            queue: topology.stage_queue(&stage.name),
            slots: stage.concurrency,
            tag: format!("{}/{}", opts.name, stage.name),
            grace: config.shutdown_grace,
            deadline: deadline.clone(),
        };
        let w = shared.clone();
        let name = stage.name.clone();
        slots::run(
            broker.clone(),
            spec,
            shutdown.clone(),
            work_cancel.clone(),
            move |d| runner::handle(w.clone(), name.clone(), d),
        )
    });
    tracing::info!(
        worker = %opts.name, class = %opts.class,
        stages = ?stages.iter().map(|s| (&s.name, s.concurrency)).collect::<Vec<_>>(),
        backends = ?opts.backends,
        consumer_timeout_ms = config.consumer_timeout.as_millis() as u64,
        lease_secs = config.lease.as_secs(),
        "worker started (delivery deadline as configured: RabbitMQ 3.10 does not tell clients its consumer_timeout)"
    );
    futures::future::join_all(consumers).await;
    broker.close().await;
    let _ = registration.await;
    if let Some(h) = health_task {
        let _ = h.await;
    }
    tracing::info!(worker = %opts.name, "worker stopped");
    Ok(())
}

/// `FLEET_PRELOAD_MODELS=1` (or `true`): load and warm every model of the worker's stages
/// before taking work. Off by default: a test fleet's many short-lived workers would each pay
/// the loads; a GPU host wants it (`scripts/gpu-run.sh` sets it), since otherwise the first
/// task of each model pays its load and warm-up (27-38 s for a 30 s video's first job on the
/// H200).
fn preload_wanted() -> bool {
    std::env::var("FLEET_PRELOAD_MODELS").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

async fn preload(shared: &Arc<runner::Shared>) {
    let w = shared.clone();
    let started = std::time::Instant::now();
    let done = tokio::task::spawn_blocking(move || w.registry.preload(&w.config, &w.stages)).await;
    let Ok(done) = done else {
        tracing::warn!("model preload panicked; models load on their first task");
        return;
    };
    let mut loaded = 0;
    for (name, r, took) in done {
        match r {
            Ok(true) => {
                loaded += 1;
                tracing::info!(analyzer = %name, ms = took.as_millis() as u64, "preloaded");
            }
            Ok(false) => {}
            // Not fatal: the task reports the same problem as its result.
            Err(e) => tracing::warn!(analyzer = %name, error = %e, "preload failed"),
        }
    }
    tracing::info!(
        analyzers = loaded,
        ms = started.elapsed().as_millis() as u64,
        "models preloaded"
    );
}
