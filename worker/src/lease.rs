//! Keeps a running task's lease: renews it every third of its length, hands the delivery over
//! (ack, the lease keeps the message) at half the broker's deadline, and returns only when
//! the task was lost to another worker or its outcome became final elsewhere.
//!
//! A renewal that fails (Redis away) is tried again every second; the task keeps running.
//! Recovery gives a lease's owner a confirmation window after it first sees the lease expired,
//! so an owner that gets Redis back renews before anyone takes its task.

use std::time::Duration;

use common::metrics::ReasonLabels;
use common::slots::Held;
use tokio::time::Instant;

use crate::runner::Shared;

/// A claimed task's lease: the attempt's token and the task it names.
pub struct TaskLease<'a> {
    pub job_id: &'a str,
    pub analyzer: &'a str,
    pub token: String,
}

const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Renews (and hands over) until the lease is lost; never returns while it is kept.
pub async fn keep(w: &Shared, held: &Held, lease: &TaskLease<'_>) {
    let length = w.config.lease;
    let every = length / 3;
    let received = Instant::from_std(held.received);
    let mut next_renew = Instant::now() + every;
    loop {
        let now = Instant::now();
        let handover_at = received + w.deadline.get() / 2;
        let handover_due = !held.is_handed_over() && !held.lost().is_cancelled();
        let wake = if handover_due && handover_at > now {
            next_renew.min(handover_at)
        } else {
            next_renew
        };
        tokio::time::sleep_until(wake).await;
        let hold = handover_due && Instant::now() >= handover_at;
        match w
            .store
            .renew(lease.job_id, lease.analyzer, &lease.token, length, hold)
            .await
        {
            Ok(true) => {
                next_renew = Instant::now() + every;
                if hold {
                    hand_over(w, held, lease).await;
                }
            }
            Ok(false) => {
                tracing::warn!(job_id = %lease.job_id, analyzer = %lease.analyzer, "lease lost (another worker took the task, or its outcome is final); stopping this run");
                count(w, "lost");
                return;
            }
            Err(e) => {
                tracing::warn!(job_id = %lease.job_id, analyzer = %lease.analyzer, error = %e, "lease not renewed; retrying");
                next_renew = Instant::now() + RETRY_EVERY;
            }
        }
    }
}

async fn hand_over(w: &Shared, held: &Held, lease: &TaskLease<'_>) {
    match held.hand_over().await {
        Ok(()) => {
            tracing::info!(
                job_id = %lease.job_id, analyzer = %lease.analyzer,
                held_ms = held.received.elapsed().as_millis() as u64,
                deadline_ms = w.deadline.get().as_millis() as u64,
                "delivery handed over to the task's lease before the broker's deadline"
            );
            count(w, "handed over");
        }
        // The channel is gone: the broker has the message back, and the copy it delivers
        // finds this lease and leaves the task to it.
        Err(e) => {
            tracing::warn!(job_id = %lease.job_id, analyzer = %lease.analyzer, error = %e, "hand-over failed; the task runs on under its lease")
        }
    }
}

pub fn count(w: &Shared, event: &str) {
    w.metrics
        .leases
        .get_or_create(&ReasonLabels {
            reason: event.into(),
        })
        .inc();
}
