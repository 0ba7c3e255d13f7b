//! One supervised AMQP consumer: reconnects with backoff when the broker goes away, hands
//! each delivery to a handler task, and on shutdown stops consuming and drains in-flight
//! handlers under a grace period (what does not finish is requeued by closing the channel).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
/// grace period runs out, so long handlers can stop early.
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
    let mut delay = Duration::from_millis(200);
    loop {
        match once(&broker, &spec, &shutdown, &work_cancel, handler.clone()).await {
            Ok(()) => return,
            Err(BrokerError::Cancelled) => return,
            Err(e) => {
                tracing::warn!(queue = %spec.queue, error = %e, retry_in = ?delay, "consumer lost; reconnecting");
                broker.invalidate().await;
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn once<H, F>(
    broker: &Arc<Broker>,
    spec: &ConsumerSpec,
    shutdown: &CancellationToken,
    work_cancel: &CancellationToken,
    handler: Arc<H>,
) -> Result<(), BrokerError>
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
    let tracker = TaskTracker::new();
    let result = loop {
        tokio::select! {
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let h = handler.clone();
                    tracker.spawn(async move { h(delivery).await });
                }
                Some(Err(e)) => break Err(BrokerError::Amqp(e)),
                None => break Err(BrokerError::Closed(format!("consumer on {} ended", spec.queue))),
            },
            _ = shutdown.cancelled() => break Ok(()),
        }
    };
    if result.is_ok() {
        // Stop new deliveries first; in-flight handlers keep their channel to ack on.
        let _ = ch
            .basic_cancel(spec.tag.as_str().into(), BasicCancelOptions::default())
            .await;
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
    let _ = ch.close(200, "shutdown".into()).await;
    result
}
