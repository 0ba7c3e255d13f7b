//! `fleet dlq list|replay|purge`: the dead-letter queue `{p}.dlq`.
//!
//! `list` takes messages with `basic.get` (no auto-ack) and puts every one back with a
//! requeueing nack, so looking changes nothing. `replay` republishes a message to the queue
//! it died in, waits for the broker's confirm, and only then acks it out of the DLQ; a
//! message whose origin is unknown stays where it is.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};

use common::Topology;
use common::headers::REASON_HEADER;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};

use crate::cli::DlqAction;
use crate::render::{self, truncate};
use crate::{amqp, settings};

const PREVIEW_CHARS: usize = 80;
/// The quorum-queue redelivery counter; a replayed message starts afresh without it.
const DELIVERY_COUNT: &str = "x-delivery-count";

pub async fn run(config: Option<&std::path::Path>, action: DlqAction) -> anyhow::Result<()> {
    let loaded = settings::load(config, false)?;
    let c = &loaded.config.connections;
    let topology = Topology::new(&c.prefix);
    let conn = amqp::connect(&c.amqp_url).await?;
    let dlq = topology.dlq();
    let Some((depth, _)) = amqp::inspect(&conn, &dlq).await? else {
        anyhow::bail!(amqp::missing_queue(&dlq));
    };
    let ch = conn.create_channel().await?;
    let result = match action {
        DlqAction::List { limit } => list(&ch, &dlq, depth, limit).await,
        DlqAction::Replay { limit } => replay(&conn, &ch, &topology, limit).await,
        DlqAction::Purge { yes } => purge(&ch, &dlq, depth, yes).await,
    };
    let _ = ch.close(200, "bye".into()).await;
    let _ = conn.close(200, "bye".into()).await;
    result
}

/// Takes up to `limit` messages without acking them.
async fn take(ch: &Channel, queue: &str, limit: usize) -> anyhow::Result<Vec<Delivery>> {
    let mut held = Vec::new();
    while held.len() < limit {
        match ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await?
        {
            Some(m) => held.push(m.delivery),
            None => break,
        }
    }
    Ok(held)
}

async fn requeue(ch: &Channel, d: &Delivery) -> anyhow::Result<()> {
    ch.basic_nack(
        d.delivery_tag,
        BasicNackOptions {
            multiple: false,
            requeue: true,
        },
    )
    .await?;
    Ok(())
}

async fn list(ch: &Channel, dlq: &str, depth: u32, limit: usize) -> anyhow::Result<()> {
    let held = take(ch, dlq, limit).await?;
    let shown = rows(&held);
    for d in &held {
        requeue(ch, d).await?;
    }
    println!(
        "{dlq}: {depth} message(s){}",
        if held.len() < depth as usize {
            format!(", showing {}", held.len())
        } else {
            String::new()
        }
    );
    if !held.is_empty() {
        print!("{shown}");
    }
    Ok(())
}

fn rows(held: &[Delivery]) -> String {
    let mut t = render::table(&[
        "#",
        "reason",
        "died in",
        "routing key",
        "content type",
        "body",
    ]);
    for (i, d) in held.iter().enumerate() {
        let headers = d.properties.headers().as_ref();
        let ct = d
            .properties
            .content_type()
            .as_ref()
            .map(|c| c.as_str().to_string());
        t.add_row(vec![
            (i + 1).to_string(),
            truncate(&reason(headers), 60),
            header(headers, "x-first-death-queue").unwrap_or_else(|| "-".into()),
            d.routing_key.as_str().to_string(),
            ct.clone().unwrap_or_else(|| "-".into()),
            preview(&d.data, ct.as_deref()),
        ]);
    }
    format!("{t}\n")
}

async fn replay(
    conn: &lapin::Connection,
    ch: &Channel,
    topology: &Topology,
    limit: usize,
) -> anyhow::Result<()> {
    let dlq = topology.dlq();
    let targets: Vec<String> = topology
        .all_queues()
        .into_iter()
        .filter(|q| *q != dlq && *q != topology.dead())
        .collect();
    let publish = conn.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let held = take(ch, &dlq, limit).await?;
    let (mut replayed, mut kept) = (0usize, 0usize);
    let mut failure = None;
    let mut pending = held.iter().enumerate();
    for (i, d) in pending.by_ref() {
        let n = i + 1;
        let queue = match destination(d.properties.headers().as_ref(), &targets) {
            Ok(q) => q,
            Err(why) => {
                println!("#{n} kept in {dlq}: {why}");
                requeue(ch, d).await?;
                kept += 1;
                continue;
            }
        };
        // Mandatory: if the queue is gone the broker returns the message instead of dropping it.
        let opts = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        let props = replay_properties(&d.properties);
        let confirm = match publish
            .basic_publish("".into(), queue.as_str().into(), opts, &d.data, props)
            .await
        {
            Ok(c) => c.await,
            Err(e) => Err(e),
        };
        let kept_because = match confirm {
            Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => {
                ch.basic_ack(d.delivery_tag, BasicAckOptions::default())
                    .await?;
                println!("#{n} replayed to {queue}");
                replayed += 1;
                continue;
            }
            Ok(Confirmation::Ack(Some(_))) => amqp::missing_queue(&queue),
            Ok(Confirmation::Nack(_)) => format!("the broker refused the republish to {queue}"),
            Err(e) => {
                // The connection is in doubt: stop, and let the rest go back (closing the
                // channel requeues them too if the nack cannot be sent).
                let _ = requeue(ch, d).await;
                kept += 1;
                failure = Some(e);
                break;
            }
        };
        println!("#{n} kept in {dlq}: {kept_because}");
        requeue(ch, d).await?;
        kept += 1;
    }
    for (_, d) in pending {
        let _ = requeue(ch, d).await;
        kept += 1;
    }
    let _ = publish.close(200, "bye".into()).await;
    println!("replayed {replayed}, kept {kept} in {dlq}");
    match failure {
        Some(e) => Err(anyhow::anyhow!(
            "replay stopped: {e}; the unreplayed messages are back in {dlq}"
        )),
        None => Ok(()),
    }
}

async fn purge(ch: &Channel, dlq: &str, depth: u32, yes: bool) -> anyhow::Result<()> {
    if depth == 0 {
        println!("{dlq} is empty");
        return Ok(());
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "refusing to purge {depth} message(s) from {dlq} without a terminal to confirm on: pass --yes"
            );
        }
        print!("Delete {depth} message(s) from {dlq} for good? [y/N] ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            println!("nothing purged");
            return Ok(());
        }
    }
    let n = ch.queue_purge(dlq.into(), Default::default()).await?;
    println!("purged {n} message(s) from {dlq}");
    Ok(())
}

fn value_str(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        AMQPValue::ByteArray(b) => Some(String::from_utf8_lossy(b.as_slice()).into_owned()),
        _ => None,
    }
}

fn header(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    headers?
        .inner()
        .get(name)
        .and_then(value_str)
        .filter(|s| !s.is_empty())
}

/// The oldest entry of `x-death` (RabbitMQ puts the latest death first).
fn first_death(headers: Option<&FieldTable>) -> Option<&FieldTable> {
    match headers?.inner().get("x-death")? {
        AMQPValue::FieldArray(a) => a.as_slice().iter().rev().find_map(|v| match v {
            AMQPValue::FieldTable(t) => Some(t),
            _ => None,
        }),
        _ => None,
    }
}

/// Why the message is here: the fleet's own reason, else the broker's (e.g. `delivery_limit`).
pub fn reason(headers: Option<&FieldTable>) -> String {
    header(headers, REASON_HEADER)
        .or_else(|| header(headers, "x-first-death-reason"))
        .or_else(|| {
            first_death(headers)
                .and_then(|t| t.inner().get("reason"))
                .and_then(value_str)
        })
        .unwrap_or_else(|| "-".into())
}

/// Where `replay` sends a message back: `x-first-death-queue`, else the original routing key
/// (then queue) recorded in `x-death`. It must be one of `targets` (this fleet's work queues),
/// so a stray header cannot make the CLI publish anywhere else. `Err` says why it stays.
pub fn destination(headers: Option<&FieldTable>, targets: &[String]) -> Result<String, String> {
    let from_x_death = || {
        let t = first_death(headers)?;
        let key = match t.inner().get("routing-keys") {
            Some(AMQPValue::FieldArray(a)) => a.as_slice().first().and_then(value_str),
            _ => None,
        };
        key.or_else(|| t.inner().get("queue").and_then(value_str))
    };
    let Some(queue) = header(headers, "x-first-death-queue").or_else(from_x_death) else {
        return Err(match header(headers, REASON_HEADER) {
            Some(r) => format!(
                "the fleet rejected it ({}) and recorded no original queue; fix it and publish it again",
                truncate(&r, 120)
            ),
            None => "no original queue recorded (no x-first-death-queue or x-death header)".into(),
        });
    };
    if targets.contains(&queue) {
        Ok(queue)
    } else {
        Err(format!(
            "its original queue {queue} is not one of this fleet's queues ({})",
            targets.join(", ")
        ))
    }
}

/// The message's own properties for the republish, minus the stale redelivery counter.
fn replay_properties(props: &BasicProperties) -> BasicProperties {
    let mut headers: BTreeMap<ShortString, AMQPValue> = props
        .headers()
        .as_ref()
        .map(|h| h.inner().clone())
        .unwrap_or_default();
    headers.remove(DELIVERY_COUNT);
    props.clone().with_headers(FieldTable::from(headers))
}

/// A one-line look at a body: MessagePack decoded to JSON, UTF-8 as text, else its size.
pub fn preview(body: &[u8], content_type: Option<&str>) -> String {
    if content_type.is_some_and(|c| c.contains("msgpack")) {
        return match common::codec::decode::<serde_json::Value>(body) {
            Ok(v) => truncate(&v.to_string(), PREVIEW_CHARS),
            Err(_) => format!("<{} bytes, not valid MessagePack>", body.len()),
        };
    }
    match std::str::from_utf8(body) {
        Ok(s) => truncate(s.trim(), PREVIEW_CHARS),
        Err(_) => format!("<{} bytes, binary>", body.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{FieldArray, LongString};

    fn s(v: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(v))
    }

    fn table(entries: Vec<(&str, AMQPValue)>) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in entries {
            t.insert(k.into(), v);
        }
        t
    }

    fn death(queue: &str, key: &str, why: &str) -> AMQPValue {
        AMQPValue::FieldTable(table(vec![
            ("queue", s(queue)),
            ("reason", s(why)),
            (
                "routing-keys",
                AMQPValue::FieldArray(FieldArray::from(vec![s(key)])),
            ),
        ]))
    }

    fn targets() -> Vec<String> {
        ["fleet.jobs", "fleet.stage1", "fleet.cpu", "fleet.outcomes"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn the_first_death_queue_header_wins() {
        let h = table(vec![
            ("x-first-death-queue", s("fleet.stage1")),
            (
                "x-death",
                AMQPValue::FieldArray(FieldArray::from(vec![death(
                    "fleet.cpu",
                    "fleet.cpu",
                    "delivery_limit",
                )])),
            ),
        ]);
        assert_eq!(destination(Some(&h), &targets()), Ok("fleet.stage1".into()));
    }

    #[test]
    fn without_it_the_oldest_x_death_routing_key_is_used() {
        let deaths = vec![
            death("fleet.stage1", "fleet.stage1", "rejected"),
            death("fleet.cpu", "fleet.cpu", "delivery_limit"),
        ];
        let h = table(vec![(
            "x-death",
            AMQPValue::FieldArray(FieldArray::from(deaths)),
        )]);
        assert_eq!(destination(Some(&h), &targets()), Ok("fleet.cpu".into()));
        assert_eq!(reason(Some(&h)), "delivery_limit");
    }

    #[test]
    fn a_message_the_fleet_rejected_itself_stays_with_its_reason() {
        let h = table(vec![(
            REASON_HEADER,
            s("malformed job request: missing field `video`"),
        )]);
        let e = destination(Some(&h), &targets()).unwrap_err();
        assert!(
            e.contains("missing field `video`") && e.contains("publish it again"),
            "{e}"
        );
        assert_eq!(
            reason(Some(&h)),
            "malformed job request: missing field `video`"
        );
        assert!(
            destination(None, &targets())
                .unwrap_err()
                .contains("no original queue")
        );
    }

    #[test]
    fn a_queue_outside_the_fleet_is_refused() {
        let h = table(vec![("x-first-death-queue", s("billing.invoices"))]);
        let e = destination(Some(&h), &targets()).unwrap_err();
        assert!(
            e.contains("billing.invoices") && e.contains("not one of this fleet's queues"),
            "{e}"
        );
        let h = table(vec![("x-first-death-queue", s("fleet.dlq"))]);
        assert!(destination(Some(&h), &targets()).is_err());
    }

    #[test]
    fn replay_drops_the_stale_delivery_count_only() {
        let h = table(vec![
            (DELIVERY_COUNT, AMQPValue::LongLongInt(5)),
            ("traceparent", s("00-abc")),
        ]);
        let props = BasicProperties::default()
            .with_headers(h)
            .with_content_type("application/msgpack".into());
        let out = replay_properties(&props);
        let out_h = out.headers().as_ref().unwrap();
        assert!(!out_h.contains_key(DELIVERY_COUNT));
        assert!(out_h.contains_key("traceparent"));
        assert_eq!(
            out.content_type().as_ref().unwrap().as_str(),
            "application/msgpack"
        );
    }

    #[test]
    fn previews_decode_msgpack_and_cut_long_text() {
        let task = serde_json::json!({"job_id": "j1", "analyzer": "cut_analysis"});
        let body = common::codec::encode(&task).unwrap();
        assert_eq!(
            preview(&body, Some("application/msgpack")),
            r#"{"analyzer":"cut_analysis","job_id":"j1"}"#
        );
        assert_eq!(
            preview(b"{\"video\": 1}\n", Some("application/json")),
            "{\"video\": 1}"
        );
        assert_eq!(preview(&[0xff, 0xfe], None), "<2 bytes, binary>");
        assert_eq!(
            preview(&"x".repeat(200).into_bytes(), None).chars().count(),
            PREVIEW_CHARS
        );
    }
}
