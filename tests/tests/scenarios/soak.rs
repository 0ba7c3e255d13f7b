//! Soak: a few dozen synthetic jobs through worker SIGKILLs, a RabbitMQ outage longer than the
//! shutdown grace period and a Redis outage (a restart with its data kept, played by cutting
//! the connections), all while the jobs run. Every job completes, with one outcome per
//! analyzer and one `job.completed` event.

use std::collections::BTreeMap;
use std::time::Duration;

use common::message::{JobStatus, OutcomeStatus};
use futures::StreamExt;
use serde_json::json;
use tests::{Fleet, Proxy, WorkerProcess, config_path, free_addr};

const JOBS: usize = 30;
const ANALYZERS: usize = 22;
/// The workers' grace period: the broker outage lasts longer.
const GRACE_SECS: u64 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_kills_and_outages_complete_every_job_once() {
    let amqp = Proxy::start("127.0.0.1:5672").await;
    let redis = Proxy::start("127.0.0.1:6379").await;
    let amqp_url = format!("amqp://guest:guest@{}/%2f", amqp.addr);
    let redis_url = format!("redis://{}/", redis.addr);
    let mut fleet = Fleet::new(|c| {
        c.connections.amqp_url = amqp_url.clone();
        c.connections.redis_url = redis_url.clone();
        c.shutdown_grace = Duration::from_secs(GRACE_SECS);
    })
    .await;
    // The workers' config: the shipped one with a short grace period.
    let shipped = std::fs::read_to_string(config_path()).unwrap();
    assert!(shipped.contains("shutdown_grace_secs = 150"));
    let config = std::env::temp_dir().join(format!("{}-fleet.toml", fleet.prefix));
    std::fs::write(
        &config,
        shipped.replace(
            "shutdown_grace_secs = 150",
            &format!("shutdown_grace_secs = {GRACE_SECS}"),
        ),
    )
    .unwrap();
    let config = config.to_string_lossy().into_owned();

    // Events are read past the proxies: the test's own view of what was published.
    let broker = fleet.broker().await;
    let mut events = fleet.subscribe_events(&broker, "soak").await;

    fleet.start_dispatcher().await;
    let env = [
        ("FLEET_CONFIG", config.as_str()),
        ("FLEET_AMQP_URL", amqp_url.as_str()),
        ("FLEET_REDIS_URL", redis_url.as_str()),
    ];
    let spawn = |class: &str, name: &str| {
        let mut extra = vec!["--synthetic-scale", "0.01"];
        if class == "gpu" {
            extra.push("--allow-cpu-fallback");
        }
        WorkerProcess::spawn_with_env(&fleet, class, name, &extra, &free_addr(), &env)
    };
    let mut workers = vec![
        spawn("gpu", "gpu-1"),
        spawn("gpu", "gpu-2"),
        spawn("cpu", "cpu-1"),
        spawn("cpu", "cpu-2"),
    ];

    let mut ids = Vec::new();
    for i in 0..JOBS {
        ids.push(fleet.submit(json!({"video": format!("/v/{i}.mp4")})).await);
    }
    let kill = |workers: &mut Vec<WorkerProcess>, name: &str| {
        let at = workers.iter().position(|w| w.name == name).unwrap();
        workers[at].signal("KILL");
        drop(workers.remove(at));
    };
    let pause = |s: f64| tokio::time::sleep(Duration::from_secs_f64(s));

    pause(2.0).await;
    kill(&mut workers, "gpu-1");
    workers.push(spawn("gpu", "gpu-3"));
    pause(1.0).await;
    kill(&mut workers, "cpu-1");
    workers.push(spawn("cpu", "cpu-3"));
    pause(1.0).await;
    amqp.cut();
    pause((GRACE_SECS + 3) as f64).await;
    amqp.restore();
    pause(2.0).await;
    redis.cut();
    pause(3.0).await;
    redis.restore();
    pause(1.0).await;
    // The faults hit running work: some jobs are still unfinished at the last one.
    let mut unfinished = 0;
    for id in &ids {
        if fleet
            .job(id)
            .await
            .is_none_or(|m| m.status != JobStatus::Completed)
        {
            unfinished += 1;
        }
    }
    assert!(unfinished > 0, "every job finished before the last fault");
    eprintln!("soak: {unfinished} of {JOBS} jobs unfinished at the last fault");
    kill(&mut workers, "gpu-2");
    workers.push(spawn("gpu", "gpu-4"));

    for id in &ids {
        let outcomes = fleet.wait_completed(id, Duration::from_secs(150)).await;
        assert_eq!(outcomes.len(), ANALYZERS, "job {id}");
        let not_ok: Vec<_> = outcomes
            .iter()
            .filter(|(_, o)| o.status != OutcomeStatus::Ok)
            .map(|(a, o)| format!("{a}: {:?} {:?}", o.status, o.error))
            .collect();
        assert!(not_ok.is_empty(), "job {id}: {not_ok:?}");
    }

    // Every job's event, once: read until a quiet second after the last one.
    let mut completed: BTreeMap<String, usize> = BTreeMap::new();
    while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(2), events.next()).await {
        if d.routing_key.as_str() != "job.completed" {
            continue;
        }
        let e: serde_json::Value = serde_json::from_slice(&d.data).unwrap();
        *completed
            .entry(e["job_id"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    for id in &ids {
        assert_eq!(completed.get(id), Some(&1), "job.completed events of {id}");
    }
    assert_eq!(completed.len(), JOBS, "{completed:?}");

    drop(workers);
    broker.close().await;
    let _ = std::fs::remove_file(&config);
    fleet.cleanup().await;
}
