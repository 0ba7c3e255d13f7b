//! A job with all 22 active analyzers completes, in dependency order, with an event.

use std::time::Duration;

use common::message::OutcomeStatus;
use futures::StreamExt;
use serde_json::json;
use tests::Fleet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_active_analyzer_runs_once_in_dependency_order() {
    let mut fleet = Fleet::new(|_| {}).await;
    fleet.start_dispatcher().await;
    fleet.start_synthetic_workers(0.005).await;

    // Subscribe to job events before submitting.
    let broker = fleet.broker().await;
    let mut events = fleet.subscribe_events(&broker, "t").await;

    let id = fleet
        .submit(json!({"video": "/videos/a.mp4", "metadata": {"source": "test"}}))
        .await;
    let outcomes = fleet.wait_completed(&id, Duration::from_secs(60)).await;

    let enabled: Vec<&String> = fleet.config.enabled_analyzers().map(|a| &a.name).collect();
    assert_eq!(enabled.len(), 22);
    assert_eq!(
        outcomes.len(),
        22,
        "one outcome per active analyzer: {:?}",
        outcomes.keys()
    );
    for name in &enabled {
        let o = &outcomes[*name];
        assert_eq!(o.status, OutcomeStatus::Ok, "{name}: {o:?}");
        assert_eq!(o.backend, "synthetic");
        assert_eq!(o.attempts, 1);
        let a = &fleet.config.analyzers[*name];
        for dep in a.needs.iter().chain(&a.uses) {
            let d = &outcomes[dep];
            assert!(
                o.started_at_ms >= d.finished_at_ms,
                "{name} started before its dependency {dep} finished"
            );
        }
        assert_eq!(o.stage, a.stage);
    }
    for disabled in fleet.config.analyzers.values().filter(|a| !a.enabled) {
        assert!(
            !outcomes.contains_key(&disabled.name),
            "disabled {} ran",
            disabled.name
        );
    }

    // The HTTP result carries everything, including the metadata passed through.
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
    assert_eq!(body["progress"]["done"], 22);
    assert_eq!(body["metadata"]["source"], "test");
    assert_eq!(body["analyzers"]["cut_analysis"]["backend"], "synthetic");

    let event = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("job.completed event")
        .unwrap()
        .unwrap();
    assert_eq!(event.routing_key.as_str(), "job.completed");
    let e: serde_json::Value = serde_json::from_slice(&event.data).unwrap();
    assert_eq!(e["job_id"], id.as_str());
    assert_eq!(e["ok"], 22);
    broker.close().await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subset_pulls_in_what_it_needs_and_nothing_else() {
    let mut fleet = Fleet::new(|_| {}).await;
    fleet.start_dispatcher().await;
    fleet.start_synthetic_workers(0.001).await;
    let id = fleet.submit(json!({"video": "https://cdn.example.com/v.mp4", "analyzers": ["temporal_flow", "color_analysis"]})).await;
    let outcomes = fleet.wait_completed(&id, Duration::from_secs(30)).await;
    let names: Vec<&str> = outcomes.keys().map(String::as_str).collect();
    assert_eq!(names, ["color_analysis", "cut_analysis", "temporal_flow"]);
    let status: serde_json::Value = fleet
        .http
        .get(format!("{}/v1/jobs/{id}", fleet.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["progress"]["total"], 3);
    assert_eq!(status["stages"]["stage4"]["done"], 1);
    fleet.cleanup().await;
}
