//! The stage names and worker classes: a leaf, so that `config` (which validates stages) and
//! `topology` (which names their queues) both depend on it instead of on each other.

use std::fmt;

use serde::Deserialize;

/// The stages a task can be queued on; their order is the seed's order.
pub const STAGES: [&str; 5] = ["stage1", "stage2", "stage3", "stage4", "cpu"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageClass {
    Gpu,
    Cpu,
}

impl fmt::Display for StageClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StageClass::Gpu => "gpu",
            StageClass::Cpu => "cpu",
        })
    }
}
