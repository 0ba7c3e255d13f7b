//! The worker binary: config, telemetry, GPU pinning and guard, then `worker::run` until SIGTERM/SIGINT.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use common::config::{EXIT_CONFIG, FleetConfig, StageClass};
use common::metrics::Metrics;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use worker::residency::Residency;
use worker::{Backends, WorkerGpu, WorkerOptions};

const GUARD_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, ValueEnum)]
enum Class {
    Gpu,
    Cpu,
}

/// Runs analyzers on stage tasks. GPU workers consume fleet.stage1..4, CPU workers fleet.cpu.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Which stage queues to consume.
    #[arg(long, value_enum)]
    class: Class,
    /// GPU to pin (NVML index or UUID); GPU workers only.
    #[arg(long, default_value = "0")]
    gpu: String,
    /// Without an NVIDIA driver, run GPU stages on the CPU execution provider instead of exiting.
    #[arg(long)]
    allow_cpu_fallback: bool,
    /// SYNTHETIC analyzers for every analyzer (tests/benchmarks): hold each slot for
    /// expected seconds x this factor. Without it, every enabled analyzer of the config must
    /// have a real implementation (and accept its params), or the worker exits with 64.
    #[arg(long)]
    synthetic_scale: Option<f64>,
    /// Name in outcomes and on the broker connection (default: <class>@<host>:<pid>).
    #[arg(long)]
    name: Option<String>,
    /// Path of fleet.toml (env FLEET_CONFIG).
    #[arg(long, env = "FLEET_CONFIG", default_value = common::config::DEFAULT_CONFIG_PATH)]
    config: std::path::PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let class = match args.class {
        Class::Gpu => StageClass::Gpu,
        Class::Cpu => StageClass::Cpu,
    };
    // Early returns flush it on drop.
    let telemetry = common::telemetry::init(&format!("worker-{class}"));
    let config = match FleetConfig::load(&args.config, |k| std::env::var(k).ok()) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("worker: bad configuration\n{e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    if let Some(s) = args.synthetic_scale
        && !(s.is_finite() && s >= 0.0)
    {
        eprintln!("worker: --synthetic-scale must be a number >= 0");
        return ExitCode::from(EXIT_CONFIG as u8);
    }
    let metrics = Metrics::new();
    let mut _guard = None;
    let mut accepting = None;
    let mut pinned_gpu = None;
    if class == StageClass::Gpu {
        match pin_gpu(&args.gpu, &config, &metrics) {
            Ok((guard, rx, g)) => {
                _guard = Some(guard);
                accepting = Some(rx);
                pinned_gpu = Some(g);
            }
            Err(e) if args.allow_cpu_fallback => {
                cpu_models();
                tracing::warn!(
                    "{e}; --allow-cpu-fallback given: GPU stages run on the CPU execution provider, no memory guard"
                );
            }
            Err(e) => {
                eprintln!("worker: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if class == StageClass::Cpu {
        cpu_models();
    }
    let name = args.name.unwrap_or_else(|| {
        let class = match &pinned_gpu {
            Some(g) => format!("gpu{}", g.index),
            None => class.to_string(),
        };
        format!("{class}@{}:{}", dispatcher_host(), std::process::id())
    });
    // A real worker refuses a config it cannot run as written: unknown analyzer names, bad
    // params, a bad [media] section, all reported at once.
    let mut problems = Vec::new();
    if args.synthetic_scale.is_none() {
        problems.extend(worker::analyzers::config_problems(&config));
    }
    if let Err(e) = worker::settings::media_config(&config, None) {
        problems.push(e);
    }
    if !problems.is_empty() {
        eprintln!(
            "worker: bad configuration ({})\n  {}",
            args.config.display(),
            problems.join("\n  ")
        );
        return ExitCode::from(EXIT_CONFIG as u8);
    }
    let backends = match args.synthetic_scale {
        Some(scale) => Backends::Synthetic { scale },
        None => Backends::Real {
            fallback_scale: 1.0,
        },
    };
    let health = match tokio::net::TcpListener::bind(&config.connections.metrics_listen).await {
        Ok(l) => Some(l),
        Err(e) => {
            // Several workers on one host: only the first gets the port; the rest run without it.
            tracing::warn!(addr = %config.connections.metrics_listen, error = %e, "health/metrics endpoint not started (set FLEET_METRICS_LISTEN)");
            None
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(common::telemetry::shutdown_on_signals(shutdown.clone()));
    let opts = WorkerOptions {
        class,
        name,
        backends,
        gpu: pinned_gpu,
    };
    let result = worker::run(config, opts, health, accepting, metrics, shutdown).await;
    // The last spans (the drained tasks) leave before the process does.
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("worker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// CPU-class workers (and a GPU worker without a GPU) keep their models on the CPU provider,
/// so that on a GPU host they never take device memory the GPU stages count on; an explicit
/// `FLEET_EXECUTION_PROVIDER` still wins.
fn cpu_models() {
    if std::env::var_os("FLEET_EXECUTION_PROVIDER").is_none() {
        models::ModelRegistry::configure_global(|c| {
            c.provider = models::ProviderPreference::Cpu;
        });
    }
}

fn dispatcher_host() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Pins the GPU, logs it, starts the memory guard and the residency policy that follows it
/// (which also mirrors the guard's readings into metrics).
fn pin_gpu(
    selector: &str,
    config: &FleetConfig,
    metrics: &Arc<Metrics>,
) -> Result<(gpu::MemoryGuard, watch::Receiver<bool>, WorkerGpu), gpu::GpuError> {
    let pinned = gpu::select(selector)?;
    tracing::info!(
        index = pinned.index(),
        uuid = pinned.uuid(),
        name = pinned.name(),
        memory_total_bytes = pinned.memory_total_bytes(),
        cuda_device_id = pinned.cuda_device_id(),
        "GPU pinned"
    );
    let thresholds = gpu::GuardThresholds {
        warning: config.gpu.warning.parse()?,
        critical: config.gpu.critical.parse()?,
    };
    // The models' sessions go to the pinned device, and every load is measured on it: NVML's
    // used memory before and after (loads are serialized while measured), which the residency
    // policy (`worker::residency`) and `fleet_model_device_bytes` use instead of the config's
    // estimates.
    let probe = pinned.clone();
    match models::ModelRegistry::configure_global(|c| c.device_id = pinned.cuda_device_id()) {
        Some(registry) => registry.set_memory_probe(Box::new(move || {
            probe.sample().ok().map(|i| i.memory_used_bytes)
        })),
        None => tracing::warn!(
            "the model registry was in use before the GPU was pinned: its device id and memory probe are the environment's"
        ),
    }
    let guard = gpu::MemoryGuard::start(&pinned, &thresholds, GUARD_INTERVAL)?;
    let registry = models::ModelRegistry::global().clone();
    let rx = Residency::default().follow(&guard, registry, metrics.clone());
    let held = WorkerGpu {
        uuid: pinned.uuid().to_string(),
        index: pinned.index(),
        cuda_device_id: pinned.cuda_device_id(),
    };
    Ok((guard, rx, held))
}
