//! Sessions created once per process and kept warm; unloaded when idle or on demand.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{ModelFile, ModelsConfig};
use crate::error::ModelError;
use crate::runtime::{LoadedModel, ModelSpec, Precision, Provider};

/// Reads the device memory in use (bytes), e.g. NVML's figure for the pinned GPU.
pub type MemoryProbe = Box<dyn Fn() -> Option<u64> + Send + Sync>;

static GLOBAL: OnceLock<Arc<ModelRegistry>> = OnceLock::new();

/// The environment's settings; a bad environment falls back to defaults and the error shows
/// up when a model is loaded.
fn env_config() -> ModelsConfig {
    ModelsConfig::from_env().unwrap_or_else(|e| {
        tracing::error!(error = %e, "model settings from the environment are invalid; using defaults");
        ModelsConfig::with_root(std::path::Path::new("."))
    })
}

/// Every loaded model of this process, by file. Loading takes a per-file lock, so two tasks
/// asking for a cold model at once load it once.
pub struct ModelRegistry {
    config: ModelsConfig,
    models: Mutex<HashMap<PathBuf, Arc<LoadedModel>>>,
    loading: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
    expected: OnceLock<Provider>,
    probe: OnceLock<MemoryProbe>,
    /// Loads are measured one at a time: two concurrent loads would share one memory delta.
    measuring: Mutex<()>,
    /// Device bytes measured per model file, kept after an unload for the residency policy.
    measured: Mutex<HashMap<PathBuf, u64>>,
    /// FP16 variants that failed to load: not tried again.
    fp16_failed: Mutex<std::collections::HashSet<PathBuf>>,
}

/// What is loaded now, for metrics, the CLI and the residency policy.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedInfo {
    pub path: PathBuf,
    pub provider: &'static str,
    pub precision: &'static str,
    pub conv_search: &'static str,
    pub idle_s: f64,
    pub load_ms: f64,
    pub warmup_ms: f64,
    pub warm_shapes: usize,
    /// Device memory the model took (NVML), when a probe is set.
    pub device_bytes: Option<u64>,
}

impl ModelRegistry {
    pub fn new(config: ModelsConfig) -> Arc<Self> {
        let registry = Arc::new(Self {
            config,
            models: Mutex::new(HashMap::new()),
            loading: Mutex::new(HashMap::new()),
            expected: OnceLock::new(),
            probe: OnceLock::new(),
            measuring: Mutex::new(()),
            measured: Mutex::new(HashMap::new()),
            fp16_failed: Mutex::new(Default::default()),
        });
        spawn_reaper(Arc::downgrade(&registry));
        registry
    }

    /// The process-wide registry, configured from the environment on first use (see
    /// [`ModelsConfig::from_env`]); a bad environment falls back to defaults and the error
    /// shows up when a model is loaded.
    pub fn global() -> &'static Arc<ModelRegistry> {
        GLOBAL.get_or_init(|| ModelRegistry::new(env_config()))
    }

    /// Sets up the process-wide registry before its first use: the environment's settings,
    /// then `adjust` (a worker pins the CUDA device it was given, a CPU worker keeps to the
    /// CPU provider). Returns `None` when the registry was already in use, so a caller
    /// notices that its settings came too late.
    pub fn configure_global(
        adjust: impl FnOnce(&mut ModelsConfig),
    ) -> Option<&'static Arc<ModelRegistry>> {
        let mut fresh = false;
        let reg = GLOBAL.get_or_init(|| {
            fresh = true;
            let mut config = env_config();
            adjust(&mut config);
            ModelRegistry::new(config)
        });
        fresh.then_some(reg)
    }

    pub fn config(&self) -> &ModelsConfig {
        &self.config
    }

    /// The execution provider this process's sessions run on (or will, once loaded), for
    /// labelling outcomes before any model ran.
    pub fn expected_provider(&self) -> Provider {
        if let Some(m) = self
            .models
            .lock()
            .expect("registry poisoned")
            .values()
            .next()
        {
            return m.provider;
        }
        *self
            .expected
            .get_or_init(|| crate::runtime::expected_provider(&self.config))
    }

    /// Measures every later load's device memory with `probe` (set once, by a GPU worker).
    pub fn set_memory_probe(&self, probe: MemoryProbe) {
        let _ = self.probe.set(probe);
    }

    /// The session for `file` with default settings, loading (and sha256-checking) it on
    /// first use.
    pub fn get(&self, file: &ModelFile) -> Result<Arc<LoadedModel>, ModelError> {
        let key = file_key(file);
        self.get_spec(file, &key, ModelSpec::default())
    }

    /// The session for `file` as the pipeline declares it in `spec` (batch sizes, shapes to
    /// warm, cuDNN search, precision), with this process's overrides for `key` applied. A
    /// model already loaded keeps its settings.
    pub fn get_spec(
        &self,
        file: &ModelFile,
        key: &str,
        spec: ModelSpec,
    ) -> Result<Arc<LoadedModel>, ModelError> {
        let spec = self.config.resolve(key, spec);
        // FP16 only where a GPU provider runs it and the model has an FP16 variant; a variant
        // that does not load (a converter's broken graph) leaves the model on FP32.
        if let (Some(half), Precision::Fp16) = (&file.fp16, spec.precision)
            && self.expected_provider().is_gpu()
            && !self
                .fp16_failed
                .lock()
                .expect("registry poisoned")
                .contains(&half.path)
        {
            match self.load_file(half, spec.clone()) {
                Ok(m) => return Ok(m),
                Err(e) => {
                    tracing::warn!(model = %half.path.display(), error = %e, "the FP16 variant does not load; running FP32");
                    self.fp16_failed
                        .lock()
                        .expect("registry poisoned")
                        .insert(half.path.clone());
                }
            }
        }
        let fp32 = ModelFile {
            fp16: None,
            ..file.clone()
        };
        self.load_file(
            &fp32,
            ModelSpec {
                precision: Precision::Fp32,
                ..spec
            },
        )
    }

    /// The session for exactly `file`, from the cache or loaded (and measured) now.
    fn load_file(&self, file: &ModelFile, spec: ModelSpec) -> Result<Arc<LoadedModel>, ModelError> {
        if let Some(m) = self.cached(file) {
            return Ok(m);
        }
        let gate = self
            .loading
            .lock()
            .expect("registry poisoned")
            .entry(file.path.clone())
            .or_default()
            .clone();
        let _loading = gate.lock().expect("load gate poisoned");
        if let Some(m) = self.cached(file) {
            return Ok(m);
        }
        let _measuring = self
            .probe
            .get()
            .map(|_| self.measuring.lock().expect("registry poisoned"));
        let before = self.probe.get().and_then(|p| p());
        let started = Instant::now();
        let model = Arc::new(LoadedModel::load(&self.config, file, spec)?);
        let after = self.probe.get().and_then(|p| p());
        if let (Some(b), Some(a)) = (before, after) {
            let bytes = a.saturating_sub(b);
            *model.device_bytes.lock().expect("device_bytes poisoned") = Some(bytes);
            self.measured
                .lock()
                .expect("registry poisoned")
                .insert(file.path.clone(), bytes);
        }
        tracing::info!(
            model = %file.path.display(),
            provider = model.provider.label(),
            precision = model.precision().label(),
            conv_search = model.spec.conv_search.label(),
            ms = started.elapsed().as_millis() as u64,
            session_ms = model.load_ms as u64,
            warmup_ms = model.warmup_ms() as u64,
            warm_shapes = model.warmup.len(),
            device_bytes = model.device_bytes(),
            "model loaded"
        );
        self.models
            .lock()
            .expect("registry poisoned")
            .insert(file.path.clone(), model.clone());
        Ok(model)
    }

    fn cached(&self, file: &ModelFile) -> Option<Arc<LoadedModel>> {
        self.models
            .lock()
            .expect("registry poisoned")
            .get(&file.path)
            .filter(|m| m.file.sha256 == file.sha256)
            .cloned()
    }

    /// A model from `config/models.toml` by id, with default settings.
    pub fn fetched(&self, id: &str) -> Result<Arc<LoadedModel>, ModelError> {
        self.fetched_spec(id, ModelSpec::default())
    }

    /// A model from `config/models.toml` by id, as the pipeline declares it.
    pub fn fetched_spec(&self, id: &str, spec: ModelSpec) -> Result<Arc<LoadedModel>, ModelError> {
        self.get_spec(&self.config.fetched_model(id)?, id, spec)
    }

    /// Device bytes measured for a model file (loaded now or earlier), if any.
    pub fn measured_bytes(&self, path: &std::path::Path) -> Option<u64> {
        self.measured
            .lock()
            .expect("registry poisoned")
            .get(path)
            .copied()
    }

    /// Unloads the least recently used models until the measured device memory of what was
    /// unloaded reaches `bytes` (or nothing idle for `min_idle` is left). Models without a
    /// measurement count as zero bytes but are unloaded in their turn. Returns how many went.
    pub fn unload_lru(&self, bytes: u64, min_idle: Duration) -> usize {
        let mut models = self.models.lock().expect("registry poisoned");
        let mut order: Vec<(PathBuf, Duration)> = models
            .iter()
            .map(|(p, m)| {
                (
                    p.clone(),
                    m.last_used.lock().expect("last_used poisoned").elapsed(),
                )
            })
            .filter(|(_, idle)| *idle >= min_idle)
            .collect();
        order.sort_by_key(|o| std::cmp::Reverse(o.1));
        let (mut freed, mut n) = (0u64, 0usize);
        for (path, idle) in order {
            if freed >= bytes {
                break;
            }
            if let Some(m) = models.remove(&path) {
                let b = m.device_bytes().unwrap_or(0);
                tracing::info!(model = %path.display(), idle_s = idle.as_secs(), device_bytes = b, "unloading least recently used model for memory");
                freed += b;
                n += 1;
            }
        }
        n
    }

    /// Unloads models unused for `max_idle`. A task still holding one keeps it alive until it
    /// finishes; the next task loads it again. Returns how many were unloaded.
    pub fn unload_idle(&self, max_idle: Duration) -> usize {
        let mut models = self.models.lock().expect("registry poisoned");
        let before = models.len();
        models.retain(|path, m| {
            let idle = m.last_used.lock().expect("last_used poisoned").elapsed();
            let keep = idle < max_idle;
            if !keep {
                tracing::info!(model = %path.display(), idle_s = idle.as_secs(), "unloading idle model");
            }
            keep
        });
        before - models.len()
    }

    /// Unloads everything, e.g. when the GPU memory guard needs room.
    pub fn unload_all(&self) -> usize {
        let mut models = self.models.lock().expect("registry poisoned");
        let n = models.len();
        models.clear();
        n
    }

    pub fn loaded(&self) -> Vec<LoadedInfo> {
        let models = self.models.lock().expect("registry poisoned");
        let mut list: Vec<LoadedInfo> = models
            .values()
            .map(|m| LoadedInfo {
                path: m.file.path.clone(),
                provider: m.provider.label(),
                precision: m.precision().label(),
                conv_search: m.spec.conv_search.label(),
                load_ms: m.load_ms,
                warmup_ms: m.warmup_ms(),
                warm_shapes: m.warmup.len(),
                device_bytes: m.device_bytes(),
                idle_s: m
                    .last_used
                    .lock()
                    .expect("last_used poisoned")
                    .elapsed()
                    .as_secs_f64(),
            })
            .collect();
        list.sort_by(|a, b| a.path.cmp(&b.path));
        list
    }
}

/// A plain thread, not a tokio task: the registry is also used from blocking code and tests
/// without a runtime. It ends when the registry is dropped.
fn spawn_reaper(registry: Weak<ModelRegistry>) {
    let Some(strong) = registry.upgrade() else {
        return;
    };
    let idle = strong.config.idle_unload;
    drop(strong);
    if idle.is_zero() {
        return;
    }
    let tick = (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let spawned = std::thread::Builder::new()
        .name("model-reaper".into())
        .spawn(move || {
            loop {
                std::thread::sleep(tick);
                let Some(registry) = registry.upgrade() else {
                    return;
                };
                registry.unload_idle(idle);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the idle-model reaper; models stay loaded");
    }
}

/// The override key of an operator's model: its file stem (`yolov8x` for `yolov8x.onnx`).
fn file_key(file: &ModelFile) -> String {
    file.path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
