//! The dispatcher binary: config, telemetry, then `dispatcher::run` until SIGTERM/SIGINT.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use common::config::{EXIT_CONFIG, FleetConfig};
use tokio_util::sync::CancellationToken;

/// Takes job requests (AMQP fleet.jobs and HTTP), splits them into stage tasks, completes jobs.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Path of fleet.toml (env FLEET_CONFIG).
    #[arg(long, env = "FLEET_CONFIG", default_value = common::config::DEFAULT_CONFIG_PATH)]
    config: std::path::PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // Early returns flush it on drop.
    let telemetry = common::telemetry::init("dispatcher");
    let config = match FleetConfig::load(&args.config, |k| std::env::var(k).ok()) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("dispatcher: bad configuration\n{e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&config.connections.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "dispatcher: cannot listen on {}: {e} (set FLEET_LISTEN)",
                config.connections.listen
            );
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(common::telemetry::shutdown_on_signals(shutdown.clone()));
    let result = dispatcher::run(config, listener, shutdown).await;
    // The last spans (the drain, the job completions) leave before the process does.
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dispatcher: {e:#}");
            ExitCode::FAILURE
        }
    }
}
