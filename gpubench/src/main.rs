//! `bench-gpu`: the GPU inference benchmark behind `docs/bench-gpu.md` (a report, never a
//! test). On one machine, side by side on the same frames: the CUDA execution provider
//! against the CPU provider, batched against one item per run, FP16 against FP32, each cuDNN
//! search policy, and (from `scripts/bench/gpu_python.py`) the Python pipelines the seed runs.
//!
//! ```text
//! bench-gpu prepare --video bench.mp4 --out /tmp/gb        # raw RGB frame sets + meta.json
//! python3 scripts/bench/gpu_python.py ...                  # exports YOLOv8/SegFormer, Python side
//! bench-gpu run --frames /tmp/gb --models /tmp/gb/onnx --python /tmp/gb/python.json \
//!               --report docs/bench-gpu.md --json bench-gpu.json
//! ```
//!
//! Layout: `frames` (decode and load the frame sets), `setup` (registries per provider and
//! precision, NVML), `micro` (one model at a time), `pipes` (the analyzers' pipelines and
//! FP16 agreement), `report` (markdown).

mod frames;
mod micro;
mod pipes;
mod report;
mod setup;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "GPU inference benchmark: writes a report, asserts nothing")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Decode the benchmark video into raw RGB frame sets (ffmpeg on PATH).
    Prepare {
        #[arg(long)]
        video: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Run every measurement and write the report.
    Run(Run),
}

#[derive(clap::Args)]
pub struct Run {
    /// Folder written by `prepare`.
    #[arg(long)]
    pub frames: PathBuf,
    /// Folder with yolov8s.onnx, yolov8x.onnx, segformer.onnx (and their .fp16.onnx).
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// The Python side's results (scripts/bench/gpu_python.py).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Markdown report to write.
    #[arg(long)]
    pub report: PathBuf,
    /// All figures as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Frames the CPU provider runs per pipeline (it is slow; per-frame figures scale).
    #[arg(long, default_value_t = 12)]
    pub cpu_frames: usize,
    /// Steady-state repetitions per micro-benchmark on the GPU.
    #[arg(long, default_value_t = 10)]
    pub reps: usize,
    /// Only the sections whose names contain one of these (micro, search, ocr, faces,
    /// yolo, segformer, fp16).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// The GPU execution provider is required (exit with an error instead of a CPU-only run).
    #[arg(long)]
    pub require_gpu: bool,
}

impl Run {
    pub fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| section.contains(o.as_str()))
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match Args::parse().cmd {
        Cmd::Prepare { video, out } => frames::prepare(&video, &out).context("prepare"),
        Cmd::Run(run) => {
            let mut r = report::Report::new(&run);
            let env = setup::Env::new(&run)?;
            r.environment(&env);
            if run.require_gpu && !env.gpu {
                anyhow::bail!(
                    "no CUDA execution provider: point ORT_DYLIB_PATH at onnxruntime-gpu's library \
                     and LD_LIBRARY_PATH at CUDA 13 / cuDNN 9"
                );
            }
            let sets = frames::load(&run.frames)?;
            let operator = setup::operator_models(run.models.as_deref())?;
            let python = match &run.python {
                Some(p) if p.exists() => Some(
                    serde_json::from_slice(&std::fs::read(p)?)
                        .with_context(|| format!("parsing {}", p.display()))?,
                ),
                _ => None,
            };
            if run.wants("micro") {
                r.section(micro::models(&env, &run, &operator)?);
            }
            if run.wants("search") {
                r.section(micro::search(&env, &run, &sets, &operator)?);
            }
            let py = python.as_ref();
            if run.wants("ocr") {
                r.section(pipes::ocr(&env, &run, &sets, py)?);
            }
            if run.wants("faces") {
                r.section(pipes::faces(&env, &run, &sets)?);
            }
            if run.wants("yolo") {
                for m in operator.iter().filter(|m| m.kind == setup::Kind::Yolo) {
                    r.section(pipes::yolo(&env, &run, &sets, m, py)?);
                }
            }
            if run.wants("segformer") {
                for m in operator.iter().filter(|m| m.kind == setup::Kind::SegFormer) {
                    r.section(pipes::segformer(&env, &run, &sets, m, py)?);
                }
            }
            r.finish()
        }
    }
}
