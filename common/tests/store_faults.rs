//! What the store's errors say about retrying, against the real Redis (127.0.0.1:6379, a
//! unique key prefix per test): records that are not what the layout stores are permanent
//! errors, whichever read meets them.

use std::time::Duration;

use common::Store;
use common::retry::{Classify, Fault};
use common::store::{Claim, LeasedTask, StoreError};
use redis::AsyncCommands;

const REDIS: &str = common::config::DEFAULT_REDIS_URL;

async fn store() -> (Store, redis::aio::MultiplexedConnection) {
    let prefix = format!("tfault{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let store = Store::connect(REDIS, &prefix, Duration::from_secs(300))
        .await
        .expect("Redis at 127.0.0.1:6379 (make services)");
    let raw = redis::Client::open(REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    (store, raw)
}

/// Keys the test wrote itself expire soon, even when an assertion ends the test early.
async fn forget(raw: &mut redis::aio::MultiplexedConnection, keys: &[String]) {
    for k in keys {
        let () = raw.expire(k, 300).await.unwrap();
    }
}

/// The worker's first read of a task: its claim (which reads the outcome and the job).
async fn claim(store: &Store, id: &str, analyzer: &str) -> Result<Claim, StoreError> {
    let task = LeasedTask {
        job_id: id,
        analyzer,
        body: b"",
        queue: "q",
        traceparent: "",
    };
    store
        .claim(task, "token", "test", Duration::from_secs(10))
        .await
}

fn permanent<T: std::fmt::Debug>(what: &str, r: Result<T, StoreError>) -> String {
    let e = r.expect_err(what);
    assert_eq!(e.fault(), Fault::Permanent, "{what}: {e}");
    e.to_string()
}

#[tokio::test]
async fn corrupt_records_are_permanent_errors() {
    let (store, mut raw) = store().await;
    let id = "job-corrupt";
    // An outcome that is not JSON.
    let () = raw
        .hset(store.results_key(id), "a", "{not json")
        .await
        .unwrap();
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
    let e = permanent("outcome", claim(&store, id, "a").await);
    assert!(
        e.contains("corrupt record") && e.contains(&store.results_key(id)),
        "{e}"
    );
    permanent("inputs", store.outcomes_of(id, &["a".into()]).await);
    let e = permanent("job", store.job(id).await);
    assert!(e.contains("plan"), "{e}");
    permanent("plan", store.plan(id).await);
    // An outcome whose status the layout does not have, read by the dispatcher's script.
    let () = raw
        .hset(store.results_key(id), "b", r#"{"status":"maybe"}"#)
        .await
        .unwrap();
    permanent("job view", store.job_view(id, &["b"], 2, 1).await);
    forget(&mut raw, &[store.results_key(id), store.job_key(id)]).await;

    // Keys of the wrong type: Redis answers WRONGTYPE, in a pipeline and in a script too.
    let other = "job-wrongtype";
    let () = raw.set(store.results_key(other), "x").await.unwrap();
    let () = raw.set(store.job_key(other), "x").await.unwrap();
    forget(&mut raw, &[store.results_key(other), store.job_key(other)]).await;
    let e = permanent("claim", claim(&store, other, "a").await);
    assert!(e.contains("WRONGTYPE"), "{e}");
    permanent(
        "pipelined write",
        store.put_outcome(other, "a", &outcome()).await,
    );
    permanent("hash read", store.job(other).await);
    permanent("script", store.job_view(other, &["a"], 1, 1).await);

    // A sound record reads fine.
    assert!(store.put_outcome("job-ok", "a", &outcome()).await.unwrap());
    assert!(matches!(
        claim(&store, "job-ok", "a").await.unwrap(),
        Claim::Final(_)
    ));
    store.delete_prefix().await.unwrap();
}

fn outcome() -> common::Outcome {
    common::Outcome {
        status: common::OutcomeStatus::Ok,
        result: None,
        error: None,
        duration_ms: 1,
        worker: "test".into(),
        attempts: 1,
        backend: "synthetic".into(),
        stage: "cpu".into(),
        started_at_ms: 1,
        finished_at_ms: 2,
    }
}
