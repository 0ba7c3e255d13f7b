//! The stage planner (`fleet plan`, `fleet-bench plan`): proposes a stage assignment and
//! per-stage concurrency that raise throughput within the GPU memory budget.
//!
//! Layout:
//! - `workload`: the one workload model of a config (stages, analyzers, dependency closure),
//!   shared with the benchmarks' simulation.
//! - `search`: the model (pipelined bound, worst-case memory, slot cap) and the heuristic; pure.
//! - `exact`: exhaustive search for small problems, branch and bound for the rest; pure.
//! - `write`: the proposal as a complete fleet.toml (the original, edited, with comments).
//! - this file: the command (reading the config and measured durations, printing).
//!
//! Invariant: product code. It reads the config and Redis (measured durations) and writes a
//! file; it never starts a fleet, and no benchmark code is in it (`fleet` depends on this
//! crate, never on `bench`).

#![forbid(unsafe_code)]

pub mod exact;
/// The seed's analyzers as a config, and the shipped config: fixtures for the planner's and
/// the benchmark model's tests (figures that must stay exact whatever config/fleet.toml says).
pub mod fixtures;
pub mod search;
pub mod workload;
pub mod write;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use common::config::{DEFAULT_CONFIG_PATH, FleetConfig, StageClass, env};
use common::message::OutcomeStatus;
use common::store::Store;

pub use exact::{propose, propose_proven};
pub use search::{Assignment, Evaluation, Item, PlanError, Problem, StageSlot, evaluate};

/// Recent jobs read for measured durations when `--recent-jobs` is not given.
pub const DEFAULT_RECENT_JOBS: usize = 200;
/// Outcomes an analyzer needs before its measured mean replaces the config's expectation.
pub const DEFAULT_MIN_SAMPLES: usize = 3;

/// `fleet plan`: propose stages and concurrency from the config and measured durations.
///
/// The config path is not a flag here: `fleet` has a global `--config`; the caller sets
/// [`PlanArgs::config`] (otherwise FLEET_CONFIG, then config/fleet.toml).
#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// Config to plan for (set by the caller; not a flag of its own).
    #[arg(skip)]
    pub config: Option<PathBuf>,
    /// Read measured analyzer durations from Redis under this key prefix (e.g. `fleet`):
    /// the mean `duration_ms` of `ok` and `skipped` outcomes over recent jobs replaces
    /// `expected_secs`.
    #[arg(long)]
    pub measured_prefix: Option<String>,
    /// How many recent jobs to read measured durations from.
    #[arg(long, default_value_t = DEFAULT_RECENT_JOBS)]
    pub recent_jobs: usize,
    /// Outcomes an analyzer needs before its measured mean is used.
    #[arg(long, default_value_t = DEFAULT_MIN_SAMPLES)]
    pub min_samples: usize,
    /// Also use outcomes of synthetic analyzers (benchmarks), dividing their durations by
    /// this scale to get back to real seconds. Without it they are ignored.
    #[arg(long)]
    pub synthetic_scale: Option<f64>,
    /// GPU memory budget in GB (default: the `[gpu] critical` threshold).
    #[arg(long)]
    pub budget_gb: Option<f64>,
    /// Most GPU slots in total, all stages together (default: today's total; more slots on
    /// one GPU share its compute and do not make it faster).
    #[arg(long)]
    pub max_gpu_slots: Option<u32>,
    /// Write the proposal as a complete fleet.toml to this path.
    #[arg(long)]
    pub write: Option<PathBuf>,
}

/// Where each analyzer's seconds came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub mean_secs: f64,
    pub samples: usize,
}

pub async fn run(args: PlanArgs) -> anyhow::Result<()> {
    let path = args
        .config
        .clone()
        .or_else(|| std::env::var(env::CONFIG).ok().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let config = FleetConfig::parse(&text, &path.display().to_string(), |k| {
        std::env::var(k).ok()
    })?;
    let measured = match &args.measured_prefix {
        Some(prefix) => measured_durations(&config, prefix, &args).await?,
        None => BTreeMap::new(),
    };
    let problem = problem(&config, &measured, args.budget_gb, args.max_gpu_slots)?;
    let today = problem.today();
    let proposal = propose(&problem)?;
    let (now, next) = (evaluate(&problem, &today), evaluate(&problem, &proposal));
    print!("{}", report(&problem, &measured, &now, &next, &args));
    if let Some(out) = &args.write {
        let header = header_lines(&path, &problem, &now, &next, &measured);
        let written = write::proposal_toml(&text, &today, &proposal, &header)?;
        // The file must load and say exactly what was planned.
        let check = FleetConfig::parse(&written, &out.display().to_string(), |_| None)?;
        for (name, stage) in &proposal.stage_of {
            anyhow::ensure!(
                check.analyzers[name].stage == *stage,
                "written file disagrees on {name}"
            );
        }
        std::fs::write(out, written).with_context(|| format!("writing {}", out.display()))?;
        println!("\nwrote {}", out.display());
    }
    Ok(())
}

/// The planning problem for a config: enabled analyzers (measured seconds where known).
pub fn problem(
    config: &FleetConfig,
    measured: &BTreeMap<String, Measured>,
    budget_gb: Option<f64>,
    max_gpu_slots: Option<u32>,
) -> anyhow::Result<Problem> {
    let secs: BTreeMap<String, f64> = measured
        .iter()
        .map(|(name, m)| (name.clone(), m.mean_secs))
        .collect();
    let workload::Workload {
        stages,
        analyzers: items,
    } = workload::Workload::from_config(config).measured(&secs);
    let budget_gb = match budget_gb {
        Some(b) => b,
        None => budget_from(&config.gpu.critical, config.gpu.memory_total_gb)?,
    };
    let today_slots: u32 = stages
        .iter()
        .filter(|s| s.class == StageClass::Gpu)
        .map(|s| s.concurrency)
        .sum();
    Ok(Problem {
        stages,
        items,
        budget_gb,
        max_gpu_slots: max_gpu_slots.unwrap_or(today_slots),
    })
}

/// GB (10^9 bytes) of a `[gpu] critical` threshold ("40GB", "37.5GiB", "90%" of the total).
pub fn budget_from(critical: &str, memory_total_gb: f64) -> anyhow::Result<f64> {
    let t = gpu::MemoryThreshold::from_str(critical)
        .with_context(|| format!("[gpu] critical = {critical:?}"))?;
    Ok(t.resolve((memory_total_gb * 1e9) as u64) as f64 / 1e9)
}

/// Mean `duration_ms` of the outcomes per analyzer over the most recent jobs under `prefix`
/// (see [`mean_durations`]).
async fn measured_durations(
    config: &FleetConfig,
    prefix: &str,
    args: &PlanArgs,
) -> anyhow::Result<BTreeMap<String, Measured>> {
    let store = Store::connect(
        &config.connections.redis_url,
        prefix,
        Duration::from_secs(3600),
    )
    .await
    .with_context(|| format!("Redis at {}", config.connections.redis_url))?;
    let mut outcomes = Vec::new();
    for id in store.recent_jobs(args.recent_jobs).await? {
        outcomes.extend(store.outcomes(&id).await?);
    }
    Ok(mean_durations(config, outcomes, args))
}

/// Mean duration per analyzer of the outcomes that say what a task costs here: `ok` ones,
/// and `skipped` ones where the analyzer itself ran and skipped (no model server, no model:
/// on this deployment the task costs what it took, near nothing; planning it at its
/// `expected_secs` gave a 110 s stage-1 analyzer that never ran 7 slots on the H200 and
/// squeezed the measured ones into single slots). Failed outcomes, outcomes where nothing ran
/// (`none`) and synthetic ones without `--synthetic-scale` say nothing about the cost.
pub fn mean_durations(
    config: &FleetConfig,
    outcomes: impl IntoIterator<Item = (String, common::message::Outcome)>,
    args: &PlanArgs,
) -> BTreeMap<String, Measured> {
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for (name, o) in outcomes {
        if o.status == OutcomeStatus::Failed || o.backend == "none" {
            continue;
        }
        let secs = match (o.backend.as_str(), args.synthetic_scale) {
            ("synthetic", Some(scale)) if scale > 0.0 => o.duration_ms as f64 / 1000.0 / scale,
            ("synthetic", _) => continue,
            _ => o.duration_ms as f64 / 1000.0,
        };
        let e = sums.entry(name).or_default();
        e.0 += secs;
        e.1 += 1;
    }
    sums.into_iter()
        .filter(|(name, (_, n))| {
            *n >= args.min_samples.max(1) && config.analyzers.contains_key(name)
        })
        .map(|(name, (sum, n))| {
            (
                name,
                Measured {
                    mean_secs: sum / n as f64,
                    samples: n,
                },
            )
        })
        .collect()
}

fn summary(label: &str, e: &Evaluation, p: &Problem) -> String {
    format!(
        "{label}: bottleneck {} at {:.1} s/video -> {:.1} videos/hour; worst-case GPU memory {:.1} GB of {:.1} GB{}; {} GPU slots (cap {})",
        e.bottleneck,
        e.secs_per_video,
        e.videos_per_hour(),
        e.gpu_memory_gb,
        p.budget_gb,
        if e.gpu_memory_gb > p.budget_gb + 1e-9 {
            " (OVER BUDGET)"
        } else {
            ""
        },
        e.gpu_slots,
        p.max_gpu_slots,
    )
}

/// The printed comparison of today's config and the proposal.
pub fn report(
    p: &Problem,
    measured: &BTreeMap<String, Measured>,
    now: &Evaluation,
    next: &Evaluation,
    args: &PlanArgs,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Model: a stage needs work/concurrency seconds per video; the slowest stage bounds throughput."
    );
    let _ = writeln!(
        s,
        "GPU memory, worst case: sum over GPU stages of concurrency x largest analyzer memory in the stage."
    );
    match &args.measured_prefix {
        Some(prefix) => {
            let _ = writeln!(
                s,
                "Durations: {} analyzer(s) measured under prefix {prefix:?}, the rest from expected_secs.",
                measured.len()
            );
        }
        None => {
            let _ = writeln!(
                s,
                "Durations: expected_secs from the config (no --measured-prefix)."
            );
        }
    }
    for (label, e) in [("today", now), ("proposal", next)] {
        let _ = writeln!(s, "\n{label}:");
        let _ = writeln!(
            s,
            "  {:<7} {:>5} {:>9} {:>8} {:>9}  analyzers",
            "stage", "conc", "work s", "s/video", "mem GB"
        );
        for st in &e.stages {
            let mem = if st.class == StageClass::Gpu {
                format!("{:.1}", st.memory_gb)
            } else {
                "-".into()
            };
            let names: Vec<String> = st
                .analyzers
                .iter()
                .map(|n| {
                    if measured.contains_key(n) {
                        format!("{n}*")
                    } else {
                        n.clone()
                    }
                })
                .collect();
            let _ = writeln!(
                s,
                "  {:<7} {:>5} {:>9.1} {:>8.1} {:>9}  {}",
                st.name,
                st.concurrency,
                st.work_secs,
                st.secs_per_video,
                mem,
                names.join(", ")
            );
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "{}", summary("today   ", now, p));
    let _ = writeln!(s, "{}", summary("proposal", next, p));
    let gain = now.secs_per_video / next.secs_per_video;
    let _ = writeln!(s, "predicted throughput: x{gain:.2} of today");
    let moves = moves(p, next);
    if moves.is_empty() {
        let _ = writeln!(s, "no analyzer moves");
    } else {
        let _ = writeln!(s, "moves: {}", moves.join("; "));
    }
    if !measured.is_empty() {
        let _ = writeln!(s, "(* = measured duration)");
    }
    s
}

fn moves(p: &Problem, next: &Evaluation) -> Vec<String> {
    p.items
        .iter()
        .filter_map(|i| {
            let to = next.stages.iter().find(|s| s.analyzers.contains(&i.name))?;
            (to.name != i.stage).then(|| format!("{} {} -> {}", i.name, i.stage, to.name))
        })
        .collect()
}

fn header_lines(
    path: &std::path::Path,
    p: &Problem,
    now: &Evaluation,
    next: &Evaluation,
    measured: &BTreeMap<String, Measured>,
) -> Vec<String> {
    let mut h = vec![
        format!(
            "PROPOSAL of the stage planner (`fleet plan --write`), from {}.",
            path.display()
        ),
        "Changed lines carry a `# planner: was ...` comment; everything else is the original."
            .into(),
        "Slot model: a stage needs work/concurrency seconds per video; the slowest stage bounds"
            .into(),
        "throughput. Worst-case GPU memory: sum over GPU stages of concurrency x largest analyzer"
            .into(),
        "memory in the stage. Section banners below still describe the original grouping.".into(),
        String::new(),
        summary("today   ", now, p),
        summary("proposal", next, p),
    ];
    if !measured.is_empty() {
        h.push(format!(
            "Measured durations used for: {}.",
            measured.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    h
}

#[cfg(test)]
mod tests;
