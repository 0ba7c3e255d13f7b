//! ONNX Runtime, loaded once per process from `ORT_DYLIB_PATH`, and sessions on the preferred
//! execution provider with a CPU fallback.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider};
use ort::session::{Session, SessionInputValue};
use ort::value::TensorRef;
use serde::Serialize;

use crate::config::{ModelFile, ModelsConfig, ProviderPreference};
use crate::error::ModelError;

/// The execution provider a session actually runs on; results report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Cpu,
    Cuda,
    #[serde(rename = "tensorrt")]
    TensorRt,
}

impl Provider {
    pub fn label(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
            Provider::TensorRt => "tensorrt",
        }
    }
}

/// The process's ONNX Runtime environment. The library can only be loaded once per process,
/// so the first path wins and later configs must agree with it.
pub(crate) fn environment(cfg: &ModelsConfig) -> Result<Environment, ModelError> {
    static ENV: OnceLock<Result<Environment, (PathBuf, String)>> = OnceLock::new();
    let Some(path) = cfg.ort_dylib.clone() else {
        return Err(ModelError::RuntimeMissing {
            detail: "ORT_DYLIB_PATH is not set".into(),
        });
    };
    if !path.exists() {
        return Err(ModelError::RuntimeMissing {
            detail: format!("ORT_DYLIB_PATH={} does not exist", path.display()),
        });
    }
    let result = ENV.get_or_init(|| {
        let builder = ort::init_from(&path).map_err(|e| (path.clone(), e.to_string()))?;
        builder
            .with_name("fleet")
            .build()
            .map_err(|e| (path.clone(), e.to_string()))
    });
    match result {
        Ok(env) => Ok(env.clone()),
        Err((path, reason)) => Err(ModelError::RuntimeLoad {
            path: path.clone(),
            reason: reason.clone(),
        }),
    }
}

/// Which providers to try, best first. CPU is always last so a worker without a usable GPU
/// still runs (and says so in its results).
fn candidates(pref: ProviderPreference) -> Vec<Provider> {
    match pref {
        ProviderPreference::Cpu => vec![Provider::Cpu],
        ProviderPreference::Auto | ProviderPreference::Cuda => vec![Provider::Cuda, Provider::Cpu],
        ProviderPreference::TensorRt => vec![Provider::TensorRt, Provider::Cuda, Provider::Cpu],
    }
}

/// The provider sessions will get: the first preferred one the loaded library offers. Loads
/// the library if needed; without one, CPU (which is what a fixed setup would give).
pub(crate) fn expected_provider(cfg: &ModelsConfig) -> Provider {
    if environment(cfg).is_err() {
        return Provider::Cpu;
    }
    candidates(cfg.provider)
        .into_iter()
        .find(|p| available(*p))
        .unwrap_or(Provider::Cpu)
}

fn available(p: Provider) -> bool {
    match p {
        Provider::Cpu => true,
        Provider::Cuda => ep::CUDA::is_available().unwrap_or(false),
        Provider::TensorRt => ep::TensorRT::is_available().unwrap_or(false),
    }
}

/// Per-model session settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tuning {
    /// Intra-op threads for this model (default: the process setting).
    pub intra_threads: Option<usize>,
    /// Treat subnormal floats as zero. Recurrent states decaying in silence become subnormal,
    /// and subnormal arithmetic is many times slower on x86; their value is below anything a
    /// threshold can see.
    pub flush_to_zero: bool,
}

/// A loaded model: one session, its provider, and what the model declares.
pub struct LoadedModel {
    pub file: ModelFile,
    pub provider: Provider,
    /// Input names and shapes (-1 for dynamic dimensions).
    pub inputs: Vec<(String, Vec<i64>)>,
    pub outputs: Vec<(String, Vec<i64>)>,
    /// Custom metadata (e.g. `character` of PP-OCR rec, `names` of YOLOv8).
    pub metadata: HashMap<String, String>,
    // `Session::run` takes `&mut self`; concurrent tasks on one model take turns, which costs
    // little because each run already uses every core.
    session: Mutex<Session>,
    pub(crate) last_used: Mutex<Instant>,
}

/// An output tensor copied out of ONNX Runtime.
#[derive(Debug, Clone)]
pub struct Output {
    pub shape: Vec<i64>,
    pub data: Vec<f32>,
}

/// One input for [`LoadedModel::run`].
pub enum Input<'a> {
    F32(&'a [i64], &'a [f32]),
    I64(&'a [i64], &'a [i64]),
}

impl LoadedModel {
    pub(crate) fn load(
        cfg: &ModelsConfig,
        file: &ModelFile,
        tuning: Tuning,
    ) -> Result<Self, ModelError> {
        let threads = tuning.intra_threads.unwrap_or(cfg.intra_threads);
        file.verify()?;
        let env = environment(cfg)?;
        let mut last_err = String::new();
        for provider in candidates(cfg.provider) {
            if !available(provider) {
                continue;
            }
            match build(&env, cfg, provider, threads, tuning, &file.path) {
                Ok(session) => return Self::from_session(file.clone(), provider, session),
                Err(e) => {
                    tracing::warn!(model = %file.path.display(), provider = provider.label(), error = %e, "execution provider failed, trying the next");
                    last_err = e;
                }
            }
        }
        Err(ModelError::Load {
            path: file.path.clone(),
            reason: last_err,
        })
    }

    fn from_session(
        file: ModelFile,
        provider: Provider,
        session: Session,
    ) -> Result<Self, ModelError> {
        let outlets = |list: &[ort::value::Outlet]| -> Vec<(String, Vec<i64>)> {
            list.iter()
                .map(|o| {
                    let shape = o
                        .dtype()
                        .tensor_shape()
                        .map(|s| s.to_vec())
                        .unwrap_or_default();
                    (o.name().to_string(), shape)
                })
                .collect()
        };
        let inputs = outlets(session.inputs());
        let outputs = outlets(session.outputs());
        let mut metadata = HashMap::new();
        if let Ok(meta) = session.metadata() {
            for key in meta.custom_keys().unwrap_or_default() {
                if let Some(value) = meta.custom(&key) {
                    metadata.insert(key, value);
                }
            }
        }
        Ok(Self {
            file,
            provider,
            inputs,
            outputs,
            metadata,
            session: Mutex::new(session),
            last_used: Mutex::new(Instant::now()),
        })
    }

    pub fn name(&self) -> String {
        self.file
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Fails with a message naming the file unless input `index` has rank `dims.len()` and
    /// every fixed dimension in `dims` (`None` = any) matches.
    pub fn expect_input(
        &self,
        index: usize,
        dims: &[Option<i64>],
        what: &str,
    ) -> Result<(), ModelError> {
        let bad = |detail: String| ModelError::BadShape {
            path: self.file.path.clone(),
            detail,
        };
        let Some((name, shape)) = self.inputs.get(index) else {
            return Err(bad(format!(
                "it has {} inputs, {what} needs input #{index}",
                self.inputs.len()
            )));
        };
        let fits = shape.len() == dims.len()
            && shape.iter().zip(dims).all(|(&got, want)| match want {
                Some(w) => got == *w || got < 0,
                None => true,
            });
        if fits {
            Ok(())
        } else {
            let want: Vec<String> = dims
                .iter()
                .map(|d| d.map_or("?".into(), |d| d.to_string()))
                .collect();
            Err(bad(format!(
                "input {name:?} has shape {shape:?}, {what} needs [{}]",
                want.join(", ")
            )))
        }
    }

    /// Runs the model on positional inputs and copies every output out as f32.
    pub fn run(&self, inputs: &[Input<'_>]) -> Result<Vec<Output>, ModelError> {
        // The name is only built on failure: this runs once per 32 ms window for the VAD.
        let err = |e: ort::Error| ModelError::inference(&self.name(), e);
        let mut values: Vec<(Cow<'_, str>, SessionInputValue<'_>)> =
            Vec::with_capacity(inputs.len());
        for (input, (name, _)) in inputs.iter().zip(&self.inputs) {
            let value: SessionInputValue<'_> = match input {
                Input::F32(shape, data) => TensorRef::from_array_view((*shape, *data))
                    .map_err(err)?
                    .into(),
                Input::I64(shape, data) => TensorRef::from_array_view((*shape, *data))
                    .map_err(err)?
                    .into(),
            };
            values.push((Cow::Borrowed(name.as_str()), value));
        }
        *self.last_used.lock().expect("last_used poisoned") = Instant::now();
        let mut session = self.session.lock().expect("session poisoned");
        let outputs = session.run(values).map_err(err)?;
        let mut result = Vec::with_capacity(outputs.len());
        for (_, value) in outputs.iter() {
            let (shape, data) = value.try_extract_tensor::<f32>().map_err(err)?;
            result.push(Output {
                shape: shape.to_vec(),
                data: data.to_vec(),
            });
        }
        Ok(result)
    }
}

fn build(
    env: &Environment,
    cfg: &ModelsConfig,
    provider: Provider,
    threads: usize,
    tuning: Tuning,
    path: &Path,
) -> Result<Session, String> {
    let s = |e: ort::Error| e.to_string();
    let mut builder = Session::builder(env).map_err(s)?;
    if threads > 0 {
        builder = builder
            .with_intra_threads(threads)
            .map_err(|e| e.to_string())?;
    }
    if tuning.flush_to_zero {
        builder = builder.with_flush_to_zero().map_err(|e| e.to_string())?;
    }
    let eps = match provider {
        Provider::Cpu => vec![],
        Provider::Cuda => vec![
            ep::CUDA::default()
                .with_device_id(cfg.device_id)
                .build()
                .error_on_failure(),
        ],
        Provider::TensorRt => vec![
            // FP16 where the model allows: TensorRT keeps FP32 for layers that need it.
            ep::TensorRT::default()
                .with_device_id(cfg.device_id)
                .with_fp16(true)
                .with_engine_cache(true)
                .with_engine_cache_path(cfg.fleet_dir.join("trt-cache").display())
                .build()
                .error_on_failure(),
        ],
    };
    if !eps.is_empty() {
        builder = builder
            .with_execution_providers(eps)
            .map_err(|e| e.to_string())?;
    }
    builder.commit_from_file(path).map_err(s)
}
