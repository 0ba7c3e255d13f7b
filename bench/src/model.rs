//! The slot model of a fleet config, and a discrete-event simulation of it.
//!
//! A stage is `concurrency` slots fed by one FIFO queue; a task holds one slot for its
//! analyzer's seconds; a task enters its stage queue when its job is released and every
//! dependency of it (`needs` and `uses` inside the job) is final, in the dispatcher's plan
//! order (analyzer names, sorted). That is what the fleet does, minus messaging overhead, so
//! the simulation is the prediction the benchmarks compare against. Pure functions, no I/O.
//! The workload itself ([`Workload`]: stages, analyzers, the dependency closure) is the
//! planner's model, shared.

use std::collections::{BTreeMap, VecDeque};

use common::config::StageClass;
// The one workload model of a config is the planner's; this module only simulates it.
pub use planner::workload::{Analyzer, Stage, Workload};

/// Tolerance for comparing simulated times (seconds).
const EPS: f64 = 1e-9;

/// One job of a simulation or a benchmark driver.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Analyzers of the job, closed under `needs` (see [`Workload::resolve`]).
    pub analyzers: Vec<String>,
    /// Released when every job listed here is complete (or at 0 when empty).
    pub after: Vec<usize>,
}

/// One task's slot time in a simulation (seconds from the start).
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub job: usize,
    pub analyzer: String,
    pub stage: String,
    pub start: f64,
    pub finish: f64,
}

/// Completion time of every job, from a simulation's runs.
pub fn job_ends(runs: &[Run], jobs: usize) -> Vec<f64> {
    let mut ends = vec![0.0; jobs];
    for r in runs {
        ends[r.job] = f64::max(ends[r.job], r.finish);
    }
    ends
}

pub fn makespan(runs: &[Run]) -> f64 {
    runs.iter().map(|r| r.finish).fold(0.0, f64::max)
}

/// FIFO list scheduling of `jobs` on the workload's stage slots, without messaging overhead.
pub fn simulate(w: &Workload, jobs: &[Job]) -> Vec<Run> {
    struct Task {
        analyzer: usize,
        deps: Vec<usize>,
        queued: bool,
        done: bool,
    }
    let index: BTreeMap<&str, usize> = w
        .analyzers
        .iter()
        .enumerate()
        .map(|(i, a)| (a.name.as_str(), i))
        .collect();
    let mut tasks: Vec<Vec<Task>> = jobs
        .iter()
        .map(|j| {
            let names: Vec<&str> = j
                .analyzers
                .iter()
                .map(String::as_str)
                .filter(|n| index.contains_key(n))
                .collect();
            names
                .iter()
                .map(|n| {
                    let a = &w.analyzers[index[n]];
                    let deps = a
                        .needs
                        .iter()
                        .chain(&a.uses)
                        .filter_map(|d| names.iter().position(|x| x == d))
                        .collect();
                    Task {
                        analyzer: index[n],
                        deps,
                        queued: false,
                        done: false,
                    }
                })
                .collect()
        })
        .collect();
    let mut free: BTreeMap<&str, u32> = w
        .stages
        .iter()
        .map(|s| (s.name.as_str(), s.concurrency.max(1)))
        .collect();
    let mut queues: BTreeMap<&str, VecDeque<(usize, usize)>> = w
        .stages
        .iter()
        .map(|s| (s.name.as_str(), VecDeque::new()))
        .collect();
    let mut released = vec![false; jobs.len()];
    let mut job_done = vec![false; jobs.len()];
    let mut running: Vec<(f64, usize, usize)> = Vec::new();
    let mut runs = Vec::new();
    let mut t = 0.0;
    loop {
        // Release jobs whose predecessors are complete; queue their ready tasks in plan order.
        let mut progress = true;
        while progress {
            progress = false;
            for j in 0..jobs.len() {
                if !released[j] && jobs[j].after.iter().all(|&p| job_done[p]) {
                    released[j] = true;
                    progress = true;
                }
                if released[j] && !job_done[j] && tasks[j].iter().all(|k| k.done) {
                    job_done[j] = true;
                    progress = true;
                }
            }
        }
        for j in (0..jobs.len()).filter(|&j| released[j]) {
            for k in 0..tasks[j].len() {
                let ready =
                    !tasks[j][k].queued && tasks[j][k].deps.iter().all(|&d| tasks[j][d].done);
                if ready {
                    tasks[j][k].queued = true;
                    let stage = w.analyzers[tasks[j][k].analyzer].stage.as_str();
                    if let Some(q) = queues.get_mut(stage) {
                        q.push_back((j, k));
                    }
                }
            }
        }
        for s in &w.stages {
            let q = queues
                .get_mut(s.name.as_str())
                .expect("every stage has a queue");
            let f = free
                .get_mut(s.name.as_str())
                .expect("every stage has slots");
            while *f > 0 {
                let Some((j, k)) = q.pop_front() else { break };
                *f -= 1;
                let a = &w.analyzers[tasks[j][k].analyzer];
                running.push((t + a.secs, j, k));
                runs.push(Run {
                    job: j,
                    analyzer: a.name.clone(),
                    stage: a.stage.clone(),
                    start: t,
                    finish: t + a.secs,
                });
            }
        }
        let Some(next) = running.iter().map(|r| r.0).reduce(f64::min) else {
            break;
        };
        t = next;
        let (done, rest): (Vec<_>, Vec<_>) = running.into_iter().partition(|r| r.0 <= t + EPS);
        running = rest;
        for (_, j, k) in done {
            tasks[j][k].done = true;
            let stage = w.analyzers[tasks[j][k].analyzer].stage.as_str();
            *free.get_mut(stage).expect("known stage") += 1;
        }
    }
    runs
}

/// `videos` jobs of every enabled analyzer, all submitted at once: the fleet's schedule.
pub fn fleet_jobs(w: &Workload, videos: usize) -> Vec<Job> {
    let all: Vec<String> = w.analyzers.iter().map(|a| a.name.clone()).collect();
    (0..videos)
        .map(|_| Job {
            analyzers: all.clone(),
            after: vec![],
        })
        .collect()
}

/// How the seed's original schedule is expressed as fleet jobs, per video: one job per GPU
/// stage, each released when the previous one is complete (the barrier), and one job of
/// the CPU group released with the first, alongside.
#[derive(Debug, Clone, PartialEq)]
pub struct BarrierPlan {
    /// Job subsets in barrier order (GPU stages that have analyzers).
    pub steps: Vec<(String, Vec<String>)>,
    /// The CPU group that runs alongside the steps.
    pub alongside: Vec<String>,
}

/// Builds the barrier plan. A CPU analyzer that *needs* a GPU analyzer joins the step of
/// the latest stage it needs (the dispatcher would pull the need into its job anyway:
/// `temporal_flow` runs in the stage 4 job after `cut_analysis`); soft `uses` across jobs are
/// not waited for, as in the seed where the CPU group ran alongside. Fails when a step's
/// hard needs reach into another step (the dispatcher would run them twice).
pub fn barrier_plan(w: &Workload) -> Result<BarrierPlan, String> {
    let gpu: Vec<&Stage> = w
        .stages
        .iter()
        .filter(|s| s.class == StageClass::Gpu)
        .collect();
    let step_of_stage = |s: &str| gpu.iter().position(|g| g.name == s);
    // step(a) = max(own GPU step, steps of its needs); None = CPU group.
    let mut step: BTreeMap<&str, Option<usize>> = w
        .analyzers
        .iter()
        .map(|a| (a.name.as_str(), step_of_stage(&a.stage)))
        .collect();
    for _ in 0..w.analyzers.len() {
        for a in &w.analyzers {
            let need_max = a
                .needs
                .iter()
                .filter_map(|n| step.get(n.as_str()).copied().flatten())
                .max();
            let own = step[a.name.as_str()];
            let s = own.max(need_max);
            step.insert(a.name.as_str(), s);
        }
    }
    let mut steps = Vec::new();
    for (i, g) in gpu.iter().enumerate() {
        let subset: Vec<String> = w
            .analyzers
            .iter()
            .filter(|a| step[a.name.as_str()] == Some(i))
            .map(|a| a.name.clone())
            .collect();
        if subset.is_empty() {
            continue;
        }
        let closed = w.resolve(&subset);
        if closed != subset {
            let extra: Vec<&String> = closed.iter().filter(|n| !subset.contains(n)).collect();
            return Err(format!(
                "the {} job would also run {extra:?} (hard needs from an earlier stage)",
                g.name
            ));
        }
        steps.push((g.name.clone(), subset));
    }
    let alongside: Vec<String> = w
        .analyzers
        .iter()
        .filter(|a| step[a.name.as_str()].is_none())
        .map(|a| a.name.clone())
        .collect();
    if w.resolve(&alongside) != alongside {
        return Err("the CPU group needs GPU analyzers it cannot run alongside".into());
    }
    Ok(BarrierPlan { steps, alongside })
}

/// The barrier schedule for `videos` videos, one after another, as dependent jobs. Job
/// order per video: the alongside job (if any), then the steps.
pub fn barrier_jobs(plan: &BarrierPlan, videos: usize) -> Vec<Job> {
    let mut jobs: Vec<Job> = Vec::new();
    let mut previous_video: Vec<usize> = Vec::new();
    for _ in 0..videos {
        let mut this_video = Vec::new();
        if !plan.alongside.is_empty() {
            jobs.push(Job {
                analyzers: plan.alongside.clone(),
                after: previous_video.clone(),
            });
            this_video.push(jobs.len() - 1);
        }
        let mut after = previous_video.clone();
        for (_, subset) in &plan.steps {
            jobs.push(Job {
                analyzers: subset.clone(),
                after: after.clone(),
            });
            after = vec![jobs.len() - 1];
            this_video.push(jobs.len() - 1);
        }
        previous_video = this_video;
    }
    jobs
}

/// Shortest makespan of independent tasks on `slots` identical slots (exact; branch and
/// bound, fine for the dozen tasks of a stage).
pub fn best_packing(durations: &[f64], slots: usize) -> f64 {
    let mut d: Vec<f64> = durations.to_vec();
    d.sort_by(|a, b| b.total_cmp(a));
    let slots = slots.max(1).min(d.len().max(1));
    let mut best = d.iter().sum::<f64>();
    fn go(d: &[f64], i: usize, load: &mut [f64], best: &mut f64) {
        let current = load.iter().copied().fold(0.0, f64::max);
        if current >= *best - EPS {
            return;
        }
        if i == d.len() {
            *best = current;
            return;
        }
        let mut tried_empty = false;
        for s in 0..load.len() {
            if load[s] == 0.0 {
                if tried_empty {
                    continue;
                }
                tried_empty = true;
            }
            load[s] += d[i];
            go(d, i + 1, load, best);
            load[s] -= d[i];
        }
    }
    go(&d, 0, &mut vec![0.0; slots], &mut best);
    best
}

/// A lower bound on one video under the barrier schedule: per step the larger of its best
/// packing and its longest dependency chain; the CPU group alongside.
pub fn barrier_lower_bound(w: &Workload, plan: &BarrierPlan) -> f64 {
    let chain = |names: &[String]| -> f64 {
        // Longest path through needs/uses inside the subset.
        let mut memo: BTreeMap<String, f64> = BTreeMap::new();
        fn longest(
            w: &Workload,
            names: &[String],
            n: &str,
            memo: &mut BTreeMap<String, f64>,
        ) -> f64 {
            if let Some(v) = memo.get(n) {
                return *v;
            }
            let a = w.analyzer(n).expect("known analyzer");
            let before = a
                .needs
                .iter()
                .chain(&a.uses)
                .filter(|d| names.contains(d))
                .map(|d| longest(w, names, d, memo))
                .fold(0.0, f64::max);
            let v = before + a.secs;
            memo.insert(n.to_string(), v);
            v
        }
        names
            .iter()
            .map(|n| longest(w, names, n, &mut memo))
            .fold(0.0, f64::max)
    };
    let per_step = |names: &[String]| -> f64 {
        let mut by_stage: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for n in names {
            let a = w.analyzer(n).expect("known analyzer");
            by_stage.entry(a.stage.as_str()).or_default().push(a.secs);
        }
        let packing = by_stage
            .iter()
            .map(|(s, d)| best_packing(d, w.stage(s).map_or(1, |s| s.concurrency as usize)))
            .fold(0.0, f64::max);
        packing.max(chain(names))
    };
    let gpu_path: f64 = plan.steps.iter().map(|(_, n)| per_step(n)).sum();
    gpu_path.max(per_step(&plan.alongside))
}

#[cfg(test)]
mod tests;
