//! The one retry/backoff policy: exponential from a first delay, with jitter, and a cap that
//! holds with the jitter included (`backon` adds up to as much again as the delay it
//! jitters, so the exponential part stops at half the cap).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait (before jitter).
    pub first: Duration,
    /// No wait is longer than this, jitter included.
    pub cap: Duration,
}

/// Reconnecting to RabbitMQ or Redis: soon after a blip, at most 10 s apart in a long outage,
/// so a service that is back is used again within about 10 s.
pub const RECONNECT: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

/// Retrying one infrastructure step (store an outcome, publish a notice) while holding its
/// message: often at first, then every few seconds.
pub const INFRA_STEP: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

impl Backoff {
    pub const fn new(first: Duration, cap: Duration) -> Self {
        Self { first, cap }
    }

    /// The largest delay before jitter: jitter at most doubles it.
    pub fn max_before_jitter(&self) -> Duration {
        self.cap / 2
    }

    /// The first delay before jitter (never above [`Backoff::max_before_jitter`]).
    pub fn min_before_jitter(&self) -> Duration {
        self.first.min(self.max_before_jitter())
    }

    /// The policy for `backon`'s `Retryable`, retrying without end (add `with_max_times`).
    pub fn policy(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.min_before_jitter())
            .with_max_delay(self.max_before_jitter())
            .with_jitter()
            .without_max_times()
    }

    /// The successive waits, without end (for a hand-driven loop, e.g. a consumer's reconnects).
    pub fn delays(&self) -> ExponentialBackoff {
        self.policy().build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_never_pushes_a_wait_past_the_cap() {
        for b in [
            RECONNECT,
            INFRA_STEP,
            Backoff::new(Duration::from_secs(1), Duration::from_secs(1)),
            Backoff::new(Duration::from_millis(100), Duration::from_secs(3)),
        ] {
            for _ in 0..20 {
                for (i, d) in b.delays().take(40).enumerate() {
                    assert!(d <= b.cap, "{b:?}: wait {i} is {d:?}");
                }
            }
        }
    }

    #[test]
    fn waits_grow_from_the_first_to_near_the_cap() {
        let waits: Vec<Duration> = RECONNECT.delays().take(12).collect();
        assert!(waits[0] >= RECONNECT.first && waits[0] <= RECONNECT.first * 2);
        assert!(waits[11] >= RECONNECT.cap / 2, "{waits:?}");
    }
}
