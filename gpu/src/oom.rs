//! Recognising GPU out-of-memory errors in ONNX Runtime's (and CUDA's) messages.

/// Lower-case fragments that only GPU memory exhaustion produces. ONNX Runtime wraps CUDA
/// errors in its own text ("CUDA failure 2: out of memory", "BFCArena ... Available memory
/// of 0 is smaller than requested bytes"), and cuBLAS/cuDNN report their own codes.
const OOM_MARKERS: &[&str] = &[
    "out of memory", // cudaErrorMemoryAllocation's text, CUDA_ERROR_OUT_OF_MEMORY, PyTorch, TensorRT
    "cudaerrormemoryallocation",
    "cuda_error_out_of_memory",
    "cublas_status_alloc_failed",
    "cudnn_status_alloc_failed",
    "cufft_alloc_failed",
    "failed to allocate memory for requested buffer", // ORT's BFC arena
    "is smaller than requested bytes",                // ORT's BFC arena, arena cannot extend
];

/// Whether an inference error means the GPU ran out of memory.
///
/// Such a task is not the analyzer's fault: the worker requeues it (another worker, or this
/// one once the memory guard has let memory drain, can run it) instead of recording a failure.
/// Host allocation failures (`std::bad_alloc`) are deliberately not matched: retrying those
/// on the same host does not help.
pub fn is_out_of_memory(msg: &str) -> bool {
    let msg = msg.to_ascii_lowercase();
    OOM_MARKERS.iter().any(|m| msg.contains(m))
}

#[cfg(test)]
mod tests {
    use super::is_out_of_memory;

    #[test]
    fn recognises_onnx_runtime_and_cuda_oom_messages() {
        for msg in [
            "Non-zero status code returned while running Conv node. Name:'/model.0/conv/Conv' \
             Status Message: CUDA error cudaErrorMemoryAllocation:out of memory",
            "[ErrorCode:RuntimeException] CUDA failure 2: out of memory ; GPU=0 ; hostname=w1",
            "Failed to allocate memory for requested buffer of size 1073741824",
            "BFCArena::AllocateRawInternal Available memory of 0 is smaller than requested bytes of 2097152",
            "CUBLAS failure 3: CUBLAS_STATUS_ALLOC_FAILED",
            "CUDNN failure 2: CUDNN_STATUS_ALLOC_FAILED",
            "CUDA_ERROR_OUT_OF_MEMORY",
            "CUDA out of memory. Tried to allocate 20.00 GiB",
        ] {
            assert!(is_out_of_memory(msg), "{msg}");
        }
    }

    #[test]
    fn leaves_other_failures_alone() {
        for msg in [
            "Invalid input name: images",
            "Got invalid dimensions for input: pixel_values",
            "CUDA failure 700: an illegal memory access was encountered",
            "std::bad_alloc",
            "Load model from yolov8n.onnx failed: No such file or directory",
        ] {
            assert!(!is_out_of_memory(msg), "{msg}");
        }
    }
}
