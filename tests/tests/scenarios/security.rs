//! Untrusted submitters (issue 12) against the real fleet: a request cannot break the
//! dispatcher's broker connection, ids cannot alias Redis keys, clients see only their own
//! jobs, metadata is capped, logs cannot be forged, an exposed API needs a token.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use common::broker::persistent;
use common::codec::{JSON, MSGPACK};
use common::headers::{REASON_HEADER, header_str};
use common::message::TaskMessage;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::types::FieldTable;
use serde_json::json;
use tests::{Fleet, eventually, free_addr};
use tokio_util::sync::CancellationToken;

/// The next message in the test's `{p}.dlq`, with its reason.
async fn next_dead_letter(fleet: &Fleet, broker: &common::broker::Broker) -> (String, Vec<u8>) {
    let ch = broker.channel(&CancellationToken::new()).await.unwrap();
    let dlq = fleet.topology().dlq();
    eventually(Duration::from_secs(20), "a dead-lettered message", || {
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
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_rejected_request_cannot_break_the_broker_connection() {
    let mut fleet = Fleet::new(|_| {}).await;
    fleet.start_dispatcher().await;
    fleet.start_synthetic_workers(0.001).await;
    let broker = fleet.broker().await;
    let topo = fleet.topology();
    // An unknown analyzer name of 200 kB: echoed whole, the reason header alone would pass
    // RabbitMQ's 128 KiB frame size and the broker would close the dispatcher's connection.
    let huge = json!({"video": "/v.mp4", "analyzers": ["x".repeat(200_000)]});
    broker
        .publish(
            "",
            &topo.jobs(),
            huge.to_string().as_bytes(),
            persistent(JSON, FieldTable::default()),
        )
        .await
        .unwrap();
    let (reason, body) = next_dead_letter(&fleet, &broker).await;
    assert!(
        reason.len() <= common::text::MAX_REASON_BYTES,
        "{}",
        reason.len()
    );
    assert!(reason.contains("not an analyzer"), "{reason}");
    assert_eq!(
        body.len(),
        huge.to_string().len(),
        "the request itself is kept"
    );
    // The dispatcher still takes work.
    let id = "5d3e0b7a-0000-4000-8000-000000000012";
    let props = persistent(JSON, FieldTable::default()).with_message_id(id.into());
    let good = br#"{"video": "/v.mp4", "analyzers": ["audio_analysis"]}"#;
    broker.publish("", &topo.jobs(), good, props).await.unwrap();
    fleet.wait_completed(id, Duration::from_secs(30)).await;
    broker.close().await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_that_would_alias_redis_keys_are_refused_everywhere() {
    let mut fleet = Fleet::new(|_| {}).await;
    fleet.start_dispatcher().await;
    fleet.start_synthetic_workers(0.001).await;
    let victim = fleet
        .submit(json!({"video": "/v.mp4", "analyzers": ["audio_analysis"]}))
        .await;
    let before = fleet.wait_completed(&victim, Duration::from_secs(20)).await;
    let broker = fleet.broker().await;
    let topo = fleet.topology();
    // AMQP: a message id naming the victim's results hash.
    let props =
        persistent(JSON, FieldTable::default()).with_message_id(format!("{victim}:results").into());
    let req = br#"{"video": "/v.mp4", "analyzers": ["audio_analysis"]}"#;
    broker.publish("", &topo.jobs(), req, props).await.unwrap();
    let (reason, _) = next_dead_letter(&fleet, &broker).await;
    assert!(
        reason.contains("message id") && reason.contains("not a valid id"),
        "{reason}"
    );
    // A forged task message straight onto a stage queue.
    let task = TaskMessage {
        v: 1,
        job_id: format!("{victim}:results"),
        analyzer: "audio_analysis".into(),
        stage: "cpu".into(),
        video: "/v.mp4".into(),
        inputs: vec![],
        published_at_ms: 0,
    };
    let body = common::codec::encode(&task).unwrap();
    let props = persistent(MSGPACK, FieldTable::default());
    broker
        .publish("", &topo.stage_queue("cpu"), &body, props)
        .await
        .unwrap();
    let (reason, _) = next_dead_letter(&fleet, &broker).await;
    assert!(reason.starts_with("malformed task message"), "{reason}");
    // HTTP: path ids and idempotency keys.
    let r = fleet
        .http
        .get(format!("{}/v1/jobs/{victim}:results", fleet.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (code, body) = fleet
        .post_job(json!({"video": "/v.mp4", "idempotency_key": "a:b"}))
        .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        fleet.outcomes(&victim).await,
        before,
        "the victim is untouched"
    );
    broker.close().await;
    fleet.cleanup().await;
}

fn clients(c: &mut common::FleetConfig) {
    c.connections.api_token = Some("operator-token".into());
    c.connections.client_tokens = BTreeMap::from([
        ("alice".to_string(), "alice-token".to_string()),
        ("bob".to_string(), "bob-token".to_string()),
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_see_and_share_nothing_of_each_other() {
    let mut fleet = Fleet::new(clients).await;
    fleet.start_dispatcher().await;
    let base = fleet.base_url();
    let http = fleet.http.clone();
    let post = |token: &'static str, body: serde_json::Value| {
        let (http, url) = (http.clone(), format!("{base}/v1/jobs"));
        async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let code = r.status().as_u16();
            (code, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let get = |token: &'static str, path: String| {
        let (http, url) = (http.clone(), format!("{base}{path}"));
        async move {
            let r = http.get(url).bearer_auth(token).send().await.unwrap();
            let code = r.status().as_u16();
            (code, r.text().await.unwrap())
        }
    };
    let req = json!({"video": "/v.mp4", "analyzers": ["audio_analysis"], "idempotency_key": "k1"});
    let (code, a) = post("alice-token", req.clone()).await;
    assert_eq!(code, 202, "{a}");
    let alice_job = a["job_id"].as_str().unwrap().to_string();
    // Bob guessing alice's key gets a job of his own, not hers.
    let (code, b) = post("bob-token", req.clone()).await;
    assert_eq!(code, 202, "{b}");
    assert_ne!(b["job_id"], a["job_id"]);
    assert_eq!(b["created"], true);
    let bob_job = b["job_id"].as_str().unwrap().to_string();
    // Alice reusing her key for another request is refused.
    let (code, again) = post(
        "alice-token",
        json!({"video": "/other.mp4", "analyzers": ["audio_analysis"], "idempotency_key": "k1"}),
    )
    .await;
    assert_eq!(code, 422, "{again}");
    let (code, same) = post("alice-token", req).await;
    assert_eq!((code, same["job_id"].clone()), (202, a["job_id"].clone()));
    // Reading: own jobs only; another client's answers like an unknown one.
    for path in [
        format!("/v1/jobs/{alice_job}"),
        format!("/v1/jobs/{alice_job}/result"),
    ] {
        assert_eq!(get("alice-token", path.clone()).await.0, 200);
        assert_eq!(get("bob-token", path.clone()).await.0, 404, "{path}");
        assert_eq!(get("operator-token", path).await.0, 200);
    }
    let r = http
        .post(format!("{base}/v1/jobs/{alice_job}/cancel"))
        .bearer_auth("bob-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "bob cannot cancel alice's job");
    let (_, list) = get("bob-token", "/v1/jobs?limit=50".into()).await;
    assert!(
        list.contains(&bob_job) && !list.contains(&alice_job),
        "{list}"
    );
    let (_, list) = get("operator-token", "/v1/jobs?limit=50".into()).await;
    assert!(
        list.contains(&bob_job) && list.contains(&alice_job),
        "{list}"
    );
    // Metrics and readiness details are the operator's.
    assert_eq!(get("bob-token", "/metrics".into()).await.0, 403);
    assert_eq!(get("wrong", "/metrics".into()).await.0, 401);
    assert_eq!(get("operator-token", "/metrics".into()).await.0, 200);
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_is_capped_and_stored_once() {
    let mut fleet = Fleet::new(|_| {}).await;
    fleet.start_dispatcher().await;
    let big = "m".repeat(dispatcher::core::MAX_METADATA_BYTES + 1);
    let (code, body) = fleet
        .post_job(json!({"video": "/v.mp4", "metadata": {"blob": big}}))
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("metadata"),
        "{body}"
    );
    let id = fleet
        .submit(
            json!({"video": "/v.mp4", "analyzers": ["audio_analysis"], "metadata": {"post": 7}}),
        )
        .await;
    let meta = fleet.job(&id).await.unwrap();
    assert_eq!(meta.metadata, json!({"post": 7}));
    assert!(meta.request.get("metadata").is_none(), "{}", meta.request);
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_keeps_metrics_behind_the_token() {
    let mut fleet = Fleet::new(|c| c.connections.api_token = Some("op".into())).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    fleet
        .start_worker_with_health(
            common::StageClass::Cpu,
            "cpu-health",
            worker::Backends::Synthetic { scale: 0.001 },
            Some(listener),
        )
        .await;
    let http = fleet.http.clone();
    let url = |p: &str| format!("http://{addr}{p}");
    let ready = eventually(Duration::from_secs(20), "worker /readyz", || {
        let (http, u) = (http.clone(), url("/readyz"));
        async move {
            let r = http.get(u).send().await.ok()?;
            r.status().is_success().then_some(())?;
            r.text().await.ok()
        }
    })
    .await;
    assert!(!ready.contains("redis"), "details need the token: {ready}");
    let r = http.get(url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(url("/metrics"))
        .bearer_auth("op")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(url("/readyz"))
        .bearer_auth("op")
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("redis"));
    fleet.cleanup().await;
}

/// The dispatcher binary with `env`, its stderr collected.
fn dispatcher(fleet: &Fleet, env: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = std::process::Command::new(tests::binary("dispatcher"));
    cmd.env("FLEET_CONFIG", tests::config_path())
        .env("FLEET_PREFIX", &fleet.prefix)
        .env("RUST_LOG", "info")
        .env_remove("FLEET_API_TOKEN")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exposed_api_needs_a_token_and_logs_cannot_be_forged() {
    let fleet = Fleet::new(|_| {}).await;
    // Bound beyond loopback without a token: a configuration error, exit 64.
    let port = free_addr().rsplit(':').next().unwrap().to_string();
    let open = format!("0.0.0.0:{port}");
    let out = dispatcher(&fleet, &[("FLEET_LISTEN", &open)])
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("FLEET_API_TOKEN"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // On loopback, a video reference with a forged log line and a terminal escape.
    let addr = free_addr();
    let mut child = dispatcher(&fleet, &[("FLEET_LISTEN", &addr)]);
    let http = fleet.http.clone();
    let base = format!("http://{addr}");
    eventually(Duration::from_secs(30), "dispatcher up", || {
        let (http, u) = (http.clone(), format!("{base}/readyz"));
        async move {
            http.get(u)
                .send()
                .await
                .ok()?
                .status()
                .is_success()
                .then_some(())
        }
    })
    .await;
    let forged =
        "/v.mp4\n2026-01-01T00:00:00.000000Z  INFO dispatcher: FORGED admin logged in\u{1b}[2J";
    let r = http
        .post(format!("{base}/v1/jobs"))
        .json(&json!({"video": forged, "analyzers": ["audio_analysis"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422, "control characters are no path or URL");
    let odd = "/v\u{2028}id.mp4";
    let r = http
        .post(format!("{base}/v1/jobs"))
        .json(&json!({"video": odd, "analyzers": ["audio_analysis"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let _ = child.wait();
    assert!(logs.contains("job accepted"), "{logs}");
    for line in logs.lines() {
        assert!(
            !line.contains("FORGED") || line.contains("\\n"),
            "forged line: {line}"
        );
        assert!(!line.contains('\u{1b}'), "raw escape: {line:?}");
        assert!(!line.contains('\u{2028}'), "raw line separator: {line:?}");
    }
    fleet.cleanup().await;
}
