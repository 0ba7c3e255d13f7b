use super::*;
use common::config::FleetConfig;
use planner::fixtures::{seed_config, shipped_toml};

fn seed() -> Workload {
    Workload::from_config(&seed_config())
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn stage_work_and_bound_follow_the_seed_table() {
    let w = seed();
    assert_eq!(
        w.analyzers.len(),
        22,
        "the 22 active analyzers, the disabled one left out"
    );
    let work: BTreeMap<String, f64> = w.stage_work().into_iter().collect();
    assert!(close(work["stage1"], 233.2), "{work:?}");
    assert!(close(work["stage2"], 114.4), "{work:?}");
    assert!(close(work["cpu"], 30.9), "{work:?}");
    let (stage, secs) = w.bottleneck();
    assert_eq!(stage, "stage1");
    assert!(close(secs, 116.6), "{secs}");
}

#[test]
fn one_job_is_list_scheduled_in_plan_order() {
    let w = seed();
    let runs = simulate(
        &w,
        &[Job {
            analyzers: w.resolve(&[
                "qwen2_vl_temporal".into(),
                "object_detection".into(),
                "product_detection".into(),
                "visual_effects".into(),
            ]),
            after: vec![],
        }],
    );
    // Plan order is by name: object and product start, qwen waits for object's slot.
    let qwen = runs
        .iter()
        .find(|r| r.analyzer == "qwen2_vl_temporal")
        .unwrap();
    assert!(close(qwen.start, 50.3), "{runs:?}");
    assert!(close(makespan(&runs), 160.3), "{runs:?}");
    // The best packing of the same stage is qwen alone on one slot.
    assert!(close(best_packing(&[110.0, 50.4, 50.3, 22.5], 2), 123.2));
    assert!(close(best_packing(&[3.0, 3.0, 2.0, 2.0, 2.0], 2), 6.0));
    assert!(close(best_packing(&[5.0], 4), 5.0));
}

#[test]
fn dependencies_hold_tasks_back() {
    let w = seed();
    let job = Job {
        analyzers: w.resolve(&["temporal_flow".into()]),
        after: vec![],
    };
    assert_eq!(
        job.analyzers,
        vec!["cut_analysis".to_string(), "temporal_flow".to_string()],
        "needs are pulled in"
    );
    let runs = simulate(&w, &[job]);
    let tf = runs.iter().find(|r| r.analyzer == "temporal_flow").unwrap();
    assert!(close(tf.start, 4.1) && close(tf.finish, 6.2), "{runs:?}");
}

#[test]
fn barrier_plan_keeps_needs_inside_one_job() {
    let plan = barrier_plan(&seed()).unwrap();
    let names: Vec<&str> = plan.steps.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names, ["stage1", "stage2", "stage3", "stage4"]);
    assert_eq!(
        plan.steps[3].1,
        ["age_estimation", "cut_analysis", "temporal_flow"]
    );
    assert_eq!(plan.alongside.len(), 8);
    assert!(
        plan.alongside
            .contains(&"comment_cta_detection".to_string()),
        "soft uses do not move it"
    );
    assert!(!plan.alongside.contains(&"temporal_flow".to_string()));
}

#[test]
fn barrier_plan_refuses_needs_across_steps() {
    let mut w = seed();
    // A stage 4 analyzer that needs a stage 2 one cannot have a job of its own stage.
    w.analyzers
        .iter_mut()
        .find(|a| a.name == "age_estimation")
        .unwrap()
        .needs = vec!["text_overlay".into()];
    let e = barrier_plan(&w).unwrap_err();
    assert!(e.contains("stage4") && e.contains("text_overlay"), "{e}");
}

#[test]
fn barrier_videos_run_one_after_another() {
    let w = seed();
    let plan = barrier_plan(&w).unwrap();
    let jobs = barrier_jobs(&plan, 2);
    assert_eq!(jobs.len(), 10);
    let runs = simulate(&w, &jobs);
    let ends = job_ends(&runs, jobs.len());
    let first_video_end = ends[..5].iter().copied().fold(0.0, f64::max);
    // FIFO per stage: 160.3 + 41.2 + 16.4 + (4.1 + 2.1) per video.
    assert!(close(first_video_end, 224.1), "{first_video_end}");
    let second_start = runs
        .iter()
        .filter(|r| r.job >= 5)
        .map(|r| r.start)
        .fold(f64::INFINITY, f64::min);
    assert!(close(second_start, first_video_end), "{second_start}");
    assert!(close(makespan(&runs), 2.0 * 224.1));
    // The best a barrier can do: 123.2 + 41.2 + 16.4 + 6.2.
    assert!(
        close(barrier_lower_bound(&w, &plan), 187.0),
        "{}",
        barrier_lower_bound(&w, &plan)
    );
}

#[test]
fn pipelined_fleet_approaches_the_bound() {
    let w = seed().scaled(0.01);
    let runs = simulate(&w, &fleet_jobs(&w, 20));
    assert_eq!(runs.len(), 20 * 22);
    let bound = 20.0 * w.bottleneck().1;
    let m = makespan(&runs);
    assert!(
        m >= bound - 1e-9,
        "no schedule beats the bound: {m} < {bound}"
    );
    assert!(
        m <= bound + 1.1,
        "FIFO loses at most one long task at the end: {m} vs {bound}"
    );
}

#[test]
fn the_shipped_config_has_a_barrier_plan() {
    let config = FleetConfig::parse(shipped_toml(), "config/fleet.toml", |_| None).unwrap();
    let w = Workload::from_config(&config);
    let plan = barrier_plan(&w).unwrap();
    let covered: usize =
        plan.steps.iter().map(|(_, s)| s.len()).sum::<usize>() + plan.alongside.len();
    assert_eq!(
        covered,
        w.analyzers.len(),
        "every analyzer runs exactly once per video"
    );
}
