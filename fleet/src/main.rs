//! `fleet`: the operator's CLI for an Analyzer Fleet (submit, follow, inspect, run locally).
//!
//! Layout:
//! - `cli`: the command line (clap derive); `settings`: the fleet config as the CLI needs it.
//! - `api`: the dispatcher's HTTP API client and the views of its answers.
//! - `render`: pure text for the terminal (status, result tables, progress line, job lists).
//! - one file per command family: `submit`, `jobs` (status/result/cancel), `watch`,
//!   `queues`, `dlq`, `gpus`, `up`; `amqp` is the CLI's own short-lived broker connection.
//! - `error`: one-line errors with the fix, and the exit statuses.
#![forbid(unsafe_code)]

mod amqp;
mod api;
mod cli;
mod dlq;
mod error;
mod gpus;
mod jobs;
mod queues;
mod render;
mod settings;
mod submit;
mod up;
mod watch;

use std::process::ExitCode;

use clap::Parser;

use crate::api::Api;
use crate::cli::{Args, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleet: {e:#}");
            ExitCode::from(error::exit_code(&e))
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = args.config.as_deref();
    match args.command {
        Command::Submit(a) => submit::run(&Api::new(&args.url)?, a).await,
        Command::Status(a) => jobs::status(&Api::new(&args.url)?, a).await,
        Command::Result(a) => jobs::result(&Api::new(&args.url)?, a).await,
        Command::Cancel(a) => jobs::cancel(&Api::new(&args.url)?, a).await,
        Command::Watch(a) => watch::run(&Api::new(&args.url)?, a).await,
        Command::Queues => queues::run(config).await,
        Command::Dlq { action } => dlq::run(config, action).await,
        Command::Gpus => gpus::run(config).await,
        Command::Up(a) => up::run(config, a).await,
        Command::Plan(mut a) => {
            // `fleet` owns the global --config; hand it to the planner.
            a.config = args.config.clone();
            planner::run(a).await
        }
    }
}
