//! One task, from delivery to ack: decode, claim it in Redis (skip it if final, gone, or
//! running elsewhere), run the analyzer with retries under the claim's lease, store the
//! outcome, notify the dispatcher, then ack.
//!
//! Invariants: the message of an unfinished task is always somewhere durable, the broker's
//! queue or the task's lease: a delivery is acked before its outcome is stored only once the
//! lease keeps the message (hand-over at half the broker's deadline, or a copy of a task that
//! runs elsewhere). A crash before the ack redelivers the task (or, after a hand-over, recovery
//! republishes it once the lease expired); the claim then acks a final one without running
//! it again, after re-sending the notice (the crash may have come between store and notice).
//! One attempt runs per task at a time: a claimed task's copies are acked unrun.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use backon::Retryable;
use common::backoff::{self, Backoff};
use common::broker::{Broker, dead_letter_props, minimal_dead_letter_props, persistent};
use common::codec::{self, MSGPACK};
use common::config::FleetConfig;
use common::headers::{delivery_count, header_str};
use common::ids::check_id;
use common::message::{Outcome, OutcomeNotice, OutcomeStatus, SCHEMA_VERSION, TaskMessage};
use common::metrics::{Metrics, OutcomeLabels, ReasonLabels, stage_labels, task_labels};
use common::retry::{self, Classify, Retried};
use common::slots::{Deadline, Held};
use common::store::{Claim, LeasedTask};
use common::telemetry::TraceContext;
use common::{Store, now_ms};
use lapin::types::FieldTable;
use media::MediaCache;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing::field::Empty;

use crate::analyzer::{AnalyzerError, TaskContext};
use crate::analyzers::Registry;
use crate::lease::{self, TaskLease};

/// Everything the tasks of one worker process share.
pub struct Shared {
    pub config: Arc<FleetConfig>,
    /// The stages this worker consumes (its analyzers of a job share one decode pass).
    pub stages: Vec<String>,
    pub store: Store,
    pub broker: Arc<Broker>,
    pub registry: Registry,
    pub media: MediaCache,
    pub metrics: Arc<Metrics>,
    pub name: String,
    /// False while the GPU memory guard stops new work.
    pub accepting: watch::Receiver<bool>,
    /// Fires when shutdown begins: tasks not yet started leave their message unacked.
    pub shutdown: CancellationToken,
    /// Fires when the grace period is over: running analyzers are asked to stop.
    pub work_cancel: CancellationToken,
    /// The broker's delivery deadline (configured, lowered to what the broker says it used).
    pub deadline: Arc<Deadline>,
}

/// Retries an infrastructure step (Redis, broker) while the delivery is held: transient
/// errors until it works or the grace period ends (`Cancelled`: leave the delivery unacked so
/// the broker requeues it), permanent ones not at all (the caller dead-letters the task).
async fn persist<T, E, F>(w: &Shared, what: &str, step: impl FnMut() -> F) -> Retried<T, E>
where
    E: Classify + std::fmt::Display,
    F: std::future::Future<Output = Result<T, E>>,
{
    retry::hold(backoff::INFRA_STEP, what, &w.work_cancel, step).await
}

/// [`persist`] that also gives up when `stop` fires.
async fn persist_or<T, E, F>(
    w: &Shared,
    what: &str,
    stop: &CancellationToken,
    step: impl FnMut() -> F,
) -> Retried<T, E>
where
    E: Classify + std::fmt::Display,
    F: std::future::Future<Output = Result<T, E>>,
{
    tokio::select! {
        r = persist(w, what, step) => r,
        _ = stop.cancelled() => Retried::Cancelled,
    }
}

pub async fn handle(w: Arc<Shared>, stage: String, held: Held) {
    let d = &held.delivery;
    let span = tracing::info_span!(
        "task",
        otel.kind = "consumer",
        job.id = Empty,
        analyzer = Empty,
        stage = %stage,
        worker = %w.name,
        attempt = delivery_count(&d.properties) + 1,
        outcome = Empty
    );
    // The publishing span (the dispatcher's) is the parent: the task joins the job's trace.
    TraceContext::from_props(&d.properties).set_as_parent(&span);
    handle_task(w, stage, held).instrument(span).await
}

async fn handle_task(w: Arc<Shared>, stage: String, held: Held) {
    let d = &held.delivery;
    let task: TaskMessage = match codec::decode(&d.data) {
        Ok(t) => t,
        Err(e) => return reject(&w, &held, &format!("malformed task message: {e}")).await,
    };
    // Ids name Redis keys: one that breaks the grammar could alias another job's keys.
    if let Err(why) =
        check_id("job_id", &task.job_id).and_then(|_| check_id("analyzer", &task.analyzer))
    {
        return reject(&w, &held, &format!("malformed task message: {why}")).await;
    }
    let span = tracing::Span::current();
    span.record("job.id", task.job_id.as_str())
        .record("analyzer", task.analyzer.as_str());
    if task.v > SCHEMA_VERSION {
        return reject(
            &w,
            &held,
            &format!(
                "task schema version {} is newer than this worker ({SCHEMA_VERSION})",
                task.v
            ),
        )
        .await;
    }
    // Claim the task (one round trip: also says whether it is final or its job gone). A
    // delivery that went back to the queue meanwhile is left to its next copy.
    let token = uuid::Uuid::new_v4().simple().to_string();
    let traceparent = header_str(&d.properties, "traceparent").unwrap_or_default();
    let queue = d.routing_key.as_str().to_string();
    let leased = LeasedTask {
        job_id: &task.job_id,
        analyzer: &task.analyzer,
        body: &d.data,
        queue: &queue,
        traceparent: &traceparent,
    };
    let claimed = persist_or(&w, "claim", held.lost(), || {
        w.store.claim(leased, &token, &w.name, w.config.lease)
    });
    let claim = match claimed.await {
        Retried::Done(claim) => claim,
        Retried::Permanent(e) => return reject(&w, &held, &format!("task not run: {e}")).await,
        Retried::Cancelled => return,
    };
    let claims = match claim {
        Claim::JobGone => {
            // The job's record is gone (expired, deleted, or Redis lost its data): nobody can
            // read this result and no job can complete with it. Drop the task before it runs.
            tracing::warn!(job_id = %task.job_id, analyzer = %task.analyzer, "the job's record is not in Redis; dropping the task without running it");
            drop_counted(&w, "job gone");
            ack(&held).await;
            return;
        }
        Claim::Final(o) => {
            span.record("outcome", o.status.as_str());
            // Already final (a redelivery, a duplicate publish, or a cancelled job): don't run again.
            tracing::debug!(job_id = %task.job_id, analyzer = %task.analyzer, "already final; acking without running");
            if notify(&w, &task, o.status).await {
                ack(&held).await;
            }
            return;
        }
        Claim::Busy { worker } => {
            // A copy of a task that runs elsewhere (its delivery came back when a channel
            // closed, or it was published twice): the lease now keeps the message.
            tracing::info!(job_id = %task.job_id, analyzer = %task.analyzer, running_on = %worker, "the task runs on another worker; acking this copy");
            drop_counted(&w, "running elsewhere");
            ack(&held).await;
            return;
        }
        Claim::Claimed { claims } => claims,
    };
    let lease = TaskLease {
        job_id: &task.job_id,
        analyzer: &task.analyzer,
        token,
    };
    let prior_runs = delivery_count(&d.properties).max(claims.saturating_sub(1));
    if claims > w.config.delivery_limit {
        // Started this often and never finished (its workers died on it): give up, as the
        // broker's delivery limit does for deliveries.
        let error = format!(
            "started {claims} times without finishing (workers died or lost it); giving up"
        );
        let outcome = failed(&w, &stage, &error, prior_runs);
        return store_and_ack(&w, &held, &task, &stage, &lease, outcome).await;
    }

    // Run under the lease: it is renewed (and the delivery handed over before the broker's
    // deadline) while the task waits for the GPU guard and runs. Lost: stop.
    let work = async {
        // Wait while the GPU guard says no; on shutdown, leave the task to another worker.
        let mut accepting = w.accepting.clone();
        tokio::select! {
            r = accepting.wait_for(|ok| *ok) => if r.is_err() { return Ok(None) },
            _ = w.shutdown.cancelled() => return Ok(None),
        }
        let _in_flight = InFlight::new(&w, &stage);
        run_task(&w, &task, &stage, &held, &lease, prior_runs).await
    };
    let outcome = tokio::select! {
        biased;
        o = work => o,
        _ = lease::keep(&w, &held, &lease) => {
            // Someone else has the task (or its outcome): this delivery is theirs to answer.
            ack(&held).await;
            return;
        }
    };
    let outcome = match outcome {
        Ok(Some(outcome)) => outcome,
        Ok(None) => {
            // Shutdown: nobody runs it now; the broker or recovery gives it to the next worker.
            let _ = w
                .store
                .release(&task.job_id, &task.analyzer, &lease.token)
                .await;
            return;
        }
        Err(reason) => {
            // Dead-lettered with the message: the lease must not bring it back.
            let _ = w
                .store
                .drop_lease(&task.job_id, &task.analyzer, &lease.token)
                .await;
            return reject(&w, &held, &reason).await;
        }
    };
    store_and_ack(&w, &held, &task, &stage, &lease, outcome).await
}

/// Counts a running task in `fleet_in_flight` until dropped (also when a lost lease stops it).
struct InFlight<'a> {
    w: &'a Shared,
    stage: &'a str,
}

impl<'a> InFlight<'a> {
    fn new(w: &'a Shared, stage: &'a str) -> Self {
        w.metrics
            .in_flight
            .get_or_create(&stage_labels(stage))
            .inc();
        Self { w, stage }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.w
            .metrics
            .in_flight
            .get_or_create(&stage_labels(self.stage))
            .dec();
    }
}

fn drop_counted(w: &Shared, reason: &str) {
    w.metrics
        .tasks_dropped
        .get_or_create(&ReasonLabels {
            reason: reason.into(),
        })
        .inc();
}

fn failed(w: &Shared, stage: &str, error: &str, prior_runs: u32) -> Outcome {
    let now = now_ms();
    Outcome {
        status: OutcomeStatus::Failed,
        result: None,
        error: Some(error.into()),
        duration_ms: 0,
        worker: w.name.clone(),
        attempts: prior_runs,
        backend: "none".into(),
        stage: stage.to_string(),
        started_at_ms: now,
        finished_at_ms: now,
    }
}

/// Stores the outcome and deletes the lease (renewing it meanwhile), notifies, then acks.
async fn store_and_ack(
    w: &Shared,
    held: &Held,
    task: &TaskMessage,
    stage: &str,
    lease: &TaskLease<'_>,
    outcome: Outcome,
) {
    let span = tracing::Span::current();
    span.record("outcome", outcome.status.as_str());
    let store = tracing::info_span!(
        "store",
        job.id = %task.job_id,
        analyzer = %task.analyzer,
        outcome = outcome.status.as_str()
    );
    let finish = persist(w, "store outcome", || {
        w.store.finish(&task.job_id, &task.analyzer, &outcome)
    })
    .instrument(store);
    let mut finish = std::pin::pin!(finish);
    // Renewed while Redis is slow to take the outcome; a lease lost now changes nothing (the
    // first final outcome wins).
    let stored = tokio::select! {
        biased;
        s = &mut finish => s,
        _ = lease::keep(w, held, lease) => finish.await,
    };
    let stored = match stored {
        Retried::Done(stored) => stored,
        Retried::Permanent(e) => {
            return reject(w, held, &format!("outcome of the task not stored: {e}")).await;
        }
        Retried::Cancelled => return,
    };
    if stored {
        w.metrics
            .tasks_finished
            .get_or_create(&OutcomeLabels {
                analyzer: task.analyzer.clone(),
                stage: stage.to_string(),
                status: outcome.status.as_str().into(),
            })
            .inc();
    }
    tracing::info!(
        job_id = %task.job_id, analyzer = %task.analyzer, status = outcome.status.as_str(),
        duration_ms = outcome.duration_ms, attempts = outcome.attempts, backend = %outcome.backend, stored,
        "task finished"
    );
    if notify(w, task, outcome.status).await {
        ack(held).await;
    }
}

/// Runs the analyzer with retries. `Ok(None)`: leave the message unacked (shutdown) or it was
/// requeued (out of GPU memory). `Err`: the task cannot run (a permanent infrastructure
/// error); dead-letter it with this reason.
async fn run_task(
    w: &Shared,
    task: &TaskMessage,
    stage: &str,
    held: &Held,
    lease: &TaskLease<'_>,
    prior_runs: u32,
) -> Result<Option<Outcome>, String> {
    let cfg = w.config.analyzers.get(&task.analyzer);
    let started_at_ms = now_ms();
    let started = Instant::now();
    let done = |status, result, error: Option<String>, attempts: u32, backend: String| Outcome {
        status,
        result,
        error,
        duration_ms: started.elapsed().as_millis() as u64,
        worker: w.name.clone(),
        attempts,
        backend,
        stage: stage.to_string(),
        started_at_ms,
        finished_at_ms: now_ms(),
    };
    let Some(analyzer) = w.registry.get(&task.analyzer).cloned() else {
        let e = format!(
            "no implementation of analyzer {:?} on worker {} (is it in config/fleet.toml?)",
            task.analyzer, w.name
        );
        return Ok(Some(done(
            OutcomeStatus::Failed,
            None,
            Some(e),
            0,
            "none".into(),
        )));
    };
    let backend = analyzer.backend().label();
    let read = persist(w, "read inputs", || {
        w.store.outcomes_of(&task.job_id, &task.inputs)
    });
    let inputs = match read.await {
        Retried::Done(inputs) => inputs,
        Retried::Permanent(e) => {
            return Err(format!("task not run: its inputs are unreadable: {e}"));
        }
        Retried::Cancelled => return Ok(None),
    };
    let deps: std::collections::BTreeMap<String, serde_json::Value> = inputs
        .into_iter()
        .filter(|(_, o)| o.status == OutcomeStatus::Ok)
        .map(|(k, o)| (k, o.result.unwrap_or_default()))
        .collect();
    let task_cancel = w.work_cancel.child_token();
    let params = cfg.map(|c| c.params.clone()).unwrap_or_default();
    let media = w.media.get(&task.job_id, &task.video);
    if !media.has_frame_plan() {
        plan_frames(w, task, &media).await;
    }
    let labels = task_labels(&task.analyzer, stage);
    w.metrics.tasks_started.get_or_create(&labels).inc();

    let attempts = AtomicU32::new(0);
    let run_once = || async {
        let n = attempts.fetch_add(1, Ordering::SeqCst) + 1;
        let ctx = TaskContext {
            job_id: task.job_id.clone(),
            analyzer: task.analyzer.clone(),
            attempt: prior_runs + n,
            video: task.video.clone(),
            media: media.clone(),
            deps: deps.clone(),
            params: params.clone(),
            cancel: task_cancel.clone(),
        };
        // Media fetch/decode happens inside the analyzer (shared per job), so it is in here too.
        let span = tracing::info_span!("analyze", analyzer = %task.analyzer, attempt = ctx.attempt, backend = %backend);
        analyzer.run(&ctx).instrument(span).await
    };
    let retry = &w.config.retry;
    // `max_backoff_ms` is the longest wait, jitter included.
    let policy = Backoff::new(retry.initial_backoff, retry.max_backoff)
        .policy()
        .with_max_times(retry.max_attempts.max(1) as usize - 1);
    let runs = run_once
        .retry(policy)
        .sleep(tokio::time::sleep)
        .when(|e| matches!(e, AnalyzerError::Transient(_)))
        .notify(|e, delay| {
            w.metrics.task_retries.get_or_create(&labels).inc();
            tracing::warn!(job_id = %task.job_id, analyzer = %task.analyzer, error = %e, retry_in = ?delay, "analyzer failed; retrying");
        });
    let result = tokio::select! {
        r = runs => r,
        _ = task_cancel.cancelled() => return Ok(None),
    };
    if task_cancel.is_cancelled() {
        // Grace period over mid-run: the task goes back to the queue unrecorded.
        return Ok(None);
    }
    let attempts = attempts.load(Ordering::SeqCst);
    w.metrics
        .task_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    let total_attempts = prior_runs + attempts;
    Ok(Some(match result {
        Ok(v) => done(OutcomeStatus::Ok, Some(v), None, total_attempts, backend),
        Err(AnalyzerError::Skipped(e)) => done(
            OutcomeStatus::Skipped,
            None,
            Some(e),
            total_attempts,
            backend,
        ),
        Err(AnalyzerError::Permanent(e)) => done(
            OutcomeStatus::Failed,
            None,
            Some(e),
            total_attempts,
            backend,
        ),
        Err(AnalyzerError::Transient(e)) => done(
            OutcomeStatus::Failed,
            None,
            Some(format!("failed {attempts} times, last: {e}")),
            total_attempts,
            backend,
        ),
        Err(AnalyzerError::Requeue(e)) => {
            tracing::warn!(job_id = %task.job_id, analyzer = %task.analyzer, error = %e, "resource shortage; requeueing");
            requeue_copy(w, held, lease).await;
            return Ok(None);
        }
    }))
}

/// Tells the job's media which frame specs this worker's analyzers of the job will ask for,
/// so the first one to ask decodes them all in one pass. The plan comes from the job's record;
/// when it cannot be read, no plan is set and each spec decodes when asked (a later task of
/// the job tries again).
async fn plan_frames(w: &Shared, task: &TaskMessage, media: &media::Media) {
    let plan = match w.store.plan(&task.job_id).await {
        Ok(Some(plan)) => plan,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!(job_id = %task.job_id, error = %e, "job plan unreadable; decoding per spec");
            return;
        }
    };
    let here = plan
        .iter()
        .filter(|t| w.stages.contains(&t.stage))
        .map(|t| t.analyzer.as_str());
    media.plan_frames(w.registry.frame_planner(&w.config, here));
}

/// Publishes a fresh copy (delivery count and claims start again) and acks the original: a
/// resource shortage is not the task's fault and must not push it toward the dead-letter
/// queue. A delivery handed over already lives only in the lease: recovery republishes it.
async fn requeue_copy(w: &Shared, held: &Held, lease: &TaskLease<'_>) {
    if held.is_handed_over() {
        let _ = persist(w, "release", || {
            w.store.release(lease.job_id, lease.analyzer, &lease.token)
        })
        .await;
        return;
    }
    // The lease goes first: a copy claimed meanwhile must not find this attempt running.
    let dropped = persist(w, "drop lease", || {
        w.store
            .drop_lease(lease.job_id, lease.analyzer, &lease.token)
    });
    if !matches!(dropped.await, Retried::Done(_)) {
        return;
    }
    let d = &held.delivery;
    let queue = d.routing_key.as_str().to_string();
    let mut headers = d.properties.headers().clone().unwrap_or_default();
    TraceContext::current().inject(&mut headers);
    let props = d.properties.clone().with_headers(headers);
    if let Retried::Done(()) = persist(w, "requeue", || {
        w.broker.publish("", &queue, &d.data, props.clone())
    })
    .await
    {
        ack(held).await;
    }
}

/// Tells the dispatcher an outcome is final. False: give up (shutdown), leave unacked.
async fn notify(w: &Shared, task: &TaskMessage, status: OutcomeStatus) -> bool {
    let notice = OutcomeNotice {
        v: SCHEMA_VERSION,
        job_id: task.job_id.clone(),
        analyzer: task.analyzer.clone(),
        status,
    };
    let Ok(body) = codec::encode(&notice) else {
        return false;
    };
    let queue = w.broker.topology().outcomes();
    let span = tracing::info_span!(
        "notify",
        otel.kind = "producer",
        job.id = %task.job_id,
        analyzer = %task.analyzer,
        outcome = status.as_str()
    );
    let mut headers = FieldTable::default();
    TraceContext::of(&span).inject(&mut headers);
    let props = persistent(MSGPACK, headers);
    let sent = persist(w, "notify", || {
        w.broker.publish("", &queue, &body, props.clone())
    })
    .instrument(span)
    .await;
    matches!(sent, Retried::Done(()))
}

/// A task message that can never run (malformed, or meeting a permanent error such as a
/// corrupt record) goes to `{p}.dlq` with the reason (bounded); then it is acked. After a failed try with the original headers, the rest go without them.
async fn reject(w: &Shared, held: &Held, reason: &str) {
    let d = &held.delivery;
    tracing::warn!(reason = %common::text::escaped(reason), "dead-lettering a task message");
    let full = dead_letter_props(&d.properties, reason);
    let minimal = minimal_dead_letter_props(&d.properties, reason);
    let dlq = w.broker.topology().dlq();
    let tries = AtomicU32::new(0);
    if let Retried::Done(()) = persist(w, "dead-letter", || {
        let first = tries.fetch_add(1, Ordering::Relaxed) == 0;
        let props = if first { full.clone() } else { minimal.clone() };
        let (broker, dlq, data) = (&w.broker, &dlq, &d.data);
        async move { broker.publish("", dlq, data, props).await }
    })
    .await
    {
        w.metrics
            .dead_lettered
            .get_or_create(&ReasonLabels {
                reason: "rejected".into(),
            })
            .inc();
        ack(held).await;
    }
}

async fn ack(held: &Held) {
    if let Err(e) = held.ack().await {
        tracing::warn!(error = %e, "ack failed; the broker will redeliver and the task will be acked as already final");
    }
}
