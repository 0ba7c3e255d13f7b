//! The one workload model of a fleet config: its stages (slots per stage) and its enabled
//! analyzers (seconds a run holds a slot, GPU memory, dependencies). The planner searches
//! over it; the benchmarks' simulation (`bench::model`) runs it. Pure data, no I/O.

use std::collections::BTreeMap;

use common::config::{FleetConfig, STAGES, StageClass, needs_closure};

/// Tolerance for comparing times (seconds).
const EPS: f64 = 1e-9;

#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: String,
    pub class: StageClass,
    pub concurrency: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Analyzer {
    pub name: String,
    /// The stage it is on.
    pub stage: String,
    /// Seconds one run holds its slot.
    pub secs: f64,
    pub gpu_memory_gb: f64,
    pub needs: Vec<String>,
    pub uses: Vec<String>,
}

/// The enabled analyzers of a config and its stages, in the seed's stage order.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub stages: Vec<Stage>,
    /// Sorted by name: the dispatcher's plan order.
    pub analyzers: Vec<Analyzer>,
}

impl Workload {
    pub fn from_config(config: &FleetConfig) -> Self {
        let stages = STAGES
            .iter()
            .filter_map(|s| config.stage(s))
            .map(|s| Stage {
                name: s.name.clone(),
                class: s.class,
                concurrency: u32::from(s.concurrency),
            })
            .collect();
        let analyzers = config
            .enabled_analyzers()
            .map(|a| Analyzer {
                name: a.name.clone(),
                stage: a.stage.clone(),
                secs: a.expected_secs,
                gpu_memory_gb: a.gpu_memory_gb,
                needs: a.needs.clone(),
                uses: a.uses.clone(),
            })
            .collect();
        Workload { stages, analyzers }
    }

    /// Every analyzer's time multiplied by `k` (the synthetic scale).
    pub fn scaled(&self, k: f64) -> Self {
        let mut w = self.clone();
        for a in &mut w.analyzers {
            a.secs *= k;
        }
        w
    }

    /// The analyzers' seconds replaced by measured ones where `secs` has them.
    pub fn measured(mut self, secs: &BTreeMap<String, f64>) -> Self {
        for a in &mut self.analyzers {
            if let Some(s) = secs.get(&a.name) {
                a.secs = *s;
            }
        }
        self
    }

    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }

    pub fn analyzer(&self, name: &str) -> Option<&Analyzer> {
        self.analyzers.iter().find(|a| a.name == name)
    }

    /// Seconds of analyzer work one video puts on each stage (stages in order).
    pub fn stage_work(&self) -> Vec<(String, f64)> {
        self.stages
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    self.analyzers
                        .iter()
                        .filter(|a| a.stage == s.name)
                        .map(|a| a.secs)
                        .sum(),
                )
            })
            .collect()
    }

    /// Seconds per video each stage needs when videos stream through: work ÷ concurrency.
    pub fn stage_secs_per_video(&self) -> Vec<(String, f64)> {
        self.stage_work()
            .into_iter()
            .map(|(s, w)| {
                let c = self.stage(&s).map_or(1, |s| s.concurrency.max(1));
                (s, w / f64::from(c))
            })
            .collect()
    }

    /// The pipelined throughput bound: the slowest stage's seconds per video, and that stage.
    pub fn bottleneck(&self) -> (String, f64) {
        self.stage_secs_per_video()
            .into_iter()
            .fold((String::new(), 0.0), |best, (s, t)| {
                if t > best.1 + EPS { (s, t) } else { best }
            })
    }

    /// The analyzers a job runs when `requested` is asked for: plus their hard needs,
    /// transitively, sorted (the dispatcher's closure, [`needs_closure`]).
    pub fn resolve(&self, requested: &[String]) -> Vec<String> {
        needs_closure(requested, |n| self.analyzer(n).map(|a| a.needs.as_slice()))
    }
}
