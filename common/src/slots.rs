//! A worker's stage as slots: one AMQP consumer with prefetch 1 per slot, so the stage's
//! limit is its number of slots and the broker's window is always the number of free ones.
//!
//! A task that runs long hands its delivery over ([`Held::hand_over`]): its slot stops
//! consuming first, then the delivery is acked (the task's Redis lease keeps it from then
//! on), and the slot consumes again once that task has ended. So no delivery is held past the
//! broker's `consumer_timeout`, and a busy slot is never sent a task it cannot start.
//!
//! A slot whose channel dies reconnects at once (with backoff) when it is idle; one whose task
//! is running keeps running it and reconnects when it ends, so at most the stage's limit runs
//! at a time across old and new channels. The running task learns that its delivery went back
//! to the queue through [`Held::lost`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backoff;
use crate::broker::{Broker, BrokerError};

/// The broker's delivery deadline as this process knows it: the configured
/// `consumer_timeout`, lowered to what the broker says it used when it closes a channel for it
/// (RabbitMQ 3.10 tells a client its value only then).
#[derive(Debug)]
pub struct Deadline {
    configured: Duration,
    ms: AtomicU64,
}

impl Deadline {
    pub fn new(configured: Duration) -> Arc<Self> {
        Arc::new(Self {
            configured,
            ms: AtomicU64::new(configured.as_millis() as u64),
        })
    }

    pub fn get(&self) -> Duration {
        Duration::from_millis(self.ms.load(Ordering::SeqCst))
    }

    /// Reads a channel's close reason; if the broker closed it for an old unacked delivery,
    /// says so loudly, and adopts the broker's value when it is shorter than the configured one.
    pub fn observe_close(&self, reason: &str) {
        let Some(used) = broker_timeout(reason) else {
            return;
        };
        tracing::error!(
            broker_ms = used.as_millis() as u64,
            configured_ms = self.configured.as_millis() as u64,
            "RabbitMQ closed a channel for a delivery older than its consumer_timeout; set [fleet] consumer_timeout_ms to the broker's value"
        );
        self.ms.fetch_min(used.as_millis() as u64, Ordering::SeqCst);
    }
}

/// The timeout in RabbitMQ's close reason for a late ack ("delivery acknowledgement on channel
/// 1 timed out. Timeout value used: 5000 ms. ...").
pub fn broker_timeout(reason: &str) -> Option<Duration> {
    if !reason.contains("delivery acknowledgement") {
        return None;
    }
    let (_, rest) = reason.split_once("Timeout value used: ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().map(Duration::from_millis)
}

pub struct SlotSpec {
    pub queue: String,
    /// The stage's limit: this many consumers of prefetch 1.
    pub slots: u16,
    /// Consumer tags are `{tag}#{slot}`.
    pub tag: String,
    /// How long running tasks may go on after shutdown begins.
    pub grace: Duration,
    pub deadline: Arc<Deadline>,
}

/// One delivery in a slot, until it is acked or handed over.
pub struct Held {
    pub delivery: Delivery,
    /// When the delivery arrived: the broker's deadline runs from about then.
    pub received: Instant,
    channel: Channel,
    tag: String,
    handed: Arc<AtomicBool>,
    lost: CancellationToken,
}

impl Held {
    /// Fires when the delivery went back to the broker (its channel closed) before an ack.
    pub fn lost(&self) -> &CancellationToken {
        &self.lost
    }

    pub fn is_handed_over(&self) -> bool {
        self.handed.load(Ordering::SeqCst)
    }

    /// Acks the delivery (nothing to do once it was handed over).
    pub async fn ack(&self) -> Result<(), lapin::Error> {
        if self.is_handed_over() {
            return Ok(());
        }
        self.delivery
            .ack(BasicAckOptions::default())
            .await
            .map(|_| ())
    }

    /// Stops this slot's consumer, then acks the delivery: the caller keeps the task safe
    /// (its lease) from now on, and the slot takes no new task until this one ends.
    pub async fn hand_over(&self) -> Result<(), BrokerError> {
        if self.is_handed_over() {
            return Ok(());
        }
        // Marked first, so the slot reads its consumer's end as the cancel, not as a loss. If
        // the channel fails here, the broker has the message back and its next copy finds
        // the lease, which already keeps the message.
        self.handed.store(true, Ordering::SeqCst);
        // Cancel before the ack: with prefetch 1, no other delivery can reach the slot first.
        self.channel
            .basic_cancel(self.tag.as_str().into(), BasicCancelOptions::default())
            .await?;
        self.delivery.ack(BasicAckOptions::default()).await?;
        Ok(())
    }
}

/// Runs `spec.slots` consumers until `shutdown` fires and their tasks drained (within the
/// grace period; then `work_cancel` fires so that long tasks stop early).
pub async fn run<H, F>(
    broker: Arc<Broker>,
    spec: SlotSpec,
    shutdown: CancellationToken,
    work_cancel: CancellationToken,
    handler: H,
) where
    H: Fn(Held) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let handler = Arc::new(handler);
    let spec = Arc::new(spec);
    let tracker = TaskTracker::new();
    for i in 0..spec.slots.max(1) {
        tracker.spawn(slot(
            broker.clone(),
            spec.clone(),
            i,
            shutdown.clone(),
            handler.clone(),
        ));
    }
    tracker.close();
    tokio::select! {
        _ = tracker.wait() => return,
        _ = shutdown.cancelled() => {}
    }
    if tokio::time::timeout(spec.grace, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(queue = %spec.queue, grace = ?spec.grace, "grace period over; unfinished tasks go back to the queue");
        work_cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
    }
}

/// A connection that lasted this long starts the next reconnect from the first delay again.
const RECONNECT_RESET_AFTER: Duration = Duration::from_secs(30);

async fn open(
    broker: &Broker,
    queue: &str,
    tag: &str,
    shutdown: &CancellationToken,
) -> Result<(Channel, Consumer), BrokerError> {
    let ch = broker.channel(shutdown).await?;
    ch.basic_qos(1, BasicQosOptions { global: false }).await?;
    let consumer = ch
        .basic_consume(
            queue.into(),
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((ch, consumer))
}

async fn slot<H, F>(
    broker: Arc<Broker>,
    spec: Arc<SlotSpec>,
    index: u16,
    shutdown: CancellationToken,
    handler: Arc<H>,
) where
    H: Fn(Held) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let tag = format!("{}#{index}", spec.tag);
    let mut delays = backoff::RECONNECT.delays();
    let mut failure: Option<String> = None;
    loop {
        if let Some(error) = failure.take() {
            let delay = delays.next().unwrap_or(backoff::RECONNECT.cap);
            tracing::warn!(queue = %spec.queue, slot = index, %error, retry_in = ?delay, "consumer lost; reconnecting");
            broker.invalidate().await;
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => return,
            }
        }
        if shutdown.is_cancelled() {
            return;
        }
        let opened = Instant::now();
        let (ch, mut consumer) = match open(&broker, &spec.queue, &tag, &shutdown).await {
            Ok(c) => c,
            Err(BrokerError::Cancelled) => return,
            Err(e) => {
                failure = Some(e.to_string());
                continue;
            }
        };
        if index == 0 {
            tracing::info!(queue = %spec.queue, slots = spec.slots, "consuming");
        }
        // One channel per stretch of deliveries: it ends when the channel fails, after a
        // hand-over (the consumer was cancelled) or at shutdown.
        loop {
            let delivery = tokio::select! {
                next = consumer.next() => match next {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => {
                        spec.deadline.observe_close(&e.to_string());
                        failure = Some(e.to_string());
                        break
                    }
                    None => { failure = Some(format!("consumer on {} ended", spec.queue)); break }
                },
                _ = shutdown.cancelled() => {
                    let _ = ch.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await;
                    let _ = ch.close(200, "shutdown".into()).await;
                    return;
                }
            };
            let handed = Arc::new(AtomicBool::new(false));
            let lost = CancellationToken::new();
            let held = Held {
                delivery,
                received: Instant::now(),
                channel: ch.clone(),
                tag: tag.clone(),
                handed: handed.clone(),
                lost: lost.clone(),
            };
            let mut run = std::pin::pin!(handler(held));
            // Watch the channel while the task runs: with its one delivery unacked, the
            // consumer yields nothing but its end.
            let mut watching = true;
            loop {
                tokio::select! {
                    _ = &mut run => break,
                    next = consumer.next(), if watching => {
                        match next {
                            Some(Ok(extra)) => {
                                // Not expected with prefetch 1; give it back rather than sit on it.
                                let _ = extra.nack(BasicNackOptions { requeue: true, ..Default::default() }).await;
                            }
                            other => {
                                watching = false;
                                if let Some(Err(e)) = &other {
                                    spec.deadline.observe_close(&e.to_string());
                                }
                                if !handed.load(Ordering::SeqCst) {
                                    tracing::warn!(queue = %spec.queue, slot = index, "channel closed under a running task; its delivery went back to the queue");
                                    lost.cancel();
                                }
                            }
                        }
                    }
                    _ = shutdown.cancelled(), if watching => {
                        // Stop new deliveries; the running task keeps its channel to ack on.
                        watching = false;
                        let _ = ch.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await;
                    }
                }
            }
            if shutdown.is_cancelled() {
                let _ = ch.close(200, "shutdown".into()).await;
                return;
            }
            if lost.is_cancelled() || !ch.status().connected() {
                failure = Some("channel closed".into());
                break;
            }
            if handed.load(Ordering::SeqCst) {
                let _ = ch.close(200, "handed over".into()).await;
                break;
            }
        }
        if opened.elapsed() > RECONNECT_RESET_AFTER {
            delays = backoff::RECONNECT.delays();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rabbitmqs_timeout_from_its_close_reason() {
        let reason = "PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out. Timeout value used: 5000 ms. This timeout value can be configured, see consumers doc guide to learn more";
        assert_eq!(broker_timeout(reason), Some(Duration::from_millis(5000)));
        assert_eq!(broker_timeout("NOT_FOUND - no queue 'x'"), None);
        let d = Deadline::new(Duration::from_secs(1800));
        d.observe_close(reason);
        assert_eq!(d.get(), Duration::from_millis(5000));
        d.observe_close(&reason.replace("5000", "60000"));
        assert_eq!(d.get(), Duration::from_millis(5000), "never raised");
    }
}
