//! `MemoryGuard`: polls a GPU's memory and publishes whether the worker may take new tasks.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::threshold::next_state;
use crate::{DeviceInfo, GpuError, GuardState, GuardThresholds, PinnedGpu, ResolvedThresholds};

/// Where the guard reads memory from: NVML for a [`PinnedGpu`], a script in tests.
pub trait MemorySource: Send + 'static {
    /// One reading. May block briefly (an NVML ioctl); the guard calls it off the async threads.
    fn sample(&mut self) -> Result<DeviceInfo, GpuError>;
}

impl MemorySource for PinnedGpu {
    fn sample(&mut self) -> Result<DeviceInfo, GpuError> {
        PinnedGpu::sample(self)
    }
}

/// Watches one GPU's memory every `interval` and publishes a [`GuardState`].
///
/// A worker checks `state().accepts_work()` (or awaits
/// `subscribe().wait_for(|s| s.accepts_work())`) before taking a task. Polling stops when
/// the guard is dropped; receivers then keep the last value.
#[derive(Debug)]
pub struct MemoryGuard {
    state: watch::Receiver<GuardState>,
    readings: watch::Receiver<DeviceInfo>,
    thresholds: ResolvedThresholds,
    task: tokio::task::AbortHandle,
}

impl MemoryGuard {
    /// Starts guarding a pinned GPU. Must be called inside a Tokio runtime.
    pub fn start(
        gpu: &PinnedGpu,
        thresholds: &GuardThresholds,
        interval: Duration,
    ) -> Result<MemoryGuard, GpuError> {
        Self::with_source(gpu.clone(), thresholds, interval)
    }

    /// Starts guarding any memory source; the first reading is taken now, so a worker that
    /// starts on an already full GPU starts paused, and a device NVML cannot read fails here.
    pub fn with_source<S: MemorySource>(
        mut source: S,
        thresholds: &GuardThresholds,
        interval: Duration,
    ) -> Result<MemoryGuard, GpuError> {
        let first = source.sample()?;
        let resolved = thresholds.resolve(first.memory_total_bytes)?;
        let initial = next_state(GuardState::Normal, first.memory_used_bytes, resolved);
        tracing::info!(
            gpu = %first.uuid,
            used_bytes = first.memory_used_bytes,
            total_bytes = first.memory_total_bytes,
            warning_bytes = resolved.warning_bytes,
            critical_bytes = resolved.critical_bytes,
            state = %initial,
            "GPU memory guard started"
        );
        let (state_tx, state) = watch::channel(initial);
        let (readings_tx, readings) = watch::channel(first);
        let task = tokio::spawn(poll(source, resolved, interval, state_tx, readings_tx));
        Ok(MemoryGuard {
            state,
            readings,
            thresholds: resolved,
            task: task.abort_handle(),
        })
    }

    /// The current state.
    pub fn state(&self) -> GuardState {
        *self.state.borrow()
    }

    /// A receiver that sees every state change.
    pub fn subscribe(&self) -> watch::Receiver<GuardState> {
        self.state.clone()
    }

    /// The latest successful reading (for the worker's NVML metrics).
    pub fn readings(&self) -> watch::Receiver<DeviceInfo> {
        self.readings.clone()
    }

    pub fn thresholds(&self) -> ResolvedThresholds {
        self.thresholds
    }
}

impl Drop for MemoryGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn poll<S: MemorySource>(
    mut source: S,
    thresholds: ResolvedThresholds,
    interval: Duration,
    state_tx: watch::Sender<GuardState>,
    readings_tx: watch::Sender<DeviceInfo>,
) {
    let mut ticker = tokio::time::interval(interval);
    // After a slow read, wait a full interval rather than firing a burst of catch-up reads.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate; `with_source` already read once
    let mut failing = false;
    loop {
        ticker.tick().await;
        let Ok((back, result)) = tokio::task::spawn_blocking(move || {
            let result = source.sample();
            (source, result)
        })
        .await
        else {
            return; // the runtime is shutting down
        };
        source = back;
        let prev = *state_tx.borrow();
        let next = match result {
            Ok(info) => {
                if failing {
                    tracing::info!(gpu = %info.uuid, "GPU memory readable again");
                    failing = false;
                }
                let next = next_state(prev, info.memory_used_bytes, thresholds);
                if next != prev {
                    log_transition(prev, next, &info, thresholds);
                }
                readings_tx.send_replace(info);
                next
            }
            Err(error) => {
                // Fail closed: without a reading, taking work could push the card into OOM.
                if !failing {
                    tracing::warn!(%error, "cannot read GPU memory; pausing until a reading succeeds");
                    failing = true;
                }
                GuardState::Paused
            }
        };
        if next != prev {
            state_tx.send_replace(next);
        }
    }
}

fn log_transition(prev: GuardState, next: GuardState, info: &DeviceInfo, t: ResolvedThresholds) {
    let (used, warning, critical) = (info.memory_used_bytes, t.warning_bytes, t.critical_bytes);
    match next {
        GuardState::Paused => tracing::warn!(
            gpu = %info.uuid, %prev, %next, used, critical,
            "GPU memory above critical: taking no new tasks until it falls below warning"
        ),
        _ => {
            tracing::info!(gpu = %info.uuid, %prev, %next, used, warning, critical, "GPU memory guard state changed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GuardState::*;
    use std::collections::VecDeque;

    const GB: u64 = 1_000_000_000;

    /// Replays used-memory readings in GB (None = a failed read); repeats the last one.
    struct Script(VecDeque<Option<u64>>, Option<u64>);

    impl MemorySource for Script {
        fn sample(&mut self) -> Result<DeviceInfo, GpuError> {
            if let Some(next) = self.0.pop_front() {
                self.1 = next;
            }
            let used = self.1.ok_or_else(|| {
                GpuError::nvml("memory_info", nvml_wrapper::error::NvmlError::GpuLost)
            })?;
            Ok(DeviceInfo {
                index: 0,
                uuid: "GPU-test".into(),
                name: "scripted".into(),
                memory_used_bytes: used * GB,
                memory_total_bytes: 48 * GB,
                utilization_percent: None,
                temperature_celsius: None,
            })
        }
    }

    fn thresholds() -> GuardThresholds {
        GuardThresholds {
            warning: "35GB".parse().unwrap(),
            critical: "40GB".parse().unwrap(),
        }
    }

    fn script(readings: &[Option<u64>]) -> Script {
        Script(readings.iter().copied().collect(), None)
    }

    async fn transitions(guard: &MemoryGuard, n: usize) -> Vec<GuardState> {
        let mut rx = guard.subscribe();
        let mut seen = Vec::new();
        while seen.len() < n {
            rx.changed().await.expect("guard stopped");
            seen.push(*rx.borrow_and_update());
        }
        seen
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_above_critical_and_resumes_below_warning() {
        let readings = [10, 36, 41, 38, 36, 20].map(Some);
        let guard =
            MemoryGuard::with_source(script(&readings), &thresholds(), Duration::from_secs(1))
                .unwrap();
        assert_eq!(guard.state(), Normal);
        // 38 and 36 GB sit in the band after a pause: no change until 20 GB.
        assert_eq!(transitions(&guard, 3).await, [Warning, Paused, Normal]);
        assert_eq!(guard.readings().borrow().memory_used_bytes, 20 * GB);
    }

    #[tokio::test(start_paused = true)]
    async fn starts_paused_on_a_full_gpu() {
        let guard = MemoryGuard::with_source(
            script(&[Some(45), Some(30)]),
            &thresholds(),
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(guard.state(), Paused);
        assert_eq!(transitions(&guard, 1).await, [Normal]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreadable_gpu_pauses_until_it_reads_again() {
        let guard = MemoryGuard::with_source(
            script(&[Some(5), None, None, Some(5)]),
            &thresholds(),
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(transitions(&guard, 2).await, [Paused, Normal]);
    }

    #[tokio::test]
    async fn bad_thresholds_fail_at_start() {
        let t = GuardThresholds {
            warning: "40GB".parse().unwrap(),
            critical: "35GB".parse().unwrap(),
        };
        let err =
            MemoryGuard::with_source(script(&[Some(1)]), &t, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, GpuError::InvalidThresholds(_)), "{err}");
    }
}
