//! Workers register themselves in Redis while they run (what `fleet gpus` shows) and
//! deregister when they stop.

use std::time::Duration;

use common::config::StageClass;
use tests::{Fleet, eventually};
use worker::Backends;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_register_while_they_run_and_leave_when_they_stop() {
    let mut fleet = Fleet::new(|_| {}).await;
    let b = Backends::Synthetic { scale: 0.01 };
    let (_, gpu_stop) = fleet.start_worker(StageClass::Gpu, "reg-gpu", b).await;
    fleet.start_worker(StageClass::Cpu, "reg-cpu", b).await;
    let store = fleet.store.clone();
    let both = eventually(Duration::from_secs(20), "both workers registered", || {
        let store = store.clone();
        async move {
            let w = store.workers().await.ok()?;
            (w.len() == 2).then_some(w)
        }
    })
    .await;
    let names: Vec<&str> = both.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["reg-cpu", "reg-gpu"], "sorted by name");
    assert_eq!(both[1].class, "gpu");
    assert_eq!(both[0].class, "cpu");
    assert_eq!(both[1].pid, std::process::id());
    assert!(both[1].gpu_uuid.is_none(), "no GPU pinned in this test");
    assert!(both[1].started_at_ms > 0);

    gpu_stop.cancel();
    let left = eventually(
        Duration::from_secs(20),
        "the stopped worker deregistered",
        || {
            let store = store.clone();
            async move {
                let w = store.workers().await.ok()?;
                (w.len() == 1).then_some(w)
            }
        },
    )
    .await;
    assert_eq!(left[0].name, "reg-cpu");
    fleet.cleanup().await;
}
