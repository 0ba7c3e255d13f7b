//! `config/fleet.toml` + environment → a validated [`FleetConfig`].
//!
//! Loading never stops at the first problem: every bad value is collected and reported at
//! once, so an operator fixes the file in one pass. Binaries exit with [`EXIT_CONFIG`] on error.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// Exit status for a bad configuration (BSD `EX_USAGE`).
pub const EXIT_CONFIG: i32 = 64;
pub const DEFAULT_CONFIG_PATH: &str = "config/fleet.toml";
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";
pub const DEFAULT_DISPATCHER_PORT: u16 = 8080;
pub const DEFAULT_WORKER_PORT: u16 = 9100;
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9100";
/// Results stay readable for a week.
pub const DEFAULT_RESULT_TTL_SECS: u64 = 7 * 24 * 3600;
/// A task redelivered more often than this (workers crashing on it) is dead-lettered.
pub const DEFAULT_DELIVERY_LIMIT: u32 = 5;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
pub const DEFAULT_INITIAL_BACKOFF_MS: u64 = 200;
pub const DEFAULT_MAX_BACKOFF_MS: u64 = 10_000;
pub const DEFAULT_GRACE_SECS: u64 = 30;
/// RabbitMQ's own default `consumer_timeout` (30 min). 3.10 cannot tell a client its value,
/// so the fleet is told (`[fleet] consumer_timeout_ms`, as in `rabbitmq.conf`).
pub const DEFAULT_CONSUMER_TIMEOUT_MS: u64 = 1_800_000;
/// How long a worker's claim on a running task lives without a renewal (renewed every third).
pub const DEFAULT_LEASE_SECS: u64 = 10;

/// Names of the environment variables that override the file.
pub mod env {
    pub const CONFIG: &str = "FLEET_CONFIG";
    pub const AMQP_URL: &str = "FLEET_AMQP_URL";
    pub const REDIS_URL: &str = "FLEET_REDIS_URL";
    pub const LISTEN: &str = "FLEET_LISTEN";
    pub const METRICS_LISTEN: &str = "FLEET_METRICS_LISTEN";
    pub const API_TOKEN: &str = "FLEET_API_TOKEN";
    pub const CLIENT_TOKENS: &str = "FLEET_CLIENT_TOKENS";
    pub const ALLOW_OPEN_API: &str = "FLEET_ALLOW_OPEN_API";
    pub const LOCAL_ROOTS: &str = "FLEET_MEDIA_LOCAL_ROOTS";
    pub const PREFIX: &str = "FLEET_PREFIX";
    /// RabbitMQ's management API (`http://user:pass@host:15672/`): who consumes (`/ui`, `fleet queues`).
    pub const RABBITMQ_API: &str = "FLEET_RABBITMQ_API";
}

// Part of the config's vocabulary; defined in `stage`, which `topology` shares.
pub use crate::stage::{STAGES, StageClass};

#[derive(Debug, Clone, PartialEq)]
pub struct StageConfig {
    pub name: String,
    pub class: StageClass,
    /// Tasks one worker runs at once from this stage: the consumer's AMQP prefetch.
    pub concurrency: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AnalyzerConfig {
    pub name: String,
    pub stage: String,
    pub expected_secs: f64,
    pub gpu_memory_gb: f64,
    pub enabled: bool,
    /// Hard dependencies: run after them, skipped when one of them does not end `ok`.
    pub needs: Vec<String>,
    /// Soft dependencies: run after them, whatever their outcome (used when present).
    pub uses: Vec<String>,
    pub description: String,
    /// Free-form analyzer parameters, handed to the analyzer as JSON.
    pub params: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GpuConfig {
    pub memory_total_gb: f64,
    /// Thresholds as written ("35GB", "90%"); parsed by the GPU guard against the device.
    pub warning: String,
    pub critical: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Connections {
    pub amqp_url: String,
    pub redis_url: String,
    pub listen: String,
    pub metrics_listen: String,
    /// The operator's token: every route, every job (`FLEET_API_TOKEN`).
    pub api_token: Option<String>,
    /// Submitters' tokens by client name (`FLEET_CLIENT_TOKENS="name=token,..."`): a client
    /// sees, and its idempotency keys name, only its own jobs.
    pub client_tokens: BTreeMap<String, String>,
    pub prefix: String,
    /// RabbitMQ's management API base URL, when the operator gives one (credentials in it).
    pub rabbitmq_api: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FleetConfig {
    pub connections: Connections,
    pub result_ttl: Duration,
    pub delivery_limit: u32,
    pub shutdown_grace: Duration,
    /// The broker's delivery deadline (RabbitMQ `consumer_timeout`): a worker hands a task's
    /// delivery over to its Redis lease (and acks it) at half of it.
    pub consumer_timeout: Duration,
    /// A running task's lease in Redis; its worker renews it every third of this.
    pub lease: Duration,
    pub retry: RetryConfig,
    pub gpu: GpuConfig,
    pub stages: BTreeMap<String, StageConfig>,
    pub analyzers: BTreeMap<String, AnalyzerConfig>,
    /// Free-form media settings (`[media]`), read by the worker's media pipeline.
    pub media: serde_json::Value,
}

/// Every problem found in a config, reported together.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigError {
    pub source_name: String,
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} has {} problem(s):",
            self.source_name,
            self.problems.len()
        )?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    fleet: RawFleet,
    #[serde(default)]
    connections: RawConnections,
    #[serde(default)]
    retry: RawRetry,
    #[serde(default)]
    gpu: RawGpu,
    #[serde(default)]
    stages: BTreeMap<String, RawStage>,
    #[serde(default)]
    analyzers: BTreeMap<String, RawAnalyzer>,
    #[serde(default)]
    media: Option<toml::Table>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    result_ttl_secs: Option<u64>,
    delivery_limit: Option<u32>,
    shutdown_grace_secs: Option<u64>,
    consumer_timeout_ms: Option<u64>,
    lease_secs: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConnections {
    amqp_url: Option<String>,
    redis_url: Option<String>,
    listen: Option<String>,
    metrics_listen: Option<String>,
    prefix: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max_attempts: Option<u32>,
    initial_backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGpu {
    memory_total_gb: Option<f64>,
    warning: Option<String>,
    critical: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    class: Option<StageClass>,
    concurrency: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnalyzer {
    stage: Option<String>,
    expected_secs: Option<f64>,
    #[serde(default)]
    gpu_memory_gb: f64,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    needs: Vec<String>,
    #[serde(default)]
    uses: Vec<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    params: Option<toml::Table>,
}

fn yes() -> bool {
    true
}

impl FleetConfig {
    /// Reads the file named by `FLEET_CONFIG` (or the default path) and applies the environment.
    pub fn load_default() -> Result<Self, ConfigError> {
        let path = std::env::var(env::CONFIG).unwrap_or_else(|_| DEFAULT_CONFIG_PATH.into());
        Self::load(Path::new(&path), |k| std::env::var(k).ok())
    }

    /// Reads `path`, then applies overrides from `env` (a lookup, so tests need not touch
    /// the process environment).
    pub fn load(path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: path.display().to_string(),
            problems: vec![format!(
                "cannot read the file: {e} (set {} to its path)",
                env::CONFIG
            )],
        })?;
        Self::parse(&text, &path.display().to_string(), env)
    }

    pub fn parse(
        text: &str,
        source_name: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let fail = |problems| ConfigError {
            source_name: source_name.to_string(),
            problems,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| fail(vec![e.to_string()]))?;
        let mut problems = Vec::new();

        let mut stages = BTreeMap::new();
        for (name, s) in &raw.stages {
            if !STAGES.contains(&name.as_str()) {
                problems.push(format!(
                    "stages.{name}: unknown stage (known: {})",
                    STAGES.join(", ")
                ));
                continue;
            }
            let class = match s.class {
                Some(c) => c,
                None => {
                    problems.push(format!(
                        "stages.{name}.class is missing (\"gpu\" or \"cpu\")"
                    ));
                    continue;
                }
            };
            let concurrency = match s.concurrency {
                Some(c) if (1..=1000).contains(&c) => c as u16,
                Some(c) => {
                    problems.push(format!("stages.{name}.concurrency = {c}: must be 1..=1000"));
                    continue;
                }
                None => {
                    problems.push(format!(
                        "stages.{name}.concurrency is missing (the stage's limit)"
                    ));
                    continue;
                }
            };
            stages.insert(
                name.clone(),
                StageConfig {
                    name: name.clone(),
                    class,
                    concurrency,
                },
            );
        }

        let mut analyzers = BTreeMap::new();
        for (name, a) in &raw.analyzers {
            let stage = match &a.stage {
                Some(s) if STAGES.contains(&s.as_str()) => {
                    if !raw.stages.contains_key(s) {
                        problems.push(format!(
                            "analyzers.{name}.stage = {s:?}: that stage has no [stages.{s}] entry (its limit is missing)"
                        ));
                    }
                    s.clone()
                }
                Some(s) => {
                    problems.push(format!(
                        "analyzers.{name}.stage = {s:?}: unknown stage (known: {})",
                        STAGES.join(", ")
                    ));
                    continue;
                }
                None => {
                    problems.push(format!("analyzers.{name}.stage is missing"));
                    continue;
                }
            };
            let expected_secs = match a.expected_secs {
                Some(x) if x.is_finite() && x >= 0.0 => x,
                Some(x) => {
                    problems.push(format!(
                        "analyzers.{name}.expected_secs = {x}: must be >= 0"
                    ));
                    continue;
                }
                None => {
                    problems.push(format!("analyzers.{name}.expected_secs is missing"));
                    continue;
                }
            };
            if !(a.gpu_memory_gb.is_finite() && a.gpu_memory_gb >= 0.0) {
                problems.push(format!("analyzers.{name}.gpu_memory_gb must be >= 0"));
            }
            let params = match &a.params {
                Some(t) => serde_json::to_value(t).unwrap_or(serde_json::Value::Null),
                None => serde_json::Value::Object(Default::default()),
            };
            analyzers.insert(
                name.clone(),
                AnalyzerConfig {
                    name: name.clone(),
                    stage,
                    expected_secs,
                    gpu_memory_gb: a.gpu_memory_gb,
                    enabled: a.enabled,
                    needs: a.needs.clone(),
                    uses: a.uses.clone(),
                    description: a.description.clone(),
                    params,
                },
            );
        }
        check_dependencies(&analyzers, &mut problems);

        let f = &raw.fleet;
        if f.delivery_limit == Some(0) {
            problems.push("fleet.delivery_limit must be at least 1".into());
        }
        let consumer_timeout_ms = f.consumer_timeout_ms.unwrap_or(DEFAULT_CONSUMER_TIMEOUT_MS);
        let lease_secs = f.lease_secs.unwrap_or(DEFAULT_LEASE_SECS);
        if consumer_timeout_ms < 2_000 {
            problems.push(format!(
                "fleet.consumer_timeout_ms = {consumer_timeout_ms} is too short: RabbitMQ's consumer_timeout in ms, at least 2000 (its default is 1800000)"
            ));
        }
        if lease_secs < 3 {
            problems.push(format!(
                "fleet.lease_secs = {lease_secs} must be at least 3 (renewed every third)"
            ));
        }
        let r = &raw.retry;
        if r.max_attempts == Some(0) {
            problems.push("retry.max_attempts must be at least 1".into());
        }
        let c = &raw.connections;
        let pick = |var: &str, file: &Option<String>, default: &str| {
            env(var)
                .filter(|v| !v.is_empty())
                .or_else(|| file.clone())
                .unwrap_or_else(|| default.into())
        };
        let connections = Connections {
            amqp_url: pick(env::AMQP_URL, &c.amqp_url, DEFAULT_AMQP_URL),
            redis_url: pick(env::REDIS_URL, &c.redis_url, DEFAULT_REDIS_URL),
            listen: pick(env::LISTEN, &c.listen, DEFAULT_LISTEN),
            metrics_listen: pick(
                env::METRICS_LISTEN,
                &c.metrics_listen,
                DEFAULT_METRICS_LISTEN,
            ),
            api_token: env(env::API_TOKEN).filter(|t| !t.is_empty()),
            client_tokens: parse_client_tokens(
                &env(env::CLIENT_TOKENS).unwrap_or_default(),
                &mut problems,
            ),
            prefix: pick(env::PREFIX, &c.prefix, crate::topology::DEFAULT_PREFIX),
            rabbitmq_api: env(env::RABBITMQ_API).filter(|u| !u.is_empty()),
        };
        let open_ok = env(env::ALLOW_OPEN_API).is_some_and(|v| v == "1" || v == "true");
        check_exposure(&connections, open_ok, &mut problems);
        for (var, value) in [
            (env::LISTEN, &connections.listen),
            (env::METRICS_LISTEN, &connections.metrics_listen),
        ] {
            if value.parse::<std::net::SocketAddr>().is_err() {
                problems.push(format!(
                    "{var} / listen address {value:?} is not host:port (e.g. 127.0.0.1:8080)"
                ));
            }
        }
        if !connections.amqp_url.starts_with("amqp://")
            && !connections.amqp_url.starts_with("amqps://")
        {
            problems.push(format!(
                "{} must start with amqp:// or amqps://",
                env::AMQP_URL
            ));
        }
        if !connections.redis_url.starts_with("redis://")
            && !connections.redis_url.starts_with("rediss://")
        {
            problems.push(format!(
                "{} must start with redis:// or rediss://",
                env::REDIS_URL
            ));
        }
        if connections.prefix.is_empty()
            || !connections
                .prefix
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
        {
            problems.push(format!(
                "prefix {:?} must be non-empty ASCII letters, digits, '-', '_' or '.'",
                connections.prefix
            ));
        }
        let g = &raw.gpu;
        let gpu = GpuConfig {
            memory_total_gb: g.memory_total_gb.unwrap_or(44.5),
            warning: g.warning.clone().unwrap_or_else(|| "35GiB".into()),
            critical: g.critical.clone().unwrap_or_else(|| "40GiB".into()),
        };
        if !problems.is_empty() {
            return Err(fail(problems));
        }
        Ok(FleetConfig {
            connections,
            result_ttl: Duration::from_secs(f.result_ttl_secs.unwrap_or(DEFAULT_RESULT_TTL_SECS)),
            delivery_limit: f.delivery_limit.unwrap_or(DEFAULT_DELIVERY_LIMIT),
            shutdown_grace: Duration::from_secs(
                f.shutdown_grace_secs.unwrap_or(DEFAULT_GRACE_SECS),
            ),
            consumer_timeout: Duration::from_millis(consumer_timeout_ms),
            lease: Duration::from_secs(lease_secs),
            retry: RetryConfig {
                max_attempts: r.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
                initial_backoff: Duration::from_millis(
                    r.initial_backoff_ms.unwrap_or(DEFAULT_INITIAL_BACKOFF_MS),
                ),
                max_backoff: Duration::from_millis(
                    r.max_backoff_ms.unwrap_or(DEFAULT_MAX_BACKOFF_MS),
                ),
            },
            gpu,
            stages,
            analyzers,
            media: {
                let mut media = raw
                    .media
                    .map(|t| serde_json::to_value(t).unwrap_or_default())
                    .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
                if let Some(roots) = env(env::LOCAL_ROOTS).filter(|r| !r.is_empty())
                    && let Some(m) = media.as_object_mut()
                {
                    let roots: Vec<serde_json::Value> = std::env::split_paths(&roots)
                        .map(|p| p.to_string_lossy().into_owned().into())
                        .collect();
                    m.insert("local_roots".into(), roots.into());
                }
                media
            },
        })
    }

    pub fn enabled_analyzers(&self) -> impl Iterator<Item = &AnalyzerConfig> {
        self.analyzers.values().filter(|a| a.enabled)
    }

    pub fn stage(&self, name: &str) -> Option<&StageConfig> {
        self.stages.get(name)
    }

    /// Stages of one worker class, in the seed's order.
    pub fn stages_of(&self, class: StageClass) -> Vec<&StageConfig> {
        STAGES
            .iter()
            .filter_map(|s| self.stages.get(*s))
            .filter(|s| s.class == class)
            .collect()
    }

    /// The analyzers a job runs: the requested subset (or every enabled analyzer) plus,
    /// transitively, the hard dependencies they need. Soft dependencies (`uses`) are only
    /// waited for when they are part of the job.
    pub fn resolve_job_analyzers(
        &self,
        requested: Option<&[String]>,
    ) -> Result<Vec<String>, String> {
        let Some(requested) = requested else {
            return Ok(self.enabled_analyzers().map(|a| a.name.clone()).collect());
        };
        if requested.is_empty() {
            return Err(
                "\"analyzers\" is empty: leave it out to run every enabled analyzer".into(),
            );
        }
        if requested.len() > self.analyzers.len().max(1) * 4 {
            return Err(format!(
                "\"analyzers\" lists {} names; there are {} analyzers",
                requested.len(),
                self.analyzers.len()
            ));
        }
        // Names are quoted only when short, and only the first few: the reason travels in a
        // header and an HTTP answer, and must not grow with the request.
        let quoted = |name: &str| {
            if name.len() <= 64 {
                format!("{name:?}")
            } else {
                format!("a {}-byte name", name.len())
            }
        };
        let mut unknown = Vec::new();
        let mut stack: Vec<String> = Vec::new();
        for name in requested {
            match self.analyzers.get(name) {
                None => unknown.push(format!("{} is not an analyzer", quoted(name))),
                Some(a) if !a.enabled => {
                    unknown.push(format!("{} is disabled in the config", quoted(name)))
                }
                Some(_) => stack.push(name.clone()),
            }
        }
        if !unknown.is_empty() {
            let more = unknown.len().saturating_sub(5);
            unknown.truncate(5);
            if more > 0 {
                unknown.push(format!("and {more} more"));
            }
            return Err(format!("unknown analyzer(s): {}", unknown.join("; ")));
        }
        Ok(needs_closure(&stack, |n| {
            self.analyzers.get(n).map(|a| a.needs.as_slice())
        }))
    }
}

/// `requested` plus, transitively, the hard dependencies (`needs`) they have, sorted: the
/// analyzers a job runs. `needs_of` answers `None` for a name that is not an analyzer (it is
/// left out). The one dependency closure: the dispatcher's plans and the workload model's.
pub fn needs_closure<'a>(
    requested: &[String],
    needs_of: impl Fn(&str) -> Option<&'a [String]>,
) -> Vec<String> {
    let mut set = BTreeSet::new();
    let mut stack: Vec<String> = requested.to_vec();
    while let Some(name) = stack.pop() {
        if let Some(needs) = needs_of(&name)
            && set.insert(name)
        {
            stack.extend(needs.iter().cloned());
        }
    }
    set.into_iter().collect()
}

/// `name=token,name2=token2`; names follow the id grammar, tokens are non-empty and unique.
fn parse_client_tokens(text: &str, problems: &mut Vec<String>) -> BTreeMap<String, String> {
    let mut tokens = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((name, token)) = entry.split_once('=') else {
            problems.push(format!(
                "{}: an entry is not name=token (the entry is not shown)",
                env::CLIENT_TOKENS
            ));
            continue;
        };
        let name = name.trim();
        if let Err(e) = crate::ids::check_id("client name", name) {
            problems.push(format!("{}: {e}", env::CLIENT_TOKENS));
            continue;
        }
        if token.trim().is_empty() || tokens.values().any(|t: &String| t == token.trim()) {
            problems.push(format!(
                "{}: client {name:?} has an empty or duplicate token",
                env::CLIENT_TOKENS
            ));
            continue;
        }
        if tokens
            .insert(name.to_string(), token.trim().to_string())
            .is_some()
        {
            problems.push(format!(
                "{}: client {name:?} is listed twice",
                env::CLIENT_TOKENS
            ));
        }
    }
    tokens
}

/// An HTTP endpoint reachable from other hosts must not be open: the dispatcher's API needs a
/// token when `listen` is not a loopback address, and a worker's `/metrics` when
/// `metrics_listen` is not. `FLEET_ALLOW_OPEN_API=1` overrides it for a network that is
/// trusted as a whole.
fn check_exposure(c: &Connections, open_ok: bool, problems: &mut Vec<String>) {
    if open_ok {
        return;
    }
    let exposed = |addr: &str| {
        addr.parse::<std::net::SocketAddr>()
            .is_ok_and(|a| !a.ip().is_loopback())
    };
    let any_token = c.api_token.is_some() || !c.client_tokens.is_empty();
    if exposed(&c.listen) && !any_token {
        problems.push(format!(
            "{} {} is reachable from other hosts but no token is set: set {} (and {} for              submitters), bind 127.0.0.1, or set {}=1 on a fully trusted network",
            env::LISTEN,
            c.listen,
            env::API_TOKEN,
            env::CLIENT_TOKENS,
            env::ALLOW_OPEN_API
        ));
    }
    if exposed(&c.metrics_listen) && c.api_token.is_none() {
        problems.push(format!(
            "{} {} is reachable from other hosts but {} is unset: set it (Prometheus sends              it as a bearer token), bind 127.0.0.1, or set {}=1 on a fully trusted network",
            env::METRICS_LISTEN,
            c.metrics_listen,
            env::API_TOKEN,
            env::ALLOW_OPEN_API
        ));
    }
}

fn check_dependencies(analyzers: &BTreeMap<String, AnalyzerConfig>, problems: &mut Vec<String>) {
    for a in analyzers.values().filter(|a| a.enabled) {
        for (kind, deps) in [("needs", &a.needs), ("uses", &a.uses)] {
            for d in deps {
                match analyzers.get(d) {
                    None => problems.push(format!(
                        "analyzers.{}.{kind}: unknown analyzer {d:?}",
                        a.name
                    )),
                    Some(dep) if !dep.enabled && kind == "needs" => problems.push(format!(
                        "analyzers.{}.needs: {d:?} is disabled (enable it or drop the dependency)",
                        a.name
                    )),
                    Some(_) if d == &a.name => {
                        problems.push(format!("analyzers.{}.{kind}: depends on itself", a.name))
                    }
                    Some(_) => {}
                }
            }
        }
    }
    // Depth-first search for cycles over enabled analyzers (both dependency kinds order tasks).
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> =
        analyzers.keys().map(|k| (k.as_str(), Mark::New)).collect();
    fn visit<'a>(
        n: &'a str,
        analyzers: &'a BTreeMap<String, AnalyzerConfig>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
        problems: &mut Vec<String>,
    ) {
        match marks.get(n) {
            Some(Mark::Done) | None => return,
            Some(Mark::Active) => {
                let start = path.iter().position(|p| *p == n).unwrap_or(0);
                let mut cycle: Vec<&str> = path[start..].to_vec();
                cycle.push(n);
                problems.push(format!("dependency cycle: {}", cycle.join(" -> ")));
                return;
            }
            Some(Mark::New) => {}
        }
        marks.insert(n, Mark::Active);
        path.push(n);
        let a = &analyzers[n];
        for d in a.needs.iter().chain(&a.uses) {
            if d != n && analyzers.get(d).is_some_and(|x| x.enabled) {
                visit(d, analyzers, marks, path, problems);
            }
        }
        path.pop();
        marks.insert(n, Mark::Done);
    }
    for a in analyzers.values().filter(|a| a.enabled) {
        visit(&a.name, analyzers, &mut marks, &mut Vec::new(), problems);
    }
}

#[cfg(test)]
mod tests;
