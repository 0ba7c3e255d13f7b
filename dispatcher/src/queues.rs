//! What the broker says about the fleet's queues: depth and consumers of each (passive
//! declare, always available) and who the consumers are (RabbitMQ's management API, when the
//! operator configured `FLEET_RABBITMQ_API`). Feeds `/metrics` and the web view.

use std::time::Duration;

use common::api::{Consumer, QueueDepth};
use common::metrics::queue_labels;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::core::Core;

/// A scrape or a page view must not hang on a slow broker.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Ready messages and consumers of every fleet queue; `None` fields where the broker could
/// not tell (queue missing, broker down). Also updates the queue gauges.
pub async fn depths(core: &Core) -> Vec<QueueDepth> {
    let queues = core.broker.topology().all_queues();
    let sampled = tokio::time::timeout(INSPECT_TIMEOUT, inspect_all(core, &queues)).await;
    let rows = sampled.unwrap_or_else(|_| {
        queues
            .iter()
            .map(|q| QueueDepth {
                queue: q.clone(),
                ready: None,
                consumers: None,
            })
            .collect()
    });
    for r in &rows {
        let l = queue_labels(&r.queue);
        match (r.ready, r.consumers) {
            (Some(ready), Some(consumers)) => {
                core.metrics.queue_ready.get_or_create(&l).set(ready.into());
                core.metrics
                    .queue_consumers
                    .get_or_create(&l)
                    .set(consumers.into());
            }
            // Unknown is absent, not zero: a dashboard must not show an outage as an empty queue.
            _ => {
                core.metrics.queue_ready.remove(&l);
                core.metrics.queue_consumers.remove(&l);
            }
        }
    }
    rows
}

async fn inspect_all(core: &Core, queues: &[String]) -> Vec<QueueDepth> {
    let never = CancellationToken::new();
    let mut channel = None;
    let mut rows = Vec::with_capacity(queues.len());
    for q in queues {
        let mut row = QueueDepth {
            queue: q.clone(),
            ready: None,
            consumers: None,
        };
        if !core.broker.is_connected() {
            rows.push(row);
            continue;
        }
        if channel.is_none() {
            channel = core.broker.channel(&never).await.ok();
        }
        if let Some(ch) = &channel {
            let opts = QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            match ch
                .queue_declare(q.as_str().into(), opts, FieldTable::default())
                .await
            {
                Ok(found) => {
                    row.ready = Some(found.message_count());
                    row.consumers = Some(found.consumer_count());
                }
                // RabbitMQ closes the channel on a missing queue: open a fresh one next time.
                Err(_) => channel = None,
            }
        }
        rows.push(row);
    }
    if let Some(ch) = channel {
        let _ = ch.close(200, "bye".into()).await;
    }
    rows
}

#[derive(Deserialize)]
struct MgmtConsumer {
    consumer_tag: String,
    #[serde(default)]
    prefetch_count: Option<u32>,
    queue: MgmtQueueRef,
    #[serde(default)]
    channel_details: Option<MgmtChannel>,
}

#[derive(Deserialize)]
struct MgmtQueueRef {
    name: String,
}

#[derive(Deserialize)]
struct MgmtChannel {
    #[serde(default)]
    peer_host: Option<String>,
}

/// The consumers of the fleet's queues from the management API, or why there are none.
pub async fn consumers(core: &Core) -> Result<Vec<Consumer>, String> {
    let Some(base) = core.config.connections.rabbitmq_api.as_deref() else {
        return Err(format!(
            "set {} (e.g. http://guest:guest@127.0.0.1:15672/) to list the workers",
            common::config::env::RABBITMQ_API
        ));
    };
    let vhost = core
        .config
        .connections
        .amqp_url
        .parse::<lapin::uri::AMQPUri>()
        .map(|u| u.vhost)
        .unwrap_or_else(|_| "/".into());
    let mut url = reqwest::Url::parse(base)
        .map_err(|e| format!("{} is not a URL: {e}", common::config::env::RABBITMQ_API))?;
    url.path_segments_mut()
        .map_err(|_| format!("{} cannot take a path", common::config::env::RABBITMQ_API))?
        .pop_if_empty()
        .extend(["api", "consumers", &vhost]);
    let http = reqwest::Client::builder()
        .timeout(INSPECT_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("RabbitMQ management API unreachable: {}", without_url(&e)))?;
    if !resp.status().is_success() {
        return Err(format!(
            "RabbitMQ management API answered {}",
            resp.status()
        ));
    }
    let all: Vec<MgmtConsumer> = resp.json().await.map_err(|e| {
        format!(
            "RabbitMQ management API: unexpected answer: {}",
            without_url(&e)
        )
    })?;
    let ours = core.broker.topology().all_queues();
    let mut list: Vec<Consumer> = all
        .into_iter()
        .filter(|c| ours.contains(&c.queue.name))
        .map(|c| {
            let host = c.channel_details.and_then(|ch| ch.peer_host);
            // Fleet consumer tags are `<process name>/<what>` (the worker's `--name`); the
            // management API's connection name is only the peer address.
            let process = match c.consumer_tag.rsplit_once('/') {
                Some((name, _)) => name.to_string(),
                None => c.consumer_tag.clone(),
            };
            Consumer {
                process,
                tag: c.consumer_tag,
                queue: c.queue.name,
                prefetch: c.prefetch_count,
                host,
            }
        })
        .collect();
    list.sort_by(|a, b| (&a.process, &a.queue).cmp(&(&b.process, &b.queue)));
    Ok(list)
}

/// reqwest puts the URL, credentials included, into its errors' text.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<management API>");
    }
    s
}
