//! Detects a Redis that lost the fleet's data. The dispatcher keeps an epoch key (its TTL
//! renewed on every check) and checks it every few seconds: if it vanished or changed, Redis was
//! restarted without persistence, flushed or replaced, and every job from before is gone.
//! That is logged as an error, counted (`fleet_redis_state_lost_total`), shown in `/readyz`
//! (`state_lost_at_ms`) and named in the API's 404 answers; a new epoch starts.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use common::now_ms;

use crate::core::Core;

/// How often the epoch is checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// What this process knows of the epoch.
#[derive(Debug, Default)]
pub struct EpochState {
    known: Mutex<Option<String>>,
    lost_at_ms: Mutex<Option<u64>>,
}

impl EpochState {
    /// When the fleet's data was last seen lost, if ever in this process's lifetime.
    pub fn lost_at_ms(&self) -> Option<u64> {
        *self.lost_at_ms.lock().expect("epoch poisoned")
    }

    /// The 404 text's suffix: why a job may be unknown.
    pub fn why_unknown(&self) -> String {
        match self.lost_at_ms() {
            Some(at) => format!(
                "unknown, expired, or lost when Redis lost the fleet's data at {} ms since the epoch",
                at
            ),
            None => "unknown or expired".into(),
        }
    }
}

/// One check: adopts the current epoch, or detects that it vanished or changed.
pub async fn check(core: &Core) {
    let state = &core.epoch;
    let candidate = format!("{}-{}", now_ms(), uuid::Uuid::new_v4());
    let known = state.known.lock().expect("epoch poisoned").clone();
    let Some(known) = known else {
        if let Ok(now) = core.store.ensure_epoch(&candidate).await {
            *state.known.lock().expect("epoch poisoned") = Some(now);
        }
        return;
    };
    let current = match core.store.epoch().await {
        Ok(c) => c,
        // Redis away: nothing to learn now.
        Err(_) => return,
    };
    if current.as_deref() == Some(known.as_str()) {
        return;
    }
    let Ok(now) = core.store.ensure_epoch(&candidate).await else {
        return;
    };
    tracing::error!(
        previous = %known,
        now = %now,
        "Redis lost the fleet's data (restarted without persistence, flushed or replaced): every job from before is gone; run Redis with appendonly yes"
    );
    core.metrics.redis_state_lost.inc();
    *state.lost_at_ms.lock().expect("epoch poisoned") = Some(now_ms());
    *state.known.lock().expect("epoch poisoned") = Some(now);
}

/// Checks every [`CHECK_EVERY`] until `shutdown`.
pub async fn watch(core: Arc<Core>, shutdown: CancellationToken) {
    loop {
        check(&core).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}
