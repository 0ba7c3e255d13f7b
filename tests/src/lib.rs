//! Integration-test harness: start a dispatcher and workers against the real RabbitMQ and
//! Redis, each test under its own queue/key prefix, and wait for outcomes.
//!
//! Layout:
//! - [`Fleet`]: one test's fleet (prefix, config, in-process dispatcher/workers, cleanup).
//! - [`WorkerProcess`]: a worker binary as a child process (for SIGKILL/SIGTERM tests).
//! - [`eventually`]: poll a condition with a deadline.
//! - [`RabbitNode`]: a RabbitMQ node of a test's own (a short `consumer_timeout`).
#![forbid(unsafe_code)]

mod rabbit;
pub use rabbit::RabbitNode;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Once};
use std::time::Duration;

use common::broker::Broker;
use common::config::{FleetConfig, StageClass};
use common::message::{JobStatus, Outcome};
use common::metrics::Metrics;
use common::store::JobMeta;
use common::{Store, Topology};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use worker::{Backends, WorkerOptions};

pub const AMQP_URL: &str = common::config::DEFAULT_AMQP_URL;
pub const REDIS_URL: &str = common::config::DEFAULT_REDIS_URL;

/// Path of the repository's `config/fleet.toml`.
pub fn config_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/fleet.toml")
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One test's fleet. Everything it creates lives under a unique prefix; `cleanup` removes it.
pub struct Fleet {
    pub prefix: String,
    pub config: Arc<FleetConfig>,
    pub store: Store,
    pub http: reqwest::Client,
    dispatcher_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
    workers: Vec<(CancellationToken, JoinHandle<anyhow::Result<()>>)>,
}

impl Fleet {
    /// A fleet on the shipped config, changed by `edit` (e.g. retry settings, test params).
    pub async fn new(edit: impl FnOnce(&mut FleetConfig)) -> Fleet {
        let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let env = |k: &str| (k == common::config::env::PREFIX).then(|| prefix.clone());
        let mut config = FleetConfig::load(&config_path(), env).expect("config/fleet.toml loads");
        config.connections.amqp_url = AMQP_URL.into();
        config.connections.redis_url = REDIS_URL.into();
        config.shutdown_grace = Duration::from_secs(30);
        // Test media is made in the temporary directory; nothing else is readable.
        if let Some(media) = config.media.as_object_mut() {
            media.insert(
                "local_roots".into(),
                serde_json::json!([std::env::temp_dir()]),
            );
        }
        edit(&mut config);
        let store = Store::connect(REDIS_URL, &prefix, config.result_ttl)
            .await
            .expect("Redis at 127.0.0.1:6379 (make services)");
        Fleet {
            prefix,
            config: Arc::new(config),
            store,
            // Bounded, so that a request the fleet never answers fails the test instead of
            // hanging the run.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("HTTP client"),
            dispatcher_addr: None,
            shutdown: CancellationToken::new(),
            tasks: Vec::new(),
            workers: Vec::new(),
        }
    }

    /// Starts the dispatcher in-process on a free port.
    pub async fn start_dispatcher(&mut self) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.dispatcher_addr = Some(listener.local_addr().unwrap());
        let (cfg, token) = (self.config.clone(), self.shutdown.clone());
        self.tasks
            .push(tokio::spawn(dispatcher::run(cfg, listener, token)));
        let url = format!("{}/healthz", self.base_url());
        let http = self.http.clone();
        eventually(Duration::from_secs(20), "dispatcher /readyz", || {
            let (http, url) = (http.clone(), url.replace("healthz", "readyz"));
            async move {
                http.get(&url)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        })
        .await;
    }

    /// Starts a worker in-process; returns its metrics and a token that stops just it.
    pub async fn start_worker(
        &mut self,
        class: StageClass,
        name: &str,
        backends: Backends,
    ) -> (Arc<Metrics>, CancellationToken) {
        self.start_worker_with_health(class, name, backends, None)
            .await
    }

    /// [`Fleet::start_worker`] serving `/healthz`, `/readyz`, `/metrics` on `health`.
    pub async fn start_worker_with_health(
        &mut self,
        class: StageClass,
        name: &str,
        backends: Backends,
        health: Option<tokio::net::TcpListener>,
    ) -> (Arc<Metrics>, CancellationToken) {
        let metrics = Metrics::new();
        let token = self.shutdown.child_token();
        let opts = WorkerOptions {
            class,
            name: name.into(),
            backends,
            gpu: None,
        };
        let handle = tokio::spawn(worker::run(
            self.config.clone(),
            opts,
            health,
            None,
            metrics.clone(),
            token.clone(),
        ));
        self.workers.push((token.clone(), handle));
        (metrics, token)
    }

    /// Synthetic GPU and CPU workers at `scale`.
    pub async fn start_synthetic_workers(&mut self, scale: f64) {
        let b = Backends::Synthetic { scale };
        self.start_worker(StageClass::Gpu, "gpu-test", b).await;
        self.start_worker(StageClass::Cpu, "cpu-test", b).await;
    }

    pub fn base_url(&self) -> String {
        format!(
            "http://{}",
            self.dispatcher_addr.expect("dispatcher started")
        )
    }

    pub fn topology(&self) -> Topology {
        Topology::new(&self.prefix)
    }

    /// Every `job.*` event the fleet publishes from now on, through an exclusive queue on a
    /// channel of `broker` (the test's own handle: events are read past any outage proxy).
    pub async fn subscribe_events(&self, broker: &Broker, tag: &str) -> lapin::Consumer {
        use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
        use lapin::types::FieldTable;
        let ch = broker.channel(&CancellationToken::new()).await.unwrap();
        let exclusive = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        let q = ch
            .queue_declare("".into(), exclusive, FieldTable::default())
            .await
            .unwrap();
        ch.queue_bind(
            q.name().clone(),
            self.topology().events().into(),
            "job.*".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        let no_ack = BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        };
        ch.basic_consume(q.name().clone(), tag.into(), no_ack, FieldTable::default())
            .await
            .unwrap()
    }

    /// A broker handle of the test's own (for publishing raw messages, reading queues).
    pub async fn broker(&self) -> Arc<Broker> {
        Broker::connect(
            AMQP_URL,
            "test",
            self.topology(),
            self.config.delivery_limit,
            &CancellationToken::new(),
        )
        .await
        .expect("RabbitMQ at 127.0.0.1:5672 (make services)")
    }

    /// POST /v1/jobs; returns (status code, body).
    pub async fn post_job(&self, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1/jobs", self.base_url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(Value::Null))
    }

    /// Submits over HTTP and returns the job id (panics unless 202).
    pub async fn submit(&self, body: Value) -> String {
        let (code, resp) = self.post_job(body).await;
        assert_eq!(code, 202, "submit answered {code}: {resp}");
        resp["job_id"].as_str().unwrap().to_string()
    }

    pub async fn job(&self, id: &str) -> Option<JobMeta> {
        self.store.job(id).await.unwrap()
    }

    pub async fn outcomes(&self, id: &str) -> BTreeMap<String, Outcome> {
        self.store.outcomes(id).await.unwrap()
    }

    /// Waits until the job is completed and returns its outcomes.
    pub async fn wait_completed(&self, id: &str, timeout: Duration) -> BTreeMap<String, Outcome> {
        eventually(timeout, &format!("job {id} to complete"), || async {
            self.job(id)
                .await
                .filter(|m| m.status == JobStatus::Completed)
                .map(|_| ())
        })
        .await;
        self.outcomes(id).await
    }

    /// Stops every in-process component (graceful) and deletes the test's queues and keys.
    pub async fn cleanup(mut self) {
        self.shutdown.cancel();
        for (_, h) in self.workers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(35), h).await;
        }
        for h in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(35), h).await;
        }
        // Bounded too: leftovers under a unique prefix are harmless, a hang is not.
        let teardown = async {
            let broker = self.broker().await;
            if let Ok(ch) = broker.channel(&CancellationToken::new()).await {
                let _ = self.topology().delete_all(&ch).await;
            }
            broker.close().await;
        };
        if tokio::time::timeout(Duration::from_secs(30), teardown)
            .await
            .is_err()
        {
            eprintln!(
                "cleanup: broker teardown for {} did not finish within 30 s",
                self.prefix
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.store.delete_prefix()).await;
    }
}

/// The cargo-built binary `name` (dispatcher, worker, fleet), built on first use.
pub fn binary(name: &str) -> PathBuf {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "-q",
                "-p",
                "worker",
                "-p",
                "dispatcher",
                "-p",
                "fleet",
                "--bins",
            ])
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .status()
            .expect("run cargo build");
        assert!(
            status.success(),
            "building the worker/dispatcher binaries failed"
        );
    });
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    dir.join(name)
}

/// Children's logs reach the terminal only with `FLEET_TEST_LOGS=1` (they would bury the
/// test report otherwise).
pub fn child_logs() -> Stdio {
    if std::env::var_os("FLEET_TEST_LOGS").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

/// A worker binary running as a child process.
pub struct WorkerProcess {
    pub child: Child,
    pub name: String,
}

impl WorkerProcess {
    pub fn spawn(
        fleet: &Fleet,
        class: &str,
        name: &str,
        extra: &[&str],
        metrics_listen: &str,
    ) -> WorkerProcess {
        Self::spawn_with_env(fleet, class, name, extra, metrics_listen, &[])
    }

    /// [`WorkerProcess::spawn`] with environment variables of its own (they win over the
    /// defaults: another config file, services behind a [`Proxy`]).
    pub fn spawn_with_env(
        fleet: &Fleet,
        class: &str,
        name: &str,
        extra: &[&str],
        metrics_listen: &str,
        env: &[(&str, &str)],
    ) -> WorkerProcess {
        let mut cmd = Command::new(binary("worker"));
        cmd.args(["--class", class, "--name", name])
            .args(extra)
            .env("FLEET_CONFIG", config_path())
            .env("FLEET_PREFIX", &fleet.prefix)
            .env("FLEET_AMQP_URL", AMQP_URL)
            .env("FLEET_REDIS_URL", REDIS_URL)
            .env("FLEET_METRICS_LISTEN", metrics_listen)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(child_logs());
        let child = cmd.spawn().expect("spawn worker binary");
        WorkerProcess {
            child,
            name: name.into(),
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit and returns its exit code (None: killed by a signal).
    pub async fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "worker {} did not exit within {timeout:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1 (for a child's health endpoint).
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Sets `params.<key> = value` on an analyzer (test-only synthetic knobs).
pub fn set_param(config: &mut FleetConfig, analyzer: &str, key: &str, value: Value) {
    let a = config.analyzers.get_mut(analyzer).expect("known analyzer");
    if !a.params.is_object() {
        a.params = Value::Object(Default::default());
    }
    a.params[key] = value;
}

/// A TCP forwarder in front of RabbitMQ or Redis that a test can cut, stall and restore, to
/// play an outage without touching the shared services.
pub struct Proxy {
    pub addr: SocketAddr,
    mode: Arc<std::sync::atomic::AtomicU8>,
    changed: tokio::sync::watch::Sender<u64>,
}

const PROXY_UP: u8 = 0;
const PROXY_CUT: u8 = 1;
const PROXY_STALLED: u8 = 2;

impl Proxy {
    pub async fn start(target: &'static str) -> Proxy {
        use std::sync::atomic::{AtomicU8, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(PROXY_UP));
        let (changed, _) = tokio::sync::watch::channel(0u64);
        let (mode2, changed2) = (mode.clone(), changed.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let mut changed_rx = changed2.subscribe();
                match mode2.load(Ordering::SeqCst) {
                    PROXY_CUT => {
                        drop(inbound);
                        continue;
                    }
                    PROXY_STALLED => {
                        // Accepted and never answered, until the next change drops it.
                        tokio::spawn(async move {
                            let _ = changed_rx.changed().await;
                            drop(inbound);
                        });
                        continue;
                    }
                    _ => {}
                }
                let mode3 = mode2.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
                        _ = changed_rx.changed() => {}
                    }
                    if mode3.load(Ordering::SeqCst) == PROXY_STALLED {
                        // Both ends stay open and nothing passes, until the next change.
                        let _ = changed_rx.changed().await;
                    }
                });
            }
        });
        Proxy {
            addr,
            mode,
            changed,
        }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, std::sync::atomic::Ordering::SeqCst);
        self.changed.send_modify(|n| *n += 1);
    }

    /// Drops every open connection and refuses new ones until `restore` (a stopped service).
    pub fn cut(&self) {
        self.set(PROXY_CUT);
    }

    /// Keeps every connection open but passes nothing, and accepts new ones that never
    /// answer (a frozen service or a network that drops packets), until `restore` or `cut`.
    pub fn stall(&self) {
        self.set(PROXY_STALLED);
    }

    /// Forwards new connections again (stalled ones are dropped: their clients reconnect).
    pub fn restore(&self) {
        self.set(PROXY_UP);
    }
}
