//! `fleet queues`: per fleet queue, ready messages and consumers (passive declare over AMQP,
//! always available) and unacked messages (RabbitMQ management API, when enabled).

use std::time::Duration;

use common::Topology;
use reqwest::Url;
use serde::Deserialize;

use crate::cli::DEFAULT_RABBITMQ_API;
use crate::error::{redact_url, root_cause};
use crate::{amqp, render, settings};

/// Environment variable naming the management API (credentials in the URL).
pub const RABBITMQ_API_ENV: &str = "FLEET_RABBITMQ_API";

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    pub queue: String,
    /// `None`: the queue does not exist.
    pub ready: Option<u32>,
    pub consumers: Option<u32>,
    /// `None`: the management API could not tell.
    pub unacked: Option<u64>,
}

/// The fields of `GET /api/queues/{vhost}/{name}` that `queues` shows.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MgmtQueue {
    #[serde(default)]
    pub messages_unacknowledged: u64,
}

/// `{base}/api/queues/{vhost}/{queue}`, every segment percent-encoded (`/` → `%2F`).
pub fn mgmt_queue_url(base: &str, vhost: &str, queue: &str) -> anyhow::Result<Url> {
    let mut url = Url::parse(base).map_err(|e| {
        anyhow::anyhow!(
            "{RABBITMQ_API_ENV} {:?} is not a URL: {e}",
            redact_url(base)
        )
    })?;
    url.path_segments_mut()
        .map_err(|_| {
            anyhow::anyhow!(
                "{RABBITMQ_API_ENV} {:?} cannot take a path",
                redact_url(base)
            )
        })?
        .pop_if_empty()
        .extend(["api", "queues", vhost, queue]);
    Ok(url)
}

pub fn table(rows: &[Row]) -> String {
    let dash = || "-".to_string();
    let mut t = render::table(&["queue", "ready", "unacked", "consumers"]);
    for r in rows {
        match r.ready {
            None => t.add_row(vec![r.queue.clone(), "missing".into(), dash(), dash()]),
            Some(ready) => t.add_row(vec![
                r.queue.clone(),
                ready.to_string(),
                r.unacked.map_or_else(dash, |u| u.to_string()),
                r.consumers.map_or_else(dash, |c| c.to_string()),
            ]),
        };
    }
    format!("{t}\n")
}

pub async fn run(config: Option<&std::path::Path>) -> anyhow::Result<()> {
    let loaded = settings::load(config, false)?;
    let c = &loaded.config.connections;
    let topology = Topology::new(&c.prefix);
    let conn = amqp::connect(&c.amqp_url).await?;
    let vhost = amqp::vhost(&c.amqp_url);
    let mgmt_base = std::env::var(RABBITMQ_API_ENV)
        .ok()
        .filter(|v| !v.is_empty());
    let mgmt_base = mgmt_base.as_deref().unwrap_or(DEFAULT_RABBITMQ_API);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    let mut mgmt_problem: Option<String> = None;
    let mut rows = Vec::new();
    for queue in topology.all_queues() {
        let found = amqp::inspect(&conn, &queue).await?;
        let mut row = Row {
            queue: queue.clone(),
            ..Default::default()
        };
        if let Some((ready, consumers)) = found {
            row.ready = Some(ready);
            row.consumers = Some(consumers);
            if mgmt_problem.is_none() {
                match unacked(&http, mgmt_base, &vhost, &queue).await {
                    Ok(u) => row.unacked = Some(u),
                    Err(e) => mgmt_problem = Some(e),
                }
            }
        }
        rows.push(row);
    }
    let _ = conn.close(200, "bye".into()).await;
    println!("prefix {} on {}", c.prefix, redact_url(&c.amqp_url));
    print!("{}", table(&rows));
    if let Some(p) = mgmt_problem {
        println!(
            "unacked: RabbitMQ management API not reachable at {} ({p}) — enable it with `rabbitmq-plugins enable rabbitmq_management` or set {RABBITMQ_API_ENV}",
            redact_url(mgmt_base)
        );
    }
    if rows.iter().any(|r| r.ready.is_none()) {
        println!(
            "missing: not declared yet — start the dispatcher once (it declares the queues) or check FLEET_PREFIX"
        );
    }
    Ok(())
}

async fn unacked(
    http: &reqwest::Client,
    base: &str,
    vhost: &str,
    queue: &str,
) -> Result<u64, String> {
    let url = mgmt_queue_url(base, vhost, queue).map_err(|e| e.to_string())?;
    let resp = http.get(url).send().await.map_err(|e| root_cause(&e))?;
    match resp.status() {
        s if s.is_success() => resp
            .json::<MgmtQueue>()
            .await
            .map(|q| q.messages_unacknowledged)
            .map_err(|e| e.to_string()),
        reqwest::StatusCode::UNAUTHORIZED => Err("401: wrong user or password in the URL".into()),
        s => Err(format!("HTTP {s}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_management_url_encodes_the_default_vhost() {
        let u = mgmt_queue_url("http://guest:guest@127.0.0.1:15672", "/", "fleet.stage1").unwrap();
        assert_eq!(
            u.as_str(),
            "http://guest:guest@127.0.0.1:15672/api/queues/%2F/fleet.stage1"
        );
        let u = mgmt_queue_url("http://h:15672/rabbit/", "v", "q").unwrap();
        assert_eq!(u.path(), "/rabbit/api/queues/v/q");
    }

    #[test]
    fn the_management_answer_parses() {
        let body =
            r#"{"name":"fleet.cpu","messages_ready":3,"messages_unacknowledged":8,"consumers":1}"#;
        let q: MgmtQueue = serde_json::from_str(body).unwrap();
        assert_eq!(q.messages_unacknowledged, 8);
    }

    #[test]
    fn the_table_shows_dashes_for_what_is_unknown() {
        let rows = [
            Row {
                queue: "fleet.cpu".into(),
                ready: Some(3),
                consumers: Some(2),
                unacked: Some(8),
            },
            Row {
                queue: "fleet.stage1".into(),
                ready: Some(0),
                consumers: Some(1),
                unacked: None,
            },
            Row {
                queue: "fleet.dlq".into(),
                ready: None,
                consumers: None,
                unacked: None,
            },
        ];
        let t = table(&rows);
        let line = |q: &str| t.lines().find(|l| l.contains(q)).unwrap().to_string();
        let cells = |l: String| {
            l.split(['│', '┆'])
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
        };
        assert_eq!(cells(line("fleet.cpu")), ["fleet.cpu", "3", "8", "2"]);
        assert_eq!(cells(line("fleet.stage1")), ["fleet.stage1", "0", "-", "1"]);
        assert_eq!(cells(line("fleet.dlq")), ["fleet.dlq", "missing", "-", "-"]);
    }
}
