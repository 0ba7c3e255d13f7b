//! Where the runtime and the model files are, which execution provider to prefer, and the
//! manifest (`config/models.toml`) that pins every fetched file's sha256.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::ModelError;
use crate::runtime::{ConvSearch, ModelSpec, Precision};

/// Default folder the setup script fills (git-ignored), relative to the working directory.
pub const DEFAULT_FLEET_DIR: &str = ".fleet";
/// Default manifest of fetched models, relative to the working directory.
pub const DEFAULT_MANIFEST: &str = "config/models.toml";
/// A model nobody used for this long is unloaded (its session and device memory freed).
pub const DEFAULT_IDLE_UNLOAD: Duration = Duration::from_secs(300);
const SETUP_FIX: &str = "run scripts/setup-models.sh";

/// Which execution provider sessions should use. `Auto` takes CUDA when the loaded ONNX
/// Runtime has it and falls back to CPU; TensorRT is only used when asked for, because its
/// first engine build per model takes minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderPreference {
    Auto,
    Cpu,
    Cuda,
    TensorRt,
}

impl std::str::FromStr for ProviderPreference {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda),
            "tensorrt" | "trt" => Ok(Self::TensorRt),
            other => Err(format!("{other:?} is not one of auto, cpu, cuda, tensorrt")),
        }
    }
}

/// Process-wide model settings.
#[derive(Debug, Clone)]
pub struct ModelsConfig {
    /// The setup script's output folder; models live in `models/` under it.
    pub fleet_dir: PathBuf,
    pub manifest_path: PathBuf,
    /// `libonnxruntime.so`; `None` gives a clear error when a model is first needed.
    pub ort_dylib: Option<PathBuf>,
    pub provider: ProviderPreference,
    /// The GPU this worker is pinned to.
    pub device_id: i32,
    /// Intra-op threads per session; 0 lets ONNX Runtime use every core.
    pub intra_threads: usize,
    pub idle_unload: Duration,
    /// GPU sessions copy inputs and outputs through page-locked host buffers.
    pub pinned_io: bool,
    /// TF32 tensor-core math for float32 convolutions and matrix products on the GPU.
    pub tf32: bool,
    /// Convolutions in NHWC layout on the CUDA provider (`FLEET_ORT_NHWC`): cuDNN's tensor-core
    /// kernels want it, at the cost of layout transposes around the graph's NCHW tensors.
    pub nhwc: bool,
    /// Per-model overrides (`FLEET_ORT_CONV_SEARCH`, `FLEET_ORT_PRECISION`), by model id or
    /// file stem; `*` applies to every model.
    pub conv_search: HashMap<String, ConvSearch>,
    pub precision: HashMap<String, Precision>,
    /// Caps every model's GPU batch buckets (`FLEET_ORT_MAX_BATCH`; 1 = one item per run),
    /// for small devices and for measuring what batching buys.
    pub max_batch: Option<usize>,
    /// Pad batches up to their bucket: `None` = on GPU providers only (`FLEET_ORT_PAD_BATCHES`
    /// forces it, e.g. to check on a CPU that padding leaves results unchanged).
    pub pad_batches: Option<bool>,
}

impl ModelsConfig {
    /// Defaults relative to `root` (the repository or install directory).
    pub fn with_root(root: &Path) -> Self {
        Self {
            fleet_dir: root.join(DEFAULT_FLEET_DIR),
            manifest_path: root.join(DEFAULT_MANIFEST),
            ort_dylib: None,
            provider: ProviderPreference::Auto,
            device_id: 0,
            intra_threads: 0,
            idle_unload: DEFAULT_IDLE_UNLOAD,
            pinned_io: true,
            tf32: true,
            nhwc: false,
            conv_search: HashMap::new(),
            precision: HashMap::new(),
            max_batch: None,
            pad_batches: None,
        }
    }

    /// The spec a pipeline declared, with this process's overrides for the model `key`
    /// (its manifest id, or its file stem for operator models).
    pub fn resolve(&self, key: &str, mut spec: ModelSpec) -> ModelSpec {
        if let Some(s) = self
            .conv_search
            .get(key)
            .or_else(|| self.conv_search.get("*"))
        {
            spec.conv_search = *s;
        }
        if let Some(p) = self.precision.get(key).or_else(|| self.precision.get("*")) {
            spec.precision = *p;
        }
        if let Some(max) = self.max_batch {
            let max = max.max(1);
            spec.batches.retain(|&b| b <= max);
            if spec.batches.is_empty() {
                spec.batches.push(max);
            }
            spec.max_run = Some(max);
        }
        spec
    }

    /// Reads `FLEET_DIR`, `FLEET_MODELS_MANIFEST`, `ORT_DYLIB_PATH`, `FLEET_EXECUTION_PROVIDER`,
    /// `FLEET_GPU_DEVICE`, `FLEET_ORT_THREADS`, `FLEET_MODEL_IDLE_SECS`, `FLEET_ORT_PINNED`,
    /// `FLEET_ORT_TF32`, `FLEET_ORT_NHWC`, `FLEET_ORT_CONV_SEARCH` and `FLEET_ORT_PRECISION` (both
    /// `model=value,...`, `*` for every model), reporting every bad value at once.
    pub fn from_env() -> Result<Self, ModelError> {
        let mut cfg = Self::with_root(Path::new("."));
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut bad = Vec::new();
        if let Some(v) = var("FLEET_DIR") {
            cfg.fleet_dir = v.into();
        }
        if let Some(v) = var("FLEET_MODELS_MANIFEST") {
            cfg.manifest_path = v.into();
        }
        // Unset: the library the setup script fetched into the fleet folder, if any.
        cfg.ort_dylib = var("ORT_DYLIB_PATH")
            .map(PathBuf::from)
            .or_else(|| fetched_ort(&cfg.fleet_dir));
        if let Some(v) = var("FLEET_EXECUTION_PROVIDER") {
            match v.parse() {
                Ok(p) => cfg.provider = p,
                Err(e) => bad.push(format!("FLEET_EXECUTION_PROVIDER: {e}")),
            }
        }
        let mut number = |key: &str, apply: &mut dyn FnMut(u64)| {
            if let Some(v) = var(key) {
                match v.parse::<u64>() {
                    Ok(n) => apply(n),
                    Err(_) => bad.push(format!("{key}: {v:?} is not a whole number")),
                }
            }
        };
        number("FLEET_GPU_DEVICE", &mut |n| cfg.device_id = n as i32);
        number("FLEET_ORT_THREADS", &mut |n| cfg.intra_threads = n as usize);
        number("FLEET_ORT_MAX_BATCH", &mut |n| {
            cfg.max_batch = Some(n as usize)
        });
        number("FLEET_MODEL_IDLE_SECS", &mut |n| {
            cfg.idle_unload = Duration::from_secs(n)
        });
        let mut flag = |key: &str, apply: &mut dyn FnMut(bool)| {
            if let Some(v) = var(key) {
                match v.to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => apply(true),
                    "0" | "false" | "no" | "off" => apply(false),
                    _ => bad.push(format!("{key}: {v:?} is not one of true, false")),
                }
            }
        };
        flag("FLEET_ORT_PINNED", &mut |b| cfg.pinned_io = b);
        flag("FLEET_ORT_TF32", &mut |b| cfg.tf32 = b);
        flag("FLEET_ORT_NHWC", &mut |b| cfg.nhwc = b);
        flag("FLEET_ORT_PAD_BATCHES", &mut |b| cfg.pad_batches = Some(b));
        if let Some(v) = var("FLEET_ORT_CONV_SEARCH") {
            match per_model(&v) {
                Ok(m) => cfg.conv_search = m,
                Err(e) => bad.push(format!("FLEET_ORT_CONV_SEARCH: {e}")),
            }
        }
        if let Some(v) = var("FLEET_ORT_PRECISION") {
            match per_model(&v) {
                Ok(m) => cfg.precision = m,
                Err(e) => bad.push(format!("FLEET_ORT_PRECISION: {e}")),
            }
        }
        if bad.is_empty() {
            Ok(cfg)
        } else {
            Err(ModelError::param("environment", bad.join("; ")))
        }
    }

    pub fn models_dir(&self) -> PathBuf {
        self.fleet_dir.join("models")
    }

    /// A model the setup script fetched, by its manifest id (e.g. `ppocr.det`).
    pub fn fetched_model(&self, id: &str) -> Result<ModelFile, ModelError> {
        let manifest = Manifest::load(&self.manifest_path)?;
        if let Some(entry) = manifest.model.iter().find(|m| m.id == id) {
            return Ok(ModelFile {
                path: self.models_dir().join(&entry.file),
                sha256: entry.sha256.clone(),
                fix: SETUP_FIX.to_string(),
                fp16: entry.fp16_file.as_ref().map(|f| {
                    Box::new(ModelFile {
                        path: self.models_dir().join(f),
                        sha256: entry.fp16_sha256.clone().unwrap_or_default(),
                        fix: SETUP_FIX.to_string(),
                        fp16: None,
                    })
                }),
            });
        }
        // Built offline by the setup from fetched files (e.g. Whisper's ONNX graphs).
        let entry = manifest
            .converted
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| ModelError::ModelMissing {
                path: self.manifest_path.clone(),
                fix: format!("the manifest has no model {id:?}; restore config/models.toml"),
            })?;
        Ok(ModelFile {
            path: self.models_dir().join(&entry.file),
            sha256: entry.sha256.clone(),
            fix: SETUP_FIX.to_string(),
            fp16: entry.fp16_file.as_ref().map(|f| {
                Box::new(ModelFile {
                    path: self.models_dir().join(f),
                    sha256: entry.fp16_sha256.clone().unwrap_or_default(),
                    fix: SETUP_FIX.to_string(),
                    fp16: None,
                })
            }),
        })
    }

    /// A photograph the setup fetched for the accuracy tests (`[[test_media]]`), by id.
    pub fn test_media(&self, id: &str) -> Result<ModelFile, ModelError> {
        let manifest = Manifest::load(&self.manifest_path)?;
        let entry = manifest
            .test_media
            .iter()
            .find(|m| m.id == id)
            .ok_or_else(|| ModelError::ModelMissing {
                path: self.manifest_path.clone(),
                fix: format!("the manifest has no test media {id:?}; restore config/models.toml"),
            })?;
        Ok(ModelFile {
            path: self.fleet_dir.join(&entry.file),
            sha256: entry.sha256.clone(),
            fix: SETUP_FIX.to_string(),
            fp16: None,
        })
    }
}

/// `model=value,model=value`; a bare value applies to every model (`*`).
fn per_model<T: std::str::FromStr<Err = String>>(text: &str) -> Result<HashMap<String, T>, String> {
    let mut map = HashMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').unwrap_or(("*", part));
        let value = value
            .trim()
            .parse::<T>()
            .map_err(|e| format!("{key}: {e}"))?;
        map.insert(key.trim().to_string(), value);
    }
    Ok(map)
}

/// One model file and the hash it must have.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelFile {
    pub path: PathBuf,
    pub sha256: String,
    /// What to tell the operator when the file is missing or wrong.
    pub fix: String,
    /// The same network with float16 weights and activations (float32 inputs and outputs),
    /// run instead on GPU providers where the pipeline asks for FP16.
    pub fp16: Option<Box<ModelFile>>,
}

impl ModelFile {
    /// An operator's model from an analyzer's params: `params[key]` (path) and
    /// `params[key + "_sha256"]` (or `params.sha256` for the key `model`).
    pub fn from_params(
        analyzer: &str,
        params: &serde_json::Value,
        key: &str,
    ) -> Result<Self, ModelError> {
        let sha_key = if key == "model" {
            "sha256".to_string()
        } else {
            format!("{key}_sha256")
        };
        let path = params
            .get(key)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty());
        let Some(path) = path else {
            return Err(ModelError::NotConfigured {
                analyzer: analyzer.to_string(),
                what: format!("model file (params.{key})"),
                fix: format!(
                    "set params.{key} and params.{sha_key} for [analyzers.{analyzer}] in \
                     config/fleet.toml"
                ),
            });
        };
        let sha = params
            .get(&sha_key)
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ModelError::param(
                &format!("{analyzer}.{sha_key}"),
                format!("give the sha256 of {path} (64 hex digits, `sha256sum {path}`)"),
            ));
        }
        let fp16_key = format!("{key}_fp16");
        let fp16 = match params.get(&fp16_key).and_then(|v| v.as_str()) {
            Some(p) if !p.is_empty() => {
                let mut f = Self::from_params(analyzer, params, &fp16_key)?;
                f.fp16 = None;
                Some(Box::new(f))
            }
            _ => None,
        };
        Ok(Self {
            path: PathBuf::from(path),
            sha256: sha.to_ascii_lowercase(),
            fix: format!("check params.{key}/params.{sha_key} of {analyzer} in config/fleet.toml"),
            fp16,
        })
    }

    /// Checks the file exists and has the expected hash.
    pub fn verify(&self) -> Result<(), ModelError> {
        let bytes = std::fs::read(&self.path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ModelError::ModelMissing {
                    path: self.path.clone(),
                    fix: self.fix.clone(),
                }
            } else {
                ModelError::Io {
                    path: self.path.clone(),
                    reason: e.to_string(),
                }
            }
        })?;
        let actual = sha256_hex(&bytes);
        if actual != self.sha256 {
            return Err(ModelError::ChecksumMismatch {
                path: self.path.clone(),
                expected: self.sha256.clone(),
                actual,
                fix: self.fix.clone(),
            });
        }
        Ok(())
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `config/models.toml`.
#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub runtime: ManifestEntry,
    pub model: Vec<ManifestEntry>,
    /// Files the setup builds offline from fetched ones (e.g. Whisper's ONNX graphs).
    #[serde(default)]
    pub converted: Vec<ConvertedEntry>,
    /// Photographs for the accuracy tests (path relative to the fleet folder).
    #[serde(default)]
    pub test_media: Vec<ManifestEntry>,
}

/// A file `script` makes from the fetched models `from`; deterministic, so its sha256 is pinned.
#[derive(Debug, Clone, Deserialize)]
pub struct ConvertedEntry {
    pub id: String,
    pub from: Vec<String>,
    pub script: String,
    pub file: String,
    pub sha256: String,
    /// The FP16 variant built with it (GPU providers only).
    #[serde(default)]
    pub fp16_file: Option<String>,
    #[serde(default)]
    pub fp16_sha256: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ManifestEntry {
    #[serde(default)]
    pub id: String,
    pub package: String,
    pub version: String,
    pub member: String,
    pub file: String,
    pub sha256: String,
    /// The FP16 variant the setup script converts from `file` (GPU providers only).
    #[serde(default)]
    pub fp16_file: Option<String>,
    #[serde(default)]
    pub fp16_sha256: Option<String>,
}

impl Manifest {
    /// Parsed once per path per process: the manifest is committed and never changes under a
    /// running worker.
    pub fn load(path: &Path) -> Result<std::sync::Arc<Manifest>, ModelError> {
        use std::sync::{Arc, Mutex, OnceLock};
        static CACHE: OnceLock<Mutex<HashMap<PathBuf, Arc<Manifest>>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        if let Some(m) = cache.lock().expect("manifest cache poisoned").get(path) {
            return Ok(m.clone());
        }
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::ModelMissing {
            path: path.to_path_buf(),
            fix: format!("the model manifest could not be read ({e}); run from the repository root or set FLEET_MODELS_MANIFEST"),
        })?;
        let manifest: Manifest = toml::from_str(&text).map_err(|e| ModelError::Io {
            path: path.to_path_buf(),
            reason: format!("not a valid model manifest: {e}"),
        })?;
        let manifest = Arc::new(manifest);
        cache
            .lock()
            .expect("manifest cache poisoned")
            .insert(path.to_path_buf(), manifest.clone());
        Ok(manifest)
    }
}

/// `<fleet_dir>/ort/libonnxruntime.so.*`, as `scripts/setup-models.sh` leaves it.
fn fetched_ort(fleet_dir: &Path) -> Option<PathBuf> {
    let mut libs: Vec<PathBuf> = std::fs::read_dir(fleet_dir.join("ort"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so"))
        })
        .collect();
    libs.sort();
    libs.pop()
}
