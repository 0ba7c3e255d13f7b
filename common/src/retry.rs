//! The one retry helper for an infrastructure step (a Redis read or write, a publish) made
//! while a message is held, on `backon` with a [`Backoff`] policy.
//!
//! Every infrastructure error says what a retry can do ([`Classify`]): a *transient* one
//! (Redis or RabbitMQ away, slow or overloaded, a missing queue) goes away when the service
//! is back, so the step is retried with backoff for as long as the outage lasts (an outage is
//! never a shutdown); a *permanent* one (a corrupt record, a key of the wrong type) fails the
//! same way on every try, so the retry ends at once and the caller dead-letters the message
//! with the error as its reason. Errors nobody can tell apart count as transient: calling a
//! systemic condition permanent would empty a whole queue into the dead-letter queue.

use std::fmt::Display;
use std::future::Future;

use backon::Retryable;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

/// What an infrastructure error says about trying the same step again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The service is away, slow or overloaded: the same step may work later.
    Transient,
    /// The step's data is the problem: it fails the same way every time.
    Permanent,
}

/// An error that knows whether it is [`Fault::Transient`] or [`Fault::Permanent`].
pub trait Classify {
    fn fault(&self) -> Fault;

    fn is_permanent(&self) -> bool {
        self.fault() == Fault::Permanent
    }
}

/// How a held step ended.
#[derive(Debug)]
pub enum Retried<T, E> {
    Done(T),
    /// The step failed with a permanent error: dead-letter the message with it.
    Permanent(E),
    /// `cancel` fired first (the shutdown grace period is over): leave the message unacked,
    /// so the broker gives it to another consumer.
    Cancelled,
}

/// Runs `step` until it succeeds, fails permanently, or `cancel` fires; transient errors are
/// logged (with `what`) and retried after `policy`'s waits, without end.
pub async fn hold<T, E, Fut, F>(
    policy: Backoff,
    what: &str,
    cancel: &CancellationToken,
    step: F,
) -> Retried<T, E>
where
    E: Classify + Display,
    Fut: Future<Output = Result<T, E>>,
    F: FnMut() -> Fut,
{
    let retried = step
        .retry(policy.policy())
        .sleep(tokio::time::sleep)
        .when(|e: &E| !e.is_permanent())
        .notify(|e: &E, wait| {
            tracing::warn!(error = %e, what, retry_in = ?wait, "infrastructure error; retrying");
        });
    tokio::select! {
        r = retried => match r {
            Ok(v) => Retried::Done(v),
            // Only a permanent error ends a retry without a limit on attempts; the caller
            // logs it with what it does about it.
            Err(e) => Retried::Permanent(e),
        },
        _ = cancel.cancelled() => Retried::Cancelled,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;

    #[derive(Debug)]
    struct E(Fault);

    impl Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:?}", self.0)
        }
    }

    impl Classify for E {
        fn fault(&self) -> Fault {
            self.0
        }
    }

    const FAST: Backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(4));

    #[tokio::test]
    async fn transient_errors_are_retried_until_the_step_works() {
        let tries = AtomicU32::new(0);
        let r = hold(FAST, "test", &CancellationToken::new(), || async {
            match tries.fetch_add(1, Ordering::SeqCst) {
                0..5 => Err(E(Fault::Transient)),
                n => Ok(n),
            }
        })
        .await;
        assert!(matches!(r, Retried::Done(5)), "{r:?}");
    }

    #[tokio::test]
    async fn a_permanent_error_ends_the_retry_at_once() {
        let tries = AtomicU32::new(0);
        let r: Retried<(), E> = hold(FAST, "test", &CancellationToken::new(), || async {
            match tries.fetch_add(1, Ordering::SeqCst) {
                0 => Err(E(Fault::Transient)),
                _ => Err(E(Fault::Permanent)),
            }
        })
        .await;
        assert!(
            matches!(r, Retried::Permanent(E(Fault::Permanent))),
            "{r:?}"
        );
        assert_eq!(tries.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn cancel_ends_a_retry_of_an_outage() {
        let cancel = CancellationToken::new();
        let later = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            later.cancel();
        });
        let r: Retried<(), E> =
            hold(FAST, "test", &cancel, || async { Err(E(Fault::Transient)) }).await;
        assert!(matches!(r, Retried::Cancelled), "{r:?}");
    }
}
