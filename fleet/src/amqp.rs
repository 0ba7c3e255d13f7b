//! The CLI's own short-lived AMQP connection. Unlike `common::broker` it never declares the
//! topology (an operator's typo in FLEET_PREFIX must not create queues) and gives up after
//! a timeout instead of retrying forever.

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{FieldTable, LongString};
use lapin::{Connection, ConnectionProperties, ErrorKind};

use crate::error::{redact_url, root_cause};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn connect(url: &str) -> anyhow::Result<Connection> {
    let props = ConnectionProperties::default().with_connection_name(LongString::from("fleet-cli"));
    let why = match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, props)).await {
        Ok(Ok(conn)) => return Ok(conn),
        Ok(Err(e)) => root_cause(&e),
        Err(_) => "timed out".to_string(),
    };
    anyhow::bail!(
        "cannot reach RabbitMQ at {}: {why} — start it (e.g. `systemctl start rabbitmq-server`) or set FLEET_AMQP_URL",
        redact_url(url)
    )
}

/// The vhost of an AMQP URL (`/` when the URL names none), for the management API.
pub fn vhost(url: &str) -> String {
    url.parse::<lapin::uri::AMQPUri>()
        .map(|u| u.vhost)
        .unwrap_or_else(|_| "/".into())
}

/// Ready messages and consumers of `queue` (passive declare), `None` when it does not exist.
/// Each check uses its own channel because RabbitMQ closes the channel on a 404.
pub async fn inspect(conn: &Connection, queue: &str) -> anyhow::Result<Option<(u32, u32)>> {
    let ch = conn.create_channel().await?;
    let opts = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    match ch
        .queue_declare(queue.into(), opts, FieldTable::default())
        .await
    {
        Ok(q) => {
            let _ = ch.close(200, "bye".into()).await;
            Ok(Some((q.message_count(), q.consumer_count())))
        }
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn is_not_found(e: &lapin::Error) -> bool {
    matches!(e.kind(), ErrorKind::ProtocolError(p) if matches!(p.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)))
}

/// One line for a queue the topology does not have yet.
pub fn missing_queue(queue: &str) -> String {
    format!(
        "queue {queue} does not exist — start the dispatcher once (it declares the queues) or check FLEET_PREFIX"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vhost_comes_from_the_url() {
        assert_eq!(vhost("amqp://guest:guest@127.0.0.1:5672/%2f"), "/");
        assert_eq!(vhost("amqp://u:p@h:5672/fleet"), "fleet");
    }
}
