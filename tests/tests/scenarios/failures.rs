//! Analyzer failures: retried with backoff up to the limit, recorded, the job still completes;
//! dependents of a failed hard dependency are skipped with the reason.

use std::time::Duration;

use common::message::OutcomeStatus;
use serde_json::json;
use tests::{Fleet, set_param};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_analyzer_is_retried_then_recorded_and_the_job_completes() {
    let mut fleet = Fleet::new(|c| {
        c.retry.max_attempts = 3;
        c.retry.initial_backoff = Duration::from_millis(20);
        c.retry.max_backoff = Duration::from_millis(100);
        set_param(c, "audio_analysis", "synthetic_fail", json!("transient"));
        set_param(c, "cut_analysis", "synthetic_fail", json!("permanent"));
    })
    .await;
    fleet.start_dispatcher().await;
    fleet.start_synthetic_workers(0.002).await;
    let id = fleet.submit(json!({"video": "/v/a.mp4"})).await;
    let outcomes = fleet.wait_completed(&id, Duration::from_secs(60)).await;
    assert_eq!(outcomes.len(), 22);

    let audio = &outcomes["audio_analysis"];
    assert_eq!(audio.status, OutcomeStatus::Failed);
    assert_eq!(audio.attempts, 3, "retried up to max_attempts");
    let err = audio.error.as_deref().unwrap();
    assert!(
        err.contains("failed 3 times") && err.contains("synthetic transient failure"),
        "{err}"
    );

    let cut = &outcomes["cut_analysis"];
    assert_eq!(
        (cut.status, cut.attempts),
        (OutcomeStatus::Failed, 1),
        "permanent errors are not retried"
    );

    // temporal_flow needs cut_analysis: skipped, saying why; nothing ran for it.
    let tf = &outcomes["temporal_flow"];
    assert_eq!(tf.status, OutcomeStatus::Skipped);
    assert!(
        tf.error
            .as_deref()
            .unwrap()
            .contains("dependency cut_analysis failed"),
        "{tf:?}"
    );
    assert_eq!(tf.worker, "dispatcher");

    let ok = outcomes
        .values()
        .filter(|o| o.status == OutcomeStatus::Ok)
        .count();
    assert_eq!(ok, 19, "everything else completed");
    let body: serde_json::Value = fleet
        .http
        .get(format!("{}/v1/jobs/{id}/result", fleet.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "completed");
    assert!(
        body["failed"]["audio_analysis"]
            .as_str()
            .unwrap()
            .contains("failed 3 times")
    );
    assert_eq!(body["progress"]["failed"], 2);
    assert_eq!(body["progress"]["skipped"], 1);
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_drops_queued_tasks() {
    let mut fleet = Fleet::new(|_| {}).await;
    fleet.start_dispatcher().await;
    // No workers yet: every task stays queued.
    let id = fleet.submit(json!({"video": "/v/a.mp4"})).await;
    let r: serde_json::Value = fleet
        .http
        .post(format!("{}/v1/jobs/{id}/cancel", fleet.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "cancelled");
    let (metrics, _) = fleet
        .start_worker(
            common::config::StageClass::Cpu,
            "cpu-1",
            worker::Backends::Synthetic { scale: 0.01 },
        )
        .await;
    // The worker drains the queued tasks of the cancelled job without running them.
    let topo = fleet.topology();
    let broker = fleet.broker().await;
    tests::eventually(Duration::from_secs(20), "cpu queue drained", || async {
        let ch = broker
            .channel(&tokio_util::sync::CancellationToken::new())
            .await
            .ok()?;
        let q = ch
            .queue_declare(
                topo.stage_queue("cpu").into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .ok()?;
        (q.message_count() == 0).then_some(())
    })
    .await;
    let outcomes = fleet.outcomes(&id).await;
    assert_eq!(outcomes.len(), 22);
    assert!(
        outcomes
            .values()
            .all(|o| o.status == OutcomeStatus::Skipped
                && o.error.as_deref() == Some("job cancelled"))
    );
    assert!(
        !metrics.encode().contains("fleet_tasks_started_total{"),
        "nothing ran"
    );
    assert_eq!(
        fleet.job(&id).await.unwrap().status,
        common::message::JobStatus::Cancelled
    );
    broker.close().await;
    fleet.cleanup().await;
}

/// A task whose job's record is not in Redis (expired, deleted, or Redis lost its data) is
/// acked without running: no result nobody can read, no slot spent on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_of_a_vanished_job_are_dropped_before_they_run() {
    use lapin::types::FieldTable;
    let mut fleet = Fleet::new(|_| {}).await;
    let (metrics, _) = fleet
        .start_worker(
            common::config::StageClass::Cpu,
            "cpu-1",
            worker::Backends::Synthetic { scale: 0.01 },
        )
        .await;
    let broker = fleet.broker().await;
    let topo = fleet.topology();
    let ghost = "job-that-redis-forgot";
    let task = common::message::TaskMessage {
        v: 1,
        job_id: ghost.into(),
        analyzer: "audio_analysis".into(),
        stage: "cpu".into(),
        video: "/v.mp4".into(),
        inputs: vec![],
        published_at_ms: 0,
    };
    let body = common::codec::encode(&task).unwrap();
    let props = common::broker::persistent(common::codec::MSGPACK, FieldTable::default());
    broker
        .publish("", &topo.stage_queue("cpu"), &body, props)
        .await
        .unwrap();
    tests::eventually(Duration::from_secs(20), "the task dropped", || {
        let m = metrics.clone();
        async move {
            m.encode()
                .contains("fleet_tasks_dropped_total{reason=\"job gone\"} 1")
                .then_some(())
        }
    })
    .await;
    assert!(
        fleet.outcomes(ghost).await.is_empty(),
        "nothing was run or stored for the vanished job"
    );
    broker.close().await;
    fleet.cleanup().await;
}
