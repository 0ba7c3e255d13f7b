//! Each stage runs at most its limit of tasks at once on one worker, and reaches that limit.

use std::collections::BTreeMap;
use std::time::Duration;

use common::config::StageClass;
use serde_json::json;
use tests::{Fleet, set_param};
use worker::Backends;

/// Most intervals open at once; an interval is [start, end), so an end and a start at the
/// same millisecond do not overlap.
fn max_overlap(intervals: &[(u64, u64)]) -> usize {
    let mut events: Vec<(u64, i32)> = intervals
        .iter()
        .flat_map(|&(s, e)| [(s, 1), (e, -1)])
        .collect();
    events.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    max as usize
}

#[test]
fn overlap_counts_half_open_intervals() {
    assert_eq!(max_overlap(&[(0, 10), (10, 20)]), 1);
    assert_eq!(max_overlap(&[(0, 10), (5, 20), (6, 7)]), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_run_up_to_their_limit_and_never_beyond() {
    let mut fleet = Fleet::new(|c| {
        let names: Vec<String> = c.enabled_analyzers().map(|a| a.name.clone()).collect();
        for n in names {
            set_param(c, &n, "synthetic_secs", json!(0.3));
        }
    })
    .await;
    fleet.start_dispatcher().await;
    let b = Backends::Synthetic { scale: 1.0 };
    fleet.start_worker(StageClass::Gpu, "gpu-1", b).await;
    fleet.start_worker(StageClass::Cpu, "cpu-1", b).await;

    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(fleet.submit(json!({"video": format!("/v/{i}.mp4")})).await);
    }
    let mut per_stage: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for id in &ids {
        for o in fleet
            .wait_completed(id, Duration::from_secs(120))
            .await
            .into_values()
        {
            per_stage
                .entry(format!("{}@{}", o.stage, o.worker))
                .or_default()
                .push((o.started_at_ms, o.finished_at_ms));
        }
    }
    for (key, intervals) in &per_stage {
        let stage = key.split('@').next().unwrap();
        let limit = fleet.config.stages[stage].concurrency as usize;
        let seen = max_overlap(intervals);
        assert!(seen <= limit, "{key}: {seen} tasks at once, limit {limit}");
        assert_eq!(
            seen,
            limit,
            "{key}: never reached its limit {limit} ({} tasks)",
            intervals.len()
        );
    }
    assert_eq!(
        per_stage.len(),
        5,
        "all five stages ran: {:?}",
        per_stage.keys()
    );
    fleet.cleanup().await;
}
