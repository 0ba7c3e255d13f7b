//! Job plans held in memory: a job's plan, video and trace never change after intake, so the
//! dispatcher parses them once per job, not once per outcome notice.
//!
//! Invariant: the cache only saves reads; every decision still comes from Redis. An entry is
//! checked against the job's `created_at_ms` on every read (a job that expired and was
//! submitted again under its id is a new job), and `done` is set only after this process saw
//! the job final in Redis.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::message::PlannedTask;
use common::store::JobMeta;
use common::telemetry::TraceContext;

/// Planned tasks the cache holds across all its jobs (a few hundred bytes each).
pub const CACHE_TASKS: u64 = 100_000;

/// A job's immutable part, with its dependency graph indexed both ways.
#[derive(Debug)]
pub struct JobPlan {
    pub id: String,
    pub video: String,
    pub created_at_ms: u64,
    pub traceparent: Option<String>,
    pub tasks: Vec<PlannedTask>,
    index: HashMap<String, usize>,
    /// Per task: the tasks that need or use it.
    dependents: Vec<Vec<usize>>,
    /// Per task: what it needs and uses, as indices (names outside the plan left out).
    deps: Vec<Vec<usize>>,
    done: AtomicBool,
}

impl JobPlan {
    pub fn of(meta: &JobMeta) -> Self {
        let tasks = meta.plan.clone();
        let index: HashMap<String, usize> = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.analyzer.clone(), i))
            .collect();
        let deps: Vec<Vec<usize>> = tasks
            .iter()
            .map(|t| {
                let mut d: Vec<usize> = t
                    .needs
                    .iter()
                    .chain(&t.uses)
                    .filter_map(|n| index.get(n).copied())
                    .collect();
                d.sort_unstable();
                d.dedup();
                d
            })
            .collect();
        let mut dependents = vec![Vec::new(); tasks.len()];
        for (i, d) in deps.iter().enumerate() {
            for &j in d {
                dependents[j].push(i);
            }
        }
        JobPlan {
            id: meta.id.clone(),
            video: meta.video.clone(),
            created_at_ms: meta.created_at_ms,
            traceparent: meta.traceparent.clone(),
            tasks,
            index,
            dependents,
            deps,
            done: AtomicBool::new(meta.status.is_final()),
        }
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    pub fn index_of(&self, analyzer: &str) -> Option<usize> {
        self.index.get(analyzer).copied()
    }

    /// The tasks waiting for task `i` (hard or soft).
    pub fn dependents(&self, i: usize) -> &[usize] {
        &self.dependents[i]
    }

    /// What task `i` waits for (hard and soft).
    pub fn deps(&self, i: usize) -> &[usize] {
        &self.deps[i]
    }

    /// Task `i`'s hard dependencies.
    pub fn needs(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.tasks[i].needs.iter().filter_map(|n| self.index_of(n))
    }

    /// Whether this process saw the job completed or cancelled.
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    pub fn mark_done(&self) {
        self.done.store(true, Ordering::Release);
    }

    pub fn trace(&self) -> TraceContext {
        TraceContext {
            traceparent: self.traceparent.clone(),
            tracestate: None,
        }
    }
}

/// Job id → plan, least recently used out first, bounded by [`CACHE_TASKS`] planned tasks.
#[derive(Clone)]
pub struct PlanCache {
    cache: moka::sync::Cache<String, Arc<JobPlan>>,
}

impl Default for PlanCache {
    fn default() -> Self {
        Self::with_capacity(CACHE_TASKS)
    }
}

impl PlanCache {
    pub fn with_capacity(tasks: u64) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(tasks)
            .weigher(|_: &String, p: &Arc<JobPlan>| p.len().max(1) as u32)
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .build();
        PlanCache { cache }
    }

    pub fn get(&self, id: &str) -> Option<Arc<JobPlan>> {
        self.cache.get(id)
    }

    pub fn insert(&self, plan: Arc<JobPlan>) {
        self.cache.insert(plan.id.clone(), plan);
    }

    pub fn remove(&self, id: &str) {
        self.cache.invalidate(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::message::JobStatus;

    fn task(name: &str, needs: &[&str], uses: &[&str]) -> PlannedTask {
        PlannedTask {
            analyzer: name.into(),
            stage: "cpu".into(),
            needs: needs.iter().map(|s| s.to_string()).collect(),
            uses: uses.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn meta(plan: Vec<PlannedTask>) -> JobMeta {
        JobMeta {
            id: "j".into(),
            status: JobStatus::Queued,
            video: "/v.mp4".into(),
            total: plan.len(),
            created_at_ms: 1,
            updated_at_ms: 1,
            completed_at_ms: None,
            request: serde_json::Value::Null,
            plan,
            metadata: serde_json::Value::Null,
            traceparent: None,
            owner: None,
        }
    }

    #[test]
    fn dependents_index_both_kinds() {
        let p = JobPlan::of(&meta(vec![
            task("cut", &[], &[]),
            task("speech", &[], &[]),
            task("flow", &["cut"], &["speech"]),
            task("cta", &[], &["speech", "ghost"]),
        ]));
        let name = |i: &usize| p.tasks[*i].analyzer.as_str();
        let of = |a: &str| -> Vec<&str> {
            p.dependents(p.index_of(a).unwrap())
                .iter()
                .map(name)
                .collect()
        };
        assert_eq!(of("cut"), ["flow"]);
        assert_eq!(of("speech"), ["flow", "cta"]);
        assert!(of("flow").is_empty());
        let cta = p.index_of("cta").unwrap();
        assert_eq!(p.deps(cta).iter().map(name).collect::<Vec<_>>(), ["speech"]);
        let flow = p.index_of("flow").unwrap();
        assert_eq!(p.needs(flow).collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn the_cache_is_bounded_by_tasks() {
        let cache = PlanCache::with_capacity(10);
        for i in 0..20 {
            let mut m = meta(vec![task("a", &[], &[]), task("b", &[], &[])]);
            m.id = format!("j{i}");
            cache.insert(Arc::new(JobPlan::of(&m)));
        }
        cache.cache.run_pending_tasks();
        assert!(cache.cache.weighted_size() <= 10);
        assert!(cache.get("j19").is_some());
    }
}
