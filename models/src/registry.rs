//! Sessions created once per process and kept warm; unloaded when idle or on demand.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{ModelFile, ModelsConfig};
use crate::error::ModelError;
use crate::runtime::{LoadedModel, Provider, Tuning};

/// Every loaded model of this process, by file. Loading takes a per-file lock, so two tasks
/// asking for a cold model at once load it once.
pub struct ModelRegistry {
    config: ModelsConfig,
    models: Mutex<HashMap<PathBuf, Arc<LoadedModel>>>,
    loading: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
    expected: OnceLock<Provider>,
}

/// What is loaded now, for metrics and the CLI.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedInfo {
    pub path: PathBuf,
    pub provider: &'static str,
    pub idle_s: f64,
}

impl ModelRegistry {
    pub fn new(config: ModelsConfig) -> Arc<Self> {
        let registry = Arc::new(Self {
            config,
            models: Mutex::new(HashMap::new()),
            loading: Mutex::new(HashMap::new()),
            expected: OnceLock::new(),
        });
        spawn_reaper(Arc::downgrade(&registry));
        registry
    }

    /// The process-wide registry, configured from the environment on first use (see
    /// [`ModelsConfig::from_env`]); a bad environment falls back to defaults and the error
    /// shows up when a model is loaded.
    pub fn global() -> &'static Arc<ModelRegistry> {
        static GLOBAL: OnceLock<Arc<ModelRegistry>> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let config = ModelsConfig::from_env().unwrap_or_else(|e| {
                tracing::error!(error = %e, "model settings from the environment are invalid; using defaults");
                ModelsConfig::with_root(std::path::Path::new("."))
            });
            ModelRegistry::new(config)
        })
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

    /// The session for `file`, loading (and sha256-checking) it on first use.
    pub fn get(&self, file: &ModelFile) -> Result<Arc<LoadedModel>, ModelError> {
        self.get_tuned(file, Tuning::default())
    }

    /// Like [`get`](Self::get), with session settings for this model (applied when it is
    /// loaded; a model already loaded keeps its settings).
    pub fn get_tuned(
        &self,
        file: &ModelFile,
        tuning: Tuning,
    ) -> Result<Arc<LoadedModel>, ModelError> {
        if let Some(m) = self
            .models
            .lock()
            .expect("registry poisoned")
            .get(&file.path)
            && m.file.sha256 == file.sha256
        {
            return Ok(m.clone());
        }
        let gate = self
            .loading
            .lock()
            .expect("registry poisoned")
            .entry(file.path.clone())
            .or_default()
            .clone();
        let _loading = gate.lock().expect("load gate poisoned");
        if let Some(m) = self
            .models
            .lock()
            .expect("registry poisoned")
            .get(&file.path)
            && m.file.sha256 == file.sha256
        {
            return Ok(m.clone());
        }
        let started = Instant::now();
        let model = Arc::new(LoadedModel::load(&self.config, file, tuning)?);
        tracing::info!(
            model = %file.path.display(),
            provider = model.provider.label(),
            ms = started.elapsed().as_millis() as u64,
            "model loaded"
        );
        self.models
            .lock()
            .expect("registry poisoned")
            .insert(file.path.clone(), model.clone());
        Ok(model)
    }

    /// A model from `config/models.toml` by id.
    pub fn fetched(&self, id: &str) -> Result<Arc<LoadedModel>, ModelError> {
        self.get(&self.config.fetched_model(id)?)
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
