//! The analyzer registry: one table from analyzer name to implementation.
//!
//! Families register themselves here (`signal`, `models`); `synthetic` fills in where no real
//! implementation exists, or everywhere when a synthetic scale is asked for (tests, benchmarks).

use std::collections::BTreeMap;
use std::sync::Arc;

use common::config::FleetConfig;

use crate::analyzer::Analyzer;

pub mod models;
pub mod signal;
pub mod synthetic;

/// Name → implementation, built once per worker process.
#[derive(Default, Clone)]
pub struct Registry {
    map: BTreeMap<String, Arc<dyn Analyzer>>,
}

/// Which implementations a worker uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backends {
    /// Real implementations where they exist, synthetic (at this scale) elsewhere.
    Real { fallback_scale: f64 },
    /// Every analyzer synthetic, holding its slot for expected seconds × scale.
    Synthetic { scale: f64 },
}

impl Registry {
    pub fn insert(&mut self, name: &str, analyzer: Arc<dyn Analyzer>) {
        self.map.insert(name.to_string(), analyzer);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Analyzer>> {
        self.map.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// What the job's media decodes in its one pass on this worker: the frame specs of
    /// `analyzers` (with their config params), given the probe.
    pub fn frame_planner<'a>(
        &self,
        config: &FleetConfig,
        analyzers: impl IntoIterator<Item = &'a str>,
    ) -> media::FramePlanner {
        let picked: Vec<(Arc<dyn Analyzer>, serde_json::Value)> = analyzers
            .into_iter()
            .filter_map(|name| {
                let params = config.analyzers.get(name)?.params.clone();
                Some((self.get(name)?.clone(), params))
            })
            .collect();
        Arc::new(move |probe| {
            picked
                .iter()
                .filter_map(|(a, params)| a.frame_spec(params, probe))
                .collect()
        })
    }

    /// The registry for `config` (every analyzer of the config gets an entry).
    pub fn build(config: &FleetConfig, backends: Backends) -> Self {
        let mut reg = Registry::default();
        let scale = match backends {
            Backends::Real { fallback_scale } => {
                register_real(&mut reg, config);
                fallback_scale
            }
            Backends::Synthetic { scale } => scale,
        };
        for a in config.analyzers.values() {
            if !reg.map.contains_key(&a.name) {
                reg.insert(
                    &a.name,
                    Arc::new(synthetic::Synthetic::new(a.expected_secs, scale)),
                );
            }
        }
        reg
    }
}

impl Registry {
    /// Preloads ([`Analyzer::preload`]) every enabled analyzer of `stages`, one after the
    /// other; returns each one's outcome and time.
    pub fn preload(
        &self,
        config: &FleetConfig,
        stages: &[String],
    ) -> Vec<(String, Result<bool, String>, std::time::Duration)> {
        config
            .enabled_analyzers()
            .filter(|a| stages.contains(&a.stage))
            .filter_map(|a| {
                let imp = self.get(&a.name)?;
                let started = std::time::Instant::now();
                let r = imp.preload(&a.name, &a.params);
                Some((a.name.clone(), r, started.elapsed()))
            })
            .collect()
    }
}

/// What stops a worker with real analyzers from starting: every enabled analyzer of the config
/// must have an implementation of that name (a misspelt name would otherwise run as a
/// synthetic slot-holder in production), and every implementation must accept its `params`.
/// All problems at once, one line each.
pub fn config_problems(config: &FleetConfig) -> Vec<String> {
    let mut reg = Registry::default();
    register_real(&mut reg, config);
    let mut problems = Vec::new();
    for a in config.enabled_analyzers() {
        match reg.get(&a.name) {
            None => problems.push(format!(
                "analyzers.{}: no analyzer of that name in this worker (known: {});                  misspelt, or run with --synthetic-scale for a synthetic fleet",
                a.name,
                reg.names().collect::<Vec<_>>().join(", ")
            )),
            Some(imp) => {
                if let Err(e) = imp.check_params(&a.params) {
                    problems.push(format!("analyzers.{}.params: {e}", a.name));
                }
            }
        }
    }
    problems
}

fn register_real(reg: &mut Registry, config: &FleetConfig) {
    signal::register(reg);
    models::register(reg, config);
}
