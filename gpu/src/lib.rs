//! Pin a worker to one NVIDIA GPU and guard its memory through NVML.
//!
//! Layout:
//! - `device`: `list_devices`, `select` (by NVML index or UUID) → `PinnedGpu` with the CUDA
//!   device id for ONNX Runtime and the `CUDA_VISIBLE_DEVICES` value for child processes.
//! - `threshold`: "40GB" / "37.5 GiB" / "90%" thresholds and `next_state`, the guard's pure
//!   hysteresis rule (pause above critical, resume only below warning).
//! - `guard`: `MemoryGuard`, which polls NVML and publishes a `watch` of `GuardState`.
//! - `oom`: `is_out_of_memory`, so a task that hit CUDA OOM is requeued, not failed.
//! - `error`: `GpuError`; no driver is `GpuError::NoDriver`, which names `--allow-cpu-fallback`.
//!
//! NVML is loaded at run time, so everything builds and the pure parts test without a GPU;
//! the GPU-only checks are `#[ignore]`d tests and the `gpu-check` example.
#![forbid(unsafe_code)]

mod device;
mod error;
mod guard;
mod oom;
mod threshold;

pub use device::{DeviceInfo, PinnedGpu, Selector, cuda_ordinal, list_devices, select};
pub use error::GpuError;
pub use guard::{MemoryGuard, MemorySource};
pub use oom::is_out_of_memory;
pub use threshold::{
    DEFAULT_CRITICAL_PERCENT, DEFAULT_WARNING_PERCENT, GuardState, GuardThresholds,
    MemoryThreshold, ResolvedThresholds, next_state,
};
