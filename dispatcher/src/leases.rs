//! Recovers tasks whose worker stopped renewing their lease (it died, hung, or lost Redis for
//! longer than the lease). Every few seconds, the expired leases are looked at: the first look
//! marks one suspect and gives its owner [`CONFIRM`] to renew; after that, a task whose
//! message lives only in the lease (its delivery was handed over or its copies acked) is
//! published again to its stage queue, and one the broker still holds just loses its owner,
//! so that its next delivery may run. Several dispatchers may run this at once: each step is
//! one script, and a republish is claimed first.

use std::sync::Arc;
use std::time::Duration;

use common::broker::persistent;
use common::codec::MSGPACK;
use common::headers::set_header;
use common::metrics::ReasonLabels;
use common::store::Recovery;
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;

use crate::core::Core;

/// How often expired leases are looked for.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// How long a lease must stay expired after recovery first saw it so, before its owner is
/// considered gone: a live owner retries a failed renewal every second, so one that just got
/// Redis back renews well within it.
pub const CONFIRM: Duration = Duration::from_secs(5);
/// A recoverer's own claim while it publishes: if it dies meanwhile, the next one takes over.
const HOLD: Duration = Duration::from_secs(30);
/// Leases looked at per check.
const BATCH: usize = 100;

/// One pass over the expired leases.
pub async fn check(core: &Core, token: &str) {
    let expired = match core.store.expired_leases(BATCH).await {
        Ok(e) => e,
        Err(e) => {
            tracing::debug!(error = %e, "expired leases not read");
            return;
        }
    };
    let stage_queues: Vec<String> = core
        .config
        .stages
        .keys()
        .map(|s| core.broker.topology().stage_queue(s))
        .collect();
    for (job_id, analyzer) in expired {
        let step = core
            .store
            .recover_lease(&job_id, &analyzer, token, HOLD, CONFIRM)
            .await;
        match step {
            Ok(Recovery::Republish {
                body,
                queue,
                traceparent,
                worker,
            }) => {
                if !stage_queues.contains(&queue) {
                    tracing::error!(%job_id, %analyzer, %queue, "a lease names no stage queue of this fleet; left alone");
                    continue;
                }
                let mut headers = FieldTable::default();
                if !traceparent.is_empty() {
                    set_header(&mut headers, "traceparent", &traceparent);
                }
                match core
                    .broker
                    .publish("", &queue, &body, persistent(MSGPACK, headers))
                    .await
                {
                    Ok(()) => {
                        let _ = core.store.republished(&job_id, &analyzer, token).await;
                        tracing::warn!(%job_id, %analyzer, %worker, "lease expired (its worker died or lost Redis); task published again");
                        count(core, "recovered");
                    }
                    Err(e) => {
                        tracing::warn!(%job_id, %analyzer, error = %e, "recovered task not published; trying again later")
                    }
                }
            }
            Ok(Recovery::Cleared { worker }) => {
                tracing::warn!(%job_id, %analyzer, %worker, "lease expired; the broker still has the task, its next delivery runs it");
                count(core, "cleared");
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(%job_id, %analyzer, error = %e, "lease not recovered"),
        }
    }
}

fn count(core: &Core, event: &str) {
    core.metrics
        .leases
        .get_or_create(&ReasonLabels {
            reason: event.into(),
        })
        .inc();
}

/// Checks every [`CHECK_EVERY`] until `shutdown`.
pub async fn watch(core: Arc<Core>, shutdown: CancellationToken) {
    let token = format!(
        "{}{}",
        common::store::RECOVERY_TOKEN_PREFIX,
        uuid::Uuid::new_v4().simple()
    );
    loop {
        check(&core, &token).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}
