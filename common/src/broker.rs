//! A reconnecting AMQP handle: one connection, one publishing channel with publisher
//! confirms, and fresh channels for consumers.
//!
//! `publish` returns only once the broker has confirmed the message (persisted on a quorum
//! queue's majority); callers ack their own input after that, which is what makes delivery
//! at-least-once end to end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::Retryable;
use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::backoff;
use crate::headers::{HEADERS_DROPPED_HEADER, REASON_HEADER, set_header};
use crate::retry::{Classify, Fault};
use crate::topology::Topology;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("AMQP: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker refused (nacked) a message to {0}")]
    Nacked(String),
    #[error("no queue is bound for routing key {0:?} (the topology was not declared?)")]
    Unroutable(String),
    #[error("connection closed: {0}")]
    Closed(String),
    #[error("shutting down")]
    Cancelled,
}

/// Every broker error is transient: none of them says anything about the message that a
/// later try could not change (the connection or channel died, the broker refused under
/// load, a queue is missing until the topology is declared again). The one error a message
/// causes itself, headers too large for a frame, is met where it can happen: a dead-letter
/// publish retries without the original headers ([`minimal_dead_letter_props`]).
impl Classify for BrokerError {
    fn fault(&self) -> Fault {
        Fault::Transient
    }
}

struct Live {
    conn: Connection,
    publish: Channel,
}

impl Live {
    fn healthy(&self) -> bool {
        self.conn.status().connected() && self.publish.status().connected()
    }
}

/// Since when the broker has been away, and what the last attempt to reach it said.
struct Down {
    since: Instant,
    last_error: Option<String>,
}

pub struct Broker {
    url: String,
    name: String,
    topology: Topology,
    delivery_limit: u32,
    /// The live connection. A plain mutex held only to copy or swap the `Arc`, never across
    /// an await: probes and publishers read it without waiting behind a reconnect.
    live: std::sync::Mutex<Option<Arc<Live>>>,
    /// Held by the one task reconnecting (through the whole backoff loop); the others wait
    /// for its connection instead of opening their own.
    reconnecting: Mutex<()>,
    down: std::sync::Mutex<Option<Down>>,
}

/// Persistent message properties with a content type and optional headers.
pub fn persistent(content_type: &str, headers: FieldTable) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(ShortString::from(content_type))
        .with_headers(headers)
        .with_timestamp(crate::now_ms() / 1000)
}

/// Original headers larger than this (roughly, encoded) are not copied into a dead-letter
/// publish: with the reason added they could pass the broker's frame size.
const MAX_COPIED_HEADER_BYTES: usize = 16 * 1024;

/// Properties for sending a message that can never be processed to `{p}.dlq`: its own
/// headers (unless they are large), content type and message id, plus the reason
/// (`x-fleet-reason`, at most [`crate::text::MAX_REASON_BYTES`]) and the current trace context.
pub fn dead_letter_props(original: &BasicProperties, reason: &str) -> BasicProperties {
    let copied = original.headers().clone().unwrap_or_default();
    let mut headers = if table_size(&copied) <= MAX_COPIED_HEADER_BYTES {
        copied
    } else {
        let mut h = FieldTable::default();
        h.insert(HEADERS_DROPPED_HEADER.into(), AMQPValue::Boolean(true));
        h
    };
    set_header(&mut headers, REASON_HEADER, &crate::text::reason(reason));
    crate::telemetry::TraceContext::current().inject(&mut headers);
    let ct = original
        .content_type()
        .as_ref()
        .map(|c| c.as_str().to_string())
        .unwrap_or_default();
    let props = persistent(&ct, headers);
    match original.message_id() {
        Some(id) => props.with_message_id(id.clone()),
        None => props,
    }
}

/// [`dead_letter_props`] without any of the original headers: the fallback when a publish
/// with them failed, so a dead-letter publish cannot fail the same way forever.
pub fn minimal_dead_letter_props(original: &BasicProperties, reason: &str) -> BasicProperties {
    let stripped = original.clone().with_headers(FieldTable::default());
    let mut props = dead_letter_props(&stripped, reason);
    if let Some(h) = props.headers().clone() {
        let mut h = h;
        h.insert(HEADERS_DROPPED_HEADER.into(), AMQPValue::Boolean(true));
        props = props.with_headers(h);
    }
    props
}

/// About the encoded size of a header table (names, values, and a few bytes of framing each).
fn table_size(table: &FieldTable) -> usize {
    table
        .inner()
        .iter()
        .map(|(k, v)| k.as_str().len() + 2 + value_size(v))
        .sum()
}

fn value_size(v: &AMQPValue) -> usize {
    match v {
        AMQPValue::LongString(s) => s.as_bytes().len() + 4,
        AMQPValue::ShortString(s) => s.as_str().len() + 1,
        AMQPValue::ByteArray(b) => b.as_slice().len() + 4,
        AMQPValue::FieldTable(t) => table_size(t) + 4,
        AMQPValue::FieldArray(a) => a.as_slice().iter().map(value_size).sum::<usize>() + 4,
        _ => 9,
    }
}

/// How long a publish waits for a lost connection to come back before it fails (its caller
/// holds the message and retries).
const PUBLISH_RECONNECT_WITHIN: Duration = Duration::from_secs(30);

impl Broker {
    /// Connects (retrying with backoff until `cancel` fires) and declares the topology.
    pub async fn connect(
        url: &str,
        name: &str,
        topology: Topology,
        delivery_limit: u32,
        cancel: &CancellationToken,
    ) -> Result<Arc<Self>, BrokerError> {
        let b = Arc::new(Self {
            url: url.to_string(),
            name: name.to_string(),
            topology,
            delivery_limit,
            live: std::sync::Mutex::new(None),
            reconnecting: Mutex::new(()),
            down: std::sync::Mutex::new(None),
        });
        b.ensure(cancel).await?;
        Ok(b)
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Whether a live connection exists now. Never waits, also while a reconnect is under way.
    pub fn is_connected(&self) -> bool {
        self.current().is_some()
    }

    /// Why the broker cannot be used now (`None`: it can), for probes and errors: how long it
    /// has been away and what the last attempt to reach it said. Never waits.
    pub fn unavailable(&self) -> Option<String> {
        if self.is_connected() {
            return None;
        }
        let down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        Some(match down.as_ref() {
            Some(Down {
                since,
                last_error: Some(e),
            }) => format!(
                "RabbitMQ unreachable for {} s, reconnecting: {e}",
                since.elapsed().as_secs()
            ),
            Some(Down { since, .. }) => format!(
                "RabbitMQ connection lost {} s ago, reconnecting",
                since.elapsed().as_secs()
            ),
            None => "RabbitMQ connection lost, reconnecting".to_string(),
        })
    }

    /// The live connection when it is healthy.
    fn current(&self) -> Option<Arc<Live>> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.as_ref().filter(|l| l.healthy()).cloned()
    }

    fn note_down(&self, error: Option<String>) {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        let d = down.get_or_insert_with(|| Down {
            since: Instant::now(),
            last_error: None,
        });
        if error.is_some() {
            d.last_error = error;
        }
    }

    async fn open(&self) -> Result<Live, lapin::Error> {
        let props = ConnectionProperties::default()
            .with_connection_name(LongString::from(self.name.clone()));
        let conn = Connection::connect(&self.url, props).await?;
        let publish = conn.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        self.topology.declare(&publish, self.delivery_limit).await?;
        Ok(Live { conn, publish })
    }

    /// Makes sure a live connection exists, reconnecting with backoff (until cancelled).
    pub async fn ensure(&self, cancel: &CancellationToken) -> Result<(), BrokerError> {
        self.live_connection(cancel).await.map(|_| ())
    }

    async fn live_connection(&self, cancel: &CancellationToken) -> Result<Arc<Live>, BrokerError> {
        if let Some(l) = self.current() {
            return Ok(l);
        }
        let _turn = tokio::select! {
            t = self.reconnecting.lock() => t,
            _ = cancel.cancelled() => return Err(BrokerError::Cancelled),
        };
        // Whoever held the turn before may have reconnected already.
        if let Some(l) = self.current() {
            return Ok(l);
        }
        self.note_down(None);
        let attempt = || async { self.open().await };
        let open = attempt.retry(backoff::RECONNECT.policy()).notify(|e, d| {
            self.note_down(Some(e.to_string()));
            tracing::warn!(error = %e, retry_in = ?d, "RabbitMQ unreachable; retrying");
        });
        let live = tokio::select! {
            r = open => Arc::new(r?),
            _ = cancel.cancelled() => return Err(BrokerError::Cancelled),
        };
        *self.live.lock().unwrap_or_else(|e| e.into_inner()) = Some(live.clone());
        if let Some(d) = self.down.lock().unwrap_or_else(|e| e.into_inner()).take() {
            tracing::info!(after = ?d.since.elapsed(), "RabbitMQ reachable again");
        }
        Ok(live)
    }

    /// A new channel on the live connection (for a consumer).
    pub async fn channel(&self, cancel: &CancellationToken) -> Result<Channel, BrokerError> {
        let live = self.live_connection(cancel).await?;
        Ok(live.conn.create_channel().await?)
    }

    /// Publishes and waits for the broker's confirm. One reconnect is tried on a dead channel.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), BrokerError> {
        let never = CancellationToken::new();
        let mut last = None;
        for _ in 0..2 {
            let channel =
                match self.current() {
                    Some(l) => l.publish.clone(),
                    None => {
                        self.invalidate().await;
                        tokio::time::timeout(PUBLISH_RECONNECT_WITHIN, self.ensure(&never))
                            .await
                            .map_err(|_| {
                                BrokerError::Closed(self.unavailable().unwrap_or_else(|| {
                                    "no connection to RabbitMQ within 30 s".into()
                                }))
                            })??;
                        continue;
                    }
                };
            // Mandatory: a message no queue takes comes back instead of vanishing.
            let opts = BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            };
            let sent = channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    opts,
                    body,
                    props.clone(),
                )
                .await;
            let confirm = match sent {
                Ok(c) => c.await,
                Err(e) => Err(e),
            };
            match confirm {
                Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => return Ok(()),
                Ok(Confirmation::Ack(Some(_))) => {
                    return Err(BrokerError::Unroutable(routing_key.into()));
                }
                Ok(Confirmation::Nack(_)) => return Err(BrokerError::Nacked(routing_key.into())),
                Err(e) => {
                    tracing::warn!(error = %e, "publish failed; reconnecting");
                    self.invalidate().await;
                    last = Some(e);
                }
            }
        }
        Err(last
            .map(BrokerError::from)
            .unwrap_or(BrokerError::Cancelled))
    }

    /// Forgets a broken connection so the next call reconnects.
    pub async fn invalidate(&self) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if live.as_ref().is_some_and(|l| !l.healthy()) {
            *live = None;
            drop(live);
            self.note_down(None);
        }
    }

    pub async fn close(&self) {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(l) = live {
            let _ = l.conn.close(200, "bye".into()).await;
        }
    }
}
