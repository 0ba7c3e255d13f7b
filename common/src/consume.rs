//! One supervised AMQP consumer: reconnects with backoff when the broker goes away, hands
//! each delivery to a handler task, and on shutdown stops consuming and drains in-flight
//! handlers under a grace period (what does not finish is requeued by closing the channel).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backoff;
use crate::broker::{Broker, BrokerError};

pub struct ConsumerSpec {
    pub queue: String,
    /// Per-consumer prefetch (`basic.qos`, global = false): the most unacked deliveries.
    pub prefetch: u16,
    pub tag: String,
    /// How long in-flight handlers may run after shutdown begins.
    pub grace: Duration,
}

/// Runs until `shutdown` fires and the handlers drained. `work_cancel` is cancelled when the
/// grace period after shutdown runs out, so long handlers can stop early.
///
/// A lost connection is not a shutdown: handlers of the lost channel keep running (their
/// outcomes are stored; the broker redelivers their messages, which then find the outcome
/// and are acked without running again), the consumer reconnects at once with backoff, and
/// nothing is cancelled however long the outage lasts. At most `prefetch` handlers run at a
/// time across connections, so the stage's limit holds while old handlers finish.
pub async fn run<H, F>(
    broker: Arc<Broker>,
    spec: ConsumerSpec,
    shutdown: CancellationToken,
    work_cancel: CancellationToken,
    handler: H,
) where
    H: Fn(Delivery) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let handler = Arc::new(handler);
    let slots = Arc::new(Semaphore::new(usize::from(spec.prefetch.max(1))));
    let tracker = TaskTracker::new();
    let mut delays = backoff::RECONNECT.delays();
    let mut open_channel = None;
    loop {
        let started = Instant::now();
        match once(&broker, &spec, &shutdown, &tracker, &slots, handler.clone()).await {
            Ok(ch) => {
                open_channel = Some(ch);
                break;
            }
            Err(BrokerError::Cancelled) => break,
            Err(e) => {
                if started.elapsed() > RECONNECT_RESET_AFTER {
                    delays = backoff::RECONNECT.delays();
                }
                let delay = delays.next().unwrap_or(backoff::RECONNECT.cap);
                tracing::warn!(queue = %spec.queue, error = %e, retry_in = ?delay, running = tracker.len(), "consumer lost; reconnecting");
                broker.invalidate().await;
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
        }
    }
    tracker.close();
    if tokio::time::timeout(spec.grace, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(queue = %spec.queue, grace = ?spec.grace, "grace period over; unfinished tasks go back to the queue");
        work_cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
    }
    // Closing the channel requeues whatever is still unacked.
    if let Some(ch) = open_channel {
        let _ = ch.close(200, "shutdown".into()).await;
    }
}

/// A connection that lasted this long starts the next reconnect from the first delay again.
const RECONNECT_RESET_AFTER: Duration = Duration::from_secs(30);

/// Consumes on one channel until it fails (`Err`) or shutdown begins (`Ok(channel)`: new
/// deliveries stopped, the channel left open for the running handlers to ack on).
async fn once<H, F>(
    broker: &Arc<Broker>,
    spec: &ConsumerSpec,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
    slots: &Arc<Semaphore>,
    handler: Arc<H>,
) -> Result<lapin::Channel, BrokerError>
where
    H: Fn(Delivery) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let ch = broker.channel(shutdown).await?;
    ch.basic_qos(spec.prefetch, BasicQosOptions { global: false })
        .await?;
    let mut consumer = ch
        .basic_consume(
            spec.queue.as_str().into(),
            spec.tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(queue = %spec.queue, prefetch = spec.prefetch, "consuming");
    loop {
        tokio::select! {
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let h = handler.clone();
                    let slot = slots.clone().acquire_owned();
                    tracker.spawn(async move {
                        // Closed only when the process ends; then the delivery is requeued.
                        let Ok(_slot) = slot.await else { return };
                        h(delivery).await
                    });
                }
                Some(Err(e)) => return Err(BrokerError::Amqp(e)),
                None => return Err(BrokerError::Closed(format!("consumer on {} ended", spec.queue))),
            },
            _ = shutdown.cancelled() => break,
        }
    }
    // Stop new deliveries first; in-flight handlers keep their channel to ack on.
    let _ = ch
        .basic_cancel(spec.tag.as_str().into(), BasicCancelOptions::default())
        .await;
    Ok(ch)
}
