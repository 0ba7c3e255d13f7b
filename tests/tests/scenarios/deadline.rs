//! Tasks that outlive RabbitMQ's delivery deadline (`consumer_timeout`), against a broker node
//! of the test's own whose deadline is 5 s and which checks it every second: each task runs
//! once, its stage keeps taking work, and a worker killed after handing a delivery over has
//! its task recovered from the lease.

use std::time::{Duration, Instant};

use common::config::StageClass;
use common::message::OutcomeStatus;
use common::metrics::{Metrics, ReasonLabels, task_labels};
use redis::AsyncCommands;
use serde_json::json;
use tests::{Fleet, RabbitNode, WorkerProcess, config_path, eventually, free_addr, set_param};
use worker::Backends;

const DEADLINE: Duration = Duration::from_secs(5);
const LONG_SECS: f64 = 14.0;

fn started(m: &Metrics, analyzer: &str) -> u64 {
    m.tasks_started
        .get_or_create(&task_labels(analyzer, "stage1"))
        .get()
}

fn lease_events(m: &Metrics, event: &str) -> u64 {
    m.leases
        .get_or_create(&ReasonLabels {
            reason: event.into(),
        })
        .get()
}

/// A stage-1 task of 14 s against a 5 s deadline, with two GPU workers and more stage-1 work
/// arriving after the deadline passed. Before leases, the broker closed the long task's
/// channel and requeued it, and it ran a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_longer_than_the_brokers_deadline_runs_once_and_its_stage_keeps_working() {
    let node = RabbitNode::start(DEADLINE, Duration::from_secs(1)).await;
    let url = node.amqp_url();
    let mut fleet = Fleet::new(|c| {
        c.connections.amqp_url = url.clone();
        c.consumer_timeout = DEADLINE;
        c.lease = Duration::from_secs(3);
        set_param(c, "object_detection", "synthetic_secs", json!(LONG_SECS));
        set_param(c, "product_detection", "synthetic_secs", json!(0.5));
    })
    .await;
    fleet.start_dispatcher().await;
    let b = Backends::Synthetic { scale: 1.0 };
    let (m1, _) = fleet.start_worker(StageClass::Gpu, "gpu-1", b).await;
    let (m2, _) = fleet.start_worker(StageClass::Gpu, "gpu-2", b).await;
    let t0 = Instant::now();
    let long = fleet
        .submit(json!({"video": "/v/long.mp4", "analyzers": ["object_detection"]}))
        .await;
    eventually(
        Duration::from_secs(20),
        "the long task to start",
        || async {
            (started(&m1, "object_detection") + started(&m2, "object_detection") == 1).then_some(())
        },
    )
    .await;
    // Past the deadline and the broker's next look at it.
    tokio::time::sleep((DEADLINE + Duration::from_secs(2)).saturating_sub(t0.elapsed())).await;
    let shorts_at = t0.elapsed();
    let mut short = Vec::new();
    for i in 0..6 {
        let body =
            json!({"video": format!("/v/short-{i}.mp4"), "analyzers": ["product_detection"]});
        short.push(fleet.submit(body).await);
    }
    for id in &short {
        let o = fleet.wait_completed(id, Duration::from_secs(30)).await;
        assert_eq!(o["product_detection"].status, OutcomeStatus::Ok);
    }
    let shorts_done = t0.elapsed();
    let outcomes = fleet.wait_completed(&long, Duration::from_secs(60)).await;
    let long_done = t0.elapsed();
    eprintln!(
        "short tasks submitted at {shorts_at:?}, all done at {shorts_done:?}; long task done at {long_done:?}"
    );
    let o = &outcomes["object_detection"];
    assert_eq!(o.status, OutcomeStatus::Ok, "{o:?}");
    assert!(
        shorts_done < long_done,
        "stage 1 sat idle: the short tasks finished at {shorts_done:?}, after the long one ({long_done:?})"
    );
    let runs = started(&m1, "object_detection") + started(&m2, "object_detection");
    assert_eq!(runs, 1, "the long task ran {runs} times");
    let shorts = started(&m1, "product_detection") + started(&m2, "product_detection");
    assert_eq!(shorts, 6, "6 short tasks, {shorts} runs");
    assert_eq!(o.attempts, 1, "{o:?}");
    let handed = lease_events(&m1, "handed over") + lease_events(&m2, "handed over");
    assert_eq!(handed, 1, "the long task's delivery was handed over once");
    fleet.cleanup().await;
}

/// A worker SIGKILLed after it handed a long task's delivery over: nothing is left at the
/// broker, the lease expires, the dispatcher publishes the task again and another worker runs
/// it to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_worker_died_after_the_hand_over_is_recovered_from_its_lease() {
    let node = RabbitNode::start(DEADLINE, Duration::from_secs(1)).await;
    let url = node.amqp_url();
    let mut fleet = Fleet::new(|c| {
        c.connections.amqp_url = url.clone();
        c.consumer_timeout = DEADLINE;
        c.lease = Duration::from_secs(3);
        set_param(c, "object_detection", "synthetic_secs", json!(8.0));
    })
    .await;
    fleet.start_dispatcher().await;
    // The worker process's config: the shipped one with the short deadline and lease.
    let shipped = std::fs::read_to_string(config_path()).unwrap();
    assert!(
        shipped.contains("consumer_timeout_ms = 1800000") && shipped.contains("lease_secs = 10")
    );
    let text = shipped
        .replace(
            "consumer_timeout_ms = 1800000",
            "consumer_timeout_ms = 5000",
        )
        .replace("lease_secs = 10", "lease_secs = 3")
        + "\n[analyzers.object_detection.params]\nsynthetic_secs = 8.0\n";
    let file = std::env::temp_dir().join(format!("{}-fleet.toml", fleet.prefix));
    std::fs::write(&file, text).unwrap();
    let file = file.to_string_lossy().into_owned();
    let env = [
        ("FLEET_CONFIG", file.as_str()),
        ("FLEET_AMQP_URL", url.as_str()),
    ];
    let mut doomed = WorkerProcess::spawn_with_env(
        &fleet,
        "gpu",
        "gpu-doomed",
        &["--synthetic-scale", "1", "--allow-cpu-fallback"],
        &free_addr(),
        &env,
    );
    let id = fleet
        .submit(json!({"video": "/v/recovered.mp4", "analyzers": ["object_detection"]}))
        .await;
    let lease_key = format!("{}:job:{id}:lease:object_detection", fleet.prefix);
    let redis = redis::Client::open(tests::REDIS_URL).unwrap();
    let mut r = redis.get_multiplexed_async_connection().await.unwrap();
    eventually(
        Duration::from_secs(60),
        "the delivery handed over to the lease",
        || {
            let (mut r, key) = (r.clone(), lease_key.clone());
            async move {
                let held: Option<String> = r.hget(&key, "held").await.ok()?;
                (held.as_deref() == Some("1")).then_some(())
            }
        },
    )
    .await;
    doomed.child.kill().unwrap();
    let _ = doomed.wait(Duration::from_secs(10)).await;
    let killed = Instant::now();
    let (m, _) = fleet
        .start_worker(
            StageClass::Gpu,
            "gpu-heir",
            Backends::Synthetic { scale: 1.0 },
        )
        .await;
    let outcomes = fleet.wait_completed(&id, Duration::from_secs(60)).await;
    let o = &outcomes["object_detection"];
    assert_eq!(o.status, OutcomeStatus::Ok, "{o:?}");
    assert_eq!(o.worker, "gpu-heir", "{o:?}");
    assert_eq!(started(&m, "object_detection"), 1);
    eprintln!(
        "recovered and finished {:?} after the kill",
        killed.elapsed()
    );
    let left: bool = r.exists(&lease_key).await.unwrap();
    assert!(!left, "the lease is deleted with the outcome");
    let _ = r.del::<_, i64>(&lease_key).await;
    fleet.cleanup().await;
}

/// A worker told a longer deadline than the broker's (60 s against 5 s): the broker closes the
/// first long task's channel, the worker reads the broker's 5 s from the close reason, the task
/// runs on under its lease (its requeued copy is acked unrun), and the next long task is handed
/// over in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_shorter_than_configured_is_learned_from_the_broker() {
    let node = RabbitNode::start(DEADLINE, Duration::from_secs(1)).await;
    let url = node.amqp_url();
    let mut fleet = Fleet::new(|c| {
        c.connections.amqp_url = url.clone();
        c.consumer_timeout = Duration::from_secs(60);
        c.lease = Duration::from_secs(3);
        set_param(c, "object_detection", "synthetic_secs", json!(9.0));
    })
    .await;
    fleet.start_dispatcher().await;
    let b = Backends::Synthetic { scale: 1.0 };
    let (m, _) = fleet.start_worker(StageClass::Gpu, "gpu-1", b).await;
    let body = |v: &str| json!({"video": v, "analyzers": ["object_detection"]});
    let first = fleet.submit(body("/v/first.mp4")).await;
    let o = fleet.wait_completed(&first, Duration::from_secs(60)).await;
    assert_eq!(o["object_detection"].status, OutcomeStatus::Ok);
    assert_eq!(
        o["object_detection"].attempts, 1,
        "{:?}",
        o["object_detection"]
    );
    let copies = m
        .tasks_dropped
        .get_or_create(&ReasonLabels {
            reason: "running elsewhere".into(),
        })
        .get();
    assert_eq!(copies, 1, "the copy the broker requeued was acked unrun");
    assert_eq!(lease_events(&m, "handed over"), 0);

    let second = fleet.submit(body("/v/second.mp4")).await;
    let o = fleet.wait_completed(&second, Duration::from_secs(60)).await;
    assert_eq!(o["object_detection"].status, OutcomeStatus::Ok);
    assert_eq!(started(&m, "object_detection"), 2, "one run per task");
    assert_eq!(
        lease_events(&m, "handed over"),
        1,
        "the second task was handed over at half the broker's deadline"
    );
    fleet.cleanup().await;
}

/// Redis away for longer than a lease and the recovery's confirmation together (12 s against
/// 3 s + 5 s), for the dispatcher and both workers, while a handed-over task runs: nobody can
/// renew or recover meanwhile, and once Redis is back the owner renews before recovery takes
/// the task, so it runs once and is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_longer_than_the_lease_moves_no_task() {
    let node = RabbitNode::start(DEADLINE, Duration::from_secs(1)).await;
    let url = node.amqp_url();
    let proxy = tests::Proxy::start("127.0.0.1:6379").await;
    let redis_url = format!("redis://{}/", proxy.addr);
    let mut fleet = Fleet::new(|c| {
        c.connections.amqp_url = url.clone();
        c.connections.redis_url = redis_url.clone();
        c.consumer_timeout = DEADLINE;
        c.lease = Duration::from_secs(3);
        set_param(c, "object_detection", "synthetic_secs", json!(20.0));
    })
    .await;
    fleet.start_dispatcher().await;
    let b = Backends::Synthetic { scale: 1.0 };
    let (m1, _) = fleet.start_worker(StageClass::Gpu, "gpu-1", b).await;
    let (m2, _) = fleet.start_worker(StageClass::Gpu, "gpu-2", b).await;
    let id = fleet
        .submit(json!({"video": "/v/outage.mp4", "analyzers": ["object_detection"]}))
        .await;
    eventually(Duration::from_secs(30), "the hand-over", || async {
        (lease_events(&m1, "handed over") + lease_events(&m2, "handed over") == 1).then_some(())
    })
    .await;
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(12)).await;
    proxy.restore();
    let o = fleet.wait_completed(&id, Duration::from_secs(60)).await;
    let o = &o["object_detection"];
    assert_eq!(o.status, OutcomeStatus::Ok, "{o:?}");
    let runs = started(&m1, "object_detection") + started(&m2, "object_detection");
    assert_eq!(runs, 1, "the task ran {runs} times");
    let lost = lease_events(&m1, "lost") + lease_events(&m2, "lost");
    assert_eq!(lost, 0, "no worker lost the lease");
    fleet.cleanup().await;
}

/// What the short deadline does on this broker, so the scenarios above test what they claim:
/// a delivery left unacked past `consumer_timeout` has its channel closed within a tick, and
/// the close reason names the timeout the way the workers read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_closes_a_late_channel_and_names_its_timeout() {
    use futures::StreamExt;
    use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let node = RabbitNode::start(DEADLINE, Duration::from_secs(1)).await;
    let conn = lapin::Connection::connect(&node.amqp_url(), Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.basic_publish(
        "".into(),
        q.name().as_str().into(),
        BasicPublishOptions::default(),
        b"late",
        Default::default(),
    )
    .await
    .unwrap();
    let mut consumer = ch
        .basic_consume(
            q.name().as_str().into(),
            "late".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(30), consumer.next())
        .await
        .expect("the message is delivered within 30 s")
        .unwrap()
        .unwrap();
    let at = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(30), consumer.next())
        .await
        .expect("the broker closed the channel within 30 s");
    let held = at.elapsed();
    let reason = match end {
        Some(Err(e)) => e.to_string(),
        Some(Ok(_)) => panic!("a second delivery instead of the channel's end"),
        None => panic!("the consumer ended without the channel's error"),
    };
    eprintln!("channel closed after {held:?}: {reason}");
    assert!(
        held >= DEADLINE && held < DEADLINE + Duration::from_secs(3),
        "{held:?}"
    );
    assert_eq!(
        common::slots::broker_timeout(&reason),
        Some(DEADLINE),
        "{reason}"
    );
    drop(first);
    // Closing a connection whose channel the broker closed can wait for ever in lapin (seen
    // once in a full run): bounded, the node goes down with the test anyway.
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.close(200, "bye".into())).await;
}
