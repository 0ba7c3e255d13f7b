//! Task leases: a worker's claim on a running task, so that one execution runs per task and a
//! task outlives the broker's delivery deadline.
//!
//! - `{p}:job:{id}:lease:{analyzer}` hash: `owner` (the running attempt's token; empty: nobody
//!   runs it), `worker`, `claims` (how often a worker started it), `held` (`1`: the task's
//!   message was acked and lives only here), `task` (the message as published), `queue`,
//!   `traceparent`, `suspect_ms` (when recovery first saw it expired)
//! - `{p}:leases` sorted set: `{id}/{analyzer}` by expiry (ms, Redis's clock)
//!
//! Only recovery ([`Store::recover_lease`]) takes a task from an owner, and only after it has
//! seen the lease expired for a confirmation window, so a live owner that just got Redis back
//! renews first. Every script reads Redis's own clock: hosts' clocks may disagree.

use std::sync::LazyLock;
use std::time::Duration;

use super::{Store, StoreError};
use crate::message::Outcome;

const NOW: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"#;

/// KEYS: job, results, lease, index. ARGV: analyzer, member, token, worker, lease_ms, ttl,
/// task, queue, traceparent, the recoverers' token prefix.
static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{NOW}{}",
        r#"
local outcome = redis.call('HGET', KEYS[2], ARGV[1])
if outcome then return {'final', outcome} end
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone', ''} end
local owner = redis.call('HGET', KEYS[3], 'owner')
-- A recoverer owns a lease only while it publishes the task again: the copy it publishes (or
-- an older one) may be delivered before it lets go, and is the task's to run.
local recovering = owner and string.sub(owner, 1, string.len(ARGV[10])) == ARGV[10]
if owner and owner ~= '' and not recovering then
  -- Running elsewhere: this copy is acked, so the lease keeps the message from now on.
  redis.call('HSET', KEYS[3], 'held', '1', 'task', ARGV[7], 'queue', ARGV[8], 'traceparent', ARGV[9])
  redis.call('EXPIRE', KEYS[3], ARGV[6])
  return {'busy', redis.call('HGET', KEYS[3], 'worker') or ''}
end
local claims = redis.call('HINCRBY', KEYS[3], 'claims', 1)
redis.call('HSET', KEYS[3], 'owner', ARGV[3], 'worker', ARGV[4], 'held', '0', 'task', ARGV[7], 'queue', ARGV[8], 'traceparent', ARGV[9])
redis.call('HDEL', KEYS[3], 'suspect_ms')
redis.call('EXPIRE', KEYS[3], ARGV[6])
redis.call('ZADD', KEYS[4], now_ms() + tonumber(ARGV[5]), ARGV[2])
redis.call('EXPIRE', KEYS[4], ARGV[6])
return {'claimed', tostring(claims)}
"#
    ))
});

/// KEYS: lease, index. ARGV: member, token, lease_ms, ttl, hold.
static RENEW: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{NOW}{}",
        r#"
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner then return 0 end
if owner ~= ARGV[2] then
  if owner ~= '' then return 0 end
  -- Recovery released it while this owner could not renew; nobody took it since.
  redis.call('HSET', KEYS[1], 'owner', ARGV[2])
end
if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'held', '1') end
redis.call('HDEL', KEYS[1], 'suspect_ms')
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], now_ms() + tonumber(ARGV[3]), ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"#
    ))
});

/// KEYS: lease, index. ARGV: member, token, ttl.
const RELEASE: &str = r#"
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'owner', '')
if redis.call('HGET', KEYS[1], 'held') == '1' then
  -- Only the lease has the message: recovery republishes it at its next look.
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 1
"#;

/// KEYS: lease, index. ARGV: member, token.
const DROP: &str = r#"
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"#;

/// KEYS: index. ARGV: limit.
static EXPIRED: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{NOW}{}",
        r#"
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[1]))
"#
    ))
});

/// KEYS: lease, index, results, job. ARGV: member, analyzer, token, hold_ms, confirm_ms.
static RECOVER: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{NOW}{}",
        r#"
local now = now_ms()
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > now then return {'live'} end
if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 1 or redis.call('EXISTS', KEYS[4]) == 0
   or redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {'done'}
end
local l = redis.call('HMGET', KEYS[1], 'owner', 'held', 'task', 'queue', 'traceparent', 'suspect_ms', 'worker')
local owner = l[1] or ''
if owner ~= '' then
  local suspect = tonumber(l[6])
  if not suspect then
    redis.call('HSET', KEYS[1], 'suspect_ms', now)
    return {'suspect'}
  end
  if now - suspect < tonumber(ARGV[5]) then return {'wait'} end
end
redis.call('HDEL', KEYS[1], 'suspect_ms')
if l[2] ~= '1' then
  -- The broker still has the message (an unacked delivery, or back in its queue).
  redis.call('HSET', KEYS[1], 'owner', '')
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {'cleared', l[7] or ''}
end
redis.call('HSET', KEYS[1], 'owner', ARGV[3])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[1])
return {'republish', l[3] or '', l[4] or '', l[5] or '', l[7] or ''}
"#
    ))
});

/// KEYS: lease, index. ARGV: member, token.
const REPUBLISHED: &str = r#"
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'owner', '', 'held', '0')
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"#;

/// How a recoverer's token starts ([`Store::recover_lease`]): a claim takes a lease from a
/// recoverer, never from a worker.
pub const RECOVERY_TOKEN_PREFIX: &str = "recovery:";

/// The task as its message and route, for a claim (and for recovery to publish again).
#[derive(Debug, Clone, Copy)]
pub struct LeasedTask<'a> {
    pub job_id: &'a str,
    pub analyzer: &'a str,
    /// The message body exactly as delivered.
    pub body: &'a [u8],
    pub queue: &'a str,
    pub traceparent: &'a str,
}

/// What a worker may do with a delivered task.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Ours to run; the number of times a worker claimed it, this time included.
    Claimed { claims: u32 },
    /// Already final: do not run it again.
    Final(Box<Outcome>),
    /// The job's record is gone.
    JobGone,
    /// Another worker runs it (named); the lease now keeps the message, ack this copy.
    Busy { worker: String },
}

/// What recovery found at one expired lease.
#[derive(Debug, Clone, PartialEq)]
pub enum Recovery {
    /// Renewed meanwhile, or under another recoverer's publish.
    Live,
    /// Outcome final or job gone: the lease was deleted.
    Done,
    /// First seen expired: its owner gets the confirmation window to renew.
    Suspect,
    /// Within the confirmation window.
    Waiting,
    /// Its owner is considered gone; the broker still has the message, so only the owner
    /// was cleared (the next delivery claims it).
    Cleared { worker: String },
    /// Only the lease has the message: publish it to `queue`, then [`Store::republished`].
    Republish {
        body: Vec<u8>,
        queue: String,
        traceparent: String,
        worker: String,
    },
}

impl Store {
    fn lease_key(&self, id: &str, analyzer: &str) -> String {
        format!("{}:job:{id}:lease:{analyzer}", self.prefix)
    }

    fn lease_index(&self) -> String {
        format!("{}:leases", self.prefix)
    }

    fn member(id: &str, analyzer: &str) -> String {
        format!("{id}/{analyzer}")
    }

    /// Claims a delivered task for one attempt (`token`), unless it is final, its job is gone
    /// or another worker runs it. One round trip.
    pub async fn claim(
        &self,
        task: LeasedTask<'_>,
        token: &str,
        worker: &str,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let mut c = self.conn.clone();
        let (kind, value): (String, Vec<u8>) = CLAIM
            .key(self.job_key(task.job_id))
            .key(self.results_key(task.job_id))
            .key(self.lease_key(task.job_id, task.analyzer))
            .key(self.lease_index())
            .arg(task.analyzer)
            .arg(Self::member(task.job_id, task.analyzer))
            .arg(token)
            .arg(worker)
            .arg(lease.as_millis() as u64)
            .arg(self.ttl_secs())
            .arg(task.body)
            .arg(task.queue)
            .arg(task.traceparent)
            .arg(RECOVERY_TOKEN_PREFIX)
            .invoke_async(&mut c)
            .await?;
        let text = String::from_utf8_lossy(&value).into_owned();
        Ok(match kind.as_str() {
            "final" => {
                let key = self.results_key(task.job_id);
                Claim::Final(Box::new(
                    serde_json::from_str(&text).map_err(|e| StoreError::corrupt(&key, e))?,
                ))
            }
            "gone" => Claim::JobGone,
            "busy" => Claim::Busy { worker: text },
            _ => Claim::Claimed {
                claims: text.parse().unwrap_or(1),
            },
        })
    }

    /// Extends the lease of attempt `token` by `lease`; `hold`: the message lives only in the
    /// lease from now on (the delivery is about to be acked). False: the attempt lost the task
    /// (another worker took it, or its outcome is final) and must stop.
    pub async fn renew(
        &self,
        id: &str,
        analyzer: &str,
        token: &str,
        lease: Duration,
        hold: bool,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let kept: i64 = RENEW
            .key(self.lease_key(id, analyzer))
            .key(self.lease_index())
            .arg(Self::member(id, analyzer))
            .arg(token)
            .arg(lease.as_millis() as u64)
            .arg(self.ttl_secs())
            .arg(if hold { "1" } else { "0" })
            .invoke_async(&mut c)
            .await?;
        Ok(kept == 1)
    }

    async fn lease_script(
        &self,
        script: &str,
        id: &str,
        analyzer: &str,
        token: &str,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let done: i64 = redis::Script::new(script)
            .key(self.lease_key(id, analyzer))
            .key(self.lease_index())
            .arg(Self::member(id, analyzer))
            .arg(token)
            .arg(self.ttl_secs())
            .invoke_async(&mut c)
            .await?;
        Ok(done == 1)
    }

    /// Gives the task up unfinished (shutdown): nobody owns it; a lease that holds the message
    /// is republished by recovery at once, otherwise the broker redelivers it.
    pub async fn release(&self, id: &str, analyzer: &str, token: &str) -> Result<bool, StoreError> {
        self.lease_script(RELEASE, id, analyzer, token).await
    }

    /// Deletes the lease, claim count included (the task was requeued as a fresh copy).
    pub async fn drop_lease(
        &self,
        id: &str,
        analyzer: &str,
        token: &str,
    ) -> Result<bool, StoreError> {
        self.lease_script(DROP, id, analyzer, token).await
    }

    /// Stores the outcome unless one is final (true when this call stored it) and deletes the
    /// task's lease: one round trip.
    pub async fn finish(
        &self,
        id: &str,
        analyzer: &str,
        outcome: &Outcome,
    ) -> Result<bool, StoreError> {
        let (lease, index, member) = (
            self.lease_key(id, analyzer),
            self.lease_index(),
            Self::member(id, analyzer),
        );
        self.store_outcome(id, analyzer, outcome, |p| {
            p.del(lease).ignore().zrem(index, member).ignore();
        })
        .await
    }

    /// Up to `limit` leases past their expiry, as (job id, analyzer).
    pub async fn expired_leases(&self, limit: usize) -> Result<Vec<(String, String)>, StoreError> {
        let mut c = self.conn.clone();
        let members: Vec<String> = EXPIRED
            .key(self.lease_index())
            .arg(limit.max(1))
            .invoke_async(&mut c)
            .await?;
        Ok(members
            .into_iter()
            .filter_map(|m| {
                m.split_once('/')
                    .map(|(j, a)| (j.to_string(), a.to_string()))
            })
            .collect())
    }

    /// One step of recovery at an expired lease (see [`Recovery`]). `token` names this
    /// recoverer while it republishes; `hold` is how long its claim lasts; `confirm` is how
    /// long a lease must stay expired, once seen so, before its owner is considered gone.
    pub async fn recover_lease(
        &self,
        id: &str,
        analyzer: &str,
        token: &str,
        hold: Duration,
        confirm: Duration,
    ) -> Result<Recovery, StoreError> {
        let mut c = self.conn.clone();
        let parts: Vec<Vec<u8>> = RECOVER
            .key(self.lease_key(id, analyzer))
            .key(self.lease_index())
            .key(self.results_key(id))
            .key(self.job_key(id))
            .arg(Self::member(id, analyzer))
            .arg(analyzer)
            .arg(token)
            .arg(hold.as_millis() as u64)
            .arg(confirm.as_millis() as u64)
            .invoke_async(&mut c)
            .await?;
        let text = |i: usize| {
            parts
                .get(i)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        Ok(match text(0).as_str() {
            "done" => Recovery::Done,
            "suspect" => Recovery::Suspect,
            "wait" => Recovery::Waiting,
            "cleared" => Recovery::Cleared { worker: text(1) },
            "republish" => Recovery::Republish {
                body: parts.get(1).cloned().unwrap_or_default(),
                queue: text(2),
                traceparent: text(3),
                worker: text(4),
            },
            _ => Recovery::Live,
        })
    }

    /// After recovery published the task again: nobody owns it until a worker claims it.
    pub async fn republished(
        &self,
        id: &str,
        analyzer: &str,
        token: &str,
    ) -> Result<bool, StoreError> {
        self.lease_script(REPUBLISHED, id, analyzer, token).await
    }
}
