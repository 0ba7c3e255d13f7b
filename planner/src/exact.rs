//! The exact side of the search: exhaustive enumeration for small problems, and a branch
//! and bound that improves the heuristic's incumbent or proves it optimal.

use crate::search::{Assignment, Key, PlanError, Problem, Searcher, allocate, evaluate};

/// Set partitions at most this many are searched exhaustively.
pub const EXHAUSTIVE_LIMIT: u64 = 50_000;

impl Searcher<'_> {
    /// Every set partition of the movable analyzers into at most k groups.
    pub(crate) fn exhaustive(&self) -> Option<(Assignment, Key)> {
        let n = self.movable.len();
        let k = self.gpu.len();
        let mut groups = vec![0usize; n];
        let mut best: Option<(Assignment, Key)> = None;
        fn go(
            s: &Searcher,
            i: usize,
            used: usize,
            k: usize,
            groups: &mut Vec<usize>,
            best: &mut Option<(Assignment, Key)>,
        ) {
            if i == groups.len() {
                if let Some((a, key)) = s.assignment(groups)
                    && best.as_ref().is_none_or(|b| key < b.1)
                {
                    *best = Some((a, key));
                }
                return;
            }
            for g in 0..(used + 1).min(k) {
                groups[i] = g;
                go(s, i + 1, used.max(g + 1), k, groups, best);
            }
        }
        if n == 0 {
            return self.assignment(&[]);
        }
        go(self, 0, 0, k, &mut groups, &mut best);
        best
    }
}

/// Number of set partitions of n items into at most k blocks (saturating).
pub fn partitions(n: usize, k: usize) -> u64 {
    // Stirling numbers of the second kind, summed over 1..=k.
    let mut s = vec![vec![0u64; k + 1]; n + 1];
    s[0][0] = 1;
    for i in 1..=n {
        for j in 1..=k.min(i) {
            s[i][j] = (j as u64)
                .saturating_mul(s[i - 1][j])
                .saturating_add(s[i - 1][j - 1]);
        }
    }
    (1..=k).map(|j| s[n][j]).fold(0u64, u64::saturating_add)
}

/// Nodes the branch and bound may visit before it settles for the best found so far.
pub const NODE_LIMIT: u64 = 3_000_000;

/// The proposal, and whether it is proven optimal (in the model): the heuristic's best,
/// improved by a branch and bound that proves or finds the optimum within [`NODE_LIMIT`].
pub fn propose_proven(p: &Problem) -> Result<(Assignment, bool), PlanError> {
    let s = Searcher::new(p);
    if s.gpu.is_empty() {
        return Err(PlanError::NoGpuStage);
    }
    let infeasible = || PlanError::Infeasible {
        budget_gb: p.budget_gb,
        max_slots: p.max_gpu_slots,
    };
    if partitions(s.movable.len(), s.gpu.len()) <= EXHAUSTIVE_LIMIT {
        return s
            .exhaustive()
            .map(|(a, _)| (a, true))
            .ok_or_else(infeasible);
    }
    let start = s.heuristic().ok_or_else(infeasible)?;
    let incumbent = evaluate(p, &start.0).secs_per_video;
    let (better, complete) = s.branch_and_bound(incumbent);
    match better.and_then(|g| s.assignment(&g)) {
        Some((a, key)) if key < start.1 => Ok((a, complete)),
        _ => Ok((start.0, complete)),
    }
}

/// The proposal (see [`propose_proven`]).
pub fn propose(p: &Problem) -> Result<Assignment, PlanError> {
    propose_proven(p).map(|(a, _)| a)
}

/// The heuristic alone (tests compare it with the exhaustive search).
pub fn propose_heuristic(p: &Problem) -> Option<Assignment> {
    Searcher::new(p).heuristic().map(|(a, _)| a)
}

/// The exhaustive search alone.
pub fn propose_exhaustive(p: &Problem) -> Option<Assignment> {
    Searcher::new(p).exhaustive().map(|(a, _)| a)
}

/// The bottleneck level [`allocate`] reaches for these groups, or None if they cannot fit.
fn best_level(
    work: &[f64],
    mem: &[f64],
    used: &[bool],
    floor: f64,
    budget: f64,
    max_slots: u32,
) -> Option<f64> {
    let c = allocate(work, mem, used, floor, budget, max_slots)?;
    Some(
        (0..work.len())
            .filter(|&i| used[i])
            .map(|i| work[i] / f64::from(c[i]))
            .fold(floor, f64::max),
    )
}

impl Searcher<'_> {
    /// Depth-first over set partitions of the analyzers taken in memory order (so a group's
    /// memory is its first member's). Adding an analyzer never lowers the best level its
    /// partial grouping can reach, so that level bounds every completion: a branch that
    /// cannot beat the incumbent is cut. Returns a strictly better grouping if one exists
    /// (as movable item -> group) and whether the search finished within the node limit.
    pub(crate) fn branch_and_bound(&self, incumbent: f64) -> (Option<Vec<usize>>, bool) {
        struct State<'s> {
            w: Vec<f64>,
            m: Vec<f64>,
            k: usize,
            s: &'s Searcher<'s>,
            gw: Vec<f64>,
            gm: Vec<f64>,
            gused: Vec<bool>,
            groups: Vec<usize>,
            best_t: f64,
            best: Option<Vec<usize>>,
            nodes: u64,
            complete: bool,
        }
        fn dfs(st: &mut State, i: usize, used: usize) {
            st.nodes += 1;
            if st.nodes > NODE_LIMIT {
                st.complete = false;
                return;
            }
            let p = st.s.p;
            let Some(lb) = best_level(
                &st.gw,
                &st.gm,
                &st.gused,
                st.s.fixed_floor,
                p.budget_gb,
                p.max_gpu_slots,
            ) else {
                return;
            };
            if lb >= st.best_t - 1e-9 {
                return;
            }
            if i == st.w.len() {
                st.best_t = lb;
                st.best = Some(st.groups.clone());
                return;
            }
            for g in 0..(used + 1).min(st.k) {
                st.gw[g] += st.w[i];
                let new = g == used;
                if new {
                    st.gm[g] = st.m[i];
                    st.gused[g] = true;
                }
                st.groups[i] = g;
                dfs(st, i + 1, used.max(g + 1));
                st.gw[g] -= st.w[i];
                if new {
                    st.gm[g] = 0.0;
                    st.gused[g] = false;
                }
                if !st.complete {
                    return;
                }
            }
        }
        let n = self.movable.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&x, &y| {
            let (a, b) = (
                &self.p.items[self.movable[x]],
                &self.p.items[self.movable[y]],
            );
            b.gpu_memory_gb
                .total_cmp(&a.gpu_memory_gb)
                .then(b.secs.total_cmp(&a.secs))
        });
        let k = self.gpu.len();
        let mut st = State {
            w: order
                .iter()
                .map(|&x| self.p.items[self.movable[x]].secs)
                .collect(),
            m: order
                .iter()
                .map(|&x| self.p.items[self.movable[x]].gpu_memory_gb)
                .collect(),
            k,
            s: self,
            gw: vec![0.0; k],
            gm: vec![0.0; k],
            gused: vec![false; k],
            groups: vec![0; n],
            best_t: incumbent,
            best: None,
            nodes: 0,
            complete: true,
        };
        dfs(&mut st, 0, 0);
        let best = st.best.map(|by_pos| {
            let mut g = vec![0; n];
            for (pos, &item) in order.iter().enumerate() {
                g[item] = by_pos[pos];
            }
            g
        });
        (best, st.complete)
    }
}
