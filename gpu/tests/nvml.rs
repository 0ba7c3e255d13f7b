//! GPU-only checks against a real NVIDIA driver: `cargo test -p gpu -- --ignored`.
//! CI has no GPU, so these are ignored there; `examples/gpu-check.rs` covers pause/resume
//! with another process allocating memory.

use std::time::Duration;

use gpu::{GpuError, GuardState, GuardThresholds, MemoryGuard};

#[test]
#[ignore = "needs an NVIDIA GPU and driver"]
fn lists_devices_with_sane_readings() {
    let devices = gpu::list_devices().expect("NVML");
    assert!(!devices.is_empty(), "no GPU found");
    for (i, d) in devices.iter().enumerate() {
        assert_eq!(d.index as usize, i);
        assert!(d.uuid.starts_with("GPU-"), "{d:?}");
        assert!(
            d.memory_total_bytes > 0 && d.memory_used_bytes <= d.memory_total_bytes,
            "{d:?}"
        );
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU and driver"]
fn pins_the_same_device_by_index_and_by_uuid() {
    let first = gpu::list_devices().expect("NVML").remove(0);
    let by_index = gpu::select(&first.index.to_string()).expect("by index");
    let by_uuid = gpu::select(&first.uuid).expect("by uuid");
    let by_lower_uuid = gpu::select(&first.uuid.to_lowercase()).expect("by lower-case uuid");
    assert_eq!(by_index.uuid(), by_uuid.uuid());
    assert_eq!(by_index.uuid(), by_lower_uuid.uuid());
    assert_eq!(by_uuid.cuda_visible_devices(), first.uuid);
    assert!(by_uuid.sample().expect("sample").memory_total_bytes > 0);
}

#[test]
#[ignore = "needs an NVIDIA GPU and driver"]
fn unknown_devices_are_not_found() {
    for selector in ["4096", "GPU-00000000-0000-0000-0000-000000000000"] {
        let err = gpu::select(selector).expect_err(selector);
        assert!(matches!(err, GpuError::NotFound { .. }), "{err}");
    }
}

#[tokio::test]
#[ignore = "needs an NVIDIA GPU and driver"]
async fn guard_polls_nvml() {
    let g = gpu::select("0").expect("pin");
    let t = GuardThresholds {
        warning: "98%".parse().unwrap(),
        critical: "99%".parse().unwrap(),
    };
    let guard = MemoryGuard::start(&g, &t, Duration::from_millis(50)).expect("guard");
    let mut readings = guard.readings();
    tokio::time::timeout(Duration::from_secs(5), readings.changed())
        .await
        .expect("a second reading within 5 s")
        .expect("guard running");
    assert_eq!(readings.borrow().uuid, g.uuid());
    assert_eq!(guard.state(), GuardState::Normal, "is the GPU nearly full?");
}
