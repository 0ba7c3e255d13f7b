//! Intake: malformed input ends in the dead-letter queue with a reason, idempotency keys,
//! HTTP validation and auth, bad config exit status.

use std::time::Duration;

use common::broker::persistent;
use common::codec::{JSON, MSGPACK};
use common::headers::{REASON_HEADER, header_str};
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::types::FieldTable;
use serde_json::json;
use tests::Fleet;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_intake_and_task_messages_are_dead_lettered_with_a_reason() {
    let mut fleet = Fleet::new(|_| {}).await;
    fleet.start_dispatcher().await;
    fleet.start_synthetic_workers(0.001).await;
    let broker = fleet.broker().await;
    let topo = fleet.topology();
    broker
        .publish(
            "",
            &topo.jobs(),
            b"{not json",
            persistent(JSON, FieldTable::default()),
        )
        .await
        .unwrap();
    broker
        .publish(
            "",
            &topo.jobs(),
            br#"{"video": "/v.mp4", "analyzers": ["nope"]}"#,
            persistent(JSON, FieldTable::default()),
        )
        .await
        .unwrap();
    broker
        .publish(
            "",
            &topo.stage_queue("cpu"),
            b"\xc1garbage",
            persistent(MSGPACK, FieldTable::default()),
        )
        .await
        .unwrap();

    let ch = broker.channel(&CancellationToken::new()).await.unwrap();
    let mut reasons = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while reasons.len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} dead-lettered: {reasons:?}",
            reasons.len()
        );
        match ch
            .basic_get(topo.dlq().into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            Some(m) => {
                reasons.push(header_str(&m.delivery.properties, REASON_HEADER).unwrap_or_default());
                m.delivery.ack(BasicAckOptions::default()).await.unwrap();
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    reasons.sort();
    assert!(
        reasons[0].starts_with("malformed job request: malformed JSON"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with("malformed task message"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].contains("rejected job request")
            && reasons[2].contains("\"nope\" is not an analyzer"),
        "{reasons:?}"
    );

    // Both processes kept running: a good job still completes, via AMQP this time.
    let good = br#"{"video": "/v.mp4", "analyzers": ["audio_analysis"]}"#;
    let props = persistent(JSON, FieldTable::default())
        .with_message_id("3b1f2a9e-0000-4000-8000-000000000001".into());
    broker.publish("", &topo.jobs(), good, props).await.unwrap();
    let outcomes = fleet
        .wait_completed(
            "3b1f2a9e-0000-4000-8000-000000000001",
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(outcomes.len(), 1, "the message id became the job id");
    broker.close().await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_gives_one_job() {
    let mut fleet = Fleet::new(|_| {}).await;
    fleet.start_dispatcher().await;
    let body =
        json!({"video": "/v.mp4", "idempotency_key": "scrape-42", "analyzers": ["audio_analysis"]});
    let (c1, r1) = fleet.post_job(body.clone()).await;
    let (c2, r2) = fleet.post_job(body.clone()).await;
    assert_eq!((c1, c2), (202, 202));
    assert_eq!(r1["job_id"], r2["job_id"]);
    assert_eq!(
        (r1["created"].as_bool(), r2["created"].as_bool()),
        (Some(true), Some(false))
    );
    // Over AMQP too (MessagePack this time).
    let broker = fleet.broker().await;
    let packed = rmp_serde::to_vec_named(&body).unwrap();
    broker
        .publish(
            "",
            &fleet.topology().jobs(),
            &packed,
            persistent(MSGPACK, FieldTable::default()),
        )
        .await
        .unwrap();
    fleet.start_synthetic_workers(0.001).await;
    let id = r1["job_id"].as_str().unwrap();
    fleet.wait_completed(id, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fleet.store.recent_jobs(10).await.unwrap(),
        vec![id.to_string()],
        "one job in all"
    );
    broker.close().await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_http_requests_get_clear_answers() {
    let mut fleet = Fleet::new(|c| c.connections.api_token = Some("s3cret".into())).await;
    fleet.start_dispatcher().await;
    let url = format!("{}/v1/jobs", fleet.base_url());
    let http = &fleet.http;
    let r = http
        .post(&url)
        .json(&json!({"video": "/v.mp4"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let authed = |b: reqwest::RequestBuilder| b.bearer_auth("s3cret");
    let r = authed(http.post(&url))
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("malformed JSON"));
    let r = authed(http.post(&url))
        .json(&json!({"video": "/v.mp4", "analyzers": ["vid2seq"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("disabled"));
    let r = authed(http.post(&url))
        .json(&json!({"video": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = authed(http.post(&url))
        .json(&json!({"analyzers": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "missing video");
    let r = authed(http.get(format!("{url}/nope")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .get(format!("{}/healthz", fleet.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "health needs no token");
    fleet.cleanup().await;
}

#[test]
fn a_bad_config_exits_64_naming_every_problem() {
    let dir = std::env::temp_dir().join(format!("fleet-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fleet.toml");
    std::fs::write(
        &path,
        "[stages.stage1]\nclass = \"gpu\"\n[analyzers.a]\nstage = \"stage9\"\nexpected_secs = 1\n",
    )
    .unwrap();
    for bin in ["dispatcher", "worker"] {
        let mut cmd = std::process::Command::new(tests::binary(bin));
        if bin == "worker" {
            cmd.args(["--class", "cpu"]);
        }
        let out = cmd.env("FLEET_CONFIG", &path).output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{bin}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("stages.stage1.concurrency is missing") && err.contains("stage9"),
            "{bin}: {err}"
        );
    }
}

#[test]
fn a_real_worker_refuses_unknown_analyzers_and_bad_params_all_at_once() {
    // The shipped config with a misspelt analyzer, a params typo, a params value of the wrong
    // type and a bad [media] value.
    let dir = std::env::temp_dir().join(format!("fleet-badparams-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fleet.toml");
    let shipped = std::fs::read_to_string(tests::config_path()).unwrap();
    assert!(shipped.contains("max_bytes = 500000000"));
    let edited = shipped.replacen("max_bytes = 500000000", "max_bytes = -1", 1)
        + "\n[analyzers.colour_analysis]\nstage = \"stage3\"\nexpected_secs = 1\n\
           \n[analyzers.cut_analysis.params]\ntreshold = 0.3\n\
           \n[analyzers.text_overlay.params]\nmax_side = \"big\"\n";
    std::fs::write(&path, edited).unwrap();
    let run = |extra: &[&str]| {
        std::process::Command::new(tests::binary("worker"))
            .args(["--class", "cpu"])
            .args(extra)
            .env("FLEET_CONFIG", &path)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "analyzers.colour_analysis: no analyzer of that name",
        "analyzers.cut_analysis.params",
        "treshold",
        "analyzers.text_overlay.params",
        "max_side",
        "media.max_bytes",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from: {err}");
    }
    // A synthetic fleet takes any name; the bad [media] value still stops it.
    let out = run(&["--synthetic-scale", "0.01"]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("colour_analysis"), "{err}");
    assert!(err.contains("media.max_bytes"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
