//! Losing RabbitMQ or Redis mid-job is survived: reconnect with backoff, nothing acked that
//! was not stored, every job completes. The outage is played by cutting a TCP proxy in
//! front of the real services (the shared services stay up for the other tests).

use std::time::Duration;

use common::config::StageClass;
use common::message::OutcomeStatus;
use serde_json::json;
use tests::{Fleet, Proxy, set_param};
use worker::Backends;

async fn outage_during_jobs(target: &'static str, is_amqp: bool) {
    let proxy = Proxy::start(target).await;
    let mut fleet = Fleet::new(|c| {
        let names: Vec<String> = c.enabled_analyzers().map(|a| a.name.clone()).collect();
        for n in names {
            set_param(c, &n, "synthetic_secs", json!(0.2));
        }
    })
    .await;
    fleet.start_dispatcher().await;
    // Only the workers go through the proxy.
    let mut cfg = (*fleet.config).clone();
    if is_amqp {
        cfg.connections.amqp_url = format!("amqp://guest:guest@{}/%2f", proxy.addr);
    } else {
        cfg.connections.redis_url = format!("redis://{}/", proxy.addr);
    }
    let main_config = std::mem::replace(&mut fleet.config, std::sync::Arc::new(cfg));
    let b = Backends::Synthetic { scale: 1.0 };
    fleet.start_worker(StageClass::Gpu, "gpu-1", b).await;
    fleet.start_worker(StageClass::Cpu, "cpu-1", b).await;
    fleet.config = main_config;

    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(fleet.submit(json!({"video": format!("/v/{i}.mp4")})).await);
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    for id in &ids {
        let outcomes = fleet.wait_completed(id, Duration::from_secs(90)).await;
        assert_eq!(outcomes.len(), 22);
        assert!(
            outcomes.values().all(|o| o.status == OutcomeStatus::Ok),
            "{outcomes:?}"
        );
    }
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_survive_losing_rabbitmq() {
    outage_during_jobs("127.0.0.1:5672", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_survive_losing_redis() {
    outage_during_jobs("127.0.0.1:6379", false).await;
}

/// A broker outage longer than the shutdown grace period, with tasks running when it starts,
/// is not a shutdown: the running tasks finish and store their outcomes, the workers reconnect
/// and take the next job's tasks (before the fix, the grace period's cancellation fired
/// during the outage and every later task started cancelled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_grace_period_does_not_wedge_the_workers() {
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let mut fleet = Fleet::new(|c| {
        let names: Vec<String> = c.enabled_analyzers().map(|a| a.name.clone()).collect();
        for n in names {
            set_param(c, &n, "synthetic_secs", json!(0.1));
        }
        // Stage-1 tasks outlast the grace period from the moment the broker goes away.
        for n in ["object_detection", "product_detection", "qwen2_vl_temporal"] {
            set_param(c, n, "synthetic_secs", json!(3.0));
        }
    })
    .await;
    fleet.start_dispatcher().await;
    let mut cfg = (*fleet.config).clone();
    cfg.connections.amqp_url = format!("amqp://guest:guest@{}/%2f", proxy.addr);
    cfg.shutdown_grace = Duration::from_secs(1);
    let main_config = std::mem::replace(&mut fleet.config, std::sync::Arc::new(cfg));
    let b = Backends::Synthetic { scale: 1.0 };
    fleet.start_worker(StageClass::Gpu, "gpu-1", b).await;
    fleet.start_worker(StageClass::Cpu, "cpu-1", b).await;
    fleet.config = main_config;

    let first = fleet.submit(json!({"video": "/v/before.mp4"})).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(4)).await;
    proxy.restore();
    let second = fleet.submit(json!({"video": "/v/after.mp4"})).await;
    for id in [&first, &second] {
        let outcomes = fleet.wait_completed(id, Duration::from_secs(90)).await;
        assert_eq!(outcomes.len(), 22);
        let not_ok: Vec<_> = outcomes
            .iter()
            .filter(|(_, o)| o.status != OutcomeStatus::Ok)
            .map(|(a, o)| format!("{a}: {:?} {:?}", o.status, o.error))
            .collect();
        assert!(not_ok.is_empty(), "job {id}: {not_ok:?}");
    }
    fleet.cleanup().await;
}

/// A Redis that lost the fleet's data (here: every key of the prefix deleted, as a restart
/// without persistence or a flush would) is noticed and said: `/readyz` names the time, the
/// API's 404 says the job may have been lost, and a new epoch starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_redis_is_detected_and_reported() {
    let mut fleet = Fleet::new(|_| {}).await;
    fleet.start_dispatcher().await;
    let store = fleet.store.clone();
    let first = tests::eventually(Duration::from_secs(20), "the epoch key", || {
        let store = store.clone();
        async move { store.epoch().await.ok().flatten() }
    })
    .await;
    let ready = |fleet: &Fleet| {
        let (http, url) = (fleet.http.clone(), format!("{}/readyz", fleet.base_url()));
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let not_found = |fleet: &Fleet| {
        let (http, url) = (
            fleet.http.clone(),
            format!("{}/v1/jobs/never-was", fleet.base_url()),
        );
        async move {
            let r = http.get(url).send().await.unwrap();
            assert_eq!(r.status(), 404);
            r.text().await.unwrap()
        }
    };
    assert!(ready(&fleet).await.get("state_lost_at_ms").is_none());
    assert!(not_found(&fleet).await.contains("unknown or expired"));

    store.delete_prefix().await.unwrap();
    let body = tests::eventually(Duration::from_secs(20), "readyz reporting the loss", || {
        let r = ready(&fleet);
        async move {
            let b = r.await;
            b.get("state_lost_at_ms")
                .and_then(|v| v.as_u64())
                .map(|_| b)
        }
    })
    .await;
    assert_eq!(body["redis"], true, "{body}");
    let second = store.epoch().await.unwrap().expect("a new epoch");
    assert_ne!(first, second);
    let r = fleet
        .http
        .get(format!("{}/v1/jobs/never-was", fleet.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("lost when Redis lost the fleet's data"),
        "{text}"
    );
    fleet.cleanup().await;
}

/// Bounds a request: `None` when no answer came within `within`.
async fn answer_within(
    within: Duration,
    req: reqwest::RequestBuilder,
) -> Option<(u16, serde_json::Value)> {
    let r = tokio::time::timeout(within, async {
        let r = req.send().await.unwrap();
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(serde_json::Value::Null))
    })
    .await;
    r.ok()
}

/// Generous against the fleet's own bounds (2 s per Redis command, 1 s per probe), short
/// against what used to happen (8–10 s, or the client's timeout).
const ANSWER_WITHIN: Duration = Duration::from_secs(4);

/// While Redis is away, the job API and `/readyz` answer 503 with the reason within a bound,
/// both when it refuses connections (stopped) and when it never answers (frozen, or packets
/// dropped); once it is back the API answers from it again. Before the bound, a read waited
/// for the connection manager's whole reconnect (6–12 s) or its response timeout (10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_readiness_answer_while_redis_is_away() {
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let redis_url = format!("redis://{}/", proxy.addr);
    let mut fleet = Fleet::new(|c| c.connections.redis_url = redis_url).await;
    fleet.start_dispatcher().await;
    // No workers: the job stays queued, its record is what the API reads.
    let id = fleet.submit(json!({"video": "/v/a.mp4"})).await;
    let job_url = format!("{}/v1/jobs/{id}", fleet.base_url());
    let ready_url = format!("{}/readyz", fleet.base_url());
    let (code, _) = answer_within(ANSWER_WITHIN, fleet.http.get(&job_url))
        .await
        .unwrap();
    assert_eq!(code, 200);

    for (how, away) in [("stalled", Proxy::stall as fn(&Proxy)), ("cut", Proxy::cut)] {
        away(&proxy);
        // The proxy drops or freezes its connections a moment after the call.
        tests::eventually(Duration::from_secs(10), "the outage to show", || {
            let req = fleet.http.get(&job_url);
            async move {
                answer_within(ANSWER_WITHIN, req)
                    .await
                    .filter(|(code, _)| *code == 503)
            }
        })
        .await;
        let since = std::time::Instant::now();
        // Long enough for several reconnects of the connection manager to start and fail.
        while since.elapsed() < Duration::from_secs(8) {
            let (code, body) = answer_within(ANSWER_WITHIN, fleet.http.get(&job_url))
                .await
                .unwrap_or_else(|| panic!("Redis {how}: GET {job_url} unanswered"));
            assert_eq!(code, 503, "Redis {how}: {body}");
            let error = body["error"].as_str().unwrap_or_default();
            assert!(error.contains("Redis"), "Redis {how}: {body}");

            let (code, body) = answer_within(ANSWER_WITHIN, fleet.http.get(&ready_url))
                .await
                .unwrap_or_else(|| panic!("Redis {how}: /readyz unanswered"));
            assert_eq!(code, 503, "Redis {how}: {body}");
            assert_eq!(body["redis"], false, "Redis {how}: {body}");
            assert!(
                body["reasons"].to_string().contains("Redis"),
                "Redis {how}: {body}"
            );
        }
        proxy.restore();
        tests::eventually(Duration::from_secs(20), "the job API back", || {
            let req = fleet.http.get(&job_url);
            async move {
                answer_within(ANSWER_WITHIN, req)
                    .await
                    .filter(|(code, _)| *code == 200)
            }
        })
        .await;
    }
    fleet.cleanup().await;
}

/// While RabbitMQ is away, the dispatcher's and a worker's `/readyz` answer 503 with the
/// reason within a bound (they used to wait behind the lock a reconnect held through its
/// whole backoff), and a submit is refused at once instead of waiting for the broker. After
/// an outage long enough for the reconnect waits to reach their cap, both are ready again
/// within that cap (10 s, jitter included; waits of 12–20 s were seen).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_answers_while_rabbitmq_is_away_and_returns_within_the_reconnect_cap() {
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let amqp_url = format!("amqp://guest:guest@{}/%2f", proxy.addr);
    let mut fleet = Fleet::new(|c| c.connections.amqp_url = amqp_url).await;
    fleet.start_dispatcher().await;
    let health = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let worker_ready = format!("http://{}/readyz", health.local_addr().unwrap());
    let b = Backends::Synthetic { scale: 1.0 };
    fleet
        .start_worker_with_health(StageClass::Cpu, "cpu-1", b, Some(health))
        .await;
    let dispatcher_ready = format!("{}/readyz", fleet.base_url());
    let ready = |url: &str| {
        let req = fleet.http.get(url);
        async move {
            answer_within(ANSWER_WITHIN, req)
                .await
                .filter(|(code, _)| *code == 200)
        }
    };
    for url in [&dispatcher_ready, &worker_ready] {
        tests::eventually(Duration::from_secs(20), url, || ready(url)).await;
    }

    proxy.cut();
    for url in [&dispatcher_ready, &worker_ready] {
        tests::eventually(Duration::from_secs(10), "the outage to show", || {
            let req = fleet.http.get(url.as_str());
            async move {
                answer_within(ANSWER_WITHIN, req)
                    .await
                    .filter(|(code, _)| *code == 503)
            }
        })
        .await;
    }
    let since = std::time::Instant::now();
    // Long enough for the reconnect waits to grow to their cap (0.2 s doubling to 5–10 s).
    while since.elapsed() < Duration::from_secs(20) {
        for url in [&dispatcher_ready, &worker_ready] {
            let (code, body) = answer_within(ANSWER_WITHIN, fleet.http.get(url.as_str()))
                .await
                .unwrap_or_else(|| panic!("{url} unanswered while RabbitMQ is away"));
            assert_eq!(code, 503, "{url}: {body}");
            assert_eq!(body["amqp"], false, "{url}: {body}");
            assert!(
                body["reasons"].to_string().contains("RabbitMQ"),
                "{url}: {body}"
            );
        }
        let submit = fleet
            .http
            .post(format!("{}/v1/jobs", fleet.base_url()))
            .json(&json!({"video": "/v/a.mp4"}));
        let (code, body) = answer_within(ANSWER_WITHIN, submit)
            .await
            .expect("a submit answered while RabbitMQ is away");
        assert_eq!(code, 503, "{body}");
        assert!(body["error"].to_string().contains("RabbitMQ"), "{body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    proxy.restore();
    // The cap, plus a connection's handshake and topology declaration.
    let back = Duration::from_secs(13);
    for url in [&dispatcher_ready, &worker_ready] {
        tests::eventually(back, url, || ready(url)).await;
    }
    let id = fleet.submit(json!({"video": "/v/after.mp4"})).await;
    assert!(fleet.job(&id).await.is_some());
    fleet.cleanup().await;
}
