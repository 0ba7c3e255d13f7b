//! `GpuError`: everything that can go wrong finding, pinning or watching a GPU.

use nvml_wrapper::error::NvmlError;

/// Errors from NVML and from the guard's configuration; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// libnvidia-ml could not be loaded or the kernel driver is not running.
    #[error(
        "no NVIDIA driver (libnvidia-ml.so) found: run with --allow-cpu-fallback to use the CPU execution provider"
    )]
    NoDriver {
        #[source]
        source: NvmlError,
    },

    /// The `--gpu` value is neither a number nor a `GPU-…` UUID.
    #[error(
        "`{0}` is not a GPU index or UUID: pass an index (0, 1, …) or a UUID (GPU-…) as listed by `fleet gpus`"
    )]
    InvalidSelector(String),

    /// NVML knows no device with that index or UUID.
    #[error("no GPU matches `{selector}`; this machine has: {available}")]
    NotFound { selector: String, available: String },

    /// `CUDA_VISIBLE_DEVICES` hides the pinned GPU from CUDA, so ONNX Runtime could not use it.
    #[error(
        "GPU {uuid} (NVML index {index}) is not in CUDA_VISIBLE_DEVICES=`{visible}`: add it there or unset the variable"
    )]
    NotVisible {
        index: u32,
        uuid: String,
        visible: String,
    },

    /// A memory threshold string such as "40GB" or "90%" did not parse.
    #[error("memory threshold `{input}`: {reason} (write e.g. \"40GB\", \"37.5 GiB\" or \"90%\")")]
    InvalidThreshold { input: String, reason: String },

    /// Thresholds that parse but cannot work on this device.
    #[error("GPU memory thresholds: {0}")]
    InvalidThresholds(String),

    /// Any other NVML failure, with the call that failed.
    #[error("NVML {call} failed")]
    Nvml {
        call: &'static str,
        #[source]
        source: NvmlError,
    },
}

impl GpuError {
    /// Maps an NVML error, turning "there is no driver here" into [`GpuError::NoDriver`].
    pub(crate) fn nvml(call: &'static str, source: NvmlError) -> Self {
        match source {
            NvmlError::LibloadingError(_)
            | NvmlError::DriverNotLoaded
            | NvmlError::LibraryNotFound => GpuError::NoDriver { source },
            source => GpuError::Nvml { call, source },
        }
    }
}
