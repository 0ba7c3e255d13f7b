//! The benchmark drivers end to end on a tiny workload against the real RabbitMQ and Redis:
//! they finish, every task ends `ok` on the synthetic backend, the report and the plot are
//! written. No timing is asserted (benchmarks are benchmarks, not timed tests).

use std::path::{Path, PathBuf};

use bench::overhead::{self, OverheadArgs};
use bench::seed::{self, Schedule, SeedArgs};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fleet-bench-smoke-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_runs_both_schedules_and_writes_its_report() {
    let dir = scratch("seed");
    let (out, plot) = (dir.join("report.md"), dir.join("occupancy.png"));
    std::fs::write(&out, "# Benchmarks\n\nhand-written text\n").unwrap();
    let args = SeedArgs {
        videos: 2,
        scale: 0.001,
        schedule: Schedule::Both,
        config: Some(repo("config/fleet.toml")),
        out: out.clone(),
        section: Some("seed".into()),
        plot: Some(plot.clone()),
        font: None,
        keep: false,
    };
    seed::run(args).await.expect("seed benchmark runs");
    let report = std::fs::read_to_string(&out).unwrap();
    assert!(
        report.contains("hand-written text"),
        "the rest of the page is kept"
    );
    let row = |name: &str| {
        report
            .lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("no {name} row in\n{report}"))
            .to_string()
    };
    let tasks = 2 * 22;
    for name in ["fleet", "barrier"] {
        let r = row(name);
        assert!(
            r.trim_end().ends_with(&format!("| {tasks} |")),
            "every task ran and ended ok: {r}"
        );
    }
    let png = std::fs::read(&plot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG was written");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overhead_measures_both_shapes_and_the_raw_loop() {
    let dir = scratch("overhead");
    let out = dir.join("report.md");
    let args = OverheadArgs {
        tasks: 40,
        prefetch: 8,
        open_secs: 0.5,
        raw_window: 16,
        raw_prefetch: 8,
        out: out.clone(),
        section: "overhead".into(),
        traffic_tasks: 40,
    };
    overhead::run(args).await.expect("overhead benchmark runs");
    let report = std::fs::read_to_string(&out).unwrap();
    for needle in [
        "| 16 confirms outstanding",
        "| 2 jobs × 20 | all submitted at once",
        "| 40 jobs × 1 | open loop",
        "p99 at 50 % of peak",
        "| Redis traffic of the fleet",
        "| 2 jobs × 20 | 40 |",
        "EVALSHA",
    ] {
        assert!(report.contains(needle), "{needle:?} missing from\n{report}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
