//! Model residency on a GPU worker (the seed's "cleanup after stage"): models stay loaded
//! while there is room; when the memory guard warns, the least recently used models idle for
//! [`Residency::idle_under_pressure`] are unloaded until their measured sizes cover the
//! excess over the warning level; above critical every model goes (runs in flight keep
//! theirs) and no new task is taken until memory is below warning again.
//!
//! Invariant: the guard's state alone gates new work; the policy acts once per state change,
//! never per reading, so a model is not unloaded and reloaded while memory sits in a band.

use std::sync::Arc;
use std::time::Duration;

use common::metrics::{GpuLabels, Metrics, ModelLabels};
use gpu::{DeviceInfo, GuardState, MemoryGuard, ResolvedThresholds};
use models::ModelRegistry;
use tokio::sync::watch;

/// Above the warning level, only models unused this long are unloaded.
pub const IDLE_UNDER_PRESSURE: Duration = Duration::from_secs(30);

/// The residency policy's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Residency {
    /// Above the warning level, only models unused this long are unloaded.
    pub idle_under_pressure: Duration,
}

impl Default for Residency {
    fn default() -> Self {
        Self {
            idle_under_pressure: IDLE_UNDER_PRESSURE,
        }
    }
}

impl Residency {
    /// What the policy does when the guard enters `state` with `used` bytes in use: returns
    /// how many models it unloaded.
    pub fn on_state(
        &self,
        registry: &ModelRegistry,
        state: GuardState,
        used: u64,
        thresholds: ResolvedThresholds,
    ) -> usize {
        match state {
            GuardState::Warning => {
                let excess = used.saturating_sub(thresholds.warning_bytes);
                registry.unload_lru(excess.max(1), self.idle_under_pressure)
            }
            GuardState::Paused => registry.unload_all(),
            GuardState::Normal => 0,
        }
    }

    /// Follows `guard` until it is dropped: applies the policy to `registry` on every state
    /// change and mirrors the readings and the resident models into `metrics`. Returns the
    /// gate for new work (the worker's `accepting`), open while the guard accepts work.
    pub fn follow(
        self,
        guard: &MemoryGuard,
        registry: Arc<ModelRegistry>,
        metrics: Arc<Metrics>,
    ) -> watch::Receiver<bool> {
        let thresholds = guard.thresholds();
        let (tx, rx) = watch::channel(guard.state().accepts_work());
        let mut states = guard.subscribe();
        let mut readings = guard.readings();
        tokio::spawn(async move {
            let mut last_state = GuardState::Normal;
            loop {
                let r = readings.borrow_and_update().clone();
                let s = *states.borrow_and_update();
                if s != last_state {
                    let unloaded = self.on_state(&registry, s, r.memory_used_bytes, thresholds);
                    tracing::info!(
                        state = s.as_str(),
                        models_unloaded = unloaded,
                        "GPU memory guard"
                    );
                    last_state = s;
                }
                mirror(&metrics, &r, s, &registry);
                let _ = tx.send(s.accepts_work());
                tokio::select! {
                    r = states.changed() => if r.is_err() { break },
                    r = readings.changed() => if r.is_err() { break },
                }
            }
        });
        rx
    }
}

/// The guard's reading and the resident models as metrics.
fn mirror(m: &Metrics, r: &DeviceInfo, s: GuardState, registry: &ModelRegistry) {
    let label = GpuLabels {
        gpu: r.uuid.clone(),
    };
    m.gpu_memory_used_bytes
        .get_or_create(&label)
        .set(r.memory_used_bytes as i64);
    m.gpu_memory_total_bytes
        .get_or_create(&label)
        .set(r.memory_total_bytes as i64);
    m.gpu_utilization_percent
        .get_or_create(&label)
        .set(r.utilization_percent.unwrap_or(0) as i64);
    m.gpu_temperature_celsius
        .get_or_create(&label)
        .set(r.temperature_celsius.unwrap_or(0) as i64);
    m.gpu_paused
        .get_or_create(&label)
        .set(i64::from(!s.accepts_work()));
    m.model_device_bytes.clear();
    for model in registry.loaded() {
        let labels = ModelLabels {
            model: model
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            provider: model.provider.to_string(),
            precision: model.precision.to_string(),
        };
        m.model_device_bytes
            .get_or_create(&labels)
            .set(model.device_bytes.unwrap_or(0) as i64);
    }
}
