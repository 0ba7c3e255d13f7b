//! An in-process fleet for the benchmarks: the real dispatcher and synthetic workers under a
//! unique prefix on the real RabbitMQ and Redis, driven the way a pipeline drives it (JSON job
//! requests on `{p}.jobs`), with completions read from `{p}.events`. `stop` removes every
//! queue, exchange and key it created.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use common::broker::persistent;
use common::codec::JSON;
use common::config::{FleetConfig, StageClass};
use common::message::{JobEvent, JobRequest, Outcome};
use common::metrics::Metrics;
use common::{Store, Topology};
use futures::StreamExt;
use lapin::PublisherConfirm;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use worker::{Backends, WorkerOptions};

/// How long `start` waits for every consumer to attach.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Concurrent Redis reads when collecting outcomes.
const READ_CONCURRENCY: usize = 32;
/// `wait` on more jobs than this rechecks at most every [`COALESCE`], not on every event.
const COALESCE_ABOVE: usize = 64;
const COALESCE: Duration = Duration::from_millis(5);

/// A unique prefix for one benchmark run: `bench-{tag}-{8 hex}`.
pub fn new_prefix(tag: &str) -> String {
    format!(
        "bench-{tag}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Loads a config for a benchmark under `prefix`; other FLEET_* variables still apply.
pub fn load_config(text: &str, source: &str, prefix: &str) -> anyhow::Result<FleetConfig> {
    let env = |k: &str| {
        if k == common::config::env::PREFIX {
            Some(prefix.to_string())
        } else {
            std::env::var(k).ok()
        }
    };
    let mut config = FleetConfig::parse(text, source, env)?;
    // Nothing is in flight at the end of a run; keep shutdown short and keys short-lived.
    config.shutdown_grace = Duration::from_secs(10);
    config.result_ttl = Duration::from_secs(3600);
    Ok(config)
}

pub struct Harness {
    pub config: Arc<FleetConfig>,
    pub store: Store,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
    conn: Connection,
    publish: Channel,
    completed: Arc<Mutex<HashMap<String, u64>>>,
    count: watch::Receiver<usize>,
    events: JoinHandle<()>,
}

impl Harness {
    /// Starts a dispatcher and one synthetic worker per class in `classes` at `scale`, and
    /// returns once every consumer is attached.
    pub async fn start(
        config: FleetConfig,
        classes: &[StageClass],
        scale: f64,
    ) -> anyhow::Result<Harness> {
        Self::start_with_fleet_redis(config, classes, scale, None).await
    }

    /// As [`Harness::start`], with the dispatcher and workers (not the harness' own reads)
    /// reaching Redis at `fleet_redis` when given (the overhead benchmark's counting tap).
    pub async fn start_with_fleet_redis(
        config: FleetConfig,
        classes: &[StageClass],
        scale: f64,
        fleet_redis: Option<String>,
    ) -> anyhow::Result<Harness> {
        let mut fleet_config = config.clone();
        if let Some(url) = fleet_redis {
            fleet_config.connections.redis_url = url;
        }
        let fleet_config = Arc::new(fleet_config);
        let config = Arc::new(config);
        let c = &config.connections;
        let topology = Topology::new(&c.prefix);
        let store = Store::connect(&c.redis_url, &c.prefix, config.result_ttl)
            .await
            .with_context(|| format!("Redis at {}", c.redis_url))?;
        let conn = Connection::connect(
            &c.amqp_url,
            ConnectionProperties::default().with_connection_name("fleet-bench".into()),
        )
        .await
        .with_context(|| "RabbitMQ (FLEET_AMQP_URL)")?;
        let publish = conn.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        topology.declare(&publish, config.delivery_limit).await?;

        // Completions: a private queue on the events exchange.
        let ch = conn.create_channel().await?;
        let q = ch
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        ch.queue_bind(
            q.name().clone(),
            topology.events().into(),
            "job.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        let mut consumer = ch
            .basic_consume(
                q.name().clone(),
                "fleet-bench-events".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let completed: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let (tx, count) = watch::channel(0usize);
        let sink = completed.clone();
        let events = tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                if let Ok(e) = serde_json::from_slice::<JobEvent>(&d.data) {
                    let n = {
                        let mut m = sink.lock().expect("completion map");
                        m.entry(e.job_id).or_insert(e.at_ms);
                        m.len()
                    };
                    let _ = tx.send(n);
                }
            }
        });

        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        tasks.push(tokio::spawn(dispatcher::run(
            fleet_config.clone(),
            listener,
            shutdown.clone(),
        )));
        for class in classes {
            let opts = WorkerOptions {
                class: *class,
                name: format!("bench-{class}"),
                backends: Backends::Synthetic { scale },
                gpu: None,
            };
            tasks.push(tokio::spawn(worker::run(
                fleet_config.clone(),
                opts,
                None,
                None,
                Metrics::new(),
                shutdown.clone(),
            )));
        }
        let h = Harness {
            config,
            store,
            shutdown,
            tasks,
            conn,
            publish,
            completed,
            count,
            events,
        };
        h.wait_ready(classes).await?;
        Ok(h)
    }

    async fn wait_ready(&self, classes: &[StageClass]) -> anyhow::Result<()> {
        let topology = Topology::new(&self.config.connections.prefix);
        let mut queues = vec![topology.jobs(), topology.outcomes()];
        for class in classes {
            queues.extend(
                self.config
                    .stages_of(*class)
                    .iter()
                    .map(|s| topology.stage_queue(&s.name)),
            );
        }
        let ch = self.conn.create_channel().await?;
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        for q in queues {
            loop {
                let info = ch
                    .queue_declare(
                        q.as_str().into(),
                        QueueDeclareOptions {
                            passive: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await?;
                if info.consumer_count() > 0 {
                    break;
                }
                if let Some(done) = self.tasks.iter().find(|t| t.is_finished()) {
                    anyhow::bail!(
                        "a fleet component stopped during start-up ({done:?}); see its log above"
                    );
                }
                anyhow::ensure!(
                    tokio::time::Instant::now() < deadline,
                    "no consumer on {q} after {READY_TIMEOUT:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let _ = ch.close(200, "ready".into()).await;
        Ok(())
    }

    /// Publishes a job request (as a pipeline would: JSON, persistent, the job id as message
    /// id) and returns the broker's pending confirm.
    pub async fn submit(
        &self,
        job_id: &str,
        video: &str,
        analyzers: Option<Vec<String>>,
    ) -> anyhow::Result<PublisherConfirm> {
        let req = JobRequest {
            v: None,
            video: video.into(),
            analyzers,
            idempotency_key: None,
            metadata: None,
        };
        let body = serde_json::to_vec(&req)?;
        let props = persistent(JSON, FieldTable::default()).with_message_id(job_id.into());
        let queue = Topology::new(&self.config.connections.prefix).jobs();
        Ok(self
            .publish
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                &body,
                props,
            )
            .await?)
    }

    /// Submits and waits for the broker's confirm.
    pub async fn submit_confirmed(
        &self,
        job_id: &str,
        video: &str,
        analyzers: Option<Vec<String>>,
    ) -> anyhow::Result<()> {
        self.submit(job_id, video, analyzers).await?.await?;
        Ok(())
    }

    /// Waits until every job in `ids` has published its completion event.
    pub async fn wait(&self, ids: &[String], timeout: Duration) -> anyhow::Result<()> {
        let mut count = self.count.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut missing: Vec<&String> = ids.iter().collect();
        loop {
            {
                let m = self.completed.lock().expect("completion map");
                missing.retain(|id| !m.contains_key(*id));
            }
            if missing.is_empty() {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, count.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => anyhow::bail!("the events consumer stopped"),
                Err(_) => anyhow::bail!(
                    "{} of {} job(s) not complete after {timeout:?}",
                    missing.len(),
                    ids.len()
                ),
            }
            if missing.len() > COALESCE_ABOVE {
                // Events come in bursts; rechecking a long list on every one would make the
                // driver quadratic and steal CPU from the fleet it measures.
                tokio::time::sleep(COALESCE).await;
            }
        }
    }

    /// The `at_ms` of a job's completion event.
    pub fn completed_at(&self, id: &str) -> Option<u64> {
        self.completed
            .lock()
            .expect("completion map")
            .get(id)
            .copied()
    }

    /// Every outcome of `ids`, read from Redis.
    pub async fn outcomes(
        &self,
        ids: &[String],
    ) -> anyhow::Result<BTreeMap<String, BTreeMap<String, Outcome>>> {
        let reads = futures::stream::iter(ids.iter().cloned())
            .map(|id| async move {
                let o = self.store.outcomes(&id).await;
                (id, o)
            })
            .buffer_unordered(READ_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        reads.into_iter().map(|(id, o)| Ok((id, o?))).collect()
    }

    /// Stops the fleet and deletes its queues, exchanges and (unless `keep_keys`) Redis keys.
    pub async fn stop(self, keep_keys: bool) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for t in self.tasks {
            match tokio::time::timeout(Duration::from_secs(20), t).await {
                Ok(Ok(Err(e))) => {
                    tracing::warn!(error = %e, "a fleet component ended with an error")
                }
                Err(_) => tracing::warn!("a fleet component did not stop within 20 s"),
                _ => {}
            }
        }
        self.events.abort();
        let ch = self.conn.create_channel().await?;
        Topology::new(&self.config.connections.prefix)
            .delete_all(&ch)
            .await?;
        let _ = self.conn.close(200, "bye".into()).await;
        if !keep_keys {
            self.store.delete_prefix().await?;
        }
        Ok(())
    }
}
