//! The operator's CLI against a running fleet: submit and wait, result as JSON, a clear error
//! when the dispatcher is unreachable.

use std::process::Command;
use std::time::Duration;

use tests::Fleet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_submit_waits_and_prints_the_result() {
    let mut fleet = Fleet::new(|_| {}).await;
    fleet.start_dispatcher().await;
    fleet.start_synthetic_workers(0.002).await;
    let url = fleet.base_url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(tests::binary("fleet"))
            .args([
                "--url",
                &url,
                "submit",
                "/videos/cli.mp4",
                "--analyzers",
                "temporal_flow,audio_analysis",
                "--wait",
                "--timeout",
                "60",
                "--json",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let json_start = stdout.find('{').expect("JSON result on stdout");
    let body: serde_json::Value = serde_json::from_str(stdout[json_start..].trim()).expect(&stdout);
    assert_eq!(body["status"], "completed");
    assert_eq!(
        body["progress"]["total"], 3,
        "temporal_flow pulled in cut_analysis"
    );
    let id = body["job_id"].as_str().unwrap();
    assert_eq!(
        fleet.wait_completed(id, Duration::from_secs(5)).await.len(),
        3
    );
    fleet.cleanup().await;
}

#[test]
fn an_unreachable_dispatcher_is_one_clear_line() {
    let out = Command::new(tests::binary("fleet"))
        .args(["--url", "http://127.0.0.1:9", "status", "some-job"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the dispatcher") && err.contains("FLEET_URL"),
        "{err}"
    );
}
