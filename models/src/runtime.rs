//! ONNX Runtime, loaded once per process from `ORT_DYLIB_PATH`, and sessions on the preferred
//! execution provider with a CPU fallback.
//!
//! A GPU session pays for every input shape it has not seen: the CUDA provider searches
//! cuDNN's convolution algorithms per shape (0.4-1.1 s each with the exhaustive search on an
//! H200). So model inputs come in a few fixed shapes: pipelines resize or pad into spatial
//! buckets ([`crate::shapes`]), and [`LoadedModel::infer`] pads the batch dimension up to one
//! of the model's batch sizes ([`ModelSpec::batches`]) and warms each (item shape, batch size)
//! pair once at load. On the CPU provider batches run at their exact size: there is no search.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider};
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{Session, SessionInputValue};
use ort::value::{Tensor, TensorRef};
use serde::Serialize;

use crate::batch::Batcher;
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

    /// GPU providers pay a search per new input shape: batches are padded to fixed sizes.
    pub fn is_gpu(self) -> bool {
        !matches!(self, Provider::Cpu)
    }
}

/// How the CUDA provider picks cuDNN convolution algorithms for a new input shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvSearch {
    /// Times every algorithm (cudnnFind): the fastest kernels, 0.4-1.1 s per new shape.
    Exhaustive,
    /// cuDNN's heuristics without timing: near-free per shape, usually close to the best.
    Heuristic,
    /// One fixed algorithm (implicit precomputed GEMM): no search, often far slower.
    Default,
}

impl ConvSearch {
    pub fn label(self) -> &'static str {
        match self {
            ConvSearch::Exhaustive => "exhaustive",
            ConvSearch::Heuristic => "heuristic",
            ConvSearch::Default => "default",
        }
    }

    fn ort(self) -> ep::cuda::ConvAlgorithmSearch {
        match self {
            ConvSearch::Exhaustive => ep::cuda::ConvAlgorithmSearch::Exhaustive,
            ConvSearch::Heuristic => ep::cuda::ConvAlgorithmSearch::Heuristic,
            ConvSearch::Default => ep::cuda::ConvAlgorithmSearch::Default,
        }
    }
}

impl std::str::FromStr for ConvSearch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "exhaustive" => Ok(Self::Exhaustive),
            "heuristic" => Ok(Self::Heuristic),
            "default" => Ok(Self::Default),
            other => Err(format!(
                "{other:?} is not one of exhaustive, heuristic, default"
            )),
        }
    }
}

/// Numeric precision of the graph a GPU session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    Fp32,
    /// The model's FP16 variant (float16 weights and activations, float32 inputs and outputs),
    /// used on GPU providers only: the CPU provider has few float16 kernels.
    Fp16,
}

impl Precision {
    pub fn label(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" | "float32" => Ok(Self::Fp32),
            "fp16" | "float16" | "half" => Ok(Self::Fp16),
            other => Err(format!("{other:?} is not one of fp32, fp16")),
        }
    }
}

/// What a pipeline declares about one of its models: the shapes it will feed and how the
/// session should run. Settings from the environment (`FLEET_ORT_*`) override per model.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// Batch sizes a GPU run is padded up to (ascending). Larger batches are split.
    pub batches: Vec<usize>,
    /// Item shapes (without the batch dimension) warmed at load, each at every batch size.
    pub warm: Vec<Vec<i64>>,
    pub conv_search: ConvSearch,
    pub precision: Precision,
    /// Intra-op threads for this model (default: the process setting).
    pub intra_threads: Option<usize>,
    /// Treat subnormal floats as zero. Recurrent states decaying in silence become subnormal,
    /// and subnormal arithmetic is many times slower on x86; their value is below anything a
    /// threshold can see.
    pub flush_to_zero: bool,
    /// Always the CPU provider (tiny or recurrent models whose runs are all launch overhead
    /// on a GPU).
    pub cpu_only: bool,
    /// At most this many items per run on any provider (set by `FLEET_ORT_MAX_BATCH`).
    pub max_run: Option<usize>,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            batches: vec![1],
            warm: Vec::new(),
            conv_search: ConvSearch::Exhaustive,
            precision: Precision::Fp32,
            intra_threads: None,
            flush_to_zero: false,
            cpu_only: false,
            max_run: None,
        }
    }
}

impl ModelSpec {
    pub fn largest_batch(&self) -> usize {
        self.batches.iter().copied().max().unwrap_or(1).max(1)
    }

    /// The batch size a run of `n` items is padded to: the smallest bucket that holds it.
    pub fn bucket_for(&self, n: usize) -> usize {
        self.batches
            .iter()
            .copied()
            .filter(|&b| b >= n)
            .min()
            .unwrap_or_else(|| self.largest_batch())
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

/// One warmed (item shape, batch size) and what its first run cost.
#[derive(Debug, Clone, Serialize)]
pub struct WarmShape {
    pub shape: Vec<i64>,
    pub ms: f64,
}

/// A loaded model: one session, its provider, and what the model declares.
pub struct LoadedModel {
    pub file: ModelFile,
    pub provider: Provider,
    pub spec: ModelSpec,
    /// Input names and shapes (-1 for dynamic dimensions).
    pub inputs: Vec<(String, Vec<i64>)>,
    pub outputs: Vec<(String, Vec<i64>)>,
    /// Custom metadata (e.g. `character` of PP-OCR rec, `names` of YOLOv8).
    pub metadata: HashMap<String, String>,
    /// Session creation time, and the warm-up runs of every declared shape.
    pub load_ms: f64,
    pub warmup: Vec<WarmShape>,
    /// Device memory this model took (NVML, measured around load and warm-up), when known.
    pub(crate) device_bytes: Mutex<Option<u64>>,
    // `Session::run` takes `&mut self`; concurrent tasks on one model take turns (and their
    // batches are merged by `batcher`), which costs little because each run fills the device.
    session: Mutex<Session>,
    /// Page-locked host buffers per input shape (GPU sessions with pinned transfers): the
    /// device copies them by DMA instead of staging pageable memory.
    pinned: Option<Mutex<Pinned>>,
    batcher: Batcher,
    /// Batches are padded up to a bucket (GPU providers; forced on by `FLEET_ORT_PAD_BATCHES`).
    pad: bool,
    stats: Mutex<RunStats>,
    pub(crate) last_used: Mutex<Instant>,
}

/// What a model's runs have done since load (or the last [`LoadedModel::take_stats`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunStats {
    /// Session runs (one per padded batch).
    pub runs: u64,
    /// Real items run, and padding items added to reach a batch bucket.
    pub items: u64,
    pub padded: u64,
    /// Runs that held the items of more than one caller.
    pub merged_runs: u64,
    /// Wall time of each run (ms) with its input shape, the latest [`RUN_LOG`].
    #[serde(skip)]
    pub log: Vec<(Vec<i64>, f64)>,
}

/// Run timings kept per model for reports.
pub const RUN_LOG: usize = 4096;

struct Pinned {
    input: Allocator,
    output: MemoryInfo<'static>,
    tensors: HashMap<Vec<i64>, Tensor<f32>>,
}

/// Page-locked buffers kept per model; beyond this many shapes the oldest are dropped.
const PINNED_SHAPES: usize = 8;

/// An output tensor copied out of ONNX Runtime.
#[derive(Debug, Clone)]
pub struct Output {
    pub shape: Vec<i64>,
    pub data: Vec<f32>,
}

impl Output {
    /// Elements per batch item.
    pub fn item_len(&self) -> usize {
        self.shape
            .iter()
            .skip(1)
            .map(|&d| d.max(0) as usize)
            .product()
    }

    /// Item `i`'s slice of a batched output.
    pub fn item(&self, i: usize) -> &[f32] {
        let n = self.item_len();
        &self.data[i * n..(i + 1) * n]
    }
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
        spec: ModelSpec,
    ) -> Result<Self, ModelError> {
        let threads = spec.intra_threads.unwrap_or(cfg.intra_threads);
        file.verify()?;
        let env = environment(cfg)?;
        let mut last_err = String::new();
        let pref = if spec.cpu_only {
            ProviderPreference::Cpu
        } else {
            cfg.provider
        };
        for provider in candidates(pref) {
            if !available(provider) {
                continue;
            }
            let started = Instant::now();
            match build(&env, cfg, provider, threads, &spec, &file.path) {
                Ok(session) => {
                    let load_ms = started.elapsed().as_secs_f64() * 1e3;
                    let mut model =
                        Self::from_session(cfg, file.clone(), provider, spec, session, load_ms)?;
                    model.warm_up()?;
                    return Ok(model);
                }
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
        cfg: &ModelsConfig,
        file: ModelFile,
        provider: Provider,
        spec: ModelSpec,
        session: Session,
        load_ms: f64,
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
        let pinned = if provider.is_gpu() && cfg.pinned_io {
            match pinned_buffers(&session, cfg.device_id) {
                Ok(p) => Some(Mutex::new(p)),
                Err(e) => {
                    tracing::warn!(model = %file.path.display(), error = %e, "no page-locked buffers; transfers use pageable memory");
                    None
                }
            }
        } else {
            None
        };
        Ok(Self {
            file,
            provider,
            spec,
            inputs,
            outputs,
            metadata,
            load_ms,
            warmup: Vec::new(),
            device_bytes: Mutex::new(None),
            session: Mutex::new(session),
            pinned,
            batcher: Batcher::default(),
            pad: cfg.pad_batches.unwrap_or(provider.is_gpu()),
            stats: Mutex::new(RunStats::default()),
            last_used: Mutex::new(Instant::now()),
        })
    }

    /// Runs every declared item shape at every batch size once (GPU providers), so no task
    /// pays a shape's first-run search.
    fn warm_up(&mut self) -> Result<(), ModelError> {
        if !self.provider.is_gpu() || self.spec.warm.is_empty() {
            return Ok(());
        }
        let mut warmed = Vec::new();
        // A declared shape the export's fixed dimensions refuse is never fed: not warmed.
        let declared = self
            .inputs
            .first()
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        let fits = |item: &[i64]| {
            declared.len() == item.len() + 1
                && item
                    .iter()
                    .zip(&declared[1..])
                    .all(|(&i, &d)| d <= 0 || d == i)
        };
        for item in self.spec.warm.clone() {
            if !declared.is_empty() && !fits(&item) {
                continue;
            }
            for &b in &self.spec.batches {
                let mut shape = vec![b as i64];
                shape.extend(&item);
                let len: usize = shape.iter().map(|&d| d.max(1) as usize).product();
                // Mid-grey, not zeros: some kernels take shortcuts on zeros.
                let data = vec![0.25f32; len];
                let started = Instant::now();
                self.run_raw(&shape, &data)?;
                warmed.push(WarmShape {
                    shape,
                    ms: started.elapsed().as_secs_f64() * 1e3,
                });
            }
        }
        self.warmup = warmed;
        self.take_stats();
        Ok(())
    }

    /// The run statistics so far, resetting them.
    pub fn take_stats(&self) -> RunStats {
        std::mem::take(&mut *self.stats.lock().expect("stats poisoned"))
    }

    pub(crate) fn note_merged(&self) {
        self.stats.lock().expect("stats poisoned").merged_runs += 1;
    }

    pub fn name(&self) -> String {
        self.file
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The precision the session runs: FP16 only where a GPU provider runs the FP16 file.
    pub fn precision(&self) -> Precision {
        if self.provider.is_gpu() {
            self.spec.precision
        } else {
            Precision::Fp32
        }
    }

    /// Total warm-up cost (ms).
    pub fn warmup_ms(&self) -> f64 {
        self.warmup.iter().map(|w| w.ms).sum()
    }

    /// Device memory measured for this model, if a probe was available when it loaded.
    pub fn device_bytes(&self) -> Option<u64> {
        *self.device_bytes.lock().expect("device_bytes poisoned")
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

    /// Runs `n` items of shape `item` (batch dimension first, `data` holds `n` items) through
    /// the model's single input and returns every output with `n` items. Concurrent callers'
    /// items of the same shape are merged into one run; on a GPU the batch is padded to one
    /// of [`ModelSpec::batches`] and split above the largest.
    pub fn infer(&self, item: &[i64], n: usize, data: &[f32]) -> Result<Vec<Output>, ModelError> {
        let len: usize = item.iter().map(|&d| d.max(0) as usize).product();
        if data.len() != len * n {
            return Err(ModelError::Inference {
                model: self.name(),
                reason: format!(
                    "{} values given for {n} items of shape {item:?} ({len} each)",
                    data.len()
                ),
            });
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        *self.last_used.lock().expect("last_used poisoned") = Instant::now();
        self.batcher.submit(self, item, n, data)
    }

    /// One run of a whole batch of `n` items: pads to the bucket on GPU providers, splits
    /// above the largest bucket. Called by the batcher with merged requests.
    pub(crate) fn run_items(
        &self,
        item: &[i64],
        n: usize,
        data: &[f32],
    ) -> Result<Vec<Output>, ModelError> {
        let len: usize = item.iter().map(|&d| d.max(0) as usize).product();
        let step = if let Some(max) = self.spec.max_run {
            max.max(1)
        } else if self.pad {
            self.spec.largest_batch()
        } else {
            // No shape search on the CPU: a caller's whole batch in one run (within reason).
            self.spec.largest_batch().max(n.min(64))
        };
        let mut merged: Vec<Output> = Vec::new();
        let mut padded = Vec::new();
        for start in (0..n).step_by(step.max(1)) {
            let count = step.min(n - start);
            let chunk = &data[start * len..(start + count) * len];
            let batch = if self.pad {
                self.spec.bucket_for(count).max(count)
            } else {
                count
            };
            let input: &[f32] = if batch == count {
                chunk
            } else {
                padded.clear();
                padded.extend_from_slice(chunk);
                padded.resize(batch * len, 0.0);
                &padded
            };
            let mut shape = vec![batch as i64];
            shape.extend(item);
            let started = Instant::now();
            let outs = self.run_raw(&shape, input)?;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            {
                let mut st = self.stats.lock().expect("stats poisoned");
                st.runs += 1;
                st.items += count as u64;
                st.padded += (batch - count) as u64;
                if st.log.len() >= RUN_LOG {
                    st.log.remove(0);
                }
                st.log.push((shape.clone(), ms));
            }
            if merged.is_empty() {
                merged = outs
                    .into_iter()
                    .map(|o| {
                        let keep = o.item_len() * count;
                        let mut shape = o.shape.clone();
                        shape[0] = count as i64;
                        let mut data = o.data;
                        data.truncate(keep);
                        Output { shape, data }
                    })
                    .collect();
            } else {
                for (m, o) in merged.iter_mut().zip(outs) {
                    let keep = o.item_len() * count;
                    m.data.extend_from_slice(&o.data[..keep]);
                    m.shape[0] += count as i64;
                }
            }
        }
        Ok(merged)
    }

    /// Runs the model on one float input of exactly `shape`.
    fn run_raw(&self, shape: &[i64], data: &[f32]) -> Result<Vec<Output>, ModelError> {
        let err = |e: ort::Error| ModelError::inference(&self.name(), e);
        if let Some(pinned) = &self.pinned {
            let mut pinned = pinned.lock().expect("pinned buffers poisoned");
            return self.run_pinned(&mut pinned, shape, data).map_err(err);
        }
        self.run(&[Input::F32(shape, data)])
    }

    /// The input copied into a page-locked buffer, outputs written by the device straight
    /// into page-locked memory.
    fn run_pinned(
        &self,
        pinned: &mut Pinned,
        shape: &[i64],
        data: &[f32],
    ) -> Result<Vec<Output>, ort::Error> {
        if !pinned.tensors.contains_key(shape) {
            if pinned.tensors.len() >= PINNED_SHAPES {
                pinned.tensors.clear();
            }
            let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
            let tensor = Tensor::<f32>::new(&pinned.input, dims)?;
            pinned.tensors.insert(shape.to_vec(), tensor);
        }
        let tensor = pinned.tensors.get_mut(shape).expect("inserted above");
        tensor.extract_tensor_mut().1.copy_from_slice(data);
        let mut session = self.session.lock().expect("session poisoned");
        let mut binding = session.create_binding()?;
        binding.bind_input(self.inputs[0].0.as_str(), tensor)?;
        for (name, _) in &self.outputs {
            binding.bind_output_to_device(name.as_str(), &pinned.output)?;
        }
        let outputs = session.run_binding(&binding)?;
        let mut result = Vec::with_capacity(outputs.len());
        for (_, value) in outputs.iter() {
            let (shape, data) = value.try_extract_tensor::<f32>()?;
            result.push(Output {
                shape: shape.to_vec(),
                data: data.to_vec(),
            });
        }
        Ok(result)
    }

    /// Runs the model on positional inputs of exactly the given shapes and copies every
    /// output out as f32. For recurrent or multi-input models; batchable single-input models
    /// go through [`infer`](Self::infer).
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

fn pinned_buffers(session: &Session, device_id: i32) -> Result<Pinned, ort::Error> {
    let input = Allocator::new(
        session,
        MemoryInfo::new(
            AllocationDevice::CUDA_PINNED,
            device_id,
            AllocatorType::Device,
            MemoryType::CPUInput,
        )?,
    )?;
    let output = MemoryInfo::new(
        AllocationDevice::CUDA_PINNED,
        device_id,
        AllocatorType::Device,
        MemoryType::CPUOutput,
    )?;
    Ok(Pinned {
        input,
        output,
        tensors: HashMap::new(),
    })
}

fn build(
    env: &Environment,
    cfg: &ModelsConfig,
    provider: Provider,
    threads: usize,
    spec: &ModelSpec,
    path: &Path,
) -> Result<Session, String> {
    let s = |e: ort::Error| e.to_string();
    let mut builder = Session::builder(env).map_err(s)?;
    // A GPU session's CPU threads only run the odd shape op between device kernels: two are
    // plenty, and spinning ones would take the cores the pipelines' pre-processing needs.
    let threads = if provider.is_gpu() && spec.intra_threads.is_none() {
        2
    } else {
        threads
    };
    if provider.is_gpu() {
        builder = builder
            .with_intra_op_spinning(false)
            .map_err(|e| e.to_string())?;
    }
    if threads > 0 {
        builder = builder
            .with_intra_threads(threads)
            .map_err(|e| e.to_string())?;
    }
    if spec.flush_to_zero {
        builder = builder.with_flush_to_zero().map_err(|e| e.to_string())?;
    }
    let eps = match provider {
        Provider::Cpu => vec![],
        Provider::Cuda => vec![
            ep::CUDA::default()
                .with_device_id(cfg.device_id)
                .with_conv_algorithm_search(spec.conv_search.ort())
                // The workspace lets cuDNN pick its fastest kernels; the arena keeps it.
                .with_conv_max_workspace(true)
                .with_tf32(cfg.tf32)
                .with_prefer_nhwc(cfg.nhwc)
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
