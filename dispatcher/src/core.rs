//! The dispatcher's decisions: accept a job, release tasks whose dependencies are final,
//! skip dependents of failures, complete or cancel jobs.
//!
//! Invariant: every step is idempotent and driven from Redis state, so any step may run
//! twice (a redelivered notice, two dispatcher replicas) without changing the result. A task
//! is published *before* it is marked released: a crash in between republishes it, and the
//! worker's "already final" check makes the duplicate harmless.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use common::broker::{Broker, BrokerError, persistent};
use common::codec::{self, JSON, MSGPACK};
use common::config::FleetConfig;
use common::ids::check_id;
use common::message::{
    JobEvent, JobRequest, JobStatus, Outcome, OutcomeStatus, PlannedTask, SCHEMA_VERSION,
    TaskMessage,
};
use common::metrics::Metrics;
use common::store::{JobMeta, StoreError};
use common::telemetry::TraceContext;
use common::text::escaped;
use common::topology::{EVENT_CANCELLED, EVENT_COMPLETED};
use common::{Store, now_ms};
use lapin::types::FieldTable;
use tokio::sync::Mutex;
use tracing::Instrument;

/// Worker name written into outcomes the dispatcher decides itself.
pub const DISPATCHER: &str = "dispatcher";
const LOCK_STRIPES: usize = 256;
/// Largest `metadata` accepted (as JSON). It is stored for the result TTL and returned with
/// every result; pipelines pass ids and a few fields, not documents.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Longest `video` reference.
pub const MAX_VIDEO_LEN: usize = 4096;

/// Who submits or reads a job: the operator (or anyone, on an API without tokens) or one
/// named client. A client sees only its own jobs, and its idempotency keys are its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Stored as the job's `owner`; `None` for the operator.
    pub client: Option<String>,
}

impl Caller {
    /// The operator's token, an API without tokens, or an AMQP publisher that is not a client.
    pub fn operator() -> Self {
        Caller { client: None }
    }

    pub fn client(name: &str) -> Self {
        Caller {
            client: Some(name.to_string()),
        }
    }

    /// Whether this caller may read or cancel a job owned by `owner`.
    pub fn may_see(&self, owner: Option<&str>) -> bool {
        match &self.client {
            None => true,
            Some(me) => owner == Some(me.as_str()),
        }
    }

    /// The namespace of this caller's idempotency keys.
    fn scope(&self) -> String {
        match &self.client {
            None => String::new(),
            Some(c) => format!("client:{c}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The request can never succeed as sent: answered 422 / dead-lettered with the reason.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

#[derive(Debug, thiserror::Error)]
pub enum AdvanceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl From<AdvanceError> for SubmitError {
    fn from(e: AdvanceError) -> Self {
        match e {
            AdvanceError::Store(s) => SubmitError::Store(s),
            AdvanceError::Broker(b) => SubmitError::Broker(b),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub job_id: String,
    /// False when the id or idempotency key named an existing job.
    pub created: bool,
}

pub struct Core {
    pub config: Arc<FleetConfig>,
    pub store: Store,
    pub broker: Arc<Broker>,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the shutdown grace period is over: retry loops give up then.
    pub work_cancel: tokio_util::sync::CancellationToken,
    /// The Redis epoch this process saw, and when the fleet's data was seen lost.
    pub epoch: crate::epoch::EpochState,
    /// Serialises `advance` per job inside this process (striped by job id); across
    /// replicas the idempotent steps make races harmless.
    locks: Vec<Mutex<()>>,
}

impl Core {
    pub fn new(
        config: Arc<FleetConfig>,
        store: Store,
        broker: Arc<Broker>,
        metrics: Arc<Metrics>,
        work_cancel: tokio_util::sync::CancellationToken,
    ) -> Self {
        let locks = (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect();
        Self {
            config,
            store,
            broker,
            metrics,
            work_cancel,
            epoch: Default::default(),
            locks,
        }
    }

    fn lock_for(&self, job_id: &str) -> &Mutex<()> {
        let mut h = DefaultHasher::new();
        job_id.hash(&mut h);
        &self.locks[h.finish() as usize % LOCK_STRIPES]
    }

    /// Validates a request, records the job (once) and publishes its first tasks. `trace` is
    /// the caller's context: the job's `intake` span continues it, and is the job's root.
    pub async fn submit(
        &self,
        req: JobRequest,
        id_hint: Option<String>,
        caller: &Caller,
        trace: TraceContext,
    ) -> Result<Submitted, SubmitError> {
        let span = tracing::info_span!(
            "intake",
            job.id = tracing::field::Empty,
            video = %escaped(&req.video)
        );
        trace.set_as_parent(&span);
        self.accept(req, id_hint, caller, trace)
            .instrument(span)
            .await
    }

    async fn accept(
        &self,
        mut req: JobRequest,
        id_hint: Option<String>,
        caller: &Caller,
        trace: TraceContext,
    ) -> Result<Submitted, SubmitError> {
        validate_video(&req.video).map_err(SubmitError::Invalid)?;
        let analyzers = self
            .config
            .resolve_job_analyzers(req.analyzers.as_deref())
            .map_err(SubmitError::Invalid)?;
        if let Some(id) = &id_hint {
            check_id("message id", id).map_err(SubmitError::Invalid)?;
        }
        // Stored once, in its own field (not inside `request` too), and bounded.
        let metadata = req.metadata.take().unwrap_or(serde_json::Value::Null);
        let metadata_len = serde_json::to_vec(&metadata).map_or(0, |v| v.len());
        if metadata_len > MAX_METADATA_BYTES {
            return Err(SubmitError::Invalid(format!(
                "\"metadata\" is {metadata_len} bytes as JSON; at most {MAX_METADATA_BYTES} are kept"
            )));
        }
        let mut job_id = id_hint.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if let Some(key) = &req.idempotency_key {
            check_id("idempotency_key", key).map_err(SubmitError::Invalid)?;
            job_id = self
                .store
                .claim_idempotency_key(&caller.scope(), key, &job_id)
                .await?;
            self.check_same_request(&job_id, &req).await?;
        }
        tracing::Span::current().record("job.id", job_id.as_str());
        let plan: Vec<PlannedTask> = analyzers
            .iter()
            .map(|name| {
                let a = &self.config.analyzers[name];
                let in_job = |d: &&String| analyzers.contains(d);
                PlannedTask {
                    analyzer: name.clone(),
                    stage: a.stage.clone(),
                    needs: a.needs.iter().filter(in_job).cloned().collect(),
                    uses: a.uses.iter().filter(in_job).cloned().collect(),
                }
            })
            .collect();
        let now = now_ms();
        let meta = JobMeta {
            id: job_id.clone(),
            status: JobStatus::Queued,
            video: req.video.clone(),
            total: plan.len(),
            created_at_ms: now,
            updated_at_ms: now,
            completed_at_ms: None,
            request: serde_json::to_value(&req).unwrap_or_default(),
            plan,
            metadata,
            // The intake span, not the caller's: every later step of the job joins this trace.
            traceparent: TraceContext::current().or(trace).traceparent,
            owner: caller.client.clone(),
        };
        let created = self.store.create_job(&meta).await?;
        if created {
            self.metrics.jobs_submitted.inc();
            tracing::info!(job_id, analyzers = meta.total, video = %escaped(&meta.video), "job accepted");
        }
        // Also for an existing job: a crash during the first intake may have left tasks unpublished.
        self.advance(&job_id).await?;
        Ok(Submitted { job_id, created })
    }

    /// An idempotency key names one request: the same key again with another video or
    /// another set of analyzers is refused, not answered with the first job.
    async fn check_same_request(&self, job_id: &str, req: &JobRequest) -> Result<(), SubmitError> {
        let Some(existing) = self.store.job(job_id).await? else {
            return Ok(());
        };
        let stored_video = existing.request.get("video").and_then(|v| v.as_str());
        let stored_analyzers = existing
            .request
            .get("analyzers")
            .cloned()
            .unwrap_or_default();
        let asked = serde_json::to_value(&req.analyzers).unwrap_or_default();
        let same = stored_video == Some(req.video.as_str()) && stored_analyzers == asked;
        if same {
            Ok(())
        } else {
            Err(SubmitError::Invalid(
                "idempotency_key was already used for a different request (video or analyzers differ)"
                    .into(),
            ))
        }
    }

    /// Brings a job forward from what Redis says: skip dependents of failed hard
    /// dependencies, publish tasks whose dependencies are all final, complete the job.
    #[tracing::instrument(name = "advance", skip_all, fields(job.id = %job_id))]
    pub async fn advance(&self, job_id: &str) -> Result<(), AdvanceError> {
        let _guard = self.lock_for(job_id).lock().await;
        let Some(meta) = self.store.job(job_id).await? else {
            tracing::warn!(job_id, "outcome for an unknown or expired job; ignored");
            return Ok(());
        };
        let mut outcomes = self.store.outcomes(job_id).await?;
        if meta.status == JobStatus::Cancelled {
            return Ok(());
        }
        let released = self.store.released(job_id).await?;
        let trace = job_trace(&meta);

        // Skips can make further tasks final or ready, so iterate to a fixed point.
        let mut to_publish: Vec<&PlannedTask> = Vec::new();
        loop {
            let mut changed = false;
            for task in &meta.plan {
                if outcomes.contains_key(&task.analyzer) {
                    continue;
                }
                let broken = task.needs.iter().find_map(|d| {
                    outcomes
                        .get(d)
                        .filter(|o| o.status != OutcomeStatus::Ok)
                        .map(|o| (d, o))
                });
                if let Some((dep, o)) = broken {
                    let why = o
                        .error
                        .clone()
                        .unwrap_or_else(|| o.status.as_str().to_string());
                    let outcome = decided(
                        OutcomeStatus::Skipped,
                        format!("dependency {dep} {}: {why}", o.status.as_str()),
                        &task.stage,
                    );
                    self.store
                        .put_outcome(job_id, &task.analyzer, &outcome)
                        .await?;
                    outcomes.insert(task.analyzer.clone(), outcome);
                    changed = true;
                    continue;
                }
                let ready = task
                    .needs
                    .iter()
                    .chain(&task.uses)
                    .all(|d| outcomes.contains_key(d));
                if ready
                    && !released.contains(&task.analyzer)
                    && !to_publish.iter().any(|t| t.analyzer == task.analyzer)
                {
                    to_publish.push(task);
                }
            }
            if !changed {
                break;
            }
        }
        // Confirms are awaited together: one broker round trip for the batch, not one per task.
        futures::future::try_join_all(
            to_publish
                .iter()
                .map(|t| self.publish_task(&meta, t, &trace)),
        )
        .await?;
        let names: Vec<String> = to_publish.iter().map(|t| t.analyzer.clone()).collect();
        self.store.mark_released(job_id, &names).await?;

        if outcomes.len() >= meta.plan.len() && !meta.status.is_final() {
            self.finish(&meta, &outcomes, JobStatus::Completed).await?;
        } else if meta.status == JobStatus::Queued && !outcomes.is_empty() {
            self.store
                .set_status(job_id, JobStatus::Running, now_ms())
                .await?;
        }
        Ok(())
    }

    #[tracing::instrument(
        name = "publish",
        skip_all,
        fields(otel.kind = "producer", job.id = %meta.id, analyzer = %task.analyzer, stage = %task.stage)
    )]
    async fn publish_task(
        &self,
        meta: &JobMeta,
        task: &PlannedTask,
        trace: &TraceContext,
    ) -> Result<(), AdvanceError> {
        let msg = TaskMessage {
            v: SCHEMA_VERSION,
            job_id: meta.id.clone(),
            analyzer: task.analyzer.clone(),
            stage: task.stage.clone(),
            video: meta.video.clone(),
            inputs: task.needs.iter().chain(&task.uses).cloned().collect(),
            published_at_ms: now_ms(),
        };
        let body = codec::encode(&msg).map_err(|e| StoreError::Corrupt {
            key: meta.id.clone(),
            reason: e.to_string(),
        })?;
        let mut headers = FieldTable::default();
        TraceContext::current()
            .or(trace.clone())
            .inject(&mut headers);
        let props = persistent(MSGPACK, headers)
            .with_message_id(format!("{}/{}", meta.id, task.analyzer).into());
        let queue = self.broker.topology().stage_queue(&task.stage);
        self.broker.publish("", &queue, &body, props).await?;
        tracing::debug!(job_id = %meta.id, analyzer = %task.analyzer, %queue, "task published");
        Ok(())
    }

    /// Publishes the job's event, then records the final status (a crash in between
    /// republishes the event: events are at-least-once).
    #[tracing::instrument(name = "complete", skip_all, fields(job.id = %meta.id, outcome = status.as_str()))]
    async fn finish(
        &self,
        meta: &JobMeta,
        outcomes: &BTreeMap<String, Outcome>,
        status: JobStatus,
    ) -> Result<(), AdvanceError> {
        let now = now_ms();
        let pick = |s: OutcomeStatus| -> BTreeMap<String, String> {
            outcomes
                .iter()
                .filter(|(_, o)| o.status == s)
                .map(|(k, o)| (k.clone(), o.error.clone().unwrap_or_default()))
                .collect()
        };
        let (key, event_name) = match status {
            JobStatus::Cancelled => (EVENT_CANCELLED, "job.cancelled"),
            _ => (EVENT_COMPLETED, "job.completed"),
        };
        let event = JobEvent {
            v: SCHEMA_VERSION,
            event: event_name.into(),
            job_id: meta.id.clone(),
            status,
            total: meta.plan.len(),
            ok: outcomes
                .values()
                .filter(|o| o.status == OutcomeStatus::Ok)
                .count(),
            failed: pick(OutcomeStatus::Failed),
            skipped: pick(OutcomeStatus::Skipped),
            at_ms: now,
        };
        let body = serde_json::to_vec(&event).unwrap_or_default();
        let mut headers = FieldTable::default();
        TraceContext::current()
            .or(job_trace(meta))
            .inject(&mut headers);
        let props =
            persistent(JSON, headers).with_message_id(format!("{}/{}", meta.id, event_name).into());
        let exchange = self.broker.topology().events();
        match self.broker.publish(&exchange, key, &body, props).await {
            // Nobody subscribed to events: nothing to deliver, the job still completes.
            Ok(()) | Err(BrokerError::Unroutable(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.store.set_status(&meta.id, status, now).await?;
        if status == JobStatus::Completed {
            self.metrics.jobs_completed.inc();
            self.metrics
                .job_latency
                .observe(now.saturating_sub(meta.created_at_ms) as f64 / 1000.0);
        }
        tracing::info!(job_id = %meta.id, status = status.as_str(), ok = event.ok, failed = event.failed.len(), skipped = event.skipped.len(), "job finished");
        Ok(())
    }

    /// Cancels a job: every analyzer without an outcome is recorded `skipped: job cancelled`,
    /// so queued tasks are dropped by the workers that receive them. Returns the status after.
    pub async fn cancel(&self, job_id: &str) -> Result<Option<JobStatus>, AdvanceError> {
        let _guard = self.lock_for(job_id).lock().await;
        let Some(meta) = self.store.job(job_id).await? else {
            return Ok(None);
        };
        if meta.status.is_final() {
            return Ok(Some(meta.status));
        }
        // A cancel arrives from outside the job (HTTP): its span joins the job's trace.
        let span = tracing::info_span!("cancel", job.id = %job_id);
        job_trace(&meta).set_as_parent(&span);
        async {
            let mut outcomes = self.store.outcomes(job_id).await?;
            for task in &meta.plan {
                if !outcomes.contains_key(&task.analyzer) {
                    let o = decided(OutcomeStatus::Skipped, "job cancelled".into(), &task.stage);
                    self.store.put_outcome(job_id, &task.analyzer, &o).await?;
                }
            }
            outcomes = self.store.outcomes(job_id).await?;
            self.finish(&meta, &outcomes, JobStatus::Cancelled).await
        }
        .instrument(span)
        .await?;
        Ok(Some(JobStatus::Cancelled))
    }

    /// The job's root trace context (its intake span), for steps whose message carried none.
    pub async fn job_trace(&self, job_id: &str) -> TraceContext {
        match self.store.job(job_id).await {
            Ok(Some(meta)) => job_trace(&meta),
            _ => TraceContext::default(),
        }
    }

    /// A task that was dead-lettered (workers crashed on it `delivery_limit` times) becomes
    /// a `failed` outcome, so its job still completes.
    pub async fn record_dead_task(
        &self,
        task: &TaskMessage,
        deliveries: u32,
    ) -> Result<(), AdvanceError> {
        let error = format!(
            "task dead-lettered after {deliveries} deliveries: a worker crashed or was killed on every try; the message is kept in {}",
            self.broker.topology().dlq()
        );
        let o = Outcome {
            attempts: deliveries,
            ..decided(OutcomeStatus::Failed, error, &task.stage)
        };
        if self
            .store
            .put_outcome(&task.job_id, &task.analyzer, &o)
            .await?
        {
            tracing::warn!(job_id = %task.job_id, analyzer = %task.analyzer, deliveries, "task dead-lettered; recorded as failed");
        }
        self.advance(&task.job_id).await
    }
}

fn job_trace(meta: &JobMeta) -> TraceContext {
    TraceContext {
        traceparent: meta.traceparent.clone(),
        tracestate: None,
    }
}

fn decided(status: OutcomeStatus, error: String, stage: &str) -> Outcome {
    let now = now_ms();
    Outcome {
        status,
        result: None,
        error: Some(error),
        duration_ms: 0,
        worker: DISPATCHER.into(),
        attempts: 0,
        backend: "none".into(),
        stage: stage.into(),
        started_at_ms: now,
        finished_at_ms: now,
    }
}

fn validate_video(video: &str) -> Result<(), String> {
    let v = video.trim();
    if v.is_empty() {
        return Err("\"video\" is empty: give a local path or an http(s) URL".into());
    }
    if v.len() > MAX_VIDEO_LEN || v.chars().any(char::is_control) {
        return Err(format!(
            "\"video\" is not a usable path or URL (longer than {MAX_VIDEO_LEN} bytes or holds control characters)"
        ));
    }
    if let Some((scheme, rest)) = v.split_once("://") {
        let scheme = scheme.to_ascii_lowercase();
        if !["http", "https", "file"].contains(&scheme.as_str()) {
            return Err(format!(
                "\"video\" has scheme {scheme:?}: only http, https and file are supported"
            ));
        }
        if scheme != "file" && rest.split('/').next().unwrap_or("").is_empty() {
            return Err(format!(
                "\"video\" URL {} has no host",
                common::text::bounded(&format!("{v:?}"), 300)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_references_are_checked() {
        assert!(validate_video("/data/v.mp4").is_ok());
        assert!(validate_video("https://cdn.example/v.mp4").is_ok());
        assert!(validate_video("").unwrap_err().contains("empty"));
        assert!(validate_video("ftp://x/y").unwrap_err().contains("ftp"));
        assert!(
            validate_video("http:///nohost")
                .unwrap_err()
                .contains("no host")
        );
    }

    #[test]
    fn control_characters_are_not_a_video() {
        assert!(validate_video("/v.mp4\nINFO forged").is_err());
        assert!(validate_video("/v\u{1b}[31m.mp4").is_err());
    }
}
