//! Runs analyzers on stage tasks: GPU workers pinned to a device, CPU workers scaled out.
//!
//! Layout:
//! - `analyzer`: the one trait every analyzer implements, and its task context.
//! - `analyzers`: the registry (name → implementation) and the families (synthetic, signal, models).
//! - `runner`: one task from delivery to ack (dedupe, retries, store, notify).
//! - `health`: `/healthz`, `/readyz`, `/metrics`.
#![forbid(unsafe_code)]

pub mod analyzer;
pub mod analyzers;
pub mod health;
pub mod runner;
pub mod settings;

use std::sync::Arc;

use common::broker::Broker;
use common::config::{FleetConfig, StageClass};
use common::consume::{self, ConsumerSpec};
use common::metrics::{Metrics, stage_labels};
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
    let topology = Topology::new(&c.prefix);
    let broker = Broker::connect(
        &c.amqp_url,
        &opts.name,
        topology.clone(),
        config.delivery_limit,
        &shutdown,
    )
    .await?;
    let registry = Registry::build(&config, opts.backends);
    let media_cfg = settings::media_config(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let accepting = accepting.unwrap_or_else(|| watch::channel(true).1);
    let work_cancel = CancellationToken::new();
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

    let consumers = stages.iter().map(|stage| {
        metrics
            .stage_limit
            .get_or_create(&stage_labels(&stage.name))
            .set(stage.concurrency as i64);
        let spec = ConsumerSpec {
            queue: topology.stage_queue(&stage.name),
            prefetch: stage.concurrency,
            tag: format!("{}/{}", opts.name, stage.name),
            grace: config.shutdown_grace,
        };
        let w = shared.clone();
        let name = stage.name.clone();
        consume::run(
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
        backends = ?opts.backends, "worker started"
    );
    futures::future::join_all(consumers).await;
    broker.close().await;
    if let Some(h) = health_task {
        let _ = h.await;
    }
    tracing::info!(worker = %opts.name, "worker stopped");
    Ok(())
}
