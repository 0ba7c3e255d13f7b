//! Checks the `gpu` crate on a machine with an NVIDIA GPU: listing, pinning, the memory guard.
//!
//! cargo run -p gpu --example gpu-check --release -- all --warning 10GB --critical 20GB --seconds 30
//! (then, in another shell, allocate and free GPU memory, e.g. with PyTorch, and watch the
//! guard's transitions).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use gpu::{DeviceInfo, GuardThresholds, MemoryGuard, PinnedGpu};

#[derive(Parser)]
#[command(about = "List, pin and guard NVIDIA GPUs through NVML")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct GuardArgs {
    /// Warning threshold: size ("10GB", "12 GiB") or share ("78%") of the device's memory.
    #[arg(long, default_value = "78%")]
    warning: String,
    /// Critical threshold: above it the guard pauses; it resumes below warning.
    #[arg(long, default_value = "90%")]
    critical: String,
    #[arg(long, default_value_t = 200)]
    interval_ms: u64,
    /// How long to watch.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Print a reading this often, besides every state change.
    #[arg(long, default_value_t = 2000)]
    print_every_ms: u64,
}

#[derive(Subcommand)]
enum Cmd {
    /// List devices with memory, utilization and temperature.
    List,
    /// Pin a device by index or UUID and print what a worker would use.
    Pin { selector: String },
    /// Run the memory guard on one device and print its state changes.
    Guard {
        #[arg(long, default_value = "0")]
        gpu: String,
        #[command(flatten)]
        args: GuardArgs,
    },
    /// list, pin device 0 by index and by its UUID, then guard it.
    All {
        #[command(flatten)]
        args: GuardArgs,
    },
    /// Say whether an error message is classified as GPU out-of-memory.
    IsOom { message: String },
}

fn gb(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}

fn show(d: &DeviceInfo) -> String {
    let opt = |v: Option<u32>, unit: &str| v.map_or("n/a".into(), |v| format!("{v}{unit}"));
    format!(
        "#{} {} {}  memory {} / {}  util {}  temp {}",
        d.index,
        d.uuid,
        d.name,
        gb(d.memory_used_bytes),
        gb(d.memory_total_bytes),
        opt(d.utilization_percent, "%"),
        opt(d.temperature_celsius, "C")
    )
}

fn list() -> Result<Vec<DeviceInfo>> {
    let devices = gpu::list_devices()?;
    println!("{} device(s)", devices.len());
    for d in &devices {
        println!("  {}", show(d));
    }
    Ok(devices)
}

fn pin(selector: &str) -> Result<PinnedGpu> {
    let g = gpu::select(selector)?;
    println!(
        "pinned `{selector}`: index {} uuid {} name {:?} total {} cuda_device_id {} CUDA_VISIBLE_DEVICES={}",
        g.index(),
        g.uuid(),
        g.name(),
        gb(g.memory_total_bytes()),
        g.cuda_device_id(),
        g.cuda_visible_devices()
    );
    Ok(g)
}

async fn guard(g: &PinnedGpu, a: &GuardArgs) -> Result<()> {
    let thresholds = GuardThresholds {
        warning: a.warning.parse()?,
        critical: a.critical.parse()?,
    };
    let guard = MemoryGuard::start(g, &thresholds, Duration::from_millis(a.interval_ms))?;
    let t = guard.thresholds();
    println!(
        "guard on {}: warning {} ({}), critical {} ({}), every {} ms, for {} s",
        g.uuid(),
        a.warning,
        gb(t.warning_bytes),
        a.critical,
        gb(t.critical_bytes),
        a.interval_ms,
        a.seconds
    );
    let start = Instant::now();
    let stamp = || format!("[{:6.2}s]", start.elapsed().as_secs_f64());
    let mut states = guard.subscribe();
    let readings = guard.readings();
    println!(
        "{} state {} (used {})",
        stamp(),
        guard.state(),
        gb(readings.borrow().memory_used_bytes)
    );
    let mut tick = tokio::time::interval(Duration::from_millis(a.print_every_ms));
    let end = tokio::time::sleep(Duration::from_secs(a.seconds));
    tokio::pin!(end);
    let mut prev = guard.state();
    loop {
        tokio::select! {
            _ = &mut end => break,
            changed = states.changed() => {
                changed.context("guard stopped")?;
                let next = *states.borrow_and_update();
                println!(
                    "{} TRANSITION {prev} -> {next} (used {}, accepts_work={})",
                    stamp(),
                    gb(readings.borrow().memory_used_bytes),
                    next.accepts_work()
                );
                prev = next;
            }
            _ = tick.tick() => {
                println!("{}   used {}  state {}", stamp(), gb(readings.borrow().memory_used_bytes), guard.state());
            }
        }
    }
    println!("{} done, final state {}", stamp(), guard.state());
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match Cli::parse().cmd {
        Cmd::List => {
            list()?;
        }
        Cmd::Pin { selector } => {
            pin(&selector)?;
        }
        Cmd::Guard { gpu, args } => guard(&pin(&gpu)?, &args).await?,
        Cmd::All { args } => {
            let devices = list()?;
            let first = devices.first().context("no GPU to pin")?;
            let by_index = pin(&first.index.to_string())?;
            let by_uuid = pin(&first.uuid)?;
            anyhow::ensure!(
                by_index.uuid() == by_uuid.uuid(),
                "index and UUID pinned different GPUs"
            );
            println!("index and UUID pin the same device");
            for bad in ["99", "GPU-00000000-0000-0000-0000-000000000000", "cuda:0"] {
                let e = gpu::select(bad).expect_err("must not pin");
                println!("select({bad:?}) -> error: {e}");
            }
            guard(&by_index, &args).await?;
        }
        Cmd::IsOom { message } => {
            println!("is_out_of_memory = {}", gpu::is_out_of_memory(&message))
        }
    }
    Ok(())
}
