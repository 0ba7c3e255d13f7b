//! Takes job requests (AMQP and HTTP), splits them into stage tasks, releases dependents, completes jobs.
//!
//! Layout:
//! - `core`: the decisions (submit, advance, cancel, dead tasks); idempotent, driven from Redis.
//! - `leases`: recovery of tasks whose worker stopped renewing their lease.
//! - `plans`: the bounded cache of job plans (immutable after intake) with their dependents.
//! - `intake`: the AMQP consumers (`{p}.jobs`, `{p}.outcomes`, `{p}.dead`).
//! - `http`: the HTTP API and health/metrics endpoints.
//! - `openapi`: the OpenAPI 3.1 document of every route, generated from the handlers and types.
//! - `ui`: the web view at `/ui` (embedded HTML/JS/CSS) and its JSON routes.
//! - `queues`: queue depths and consumers as the broker reports them (metrics, web view).
#![forbid(unsafe_code)]

pub mod core;
pub mod epoch;
pub mod http;
pub mod intake;
pub mod leases;
pub mod openapi;
pub mod plans;
pub mod queues;
pub mod ui;

use std::sync::Arc;

use common::broker::Broker;
use common::config::FleetConfig;
use common::consume::{self, ConsumerSpec};
use common::metrics::Metrics;
use common::{Store, Topology};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::core::{Core, SubmitError, Submitted};

/// Prefetch of the outcome consumer: notices are handled concurrently, serialised per job.
const OUTCOME_PREFETCH: u16 = 64;
const INTAKE_PREFETCH: u16 = 16;

/// Runs the dispatcher until `shutdown` fires: HTTP on `listener`, AMQP consumers, and
/// a drain of in-flight work within the configured grace period.
pub async fn run(
    config: Arc<FleetConfig>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let c = &config.connections;
    let store = Store::connect(&c.redis_url, &c.prefix, config.result_ttl).await?;
    common::store::Persistence::warn_if_volatile(store.persistence().await);
    let topology = Topology::new(&c.prefix);
    let name = format!("dispatcher@{}", hostname());
    let broker = Broker::connect(
        &c.amqp_url,
        &name,
        topology.clone(),
        config.delivery_limit,
        &shutdown,
    )
    .await?;
    let work_cancel = CancellationToken::new();
    let core = Arc::new(Core::new(
        config.clone(),
        store,
        broker.clone(),
        Metrics::new(),
        work_cancel.clone(),
    ));

    let epoch_watch = tokio::spawn(epoch::watch(core.clone(), shutdown.clone()));
    let lease_watch = tokio::spawn(leases::watch(core.clone(), shutdown.clone()));
    let addr = listener.local_addr()?;
    tracing::info!(%addr, prefix = %c.prefix, auth = c.api_token.is_some(), "dispatcher listening");
    let http_shutdown = shutdown.clone();
    let server = axum::serve(listener, http::router(core.clone()))
        .with_graceful_shutdown(async move { http_shutdown.cancelled().await });

    let spec = |queue: String, prefetch: u16, what: &str| ConsumerSpec {
        queue,
        prefetch,
        tag: format!("{name}/{what}"),
        grace: config.shutdown_grace,
    };
    let consumers = {
        let k = core.clone();
        let jobs = consume::run(
            broker.clone(),
            spec(topology.jobs(), INTAKE_PREFETCH, "jobs"),
            shutdown.clone(),
            work_cancel.clone(),
            move |d| intake::on_job_request(k.clone(), d),
        );
        let k = core.clone();
        let outcomes = consume::run(
            broker.clone(),
            spec(topology.outcomes(), OUTCOME_PREFETCH, "outcomes"),
            shutdown.clone(),
            work_cancel.clone(),
            move |d| intake::on_outcome(k.clone(), d),
        );
        let k = core.clone();
        let dead = consume::run(
            broker.clone(),
            spec(topology.dead(), INTAKE_PREFETCH, "dead"),
            shutdown.clone(),
            work_cancel.clone(),
            move |d| intake::on_dead(k.clone(), d),
        );
        async move { tokio::join!(jobs, outcomes, dead) }
    };
    let (served, _) = tokio::join!(server, consumers);
    let _ = epoch_watch.await;
    let _ = lease_watch.await;
    broker.close().await;
    served?;
    tracing::info!("dispatcher stopped");
    Ok(())
}

pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "localhost".into())
}
