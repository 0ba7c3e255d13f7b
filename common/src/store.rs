//! The Redis layout and its operations. Readable without our code (see README "Redis layout"):
//!
//! - `{p}:job:{id}`          hash: `status`, `video`, `total`, `created_at_ms`, `updated_at_ms`,
//!   `completed_at_ms`, `request` (JSON, without `metadata`), `plan` (JSON), `metadata` (JSON),
//!   `traceparent`, `owner` (the submitting client; empty for the operator or an open API)
//! - `{p}:job:{id}:results`  hash: analyzer → JSON [`Outcome`]; the first final outcome wins (HSETNX)
//! - `{p}:job:{id}:released` set: analyzers whose task was published to a stage queue
//! - `{p}:idem:{sha256}`     string: job id of an idempotency key; the digest is of the
//!   submitting client and the key, so clients cannot see or take each other's keys
//! - `{p}:jobs`              sorted set: job ids by creation time (recent jobs); every job
//!   creation renews its TTL and drops entries older than the TTL
//! - `{p}:job:{id}:lease:{analyzer}`, `{p}:leases`: a running task's claim (see `lease`)
//!
//! Every key carries the result TTL (the epoch twice it, worker registrations their own).
//! Every command answers or fails within [`crate::redis_conn::COMMAND_WITHIN`], also while
//! Redis is away.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use redis::AsyncCommands;

use crate::message::{JobStatus, Outcome, PlannedTask};
use crate::redis_conn::Bounded;
use crate::retry::{Classify, Fault};

mod lease;
mod view;
pub use lease::{Claim, LeasedTask, RECOVERY_TOKEN_PREFIX, Recovery};
pub use view::{FinalStatus, JobView};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

/// A corrupt record is permanent: it reads the same on every try. Of Redis's own errors only
/// those that say the data is not what the layout stores (a key of another type, an answer
/// of a type the layout never gives) are permanent; every other one (connection, timeout,
/// `LOADING`, `OOM`, `MISCONF`, `BUSY`, `READONLY`, `NOPERM`, a script error) is transient:
/// it is the server's state, the same for every message, and goes when the server recovers
/// or the operator fixes it.
impl Classify for StoreError {
    fn fault(&self) -> Fault {
        match self {
            StoreError::Corrupt { .. } => Fault::Permanent,
            StoreError::Redis(e) => redis_fault(e),
        }
    }
}

fn redis_fault(e: &redis::RedisError) -> Fault {
    // A pipeline's or script's error carries the failing command's code inside.
    let wrong_type = e
        .clone()
        .into_server_errors()
        .is_some_and(|errs| errs.iter().any(|(_, s)| s.code() == "WRONGTYPE"))
        || e.code() == Some("WRONGTYPE");
    if wrong_type || e.kind() == redis::ErrorKind::UnexpectedReturnType {
        Fault::Permanent
    } else {
        Fault::Transient
    }
}

impl StoreError {
    fn corrupt(key: &str, reason: impl ToString) -> Self {
        StoreError::Corrupt {
            key: key.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// A job's metadata hash, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct JobMeta {
    pub id: String,
    pub status: JobStatus,
    pub video: String,
    pub total: usize,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    pub completed_at_ms: Option<u64>,
    pub request: serde_json::Value,
    pub plan: Vec<PlannedTask>,
    pub metadata: serde_json::Value,
    /// W3C traceparent of the job's root span, so late steps join the job's trace.
    pub traceparent: Option<String>,
    /// The client that submitted it (`None`: the operator, or an API without client tokens).
    pub owner: Option<String>,
}

/// A running worker as it registers itself under `{prefix}:worker:{name}`: refreshed while it
/// runs, gone (TTL) soon after it dies, deleted when it stops cleanly. `fleet gpus` reads it
/// to show which worker holds which GPU.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorkerInfo {
    pub name: String,
    /// `gpu` or `cpu`.
    pub class: String,
    pub host: String,
    pub pid: u32,
    /// The pinned GPU (NVML UUID and index, and the CUDA device id its sessions use).
    pub gpu_uuid: Option<String>,
    pub gpu_index: Option<u32>,
    pub cuda_device_id: Option<i32>,
    pub started_at_ms: u64,
}

/// What a Redis server keeps across a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persistence {
    /// Append-only file on.
    pub aof: bool,
    /// RDB snapshots configured (`save` has at least one rule).
    pub snapshots: bool,
}

impl Persistence {
    pub fn of(appendonly: &str, save: &str) -> Self {
        Self {
            aof: appendonly.trim().eq_ignore_ascii_case("yes"),
            snapshots: !save.trim().is_empty(),
        }
    }

    /// Nothing survives a restart: every job, outcome and idempotency key goes with it.
    pub fn keeps_nothing(self) -> bool {
        !self.aof && !self.snapshots
    }

    /// Logs a warning when a restart of this Redis would lose the fleet's state.
    pub fn warn_if_volatile(p: Option<Self>) {
        match p {
            Some(p) if p.keeps_nothing() => tracing::warn!(
                "Redis keeps nothing on disk (appendonly no, no save rules): a restart loses every job and outcome; run it with appendonly yes"
            ),
            Some(p) if !p.aof => tracing::warn!(
                "Redis only snapshots (appendonly no): a restart loses what changed since the last snapshot; appendonly yes is safer"
            ),
            _ => {}
        }
    }
}

#[derive(Clone)]
pub struct Store {
    conn: Bounded,
    prefix: String,
    ttl: Duration,
}

const CREATE_JOB: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], KEYS[3])
-- The recent-jobs index lives as long as its newest job and holds no job older than the TTL.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (tonumber(ARGV[2]) - tonumber(ARGV[1]) * 1000))
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 1
"#;

impl Store {
    pub async fn connect(url: &str, prefix: &str, ttl: Duration) -> Result<Self, StoreError> {
        let conn = Bounded::connect(url).await?;
        Ok(Self {
            conn,
            prefix: prefix.to_string(),
            ttl,
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn job_key(&self, id: &str) -> String {
        format!("{}:job:{id}", self.prefix)
    }

    pub fn results_key(&self, id: &str) -> String {
        format!("{}:job:{id}:results", self.prefix)
    }

    pub fn released_key(&self, id: &str) -> String {
        format!("{}:job:{id}:released", self.prefix)
    }

    /// The key of an idempotency key within a client's scope. Hashed: the key is the
    /// caller's text, and the digest keeps it to one fixed-length key segment.
    fn idem_key(&self, scope: &str, key: &str) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(scope.as_bytes());
        h.update([0u8]);
        h.update(key.as_bytes());
        let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        format!("{}:idem:{digest}", self.prefix)
    }

    fn recent_key(&self) -> String {
        format!("{}:jobs", self.prefix)
    }

    fn ttl_secs(&self) -> i64 {
        self.ttl.as_secs().max(1) as i64
    }

    /// PING within `within` (probes answer within a bound while Redis is away).
    pub async fn ping_within(&self, within: Duration) -> bool {
        self.unavailable_within(within).await.is_none()
    }

    /// Why Redis cannot be used now (`None`: it answered PING within `within`).
    pub async fn unavailable_within(&self, within: Duration) -> Option<String> {
        match tokio::time::timeout(within, self.ping()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!(
                "Redis did not answer PING within {} ms",
                within.as_millis()
            )),
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }

    /// Binds an idempotency key of client `scope` to `job_id` unless it is bound already;
    /// returns the bound id.
    pub async fn claim_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        job_id: &str,
    ) -> Result<String, StoreError> {
        let mut c = self.conn.clone();
        let k = self.idem_key(scope, key);
        let set: Option<String> = redis::cmd("SET")
            .arg(&k)
            .arg(job_id)
            .arg("NX")
            .arg("EX")
            .arg(self.ttl_secs())
            .query_async(&mut c)
            .await?;
        if set.is_some() {
            return Ok(job_id.to_string());
        }
        let existing: Option<String> = c.get(&k).await?;
        Ok(existing.unwrap_or_else(|| job_id.to_string()))
    }

    /// Records a new job; returns false when a job with this id already exists.
    pub async fn create_job(&self, meta: &JobMeta) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let fields: Vec<(&str, String)> = vec![
            ("status", meta.status.as_str().into()),
            ("video", meta.video.clone()),
            ("total", meta.total.to_string()),
            ("created_at_ms", meta.created_at_ms.to_string()),
            ("updated_at_ms", meta.updated_at_ms.to_string()),
            ("request", meta.request.to_string()),
            (
                "plan",
                serde_json::to_string(&meta.plan).unwrap_or_default(),
            ),
            ("metadata", meta.metadata.to_string()),
            ("traceparent", meta.traceparent.clone().unwrap_or_default()),
            ("owner", meta.owner.clone().unwrap_or_default()),
        ];
        let script = redis::Script::new(CREATE_JOB);
        let mut inv = script.prepare_invoke();
        inv.key(self.job_key(&meta.id))
            .key(self.recent_key())
            .key(&meta.id);
        inv.arg(self.ttl_secs()).arg(meta.created_at_ms);
        for (k, v) in &fields {
            inv.arg(*k).arg(v);
        }
        let created: i64 = inv.invoke_async(&mut c).await?;
        Ok(created == 1)
    }

    pub async fn job(&self, id: &str) -> Result<Option<JobMeta>, StoreError> {
        let mut c = self.conn.clone();
        let key = self.job_key(id);
        let h: BTreeMap<String, String> = c.hgetall(&key).await?;
        if h.is_empty() {
            return Ok(None);
        }
        let get = |f: &str| h.get(f).map(String::as_str).unwrap_or("");
        let num = |f: &str| get(f).parse::<u64>().ok();
        let json = |f: &str| serde_json::from_str(get(f)).unwrap_or(serde_json::Value::Null);
        let status = JobStatus::parse(get("status"))
            .ok_or_else(|| StoreError::corrupt(&key, "bad status"))?;
        let plan: Vec<PlannedTask> = serde_json::from_str(get("plan"))
            .map_err(|e| StoreError::corrupt(&key, format!("plan: {e}")))?;
        Ok(Some(JobMeta {
            id: id.to_string(),
            status,
            video: get("video").to_string(),
            total: num("total").unwrap_or(plan.len() as u64) as usize,
            created_at_ms: num("created_at_ms").unwrap_or(0),
            updated_at_ms: num("updated_at_ms").unwrap_or(0),
            completed_at_ms: num("completed_at_ms"),
            request: json("request"),
            plan,
            metadata: json("metadata"),
            traceparent: Some(get("traceparent").to_string()).filter(|s| !s.is_empty()),
            owner: Some(get("owner").to_string()).filter(|s| !s.is_empty()),
        }))
    }

    /// Only the job's plan (one field): which analyzers it runs, for a worker planning the
    /// job's decode. `None` for an unknown or expired job.
    pub async fn plan(&self, id: &str) -> Result<Option<Vec<PlannedTask>>, StoreError> {
        let mut c = self.conn.clone();
        let key = self.job_key(id);
        let raw: Option<String> = c.hget(&key, "plan").await?;
        raw.map(|r| {
            serde_json::from_str(&r).map_err(|e| StoreError::corrupt(&key, format!("plan: {e}")))
        })
        .transpose()
    }

    /// Sets the job's status; `completed`/`cancelled` also stamp `completed_at_ms`.
    pub async fn set_status(
        &self,
        id: &str,
        status: JobStatus,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let key = self.job_key(id);
        let mut p = redis::pipe();
        p.hset(&key, "status", status.as_str()).ignore();
        p.hset(&key, "updated_at_ms", now_ms).ignore();
        if status.is_final() {
            p.hset(&key, "completed_at_ms", now_ms).ignore();
        }
        p.expire(&key, self.ttl_secs()).ignore();
        let () = p.query_async(&mut c).await?;
        Ok(())
    }

    /// Stores an outcome unless one is already final; true when this call stored it.
    pub async fn put_outcome(
        &self,
        id: &str,
        analyzer: &str,
        outcome: &Outcome,
    ) -> Result<bool, StoreError> {
        self.store_outcome(id, analyzer, outcome, |_| {}).await
    }

    /// `HSETNX` of the outcome with the results key's TTL, and whatever `also` adds to the same
    /// pipeline (its commands' replies ignored): one round trip. True when this call stored it.
    pub(crate) async fn store_outcome(
        &self,
        id: &str,
        analyzer: &str,
        outcome: &Outcome,
        also: impl FnOnce(&mut redis::Pipeline),
    ) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let key = self.results_key(id);
        let json = serde_json::to_string(outcome).map_err(|e| StoreError::corrupt(&key, e))?;
        let mut pipe = redis::pipe();
        pipe.hset_nx(&key, analyzer, json)
            .expire(&key, self.ttl_secs())
            .ignore();
        also(&mut pipe);
        let (stored,): (bool,) = pipe.query_async(&mut c).await?;
        Ok(stored)
    }

    pub async fn outcome(&self, id: &str, analyzer: &str) -> Result<Option<Outcome>, StoreError> {
        let mut c = self.conn.clone();
        let key = self.results_key(id);
        let raw: Option<String> = c.hget(&key, analyzer).await?;
        raw.map(|r| serde_json::from_str(&r).map_err(|e| StoreError::corrupt(&key, e)))
            .transpose()
    }

    /// What Redis keeps on disk (`CONFIG GET appendonly` and `save`); `None` where the server
    /// does not say (CONFIG disabled or renamed).
    pub async fn persistence(&self) -> Option<Persistence> {
        let mut c = self.conn.clone();
        let get = |name: &'static str| redis::cmd("CONFIG").arg("GET").arg(name).clone();
        let aof: Vec<String> = get("appendonly").query_async(&mut c).await.ok()?;
        let save: Vec<String> = get("save").query_async(&mut c).await.ok()?;
        Some(Persistence::of(
            aof.get(1).map(String::as_str).unwrap_or(""),
            save.get(1).map(String::as_str).unwrap_or(""),
        ))
    }

    pub async fn outcomes(&self, id: &str) -> Result<BTreeMap<String, Outcome>, StoreError> {
        let mut c = self.conn.clone();
        let key = self.results_key(id);
        let raw: BTreeMap<String, String> = c.hgetall(&key).await?;
        raw.into_iter()
            .map(|(k, v)| {
                let o = serde_json::from_str(&v)
                    .map_err(|e| StoreError::corrupt(&key, format!("{k}: {e}")))?;
                Ok((k, o))
            })
            .collect()
    }

    /// Outcomes of some analyzers of a job (missing ones are absent from the map).
    pub async fn outcomes_of(
        &self,
        id: &str,
        analyzers: &[String],
    ) -> Result<BTreeMap<String, Outcome>, StoreError> {
        if analyzers.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut c = self.conn.clone();
        let key = self.results_key(id);
        let raw: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&key)
            .arg(analyzers)
            .query_async(&mut c)
            .await?;
        let mut out = BTreeMap::new();
        for (name, v) in analyzers.iter().zip(raw) {
            if let Some(v) = v {
                out.insert(
                    name.clone(),
                    serde_json::from_str(&v).map_err(|e| StoreError::corrupt(&key, e))?,
                );
            }
        }
        Ok(out)
    }

    pub async fn count_outcomes(&self, id: &str) -> Result<usize, StoreError> {
        let mut c = self.conn.clone();
        Ok(c.hlen(self.results_key(id)).await?)
    }

    pub async fn released(&self, id: &str) -> Result<BTreeSet<String>, StoreError> {
        let mut c = self.conn.clone();
        Ok(c.smembers(self.released_key(id)).await?)
    }

    pub async fn mark_released(&self, id: &str, analyzers: &[String]) -> Result<(), StoreError> {
        if analyzers.is_empty() {
            return Ok(());
        }
        let mut c = self.conn.clone();
        let key = self.released_key(id);
        let () = redis::pipe()
            .sadd(&key, analyzers)
            .ignore()
            .expire(&key, self.ttl_secs())
            .ignore()
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    /// The most recent job ids, newest first.
    pub async fn recent_jobs(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut c = self.conn.clone();
        let ids: Vec<String> = c
            .zrevrange(self.recent_key(), 0, limit.max(1) as isize - 1)
            .await?;
        Ok(ids)
    }

    /// Drops old entries from the recent-jobs index (their hashes expire on their own).
    pub async fn trim_recent(&self, older_than_ms: u64) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: i64 = c.zrembyscore(self.recent_key(), 0, older_than_ms).await?;
        Ok(())
    }

    /// Marks this Redis as holding the fleet's state, so that its disappearance tells a wiped
    /// or replaced Redis from an empty one. Its TTL is twice the results' and every check
    /// renews it: it outlives every job it vouches for, and goes when nobody checks.
    fn epoch_key(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    fn epoch_ttl_secs(&self) -> i64 {
        self.ttl_secs().saturating_mul(2)
    }

    /// The epoch now, creating it from `candidate` if there is none; returns the one that holds.
    pub async fn ensure_epoch(&self, candidate: &str) -> Result<String, StoreError> {
        let mut c = self.conn.clone();
        let (now,): (Option<String>,) = redis::pipe()
            .cmd("SET")
            .arg(self.epoch_key())
            .arg(candidate)
            .arg("NX")
            .arg("EX")
            .arg(self.epoch_ttl_secs())
            .ignore()
            .get(self.epoch_key())
            .query_async(&mut c)
            .await?;
        Ok(now.unwrap_or_else(|| candidate.to_string()))
    }

    /// The epoch now (renewing its TTL), or `None` when there is none.
    pub async fn epoch(&self) -> Result<Option<String>, StoreError> {
        let mut c = self.conn.clone();
        Ok(redis::cmd("GETEX")
            .arg(self.epoch_key())
            .arg("EX")
            .arg(self.epoch_ttl_secs())
            .query_async(&mut c)
            .await?)
    }

    fn worker_key(&self, name: &str) -> String {
        format!("{}:worker:{name}", self.prefix)
    }

    /// Registers (or refreshes) a running worker for `ttl`.
    pub async fn register_worker(
        &self,
        info: &WorkerInfo,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let json = serde_json::to_string(info).unwrap_or_default();
        let _: () = c
            .set_ex(self.worker_key(&info.name), json, ttl.as_secs().max(1))
            .await?;
        Ok(())
    }

    pub async fn unregister_worker(&self, name: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: i64 = c.del(self.worker_key(name)).await?;
        Ok(())
    }

    /// Every key matching `pattern` (SCAN: never blocks the server).
    async fn scan(&self, pattern: &str) -> Result<Vec<String>, StoreError> {
        let mut c = self.conn.clone();
        let mut it: redis::AsyncIter<String> = c.scan_match(pattern).await?;
        let mut keys = Vec::new();
        while let Some(k) = futures::StreamExt::next(&mut it).await {
            keys.push(k?);
        }
        Ok(keys)
    }

    /// The workers registered now, by name (entries that do not parse are left out).
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, StoreError> {
        let keys = self.scan(&format!("{}:worker:*", self.prefix)).await?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn.clone();
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut c).await?;
        let mut list: Vec<WorkerInfo> = values
            .into_iter()
            .flatten()
            .filter_map(|v| serde_json::from_str(&v).ok())
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(list)
    }

    /// Deletes every key under this prefix (tests only; uses SCAN).
    pub async fn delete_prefix(&self) -> Result<(), StoreError> {
        let keys = self.scan(&format!("{}:*", self.prefix)).await?;
        let mut c = self.conn.clone();
        for chunk in keys.chunks(500) {
            let _: i64 = c.del(chunk).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_of_a_server_away_are_transient_and_corrupt_records_permanent() {
        use std::io::{Error, ErrorKind};
        for kind in [
            ErrorKind::ConnectionRefused,
            ErrorKind::ConnectionReset,
            ErrorKind::TimedOut,
            ErrorKind::BrokenPipe,
        ] {
            let e = StoreError::Redis(Error::new(kind, "away").into());
            assert_eq!(e.fault(), Fault::Transient, "{e}");
        }
        assert!(StoreError::corrupt("k", "plan: bad").is_permanent());
    }

    #[test]
    fn persistence_from_config_get() {
        assert!(Persistence::of("no", "").keeps_nothing());
        assert!(!Persistence::of("yes", "").keeps_nothing());
        let snap = Persistence::of("no", "3600 1 300 100");
        assert!(snap.snapshots && !snap.aof && !snap.keeps_nothing());
        assert!(Persistence::of(" YES ", "").aof);
    }
}
