//! Permanent infrastructure errors (issue 13, item 4): a message that meets a corrupt record
//! in Redis is dead-lettered with the reason and acked, instead of being retried for ever
//! while it is held; the processes keep taking work.

use std::time::Duration;

use common::StageClass;
use common::broker::{Broker, persistent};
use common::codec::{self, MSGPACK};
use common::headers::{REASON_HEADER, header_str};
use common::message::{OutcomeNotice, OutcomeStatus, SCHEMA_VERSION, TaskMessage};
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use redis::AsyncCommands;
use serde_json::json;
use tests::{Fleet, REDIS_URL, eventually};
use tokio_util::sync::CancellationToken;
use worker::Backends;

/// The next `n` messages in the test's `{p}.dlq`: (reason, body).
async fn dead_letters(fleet: &Fleet, broker: &Broker, n: usize) -> Vec<(String, Vec<u8>)> {
    let ch = broker.channel(&CancellationToken::new()).await.unwrap();
    let dlq = fleet.topology().dlq();
    let mut got = Vec::new();
    while got.len() < n {
        let m = eventually(Duration::from_secs(20), "a dead-lettered message", || {
            let (ch, dlq) = (ch.clone(), dlq.clone());
            async move {
                let m = ch
                    .basic_get(dlq.as_str().into(), BasicGetOptions::default())
                    .await
                    .ok()??;
                m.delivery.ack(BasicAckOptions::default()).await.ok()?;
                let reason = header_str(&m.delivery.properties, REASON_HEADER).unwrap_or_default();
                Some((reason, m.delivery.data.clone()))
            }
        })
        .await;
        got.push(m);
    }
    got.sort();
    got
}

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(REDIS_URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Keys the test wrote itself expire soon, even when an assertion skips the cleanup.
async fn forget(raw: &mut redis::aio::MultiplexedConnection, keys: &[String]) {
    for k in keys {
        let () = raw.expire(k, 300).await.unwrap();
    }
}

fn task(job_id: &str, analyzer: &str) -> Vec<u8> {
    codec::encode(&TaskMessage {
        v: SCHEMA_VERSION,
        job_id: job_id.into(),
        analyzer: analyzer.into(),
        stage: "cpu".into(),
        video: "/v.mp4".into(),
        inputs: vec![],
        published_at_ms: common::now_ms(),
    })
    .unwrap()
}

/// Messages in `queue`, ready or unacked.
async fn depth(broker: &Broker, queue: &str) -> u32 {
    let ch = broker.channel(&CancellationToken::new()).await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let q = ch
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .unwrap();
    let _ = ch.close(200, "".into()).await;
    q.message_count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_meeting_a_corrupt_record_is_dead_lettered_with_the_reason() {
    let mut fleet = Fleet::new(|_| {}).await;
    let (_, stop_worker) = fleet
        .start_worker(
            StageClass::Cpu,
            "cpu-corrupt",
            Backends::Synthetic { scale: 0.001 },
        )
        .await;
    let broker = fleet.broker().await;
    let (store, mut raw) = (fleet.store.clone(), redis().await);
    // Job one's outcome for audio_analysis is not JSON; job two's results key is a string.
    let (one, two) = (
        "c0a1e2b3-0000-4000-8000-000000000001",
        "c0a1e2b3-0000-4000-8000-000000000002",
    );
    for id in [one, two] {
        let () = raw
            .hset_multiple(
                store.job_key(id),
                &[
                    ("status", "running"),
                    ("plan", "[]"),
                    ("created_at_ms", "1"),
                ],
            )
            .await
            .unwrap();
    }
    let () = raw
        .hset(store.results_key(one), "audio_analysis", "{not json")
        .await
        .unwrap();
    let () = raw.set(store.results_key(two), "x").await.unwrap();
    let written = [one, two].map(|id| [store.job_key(id), store.results_key(id)]);
    forget(&mut raw, &written.concat()).await;
    let queue = fleet.topology().stage_queue("cpu");
    let mut published = Vec::new();
    for id in [one, two] {
        let props = persistent(MSGPACK, FieldTable::default());
        let body = task(id, "audio_analysis");
        broker.publish("", &queue, &body, props).await.unwrap();
        published.push(body);
    }

    let dead = dead_letters(&fleet, &broker, 2).await;
    let reasons: Vec<&str> = dead.iter().map(|(r, _)| r.as_str()).collect();
    let corrupt = reasons
        .iter()
        .find(|r| r.contains(&store.results_key(one)))
        .unwrap_or_else(|| panic!("{reasons:?}"));
    assert!(
        corrupt.starts_with("task not run: corrupt record"),
        "{corrupt}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("WRONGTYPE")),
        "{reasons:?}"
    );
    let mut bodies: Vec<Vec<u8>> = dead.into_iter().map(|(_, b)| b).collect();
    bodies.sort();
    published.sort();
    assert_eq!(bodies, published, "the tasks themselves are kept");
    // Acked, not held: once the worker is gone nothing comes back to the queue.
    stop_worker.cancel();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(depth(&broker, &queue).await, 0, "nothing left in {queue}");
    broker.close().await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_for_a_corrupt_job_record_is_dead_lettered_and_the_dispatcher_goes_on() {
    let mut fleet = Fleet::new(|_| {}).await;
    fleet.start_dispatcher().await;
    fleet.start_synthetic_workers(0.001).await;
    let broker = fleet.broker().await;
    let (store, mut raw) = (fleet.store.clone(), redis().await);
    let id = "c0a1e2b3-0000-4000-8000-000000000003";
    let () = raw
        .hset_multiple(
            store.job_key(id),
            &[
                ("status", "running"),
                ("plan", "[not json"),
                ("created_at_ms", "1"),
            ],
        )
        .await
        .unwrap();
    forget(&mut raw, &[store.job_key(id)]).await;
    let notice = codec::encode(&OutcomeNotice {
        v: SCHEMA_VERSION,
        job_id: id.into(),
        analyzer: "audio_analysis".into(),
        status: OutcomeStatus::Ok,
    })
    .unwrap();
    let outcomes = fleet.topology().outcomes();
    let props = persistent(MSGPACK, FieldTable::default());
    broker.publish("", &outcomes, &notice, props).await.unwrap();

    let dead = dead_letters(&fleet, &broker, 1).await;
    let (reason, body) = &dead[0];
    assert!(
        reason.starts_with(&format!(
            "outcome notice for job {id} analyzer audio_analysis not handled: corrupt record {}",
            store.job_key(id)
        )) && reason.contains("plan"),
        "{reason}"
    );
    assert_eq!(body, &notice, "the notice itself is kept");
    // The dispatcher still takes work.
    let job = fleet
        .submit(json!({"video": "/v.mp4", "analyzers": ["audio_analysis"]}))
        .await;
    fleet.wait_completed(&job, Duration::from_secs(30)).await;
    assert_eq!(
        depth(&broker, &outcomes).await,
        0,
        "nothing held in {outcomes}"
    );
    broker.close().await;
    fleet.cleanup().await;
}
