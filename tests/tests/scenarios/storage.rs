//! The Redis layout's promise that every key expires: a job through the real fleet leaves
//! only keys with a TTL, and the recent-jobs index holds no job older than the TTL.

use std::time::Duration;

use common::message::{JobStatus, PlannedTask};
use common::store::JobMeta;
use common::{Store, now_ms};
use serde_json::json;
use tests::{Fleet, REDIS_URL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_a_job_leaves_carries_a_ttl() {
    let mut fleet = Fleet::new(|_| {}).await;
    fleet.start_dispatcher().await;
    fleet.start_synthetic_workers(0.001).await;
    // A hard dependency (released after its dependency), an idempotency key and metadata.
    let id = fleet
        .submit(json!({
            "video": "/videos/ttl.mp4",
            "analyzers": ["temporal_flow"],
            "idempotency_key": "ttl-check",
            "metadata": {"post": 1}
        }))
        .await;
    let outcomes = fleet.wait_completed(&id, Duration::from_secs(60)).await;
    assert!(outcomes.contains_key("cut_analysis") && outcomes.contains_key("temporal_flow"));
    let cancelled = fleet
        .submit(json!({"video": "/videos/ttl2.mp4", "analyzers": ["qwen2_vl_temporal"]}))
        .await;
    let r = fleet
        .http
        .post(format!("{}/v1/jobs/{cancelled}/cancel", fleet.base_url()))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "cancel answered {}", r.status());

    let client = redis::Client::open(REDIS_URL).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{}:*", fleet.prefix))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut c)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    for must in [
        format!("{}:jobs", fleet.prefix),
        format!("{}:job:{id}", fleet.prefix),
        format!("{}:job:{id}:results", fleet.prefix),
        format!("{}:job:{id}:released", fleet.prefix),
    ] {
        assert!(keys.contains(&must), "{must} missing from {keys:?}");
    }
    assert!(keys.iter().any(|k| k.contains(":idem:")), "{keys:?}");
    let mut without = Vec::new();
    for k in &keys {
        let ttl: i64 = redis::cmd("TTL").arg(k).query_async(&mut c).await.unwrap();
        // -1: no expiry; -2: gone since the scan (a worker registration at shutdown).
        if ttl == -1 || ttl == 0 {
            without.push(format!("{k} (TTL {ttl})"));
        }
    }
    assert!(without.is_empty(), "keys without a TTL: {without:?}");
    fleet.cleanup().await;
}

#[tokio::test]
async fn the_recent_jobs_index_drops_jobs_older_than_the_ttl() {
    let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let store = Store::connect(REDIS_URL, &prefix, Duration::from_secs(60))
        .await
        .unwrap();
    let now = now_ms();
    let job = |id: &str, created_at_ms: u64| JobMeta {
        id: id.into(),
        status: JobStatus::Queued,
        video: "/v.mp4".into(),
        total: 1,
        created_at_ms,
        updated_at_ms: created_at_ms,
        completed_at_ms: None,
        request: json!({"video": "/v.mp4"}),
        plan: vec![PlannedTask {
            analyzer: "cut_analysis".into(),
            stage: "stage4".into(),
            needs: vec![],
            uses: vec![],
        }],
        metadata: serde_json::Value::Null,
        traceparent: None,
        owner: None,
    };
    // Created "two minutes ago" under a 60 s TTL, then a new one.
    assert!(store.create_job(&job("old", now - 120_000)).await.unwrap());
    assert!(store.create_job(&job("new", now)).await.unwrap());
    assert_eq!(store.recent_jobs(10).await.unwrap(), ["new"]);
    store.delete_prefix().await.unwrap();
}
