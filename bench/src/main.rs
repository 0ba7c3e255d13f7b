//! `fleet-bench`: benchmarks that write a report (see docs/benchmarks.md), and the planner.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Benchmarks of the Analyzer Fleet against the real RabbitMQ and Redis (synthetic
/// analyzers only), and the stage planner.
#[derive(Debug, Parser)]
#[command(name = "fleet-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The seed workload: fleet vs barrier schedule vs the config's bound, plus a plot.
    Seed(bench::seed::SeedArgs),
    /// Per-task overhead of no-op tasks against the raw broker loop.
    Overhead(bench::overhead::OverheadArgs),
    /// Propose stages and concurrency (the same as `fleet plan`).
    Plan {
        /// Config to plan for (default: FLEET_CONFIG, then config/fleet.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        args: bench::planner::PlanArgs,
    },
}

#[tokio::main]
async fn main() {
    // The fleet runs in this process; its per-task info logs would cost more than the tasks.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Seed(a) => bench::seed::run(a).await,
        Command::Overhead(a) => bench::overhead::run(a).await,
        Command::Plan { config, mut args } => {
            args.config = config;
            bench::planner::run(args).await
        }
    };
    if let Err(e) = result {
        eprintln!("fleet-bench: {e:#}");
        let code = if e.downcast_ref::<common::ConfigError>().is_some() {
            common::config::EXIT_CONFIG
        } else {
            1
        };
        std::process::exit(code);
    }
}
