//! The dispatcher's AMQP consumers: job requests (`{p}.jobs`), outcome notices
//! (`{p}.outcomes`) and dead-lettered messages (`{p}.dead`).
//!
//! Invariant: an input is acked only after everything it caused is stored and confirmed;
//! on a transient infrastructure error (Redis or broker down) the step is retried with
//! backoff while the message is held (a nack would count against the queue's delivery
//! limit), never dropped. Input that can never succeed (malformed, invalid, or meeting a
//! permanent error such as a corrupt record) goes to `{p}.dlq` with the reason in a header.

use std::sync::Arc;

use common::backoff;
use common::broker::{dead_letter_props, minimal_dead_letter_props};
use common::codec;
use common::headers::{FIRST_DEATH_QUEUE_HEADER, delivery_count, header_str};
use common::ids::check_id;
use common::message::{OutcomeNotice, TaskMessage};
use common::retry::{self, Classify, Retried};
use common::telemetry::TraceContext;
use common::text::escaped;
use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use tracing::Instrument;

use crate::core::{Caller, Core, SubmitError};

/// Largest job request taken (AMQP body or HTTP body): a request is a path or URL, a list of
/// analyzer names and at most [`crate::core::MAX_METADATA_BYTES`] of metadata.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// One step of a message's handling, retried while the message is held: transient errors
/// until the step works or the dispatcher's work is cancelled (then the message is left
/// unacked and goes back to the queue), permanent ones not at all.
async fn held<T, E, Fut>(core: &Core, what: &str, step: impl FnMut() -> Fut) -> Retried<T, E>
where
    E: Classify + std::fmt::Display,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    retry::hold(backoff::INFRA_STEP, what, &core.work_cancel, step).await
}

pub async fn on_job_request(core: Arc<Core>, d: Delivery) {
    if d.data.len() > MAX_REQUEST_BYTES {
        let reason = format!(
            "rejected job request: {} bytes, more than the {MAX_REQUEST_BYTES} a request may have",
            d.data.len()
        );
        return dead_letter(&core, d, &reason).await;
    }
    let ct = d
        .properties
        .content_type()
        .as_ref()
        .map(|c| c.as_str().to_string());
    let req = match codec::decode_job_request(ct.as_deref(), &d.data) {
        Ok(r) => r,
        Err(e) => return dead_letter(&core, d, &format!("malformed job request: {e}")).await,
    };
    let id_hint = d
        .properties
        .message_id()
        .as_ref()
        .map(|m| m.as_str().to_string())
        .filter(|m| !m.is_empty());
    let trace = TraceContext::from_props(&d.properties);
    let caller = amqp_caller(&core, &d);
    let submit = || core.submit(req.clone(), id_hint.clone(), &caller, trace.clone());
    match held(&core, "submit", submit).await {
        Retried::Done(s) => {
            tracing::debug!(job_id = %s.job_id, created = s.created, "intake message handled");
            ack(d).await;
        }
        Retried::Permanent(SubmitError::Invalid(reason)) => {
            dead_letter(&core, d, &format!("rejected job request: {reason}")).await
        }
        Retried::Permanent(e) => {
            dead_letter(&core, d, &format!("job request not handled: {e}")).await
        }
        Retried::Cancelled => {}
    }
}

/// The AMQP publisher as a caller: RabbitMQ checks a message's `user_id` against the
/// connection's user, so a publisher whose broker user is named like a configured client
/// submits as that client. Anyone else with broker access is trusted like the operator.
fn amqp_caller(core: &Core, d: &Delivery) -> Caller {
    match d.properties.user_id() {
        Some(user)
            if core
                .config
                .connections
                .client_tokens
                .contains_key(user.as_str()) =>
        {
            Caller::client(user.as_str())
        }
        _ => Caller::operator(),
    }
}

pub async fn on_outcome(core: Arc<Core>, d: Delivery) {
    let notice: OutcomeNotice = match codec::decode(&d.data) {
        Ok(n) => n,
        Err(e) => return dead_letter(&core, d, &format!("malformed outcome notice: {e}")).await,
    };
    if let Err(why) =
        check_id("job_id", &notice.job_id).and_then(|_| check_id("analyzer", &notice.analyzer))
    {
        return dead_letter(&core, d, &format!("malformed outcome notice: {why}")).await;
    }
    let span = tracing::info_span!(
        "outcome",
        otel.kind = "consumer",
        job.id = %notice.job_id,
        analyzer = %notice.analyzer,
        outcome = notice.status.as_str()
    );
    continue_job(&core, &d, &notice.job_id)
        .await
        .set_as_parent(&span);
    async {
        let advance = || core.advance_after(&notice.job_id, &notice.analyzer);
        match held(&core, "advance", advance).await {
            Retried::Done(()) => ack(d).await,
            Retried::Permanent(e) => {
                let reason = format!(
                    "outcome notice for job {} analyzer {} not handled: {e}",
                    notice.job_id, notice.analyzer
                );
                dead_letter(&core, d, &reason).await
            }
            Retried::Cancelled => {}
        }
    }
    .instrument(span)
    .await
}

/// The parent of a job step's span: the message's trace context, or the job's own trace
/// when the message carried none (a publisher without tracing).
async fn continue_job(core: &Core, d: &Delivery, job_id: &str) -> TraceContext {
    let incoming = TraceContext::from_props(&d.properties);
    if incoming.is_valid() {
        incoming
    } else {
        core.job_trace(job_id).await
    }
}

/// Messages the broker dead-lettered (delivery limit reached). Tasks become `failed`
/// outcomes; everything also stays in `{p}.dlq` for the operator.
pub async fn on_dead(core: Arc<Core>, d: Delivery) {
    let from_queue = first_death_queue(&d.properties).unwrap_or_default();
    let span = tracing::info_span!("dead", otel.kind = "consumer", queue = %from_queue);
    TraceContext::from_props(&d.properties).set_as_parent(&span);
    handle_dead(core, d, from_queue).instrument(span).await
}

async fn handle_dead(core: Arc<Core>, d: Delivery, from_queue: String) {
    let topo = core.broker.topology();
    core.metrics
        .dead_lettered
        .get_or_create(&common::metrics::ReasonLabels {
            reason: "delivery_limit".into(),
        })
        .inc();
    let done = if from_queue == topo.outcomes() {
        match codec::decode::<OutcomeNotice>(&d.data) {
            Ok(n) if check_id("job_id", &n.job_id).is_ok() => {
                held(&core, "advance", || {
                    core.advance_after(&n.job_id, &n.analyzer)
                })
                .await
            }
            _ => Retried::Done(()),
        }
    } else {
        match codec::decode::<TaskMessage>(&d.data) {
            Ok(task)
                if check_id("job_id", &task.job_id).is_ok()
                    && check_id("analyzer", &task.analyzer).is_ok() =>
            {
                let deliveries = delivery_count(&d.properties).max(core.config.delivery_limit);
                held(&core, "record dead task", || {
                    core.record_dead_task(&task, deliveries)
                })
                .await
            }
            _ => Retried::Done(()),
        }
    };
    match done {
        Retried::Done(()) => ack(d).await,
        // The broker put a copy of this message in `{p}.dlq` already: say why it stays
        // unrecorded, and let it go.
        Retried::Permanent(e) => {
            tracing::error!(queue = %from_queue, error = %e, "dead-lettered message not recorded; it stays in the dead-letter queue");
            ack(d).await
        }
        Retried::Cancelled => {}
    }
}

fn first_death_queue(props: &lapin::BasicProperties) -> Option<String> {
    header_str(props, FIRST_DEATH_QUEUE_HEADER)
}

/// Sends a message that can never be processed to `{p}.dlq` with the reason (bounded), then
/// acks it. Should the publish with the original headers fail, every later try goes without
/// them: a dead-letter publish must not be able to fail the same way forever.
pub async fn dead_letter(core: &Core, d: Delivery, reason: &str) {
    tracing::warn!(reason = %escaped(reason), "dead-lettering a message");
    let full = dead_letter_props(&d.properties, reason);
    let minimal = minimal_dead_letter_props(&d.properties, reason);
    let dlq = core.broker.topology().dlq();
    let tries = std::sync::atomic::AtomicU32::new(0);
    let publish = || {
        let first = tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0;
        let props = if first { full.clone() } else { minimal.clone() };
        let (broker, dlq, data) = (&core.broker, &dlq, &d.data);
        async move { broker.publish("", dlq, data, props).await }
    };
    match held(core, "dead-letter", publish).await {
        Retried::Done(()) => {
            core.metrics
                .dead_lettered
                .get_or_create(&common::metrics::ReasonLabels {
                    reason: "rejected".into(),
                })
                .inc();
            ack(d).await;
        }
        // Left unacked: redelivered up to the delivery limit, then the broker dead-letters it.
        Retried::Permanent(e) => {
            tracing::error!(error = %e, "could not dead-letter a message; leaving it to the broker")
        }
        Retried::Cancelled => {}
    }
}

async fn ack(d: Delivery) {
    if let Err(e) = d.ack(BasicAckOptions::default()).await {
        // The channel died; the broker redelivers and the idempotent handlers cope.
        tracing::warn!(error = %e, "ack failed");
    }
}
