//! The dispatcher's per-notice read: a job's status and the *statuses* of some outcomes (not
//! their results), in one script, so that a notice costs one round trip and bytes in
//! proportion to what it asks about, whatever the size of the results.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use super::{Store, StoreError};
use crate::message::{JobStatus, OutcomeStatus};

/// An outcome's status starts its JSON (`Outcome` serializes `status` first); anything else
/// is decoded in full. Returns '' for no outcome and '?' for one that does not parse.
const STATUS_OF: &str = r#"
local function status_of(v)
  if not v then return '' end
  local s = string.match(v, '^{"status":"(%a+)"')
  if s then return s end
  local ok, o = pcall(cjson.decode, v)
  if ok and type(o) == 'table' and type(o['status']) == 'string' then return o['status'] end
  return '?'
end
local function error_of(v)
  local ok, o = pcall(cjson.decode, v)
  if ok and type(o) == 'table' and type(o['error']) == 'string' then return o['error'] end
  return ''
end
local function all_statuses(out, key)
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local s = status_of(all[i + 1])
    out[#out + 1] = all[i]
    out[#out + 1] = s
    if s == 'ok' then out[#out + 1] = '' else out[#out + 1] = error_of(all[i + 1]) end
  end
  return out
end
"#;

/// KEYS: job hash, results hash, released set. ARGV: now (ms), TTL (s), the plan's size, then
/// analyzer names. Returns nil for no job; else status, created_at_ms, the number of
/// outcomes, a (status, released) pair per name, and when every analyzer has an outcome and
/// the job is not final yet, (name, status, error) for every outcome. A queued job with an
/// outcome becomes running here.
const JOB_VIEW: &str = r#"
local job = redis.call('HMGET', KEYS[1], 'status', 'created_at_ms')
if not job[1] then return false end
local n = redis.call('HLEN', KEYS[2])
local status = job[1]
if status == 'queued' and n > 0 then
  redis.call('HSET', KEYS[1], 'status', 'running', 'updated_at_ms', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  status = 'running'
end
local out = {status, job[2] or '', tostring(n)}
for i = 4, #ARGV do
  out[#out + 1] = status_of(redis.call('HGET', KEYS[2], ARGV[i]))
  out[#out + 1] = tostring(redis.call('SISMEMBER', KEYS[3], ARGV[i]))
end
if n >= tonumber(ARGV[3]) and status ~= 'completed' and status ~= 'cancelled' then
  all_statuses(out, KEYS[2])
end
return out
"#;

const OUTCOME_STATUSES: &str = "return all_statuses({}, KEYS[1])";

static JOB_VIEW_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("{STATUS_OF}{JOB_VIEW}")));
static OUTCOME_STATUSES_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("{STATUS_OF}{OUTCOME_STATUSES}")));

/// An outcome without its result: its status, and its error unless it is `ok`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalStatus {
    pub status: OutcomeStatus,
    pub error: Option<String>,
}

/// What one notice needs to know about a job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    pub status: JobStatus,
    pub created_at_ms: u64,
    /// How many analyzers have an outcome.
    pub outcomes: usize,
    /// Per analyzer asked about, in order: its outcome's status (if any) and whether its
    /// task was published.
    pub tasks: Vec<(Option<OutcomeStatus>, bool)>,
    /// Every outcome's status, when every analyzer has one and the job is not final yet.
    pub complete: Option<BTreeMap<String, FinalStatus>>,
}

fn outcome_status(key: &str, s: &str) -> Result<Option<OutcomeStatus>, StoreError> {
    match s {
        "" => Ok(None),
        "ok" => Ok(Some(OutcomeStatus::Ok)),
        "failed" => Ok(Some(OutcomeStatus::Failed)),
        "skipped" => Ok(Some(OutcomeStatus::Skipped)),
        other => Err(StoreError::corrupt(
            key,
            format!("outcome status {other:?}"),
        )),
    }
}

fn statuses(key: &str, flat: &[String]) -> Result<BTreeMap<String, FinalStatus>, StoreError> {
    flat.chunks(3)
        .map(|c| match c {
            [name, status, error] => {
                let status = outcome_status(key, status)?
                    .ok_or_else(|| StoreError::corrupt(key, format!("{name}: no status")))?;
                let error = Some(error.clone()).filter(|e| !e.is_empty());
                Ok((name.clone(), FinalStatus { status, error }))
            }
            _ => Err(StoreError::corrupt(key, "short status list")),
        })
        .collect()
}

impl Store {
    /// The job's status, the statuses and release marks of `analyzers`, and (once every one
    /// of the plan's `total` analyzers has an outcome) all statuses: one round trip. `None`
    /// when the job is unknown or expired.
    pub async fn job_view(
        &self,
        id: &str,
        analyzers: &[&str],
        total: usize,
        now_ms: u64,
    ) -> Result<Option<JobView>, StoreError> {
        let mut c = self.conn.clone();
        let key = self.results_key(id);
        let mut inv = JOB_VIEW_SCRIPT.prepare_invoke();
        inv.key(self.job_key(id))
            .key(&key)
            .key(self.released_key(id));
        inv.arg(now_ms).arg(self.ttl_secs()).arg(total);
        for a in analyzers {
            inv.arg(*a);
        }
        let Some(flat): Option<Vec<String>> = inv.invoke_async(&mut c).await? else {
            return Ok(None);
        };
        let job_key = self.job_key(id);
        let head = 3 + 2 * analyzers.len();
        if flat.len() < head {
            return Err(StoreError::corrupt(&job_key, "short job view"));
        }
        let status = JobStatus::parse(&flat[0])
            .ok_or_else(|| StoreError::corrupt(&job_key, "bad status"))?;
        let tasks = flat[3..head]
            .chunks(2)
            .map(|p| Ok((outcome_status(&key, &p[0])?, p[1] == "1")))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let outcomes = flat[2].parse().unwrap_or(0);
        let complete = (outcomes >= total && !status.is_final())
            .then(|| statuses(&key, &flat[head..]))
            .transpose()?;
        Ok(Some(JobView {
            status,
            created_at_ms: flat[1].parse().unwrap_or(0),
            outcomes,
            tasks,
            complete,
        }))
    }

    /// Every outcome's status (and error unless `ok`), without results: one round trip.
    pub async fn outcome_statuses(
        &self,
        id: &str,
    ) -> Result<BTreeMap<String, FinalStatus>, StoreError> {
        let mut c = self.conn.clone();
        let key = self.results_key(id);
        let flat: Vec<String> = OUTCOME_STATUSES_SCRIPT
            .key(&key)
            .invoke_async(&mut c)
            .await?;
        statuses(&key, &flat)
    }
}
