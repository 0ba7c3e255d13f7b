//! Workers dying: SIGKILL mid-task (redelivery to another worker) and SIGTERM (drain).

use std::time::Duration;

use common::config::StageClass;
use common::message::OutcomeStatus;
use common::metrics::Metrics;
use serde_json::json;
use tests::{Fleet, WorkerProcess, eventually, free_addr};
use worker::Backends;

/// CPU analyzers with no GPU dependency, slowest first.
const CPU_ONLY: [&str; 6] = [
    "speech_rate",
    "sound_effects",
    "speech_transcription",
    "speech_emotion",
    "audio_environment",
    "audio_analysis",
];

async fn in_flight(http: &reqwest::Client, addr: &str) -> Option<u64> {
    let text = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with("fleet_in_flight{") && l.contains("stage=\"cpu\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
}

fn counter_sum(m: &Metrics, family: &str) -> u64 {
    m.encode()
        .lines()
        .filter(|l| l.starts_with(family) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_task_redelivers_to_another_worker() {
    let mut fleet = Fleet::new(|_| {}).await;
    fleet.start_dispatcher().await;
    let addr = free_addr();
    let mut a = WorkerProcess::spawn(&fleet, "cpu", "cpu-a", &["--synthetic-scale", "0.5"], &addr);
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            fleet
                .submit(json!({"video": format!("/v/{i}.mp4"), "analyzers": CPU_ONLY}))
                .await,
        );
    }
    eventually(Duration::from_secs(30), "worker A to run tasks", || async {
        in_flight(&fleet.http, &addr).await.filter(|n| *n >= 4)
    })
    .await;
    a.signal("KILL");
    assert_eq!(
        a.wait(Duration::from_secs(10)).await,
        None,
        "killed by a signal"
    );

    let (b_metrics, _) = fleet
        .start_worker(
            StageClass::Cpu,
            "cpu-b",
            Backends::Synthetic { scale: 0.05 },
        )
        .await;
    let mut by_b = 0u64;
    let mut redelivered = 0;
    for id in &ids {
        let outcomes = fleet.wait_completed(id, Duration::from_secs(90)).await;
        assert_eq!(outcomes.len(), CPU_ONLY.len());
        for (name, o) in outcomes {
            assert_eq!(o.status, OutcomeStatus::Ok, "{name}: {o:?}");
            assert!(o.worker == "cpu-a" || o.worker == "cpu-b", "{}", o.worker);
            if o.worker == "cpu-b" {
                by_b += 1;
                if o.attempts >= 2 {
                    redelivered += 1;
                }
            }
        }
    }
    assert!(
        redelivered >= 1,
        "the tasks A held were redelivered to B (attempts >= 2)"
    );
    // B ran exactly the tasks whose outcome it wrote: nothing already final ran again.
    assert_eq!(counter_sum(&b_metrics, "fleet_tasks_started_total"), by_b);
    assert_eq!(counter_sum(&b_metrics, "fleet_tasks_finished_total"), by_b);
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_tasks_and_exits_zero() {
    let mut fleet = Fleet::new(|_| {}).await;
    fleet.start_dispatcher().await;
    let addr = free_addr();
    let mut a = WorkerProcess::spawn(&fleet, "cpu", "cpu-a", &["--synthetic-scale", "0.3"], &addr);
    let mut ids = Vec::new();
    for i in 0..2 {
        ids.push(
            fleet
                .submit(json!({"video": format!("/v/{i}.mp4"), "analyzers": CPU_ONLY}))
                .await,
        );
    }
    eventually(Duration::from_secs(30), "worker A to run tasks", || async {
        in_flight(&fleet.http, &addr).await.filter(|n| *n >= 4)
    })
    .await;
    a.signal("TERM");
    assert_eq!(
        a.wait(Duration::from_secs(40)).await,
        Some(0),
        "SIGTERM exits 0 after draining"
    );

    let drained = {
        let mut n = 0;
        for id in &ids {
            n += fleet
                .outcomes(id)
                .await
                .values()
                .filter(|o| o.worker == "cpu-a")
                .count();
        }
        n
    };
    assert!(
        drained >= 4,
        "the in-flight tasks finished and were stored before exit ({drained})"
    );

    let (b_metrics, _) = fleet
        .start_worker(
            StageClass::Cpu,
            "cpu-b",
            Backends::Synthetic { scale: 0.01 },
        )
        .await;
    let mut by_b = 0;
    for id in &ids {
        for (name, o) in fleet.wait_completed(id, Duration::from_secs(60)).await {
            assert_eq!(o.attempts, 1, "{name} was delivered more than once: {o:?}");
            by_b += u64::from(o.worker == "cpu-b");
        }
    }
    assert_eq!(
        counter_sum(&b_metrics, "fleet_tasks_started_total"),
        by_b,
        "B ran nothing A had finished"
    );
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cpu_workers_share_the_cpu_queue() {
    let mut fleet = Fleet::new(|_| {}).await;
    fleet.start_dispatcher().await;
    let b = Backends::Synthetic { scale: 0.05 };
    fleet.start_worker(StageClass::Cpu, "cpu-1", b).await;
    fleet.start_worker(StageClass::Cpu, "cpu-2", b).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            fleet
                .submit(json!({"video": format!("/v/{i}.mp4"), "analyzers": CPU_ONLY}))
                .await,
        );
    }
    let mut workers = std::collections::BTreeMap::<String, usize>::new();
    for id in &ids {
        for o in fleet
            .wait_completed(id, Duration::from_secs(60))
            .await
            .into_values()
        {
            *workers.entry(o.worker).or_default() += 1;
        }
    }
    assert_eq!(
        workers.keys().collect::<Vec<_>>(),
        ["cpu-1", "cpu-2"],
        "both took work: {workers:?}"
    );
    assert_eq!(workers.values().sum::<usize>(), 4 * CPU_ONLY.len());
    fleet.cleanup().await;
}

/// A dispatcher SIGKILLed while jobs with dependencies are in flight (between any two of its
/// steps): a dispatcher started afterwards finishes every job from what Redis and the queues
/// hold, and every analyzer has exactly one outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_killed_mid_job_leaves_no_job_behind() {
    let mut fleet = Fleet::new(|_| {}).await;
    fleet.start_synthetic_workers(0.002).await;
    let addr = free_addr();
    let mut first = std::process::Command::new(tests::binary("dispatcher"))
        .env("FLEET_CONFIG", tests::config_path())
        .env("FLEET_PREFIX", &fleet.prefix)
        .env("FLEET_LISTEN", &addr)
        .env("RUST_LOG", "warn")
        .env_remove("FLEET_API_TOKEN")
        .stdout(std::process::Stdio::null())
        .stderr(tests::child_logs())
        .spawn()
        .unwrap();
    let http = fleet.http.clone();
    eventually(
        Duration::from_secs(30),
        "first dispatcher ready",
        || async {
            http.get(format!("http://{addr}/readyz"))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        },
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..8 {
        let r = http
            .post(format!("http://{addr}/v1/jobs"))
            .json(&json!({"video": format!("/v/k{i}.mp4")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        let body: serde_json::Value = r.json().await.unwrap();
        ids.push(body["job_id"].as_str().unwrap().to_string());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.kill().unwrap();
    let _ = first.wait();
    let mut unfinished = 0;
    for id in &ids {
        let meta = fleet.job(id).await.expect("job recorded");
        if meta.status != common::message::JobStatus::Completed {
            unfinished += 1;
        }
    }
    assert!(unfinished > 0, "the kill came after every job had finished");

    fleet.start_dispatcher().await;
    for id in &ids {
        let outcomes = fleet.wait_completed(id, Duration::from_secs(90)).await;
        assert_eq!(outcomes.len(), 22, "{id}: {:?}", outcomes.keys());
        assert!(
            outcomes.values().all(|o| o.status == OutcomeStatus::Ok),
            "{id}: {outcomes:?}"
        );
    }
    fleet.cleanup().await;
}
