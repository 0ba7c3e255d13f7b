//! The machine, and model registries per provider, precision and batch policy.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use models::config::sha256_hex;
use models::{ModelFile, ModelRegistry, ModelsConfig, Precision, ProviderPreference};

use crate::Run;

pub struct Env {
    pub gpu: bool,
    pub gpu_name: String,
    pub gpu_total: u64,
    pub cores: usize,
    pub nvml: Option<gpu::PinnedGpu>,
    pub ort: PathBuf,
}

impl Env {
    pub fn new(_run: &Run) -> anyhow::Result<Self> {
        let base = ModelsConfig::from_env().map_err(|e| anyhow::anyhow!("{e}"))?;
        let ort = base.ort_dylib.clone().unwrap_or_default();
        let nvml = gpu::select("0").ok();
        let probe = ModelRegistry::new(Self::config_with(&base, ProviderPreference::Cuda));
        let gpu = probe.expected_provider().is_gpu();
        Ok(Self {
            gpu,
            gpu_name: nvml
                .as_ref()
                .map(|g| g.name().to_string())
                .unwrap_or_default(),
            gpu_total: nvml.as_ref().map(|g| g.memory_total_bytes()).unwrap_or(0),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            nvml,
            ort,
        })
    }

    fn config_with(base: &ModelsConfig, provider: ProviderPreference) -> ModelsConfig {
        let mut cfg = base.clone();
        cfg.provider = provider;
        // Nothing unloads behind the benchmark's back.
        cfg.idle_unload = std::time::Duration::ZERO;
        cfg
    }

    /// NVML's memory in use on GPU 0.
    pub fn used(&self) -> Option<u64> {
        self.nvml
            .as_ref()
            .and_then(|g| g.sample().ok())
            .map(|i| i.memory_used_bytes)
    }

    /// A fresh registry (fresh sessions) for one configuration.
    pub fn registry(&self, c: &Config) -> Arc<ModelRegistry> {
        let base = ModelsConfig::from_env().expect("checked in Env::new");
        let mut cfg = Self::config_with(
            &base,
            if c.gpu {
                ProviderPreference::Cuda
            } else {
                ProviderPreference::Cpu
            },
        );
        if let Some(p) = c.precision {
            cfg.precision.insert("*".into(), p);
        }
        if let Some(s) = c.conv_search {
            cfg.conv_search.insert("*".into(), s);
        }
        cfg.max_batch = c.max_batch;
        cfg.pinned_io = c.pinned;
        cfg.nhwc = c.nhwc;
        let reg = ModelRegistry::new(cfg);
        if c.gpu
            && let Some(g) = &self.nvml
        {
            let g = g.clone();
            reg.set_memory_probe(Box::new(move || {
                g.sample().ok().map(|i| i.memory_used_bytes)
            }));
        }
        reg
    }
}

/// One way of running the models.
#[derive(Debug, Clone)]
pub struct Config {
    pub label: &'static str,
    pub gpu: bool,
    /// None: each model's declared precision.
    pub precision: Option<Precision>,
    pub conv_search: Option<models::ConvSearch>,
    pub max_batch: Option<usize>,
    pub pinned: bool,
    pub nhwc: bool,
}

impl Config {
    pub fn cpu() -> Self {
        Self {
            label: "CPU EP",
            gpu: false,
            precision: None,
            conv_search: None,
            max_batch: None,
            pinned: false,
            nhwc: false,
        }
    }
    pub fn cuda() -> Self {
        Self {
            label: "CUDA EP (as shipped)",
            gpu: true,
            precision: None,
            conv_search: None,
            max_batch: None,
            pinned: true,
            nhwc: false,
        }
    }
    pub fn cuda_fp32() -> Self {
        Self {
            label: "CUDA EP, FP32 everywhere",
            precision: Some(Precision::Fp32),
            ..Self::cuda()
        }
    }
    pub fn cuda_batch1() -> Self {
        Self {
            label: "CUDA EP, batch 1",
            max_batch: Some(1),
            ..Self::cuda()
        }
    }
    pub fn cuda_nhwc() -> Self {
        Self {
            label: "CUDA EP, NHWC convolutions",
            nhwc: true,
            ..Self::cuda()
        }
    }
    pub fn cuda_pageable() -> Self {
        Self {
            label: "CUDA EP, pageable transfers",
            pinned: false,
            ..Self::cuda()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Yolo,
    SegFormer,
}

/// An operator-style model file the Python side exported (random weights: speed does not
/// depend on the weights' values).
#[derive(Debug, Clone)]
pub struct OperatorModel {
    pub name: String,
    pub kind: Kind,
    pub file: ModelFile,
}

pub fn operator_models(dir: Option<&Path>) -> anyhow::Result<Vec<OperatorModel>> {
    let Some(dir) = dir else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (name, kind) in [
        ("yolov8s", Kind::Yolo),
        ("yolov8x", Kind::Yolo),
        ("segformer-b0", Kind::SegFormer),
        ("segformer-b2", Kind::SegFormer),
    ] {
        let path = dir.join(format!("{name}.onnx"));
        if !path.exists() {
            eprintln!("bench-gpu: {} not found, skipping {name}", path.display());
            continue;
        }
        let mut file = model_file(&path)?;
        let half = dir.join(format!("{name}.fp16.onnx"));
        if half.exists() {
            file.fp16 = Some(Box::new(model_file(&half)?));
        }
        out.push(OperatorModel {
            name: name.to_string(),
            kind,
            file,
        });
    }
    Ok(out)
}

fn model_file(path: &Path) -> anyhow::Result<ModelFile> {
    Ok(ModelFile {
        path: path.to_path_buf(),
        sha256: sha256_hex(&std::fs::read(path)?),
        fix: "re-export with scripts/bench/gpu_python.py".into(),
        fp16: None,
    })
}
