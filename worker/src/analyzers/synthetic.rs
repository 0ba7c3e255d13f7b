//! SYNTHETIC analyzer, for tests and benchmarks only: it holds its slot for the analyzer's
//! expected seconds × a scale factor and returns no real analysis. Every outcome it produces
//! says `"backend": "synthetic"`.
//!
//! Test-only params (`[analyzers.X.params]`), honoured by this backend alone:
//! `synthetic_fail = "transient" | "permanent"` makes every run fail that way;
//! `synthetic_secs` overrides the held time.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use crate::analyzer::{Analyzer, AnalyzerError, Backend, TaskContext};

pub struct Synthetic {
    expected_secs: f64,
    scale: f64,
}

impl Synthetic {
    pub fn new(expected_secs: f64, scale: f64) -> Self {
        Self {
            expected_secs,
            scale,
        }
    }
}

#[async_trait]
impl Analyzer for Synthetic {
    fn backend(&self) -> Backend {
        Backend::Synthetic
    }

    async fn run(&self, ctx: &TaskContext) -> Result<serde_json::Value, AnalyzerError> {
        let secs = ctx
            .params
            .get("synthetic_secs")
            .and_then(|v| v.as_f64())
            .unwrap_or(self.expected_secs * self.scale);
        let hold = Duration::from_secs_f64(secs.max(0.0));
        tokio::select! {
            _ = tokio::time::sleep(hold) => {}
            _ = ctx.cancel.cancelled() => return Err(AnalyzerError::Transient("cancelled".into())),
        }
        match ctx.params.get("synthetic_fail").and_then(|v| v.as_str()) {
            Some("transient") => Err(AnalyzerError::Transient(format!(
                "synthetic transient failure (attempt {})",
                ctx.attempt
            ))),
            Some("permanent") => Err(AnalyzerError::Permanent(
                "synthetic permanent failure".into(),
            )),
            _ => Ok(json!({
                "synthetic": true,
                "note": "synthetic backend: held the slot, analyzed nothing",
                "held_ms": hold.as_millis() as u64,
                "inputs": ctx.deps.keys().collect::<Vec<_>>(),
            })),
        }
    }
}
