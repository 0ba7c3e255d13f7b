//! The GPU worker's model-residency policy in process: a dialled memory source drives the
//! real memory guard, the real model registry (ONNX Runtime, CPU provider) holds three tiny
//! models from `scripts/setup-models.sh`, and `worker::residency` unloads them as the guard's
//! state changes and gates new work.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::metrics::{GpuLabels, Metrics};
use gpu::{DeviceInfo, GpuError, GuardState, GuardThresholds, MemoryGuard, MemorySource};
use models::config::sha256_hex;
use models::{ModelFile, ModelRegistry, ModelsConfig, ProviderPreference};
use worker::residency::Residency;

const GB: u64 = 1_000_000_000;
const GPU: &str = "GPU-residency-test";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `ORT_DYLIB_PATH`, else the library the setup fetched; missing fails the test.
fn ort_dylib() -> PathBuf {
    let path = std::env::var("ORT_DYLIB_PATH")
        .ok()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".fleet/ort/libonnxruntime.so.1.31.1"));
    assert!(
        path.exists(),
        "ONNX Runtime {} not found: run scripts/setup-models.sh",
        path.display()
    );
    path
}

fn file(name: &str) -> ModelFile {
    let path = repo_root().join(".fleet/test-models").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "test model {}: {e} (run scripts/setup-models.sh)",
            path.display()
        )
    });
    ModelFile {
        path,
        sha256: sha256_hex(&bytes),
        fix: "run scripts/setup-models.sh".into(),
        fp16: None,
    }
}

/// GPU memory in use as the test sets it.
struct Dial(Arc<AtomicU64>);

impl MemorySource for Dial {
    fn sample(&mut self) -> Result<DeviceInfo, GpuError> {
        Ok(DeviceInfo {
            index: 0,
            uuid: GPU.into(),
            name: "dialled".into(),
            memory_used_bytes: self.0.load(Ordering::SeqCst),
            memory_total_bytes: 48 * GB,
            utilization_percent: None,
            temperature_celsius: None,
        })
    }
}

fn resident(registry: &ModelRegistry) -> Vec<String> {
    registry
        .loaded()
        .iter()
        .map(|m| m.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

async fn eventually_resident(registry: &ModelRegistry, want: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while resident(registry) != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "resident {:?}, expected {want:?}",
            resident(registry)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_go_least_recently_used_first_under_pressure_and_all_above_critical() {
    let mut cfg = ModelsConfig::with_root(&repo_root());
    cfg.ort_dylib = Some(ort_dylib());
    cfg.provider = ProviderPreference::Cpu;
    let registry = ModelRegistry::new(cfg);
    // Each load is measured as the probe's rise across it: emotion 3 GB, then 1 GB each.
    let probe: Arc<Mutex<VecDeque<u64>>> =
        Arc::new(Mutex::new([10, 13, 13, 14, 14, 15].map(|g| g * GB).into()));
    let readings = probe.clone();
    registry.set_memory_probe(Box::new(move || readings.lock().unwrap().pop_front()));
    // Loaded oldest first, so the least recently used is the emotion model.
    for name in [
        "tiny_emotion.onnx",
        "tiny_segformer.onnx",
        "tiny_yolov8.onnx",
    ] {
        registry.get(&file(name)).expect("test model loads");
        std::thread::sleep(Duration::from_millis(20));
    }
    let emotion = registry.measured_bytes(&file("tiny_emotion.onnx").path);
    assert_eq!(emotion, Some(3 * GB), "the probe measured each load");
    let all = [
        "tiny_emotion.onnx",
        "tiny_segformer.onnx",
        "tiny_yolov8.onnx",
    ];
    assert_eq!(resident(&registry), all);

    let used = Arc::new(AtomicU64::new(15 * GB));
    let thresholds = GuardThresholds {
        warning: "35GB".parse().unwrap(),
        critical: "40GB".parse().unwrap(),
    };
    let guard =
        MemoryGuard::with_source(Dial(used.clone()), &thresholds, Duration::from_millis(20))
            .unwrap();
    let metrics = Metrics::new();
    let policy = Residency {
        idle_under_pressure: Duration::ZERO,
    };
    let mut accepting = policy.follow(&guard, registry.clone(), metrics.clone());
    assert!(*accepting.borrow(), "room: work is taken");

    // Warning, 2 GB over it: the least recently used model (3 GB measured) covers the excess;
    // the other two stay warm and work is still taken.
    used.store(37 * GB, Ordering::SeqCst);
    eventually_resident(&registry, &["tiny_segformer.onnx", "tiny_yolov8.onnx"]).await;
    assert_eq!(guard.state(), GuardState::Warning);
    assert!(*accepting.borrow(), "warning: still taking work");

    // Above critical: every model goes and no new work is taken.
    used.store(41 * GB, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(10), accepting.wait_for(|a| !*a))
        .await
        .expect("the gate closes above critical")
        .unwrap();
    eventually_resident(&registry, &[]).await;
    let label = GpuLabels { gpu: GPU.into() };
    assert_eq!(metrics.gpu_paused.get_or_create(&label).get(), 1);

    // Back below warning: the gate opens again; a model loads again on its next use.
    used.store(20 * GB, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(10), accepting.wait_for(|a| *a))
        .await
        .expect("the gate opens below warning")
        .unwrap();
    assert_eq!(metrics.gpu_paused.get_or_create(&label).get(), 0);
    assert_eq!(
        metrics.gpu_memory_used_bytes.get_or_create(&label).get(),
        (20 * GB) as i64
    );
    // No reading is left for the probe, so this load goes unmeasured.
    registry.get(&file("tiny_yolov8.onnx")).expect("reloads");
    assert_eq!(resident(&registry), ["tiny_yolov8.onnx"]);
}
