//! The planner's model and search: pure functions over a [`Problem`].
//!
//! Model (see docs/benchmarks.md, "Stage planner"):
//! - Throughput: videos stream through the stages; a stage needs `work ÷ concurrency`
//!   seconds per video, and the slowest stage bounds the fleet (the pipelined bound).
//! - Memory: a stage's `concurrency` slots can at worst all hold its most memory-hungry
//!   analyzer at once (different videos run the same analyzer concurrently), and all GPU
//!   stages run at once on the one GPU worker, so the worst-case footprint is
//!   `Σ_stages concurrency × max analyzer memory`. It must stay within the budget (the
//!   `[gpu] critical` threshold, above which the worker's guard stops taking work).
//! - Compute: a GPU does not get faster with more slots, so the total number of GPU slots
//!   is capped (default: today's total); the planner redistributes slots, it does not add.
//!
//! Search: GPU analyzers move between GPU stages only (CPU analyzers and the CPU stage stay:
//! CPU workers scale out by replicas). For a given grouping the best concurrencies come from a
//! greedy rule that is exact for this objective (raise the bottleneck stage while it fits,
//! then trim slots that do not change the bottleneck). Groupings: exhaustive when small;
//! otherwise a heuristic (contiguous splits of the analyzers sorted by memory, refined by
//! moves, swaps and one-for-two exchanges) gives an incumbent that a branch and bound then
//! improves or proves optimal.

use std::collections::BTreeMap;

use common::config::StageClass;

/// Starting points refined by local search when the search is not exhaustive.
const REFINE_STARTS: usize = 6;

/// An analyzer to place: the workload model's (its `stage` is where it is today).
pub type Item = crate::workload::Analyzer;

/// A stage and its slots: the workload model's.
pub type StageSlot = crate::workload::Stage;

#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// In the config's stage order (stage1..stage4, cpu).
    pub stages: Vec<StageSlot>,
    pub items: Vec<Item>,
    pub budget_gb: f64,
    pub max_gpu_slots: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub stage_of: BTreeMap<String, String>,
    pub concurrency: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StageEval {
    pub name: String,
    pub class: StageClass,
    pub analyzers: Vec<String>,
    pub work_secs: f64,
    pub concurrency: u32,
    pub max_mem_gb: f64,
    /// Worst-case footprint: concurrency × max analyzer memory (GPU stages only).
    pub memory_gb: f64,
    pub secs_per_video: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub stages: Vec<StageEval>,
    pub bottleneck: String,
    pub secs_per_video: f64,
    pub gpu_memory_gb: f64,
    pub gpu_slots: u32,
}

impl Evaluation {
    pub fn videos_per_hour(&self) -> f64 {
        if self.secs_per_video > 0.0 {
            3600.0 / self.secs_per_video
        } else {
            f64::INFINITY
        }
    }

    pub fn fits(&self, p: &Problem) -> bool {
        self.gpu_memory_gb <= p.budget_gb + 1e-9 && self.gpu_slots <= p.max_gpu_slots
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "no stage assignment fits: one slot per GPU stage already needs more than the budget \
         ({budget_gb} GB) or the slot cap ({max_slots}); raise [gpu] critical or --max-gpu-slots"
    )]
    Infeasible { budget_gb: f64, max_slots: u32 },
    #[error("the config has no GPU stage to plan")]
    NoGpuStage,
}

impl Problem {
    pub fn gpu_stages(&self) -> Vec<&StageSlot> {
        self.stages
            .iter()
            .filter(|s| s.class == StageClass::Gpu)
            .collect()
    }

    fn is_gpu_stage(&self, name: &str) -> bool {
        self.stages
            .iter()
            .any(|s| s.name == name && s.class == StageClass::Gpu)
    }

    /// Today's config as an assignment.
    pub fn today(&self) -> Assignment {
        Assignment {
            stage_of: self
                .items
                .iter()
                .map(|i| (i.name.clone(), i.stage.clone()))
                .collect(),
            concurrency: self
                .stages
                .iter()
                .map(|s| (s.name.clone(), s.concurrency))
                .collect(),
        }
    }
}

pub fn evaluate(p: &Problem, a: &Assignment) -> Evaluation {
    let stages: Vec<StageEval> = p
        .stages
        .iter()
        .map(|s| {
            let members: Vec<&Item> = p
                .items
                .iter()
                .filter(|i| a.stage_of.get(&i.name).unwrap_or(&i.stage) == &s.name)
                .collect();
            let c = a
                .concurrency
                .get(&s.name)
                .copied()
                .unwrap_or(s.concurrency)
                .max(1);
            let work: f64 = members.iter().map(|i| i.secs).sum();
            let max_mem = members.iter().map(|i| i.gpu_memory_gb).fold(0.0, f64::max);
            let gpu = s.class == StageClass::Gpu;
            StageEval {
                name: s.name.clone(),
                class: s.class,
                analyzers: members.iter().map(|i| i.name.clone()).collect(),
                work_secs: work,
                concurrency: c,
                max_mem_gb: max_mem,
                memory_gb: if gpu { f64::from(c) * max_mem } else { 0.0 },
                secs_per_video: work / f64::from(c),
            }
        })
        .collect();
    let (bottleneck, secs) = stages.iter().fold((String::new(), 0.0), |b, s| {
        if s.secs_per_video > b.1 + 1e-12 {
            (s.name.clone(), s.secs_per_video)
        } else {
            b
        }
    });
    let gpu_memory_gb = stages.iter().map(|s| s.memory_gb).sum();
    let gpu_slots = stages
        .iter()
        .filter(|s| s.class == StageClass::Gpu && !s.analyzers.is_empty())
        .map(|s| s.concurrency)
        .sum();
    Evaluation {
        stages,
        bottleneck,
        secs_per_video: secs,
        gpu_memory_gb,
        gpu_slots,
    }
}

/// Best concurrencies for groups with `work` seconds and `mem` GB (max analyzer memory):
/// minimises the largest `work ÷ c` (not below `floor`, the fixed stages' bottleneck), then
/// memory. `None` when one slot per non-empty group does not fit.
pub fn allocate(
    work: &[f64],
    mem: &[f64],
    used: &[bool],
    floor: f64,
    budget: f64,
    max_slots: u32,
) -> Option<Vec<u32>> {
    let n = work.len();
    let mut c = vec![1u32; n];
    let cost = |c: &[u32]| -> (f64, u32) {
        (0..n).filter(|&i| used[i]).fold((0.0, 0), |(m, s), i| {
            (m + f64::from(c[i]) * mem[i], s + c[i])
        })
    };
    let (m0, s0) = cost(&c);
    if m0 > budget + 1e-9 || s0 > max_slots {
        return None;
    }
    let level = |c: &[u32]| {
        (0..n)
            .filter(|&i| used[i])
            .map(|i| work[i] / f64::from(c[i]))
            .fold(floor, f64::max)
    };
    // Raise the bottleneck stage (the first one on ties) while it fits.
    while let Some(b) = (0..n).filter(|&i| used[i]).max_by(|&x, &y| {
        (work[x] / f64::from(c[x]))
            .total_cmp(&(work[y] / f64::from(c[y])))
            .then(y.cmp(&x))
    }) {
        if work[b] / f64::from(c[b]) <= floor + 1e-12 {
            break;
        }
        c[b] += 1;
        let (m, s) = cost(&c);
        if m > budget + 1e-9 || s > max_slots || c[b] > 1000 {
            c[b] -= 1;
            break;
        }
    }
    // Trim slots that do not lower the bottleneck (ties, or stages under the floor).
    let target = level(&c);
    for i in (0..n).filter(|&i| used[i]) {
        while c[i] > 1 {
            c[i] -= 1;
            if level(&c) > target + 1e-12 {
                c[i] += 1;
                break;
            }
        }
    }
    Some(c)
}

/// Ordering key of a candidate: faster first, then less memory, fewer moved analyzers, fewer slots.
pub(crate) type Key = (i64, i64, usize, u32);

pub(crate) struct Searcher<'a> {
    pub(crate) p: &'a Problem,
    pub(crate) gpu: Vec<String>,
    /// Indices into `p.items` of GPU analyzers.
    pub(crate) movable: Vec<usize>,
    /// The CPU stages' bottleneck, which GPU stages need not beat.
    pub(crate) fixed_floor: f64,
}

impl<'a> Searcher<'a> {
    pub(crate) fn new(p: &'a Problem) -> Self {
        let gpu: Vec<String> = p.gpu_stages().iter().map(|s| s.name.clone()).collect();
        let movable: Vec<usize> = (0..p.items.len())
            .filter(|&i| p.is_gpu_stage(&p.items[i].stage))
            .collect();
        // CPU stages keep their analyzers and concurrency; they set a floor GPU stages need not beat.
        let today = evaluate(p, &p.today());
        let fixed_floor = today
            .stages
            .iter()
            .filter(|s| s.class != StageClass::Gpu)
            .map(|s| s.secs_per_video)
            .fold(0.0, f64::max);
        Searcher {
            p,
            gpu,
            movable,
            fixed_floor,
        }
    }

    /// Turns groups (movable item → group number) into a named assignment: groups sorted by
    /// memory then work get the GPU stage names in order (stage1 = heaviest), concurrencies
    /// from [`allocate`]. None when it cannot fit.
    pub(crate) fn assignment(&self, groups: &[usize]) -> Option<(Assignment, Key)> {
        let k = self.gpu.len();
        let mut work = vec![0.0; k];
        let mut mem = vec![0.0f64; k];
        let mut used = vec![false; k];
        for (pos, &g) in groups.iter().enumerate() {
            let it = &self.p.items[self.movable[pos]];
            work[g] += it.secs;
            mem[g] = mem[g].max(it.gpu_memory_gb);
            used[g] = true;
        }
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&x, &y| {
            used[y]
                .cmp(&used[x])
                .then(mem[y].total_cmp(&mem[x]))
                .then(work[y].total_cmp(&work[x]))
                .then(x.cmp(&y))
        });
        let c = allocate(
            &work,
            &mem,
            &used,
            self.fixed_floor,
            self.p.budget_gb,
            self.p.max_gpu_slots,
        )?;
        let mut a = self.p.today();
        for (rank, &g) in order.iter().enumerate() {
            a.concurrency
                .insert(self.gpu[rank].clone(), if used[g] { c[g] } else { 1 });
        }
        let name_of = |g: usize| {
            self.gpu[order
                .iter()
                .position(|&o| o == g)
                .expect("every group ranked")]
            .clone()
        };
        for (pos, &g) in groups.iter().enumerate() {
            a.stage_of
                .insert(self.p.items[self.movable[pos]].name.clone(), name_of(g));
        }
        let key = self.key(&a);
        Some((a, key))
    }

    fn key(&self, a: &Assignment) -> Key {
        let e = evaluate(self.p, a);
        let moved = self
            .p
            .items
            .iter()
            .filter(|i| a.stage_of[&i.name] != i.stage)
            .count();
        (
            (e.secs_per_video * 1e6).round() as i64,
            (e.gpu_memory_gb * 1e3).round() as i64,
            moved,
            e.gpu_slots,
        )
    }

    /// Contiguous splits of the analyzers sorted by memory, plus today's grouping, each
    /// refined by single moves and pairwise swaps until nothing improves.
    pub(crate) fn heuristic(&self) -> Option<(Assignment, Key)> {
        let n = self.movable.len();
        let k = self.gpu.len();
        let mut by_mem: Vec<usize> = (0..n).collect();
        by_mem.sort_by(|&x, &y| {
            let (a, b) = (
                &self.p.items[self.movable[x]],
                &self.p.items[self.movable[y]],
            );
            b.gpu_memory_gb
                .total_cmp(&a.gpu_memory_gb)
                .then(b.secs.total_cmp(&a.secs))
                .then(a.name.cmp(&b.name))
        });
        let mut starts: Vec<Vec<usize>> = Vec::new();
        let today: Vec<usize> = self
            .movable
            .iter()
            .map(|&i| {
                self.gpu
                    .iter()
                    .position(|g| *g == self.p.items[i].stage)
                    .unwrap_or(0)
            })
            .collect();
        starts.push(today);
        // Cut points c1 < c2 < ... in the sorted order: every composition into <= k parts.
        fn cuts(
            n: usize,
            parts: usize,
            from: usize,
            acc: &mut Vec<usize>,
            out: &mut Vec<Vec<usize>>,
        ) {
            if parts == 1 {
                out.push(acc.clone());
                return;
            }
            for c in from + 1..n {
                acc.push(c);
                cuts(n, parts - 1, c, acc, out);
                acc.pop();
            }
        }
        for parts in 1..=k.min(n.max(1)) {
            let mut all = Vec::new();
            cuts(n, parts, 0, &mut Vec::new(), &mut all);
            for cut in all {
                let mut groups = vec![0usize; n];
                for (rank, &item) in by_mem.iter().enumerate() {
                    groups[item] = cut.iter().filter(|&&c| rank >= c).count();
                }
                starts.push(groups);
            }
        }
        let mut scored: Vec<(Key, Vec<usize>)> = starts
            .into_iter()
            .filter_map(|g| self.assignment(&g).map(|(_, key)| (key, g)))
            .collect();
        scored.sort();
        scored.dedup_by(|a, b| a.1 == b.1);
        let mut best: Option<(Assignment, Key)> = None;
        for (_, start) in scored.into_iter().take(REFINE_STARTS) {
            let refined = self.refine(start);
            if let Some((a, key)) = self.assignment(&refined)
                && best.as_ref().is_none_or(|b| key < b.1)
            {
                best = Some((a, key));
            }
        }
        best
    }

    fn refine(&self, mut groups: Vec<usize>) -> Vec<usize> {
        let k = self.gpu.len();
        let n = groups.len();
        let Some((_, mut best)) = self.assignment(&groups) else {
            return groups;
        };
        loop {
            let mut improved = false;
            for i in 0..n {
                for g in 0..k {
                    if g == groups[i] {
                        continue;
                    }
                    let old = groups[i];
                    groups[i] = g;
                    match self.assignment(&groups) {
                        Some((_, key)) if key < best => {
                            best = key;
                            improved = true;
                        }
                        _ => groups[i] = old,
                    }
                }
            }
            for i in 0..n {
                for j in i + 1..n {
                    if groups[i] == groups[j] {
                        continue;
                    }
                    groups.swap(i, j);
                    match self.assignment(&groups) {
                        Some((_, key)) if key < best => {
                            best = key;
                            improved = true;
                        }
                        _ => groups.swap(i, j),
                    }
                }
            }
            // One for two: the exchange single moves and swaps cannot reach when a heavy
            // analyzer balances against two lighter ones.
            for i in 0..n {
                for j in 0..n {
                    for l in j + 1..n {
                        let (gi, gj) = (groups[i], groups[j]);
                        if gi == gj || groups[l] != gj {
                            continue;
                        }
                        groups[i] = gj;
                        groups[j] = gi;
                        groups[l] = gi;
                        match self.assignment(&groups) {
                            Some((_, key)) if key < best => {
                                best = key;
                                improved = true;
                            }
                            _ => {
                                groups[i] = gi;
                                groups[j] = gj;
                                groups[l] = gj;
                            }
                        }
                    }
                }
            }
            if !improved {
                return groups;
            }
        }
    }
}
