//! The dispatcher's decisions: accept a job, release tasks whose dependencies are final,
//! skip dependents of failures, complete or cancel jobs.
//!
//! Invariant: every step is idempotent and driven from Redis state, so any step may run
//! twice (a redelivered notice, two dispatcher replicas) without changing the result. A task
//! is published *before* it is marked released: a crash in between republishes it, and the
//! worker's "already final" check makes the duplicate harmless.

use std::collections::{BTreeMap, VecDeque};
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
use common::retry::{Classify, Fault};
use common::store::{FinalStatus, JobMeta, JobView, StoreError};
use common::telemetry::TraceContext;
use common::text::escaped;
use common::topology::{EVENT_CANCELLED, EVENT_COMPLETED};
use common::{Store, now_ms};
use lapin::types::FieldTable;
use tokio::sync::Mutex;
use tracing::Instrument;

use crate::plans::{JobPlan, PlanCache};

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

/// An invalid request is permanent (it never becomes valid); the store's and the broker's
/// errors say for themselves.
impl Classify for SubmitError {
    fn fault(&self) -> Fault {
        match self {
            SubmitError::Invalid(_) => Fault::Permanent,
            SubmitError::Store(e) => e.fault(),
            SubmitError::Broker(e) => e.fault(),
        }
    }
}

impl Classify for AdvanceError {
    fn fault(&self) -> Fault {
        match self {
            AdvanceError::Store(e) => e.fault(),
            AdvanceError::Broker(e) => e.fault(),
        }
    }
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
    /// Plans of recent jobs (immutable after intake), so a notice parses nothing.
    plans: PlanCache,
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
            plans: PlanCache::default(),
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
            // Just created: no outcome and nothing released yet, so nothing to read back.
            self.plans.insert(Arc::new(JobPlan::of(&meta)));
            self.step(&job_id, Start::Fresh).await?;
        } else {
            // An existing job: a crash during the first intake may have left tasks unpublished.
            self.advance(&job_id).await?;
        }
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

    /// Brings a job forward from what Redis says about all of it: skip dependents of failed
    /// hard dependencies, publish tasks whose dependencies are all final, complete the job.
    #[tracing::instrument(name = "advance", skip_all, fields(job.id = %job_id))]
    pub async fn advance(&self, job_id: &str) -> Result<(), AdvanceError> {
        self.step(job_id, Start::All).await
    }

    /// As [`Core::advance`] after `analyzer`'s outcome became final, looking only at what
    /// waits for it (and, through outcomes that are final already, at what waits for those).
    #[tracing::instrument(name = "advance", skip_all, fields(job.id = %job_id))]
    pub async fn advance_after(&self, job_id: &str, analyzer: &str) -> Result<(), AdvanceError> {
        self.step(job_id, Start::After(analyzer)).await
    }

    /// The job's plan: from the cache, else from its record (then cached).
    async fn plan_of(&self, job_id: &str) -> Result<Option<Arc<JobPlan>>, StoreError> {
        if let Some(p) = self.plans.get(job_id) {
            return Ok(Some(p));
        }
        let Some(meta) = self.store.job(job_id).await? else {
            return Ok(None);
        };
        let plan = Arc::new(JobPlan::of(&meta));
        self.plans.insert(plan.clone());
        Ok(Some(plan))
    }

    async fn step(&self, job_id: &str, start: Start<'_>) -> Result<(), AdvanceError> {
        let _guard = self.lock_for(job_id).lock().await;
        let mut reloaded = false;
        loop {
            let Some(plan) = self.plan_of(job_id).await? else {
                tracing::warn!(job_id, "outcome for an unknown or expired job; ignored");
                return Ok(());
            };
            if plan.is_done() {
                return Ok(());
            }
            let first: Vec<usize> = match start {
                Start::After(a) => match plan.index_of(a) {
                    Some(i) => vec![i],
                    None => (0..plan.len()).collect(),
                },
                Start::All | Start::Fresh => (0..plan.len()).collect(),
            };
            if let Start::Fresh = start {
                let view = JobView {
                    status: JobStatus::Queued,
                    created_at_ms: plan.created_at_ms,
                    outcomes: 0,
                    tasks: vec![(None, false); plan.len()],
                    complete: plan.is_empty().then(BTreeMap::new),
                };
                return self.walk(&plan, view, &first, first.clone()).await;
            }
            // What the first look needs: the start, what waits for it, and what that waits for.
            let mut asked = vec![false; plan.len()];
            for &i in &first {
                asked[i] = true;
                for &d in plan.dependents(i) {
                    asked[d] = true;
                    for &dd in plan.deps(d) {
                        asked[dd] = true;
                    }
                }
            }
            let asked: Vec<usize> = (0..plan.len()).filter(|&i| asked[i]).collect();
            let names: Vec<&str> = asked
                .iter()
                .map(|&i| plan.tasks[i].analyzer.as_str())
                .collect();
            let Some(view) = self
                .store
                .job_view(job_id, &names, plan.len(), now_ms())
                .await?
            else {
                self.plans.remove(job_id);
                tracing::warn!(job_id, "outcome for an unknown or expired job; ignored");
                return Ok(());
            };
            if view.created_at_ms != plan.created_at_ms && !reloaded {
                // Another job under the same id (the first expired): its own plan.
                self.plans.remove(job_id);
                reloaded = true;
                continue;
            }
            return self.walk(&plan, view, &asked, first).await;
        }
    }

    /// From `first`, over the dependency graph: a task whose outcome is final passes the walk
    /// on to its dependents; one with a failed hard dependency is skipped (and passes it on);
    /// one whose dependencies are all final is published unless it was. Then the job
    /// completes if every analyzer has an outcome.
    async fn walk(
        &self,
        plan: &JobPlan,
        mut view: JobView,
        asked: &[usize],
        first: Vec<usize>,
    ) -> Result<(), AdvanceError> {
        if view.status.is_final() {
            plan.mark_done();
            return Ok(());
        }
        let mut known: Vec<Option<(Option<OutcomeStatus>, bool)>> = vec![None; plan.len()];
        for (&i, t) in asked.iter().zip(std::mem::take(&mut view.tasks)) {
            known[i] = Some(t);
        }
        let mut queue: VecDeque<usize> = first.into();
        let mut passed_on = vec![false; plan.len()];
        let mut to_publish: Vec<usize> = Vec::new();
        let mut wrote = false;
        while let Some(i) = queue.pop_front() {
            let missing: Vec<usize> = std::iter::once(i)
                .chain(plan.deps(i).iter().copied())
                .filter(|&j| known[j].is_none())
                .collect();
            if !missing.is_empty() {
                let names: Vec<&str> = missing
                    .iter()
                    .map(|&j| plan.tasks[j].analyzer.as_str())
                    .collect();
                let Some(more) = self
                    .store
                    .job_view(&plan.id, &names, usize::MAX, now_ms())
                    .await?
                else {
                    return Ok(());
                };
                for (&j, t) in missing.iter().zip(more.tasks) {
                    known[j] = Some(t);
                }
            }
            let Some((status, released)) = known[i] else {
                continue;
            };
            if status.is_some() {
                if !passed_on[i] {
                    passed_on[i] = true;
                    queue.extend(plan.dependents(i));
                }
                continue;
            }
            let broken = plan
                .needs(i)
                .find(|&d| matches!(known[d], Some((Some(s), _)) if s != OutcomeStatus::Ok));
            if let Some(d) = broken {
                let task = &plan.tasks[i];
                let dep = &plan.tasks[d].analyzer;
                // The reason names the dependency's error: read it (a rare path).
                let (dep_status, why) = match self.store.outcome(&plan.id, dep).await? {
                    Some(o) => (
                        o.status,
                        o.error.unwrap_or_else(|| o.status.as_str().into()),
                    ),
                    None => (OutcomeStatus::Failed, "failed".into()),
                };
                let outcome = decided(
                    OutcomeStatus::Skipped,
                    format!("dependency {dep} {}: {why}", dep_status.as_str()),
                    &task.stage,
                );
                let stored = self
                    .store
                    .put_outcome(&plan.id, &task.analyzer, &outcome)
                    .await?;
                wrote = true;
                // Stored: skipped. Not stored: another outcome won; read which.
                known[i] = stored.then_some((Some(OutcomeStatus::Skipped), released));
                queue.push_back(i);
                continue;
            }
            let ready = plan
                .deps(i)
                .iter()
                .all(|&d| matches!(known[d], Some((Some(_), _))));
            if ready && !released && !to_publish.contains(&i) {
                to_publish.push(i);
            }
        }
        let trace = plan.trace();
        // Confirms are awaited together: one broker round trip for the batch, not one per task.
        futures::future::try_join_all(
            to_publish
                .iter()
                .map(|&i| self.publish_task(plan, &plan.tasks[i], &trace)),
        )
        .await?;
        let names: Vec<String> = to_publish
            .iter()
            .map(|&i| plan.tasks[i].analyzer.clone())
            .collect();
        self.store.mark_released(&plan.id, &names).await?;

        let statuses = match view.complete.take() {
            Some(s) if !wrote => Some(s),
            _ if wrote => Some(self.store.outcome_statuses(&plan.id).await?),
            _ => None,
        };
        if let Some(s) = statuses
            && plan.tasks.iter().all(|t| s.contains_key(&t.analyzer))
        {
            self.finish(plan, &s, JobStatus::Completed).await?;
        }
        Ok(())
    }

    #[tracing::instrument(
        name = "publish",
        skip_all,
        fields(otel.kind = "producer", job.id = %plan.id, analyzer = %task.analyzer, stage = %task.stage)
    )]
    async fn publish_task(
        &self,
        plan: &JobPlan,
        task: &PlannedTask,
        trace: &TraceContext,
    ) -> Result<(), AdvanceError> {
        let msg = TaskMessage {
            v: SCHEMA_VERSION,
            job_id: plan.id.clone(),
            analyzer: task.analyzer.clone(),
            stage: task.stage.clone(),
            video: plan.video.clone(),
            inputs: task.needs.iter().chain(&task.uses).cloned().collect(),
            published_at_ms: now_ms(),
        };
        let body = codec::encode(&msg).map_err(|e| StoreError::Corrupt {
            key: plan.id.clone(),
            reason: e.to_string(),
        })?;
        let mut headers = FieldTable::default();
        TraceContext::current()
            .or(trace.clone())
            .inject(&mut headers);
        let props = persistent(MSGPACK, headers)
            .with_message_id(format!("{}/{}", plan.id, task.analyzer).into());
        let queue = self.broker.topology().stage_queue(&task.stage);
        self.broker.publish("", &queue, &body, props).await?;
        tracing::debug!(job_id = %plan.id, analyzer = %task.analyzer, %queue, "task published");
        Ok(())
    }

    /// Publishes the job's event, then records the final status (a crash in between
    /// republishes the event: events are at-least-once).
    #[tracing::instrument(name = "complete", skip_all, fields(job.id = %plan.id, outcome = status.as_str()))]
    async fn finish(
        &self,
        plan: &JobPlan,
        outcomes: &BTreeMap<String, FinalStatus>,
        status: JobStatus,
    ) -> Result<(), AdvanceError> {
        let now = now_ms();
        let planned = |k: &String| plan.index_of(k).is_some();
        let pick = |s: OutcomeStatus| -> BTreeMap<String, String> {
            outcomes
                .iter()
                .filter(|(k, o)| o.status == s && planned(k))
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
            job_id: plan.id.clone(),
            status,
            total: plan.len(),
            ok: outcomes
                .iter()
                .filter(|(k, o)| o.status == OutcomeStatus::Ok && planned(k))
                .count(),
            failed: pick(OutcomeStatus::Failed),
            skipped: pick(OutcomeStatus::Skipped),
            at_ms: now,
        };
        let body = serde_json::to_vec(&event).unwrap_or_default();
        let mut headers = FieldTable::default();
        TraceContext::current()
            .or(plan.trace())
            .inject(&mut headers);
        let props =
            persistent(JSON, headers).with_message_id(format!("{}/{}", plan.id, event_name).into());
        let exchange = self.broker.topology().events();
        match self.broker.publish(&exchange, key, &body, props).await {
            // Nobody subscribed to events: nothing to deliver, the job still completes.
            Ok(()) | Err(BrokerError::Unroutable(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.store.set_status(&plan.id, status, now).await?;
        plan.mark_done();
        if status == JobStatus::Completed {
            self.metrics.jobs_completed.inc();
            self.metrics
                .job_latency
                .observe(now.saturating_sub(plan.created_at_ms) as f64 / 1000.0);
        }
        tracing::info!(job_id = %plan.id, status = status.as_str(), ok = event.ok, failed = event.failed.len(), skipped = event.skipped.len(), "job finished");
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
            let before = self.store.outcome_statuses(job_id).await?;
            for task in &meta.plan {
                if !before.contains_key(&task.analyzer) {
                    let o = decided(OutcomeStatus::Skipped, "job cancelled".into(), &task.stage);
                    self.store.put_outcome(job_id, &task.analyzer, &o).await?;
                }
            }
            let outcomes = self.store.outcome_statuses(job_id).await?;
            let plan = match self.plans.get(job_id) {
                Some(p) if p.created_at_ms == meta.created_at_ms => p,
                _ => Arc::new(JobPlan::of(&meta)),
            };
            self.finish(&plan, &outcomes, JobStatus::Cancelled).await
        }
        .instrument(span)
        .await?;
        Ok(Some(JobStatus::Cancelled))
    }

    /// The job's root trace context (its intake span), for steps whose message carried none.
    pub async fn job_trace(&self, job_id: &str) -> TraceContext {
        if let Some(p) = self.plans.get(job_id) {
            return p.trace();
        }
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
        self.advance_after(&task.job_id, &task.analyzer).await
    }
}

/// Where an advance starts looking.
#[derive(Clone, Copy)]
enum Start<'a> {
    /// Every task, as Redis says.
    All,
    /// Every task of a job this call just created (nothing to read back).
    Fresh,
    /// What waits for this analyzer, whose outcome just became final.
    After(&'a str),
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
