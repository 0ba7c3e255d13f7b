//! The command line: global flags and one subcommand per operator task (clap derive).

use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand};

/// Where the dispatcher's HTTP API listens by default (`common::config::DEFAULT_LISTEN`).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";
/// Where `fleet queues` looks for the RabbitMQ management API (credentials in the URL).
pub const DEFAULT_RABBITMQ_API: &str = "http://guest:guest@127.0.0.1:15672";
pub const DEFAULT_WATCH_LIMIT: usize = 20;
pub const DEFAULT_WATCH_INTERVAL_SECS: f64 = 2.0;
pub const DEFAULT_DLQ_LIMIT: usize = 20;

/// Operate an Analyzer Fleet: submit videos, follow jobs, inspect queues and the
/// dead-letter queue, list GPUs, run a local fleet.
///
/// The HTTP API token is read from FLEET_API_TOKEN (never a flag, so it stays out of `ps`).
#[derive(Debug, Parser)]
#[command(name = "fleet", version, propagate_version = true)]
pub struct Args {
    /// The dispatcher's HTTP API.
    #[arg(long, env = "FLEET_URL", default_value = DEFAULT_URL, global = true)]
    pub url: String,
    /// fleet.toml, for the AMQP/Redis settings and `up` (default: config/fleet.toml when it
    /// exists; otherwise the environment: FLEET_AMQP_URL, FLEET_PREFIX, ...).
    #[arg(long, env = "FLEET_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit a video (local path or http(s) URL) as a job; --wait follows it to the end.
    Submit(SubmitArgs),
    /// A job's status and progress, per stage.
    Status(JobArgs),
    /// A job's result: one row per analyzer (or the raw body with --json).
    Result(JobArgs),
    /// Live view of recent jobs (Ctrl-C to stop).
    Watch(WatchArgs),
    /// Every fleet queue: ready, unacked, consumers.
    Queues,
    /// Inspect, replay or purge the dead-letter queue.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Cancel a job: its queued tasks are dropped, the job ends `cancelled`.
    Cancel(JobArgs),
    /// NVIDIA GPUs on this machine, with memory and utilization.
    Gpus,
    /// Run a dispatcher and workers here as child processes until Ctrl-C/SIGTERM.
    Up(UpArgs),
    /// Propose stage assignment and concurrency within the GPU memory budget (stage planner).
    Plan(planner::PlanArgs),
}

#[derive(Debug, ClapArgs)]
pub struct SubmitArgs {
    /// Local path (made absolute; the workers must see the same path) or http(s) URL.
    pub video: String,
    /// Run only these analyzers (comma-separated; their dependencies are added).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub analyzers: Option<Vec<String>>,
    /// Submitting the same key again returns the first job instead of starting another.
    #[arg(long, value_parser = parse_id)]
    pub idempotency_key: Option<String>,
    /// JSON passed through into the job's result, e.g. '{"source":"tiktok"}'.
    #[arg(long, value_parser = parse_json)]
    pub metadata: Option<serde_json::Value>,
    /// Follow the job with a progress bar, then print its result.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up (exit 2) after this many seconds; the job keeps running.
    #[arg(long, requires = "wait", value_parser = parse_secs)]
    pub timeout: Option<f64>,
    /// Print the API's JSON (the submit answer, or the result with --wait).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, ClapArgs)]
pub struct JobArgs {
    /// Job id (as printed by `fleet submit`).
    #[arg(value_parser = parse_id)]
    pub job: String,
    /// Print the API's JSON body instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, ClapArgs)]
pub struct WatchArgs {
    /// How many recent jobs to show.
    #[arg(long, default_value_t = DEFAULT_WATCH_LIMIT, value_parser = parse_limit)]
    pub limit: usize,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = DEFAULT_WATCH_INTERVAL_SECS, value_parser = parse_secs)]
    pub interval: f64,
    /// Print the table once and exit (scripts, tests).
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// Show dead-lettered messages (they stay in the queue).
    List {
        #[arg(long, default_value_t = DEFAULT_DLQ_LIMIT)]
        limit: usize,
    },
    /// Republish dead-lettered messages to the queue they died in, then remove them.
    Replay {
        #[arg(long, default_value_t = DEFAULT_DLQ_LIMIT)]
        limit: usize,
    },
    /// Delete every message in the dead-letter queue.
    Purge {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, ClapArgs)]
pub struct UpArgs {
    /// SYNTHETIC analyzers for every analyzer (demos, tests): each holds its slot for
    /// expected seconds x this factor. Without it, real analyzers run where they exist.
    #[arg(long, value_parser = parse_scale)]
    pub synthetic_scale: Option<f64>,
    /// How many CPU workers to start.
    #[arg(long, default_value_t = 1)]
    pub cpu_workers: usize,
    /// Do not start the GPU worker (it falls back to the CPU execution provider without a GPU).
    #[arg(long)]
    pub no_gpu_worker: bool,
    /// One GPU worker per GPU, each pinned to its device by UUID: `all` (every GPU NVML
    /// lists) or NVML indices / UUIDs separated by commas (`0,1`). These workers need their
    /// GPU (no CPU fallback). Without it: one GPU worker on GPU 0 that falls back to the CPU.
    #[arg(long, conflicts_with = "no_gpu_worker")]
    pub gpus: Option<String>,
}

/// Ids follow the fleet's one grammar (`common::ids`): refused here, before any request.
fn parse_id(s: &str) -> Result<String, String> {
    common::ids::check_id("the id", s).map(|()| s.to_string())
}

fn parse_json(s: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(s)
        .map_err(|e| format!("not valid JSON ({e}); quote it, e.g. '{{\"source\":\"tiktok\"}}'"))
}

fn parse_limit(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=500).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a number from 1 to 500")),
    }
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

fn parse_scale(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("{s:?} is not a number >= 0 (e.g. 0.01)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("fleet").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn default_url_is_the_dispatchers_default_listen_address() {
        assert_eq!(
            DEFAULT_URL,
            format!("http://{}", common::config::DEFAULT_LISTEN)
        );
    }

    #[test]
    fn submit_takes_analyzers_as_a_comma_list_and_metadata_as_json() {
        let a = parse(&[
            "submit",
            "v.mp4",
            "--analyzers",
            "cut_analysis,speech_transcription",
            "--metadata",
            r#"{"a":1}"#,
            "--idempotency-key",
            "k1",
            "--wait",
            "--timeout",
            "30",
        ])
        .unwrap();
        let Command::Submit(s) = a.command else {
            panic!("not submit")
        };
        assert_eq!(s.video, "v.mp4");
        assert_eq!(
            s.analyzers.unwrap(),
            ["cut_analysis", "speech_transcription"]
        );
        assert_eq!(s.metadata.unwrap(), serde_json::json!({"a": 1}));
        assert_eq!(s.idempotency_key.as_deref(), Some("k1"));
        assert!(s.wait);
        assert_eq!(s.timeout, Some(30.0));
    }

    #[test]
    fn submit_rejects_bad_metadata_and_a_timeout_without_wait() {
        let e = parse(&["submit", "v.mp4", "--metadata", "{oops"]).unwrap_err();
        assert!(e.to_string().contains("not valid JSON"), "{e}");
        assert!(parse(&["submit", "v.mp4", "--timeout", "5"]).is_err());
        assert!(parse(&["submit", "v.mp4", "--wait", "--timeout", "-1"]).is_err());
    }

    #[test]
    fn ids_follow_the_fleet_grammar() {
        let e = parse(&["status", "other-job:results"]).unwrap_err();
        assert!(e.to_string().contains("not a valid id"), "{e}");
        assert!(parse(&["cancel", "a/b"]).is_err());
        assert!(parse(&["submit", "v.mp4", "--idempotency-key", "k:1"]).is_err());
        assert!(parse(&["result", "3f2a9e00-0000-4000-8000-000000000001"]).is_ok());
    }

    #[test]
    fn global_url_goes_anywhere_on_the_line() {
        let a = parse(&["status", "j1", "--url", "http://h:1"]).unwrap();
        assert_eq!(a.url, "http://h:1");
        let Command::Status(j) = a.command else {
            panic!()
        };
        assert_eq!(j.job, "j1");
    }

    #[test]
    fn watch_and_dlq_and_up_flags() {
        let a = parse(&["watch", "--limit", "5", "--interval", "0.5", "--once"]).unwrap();
        let Command::Watch(w) = a.command else {
            panic!()
        };
        assert_eq!((w.limit, w.interval, w.once), (5, 0.5, true));
        assert!(parse(&["watch", "--limit", "0"]).is_err());

        let a = parse(&["dlq", "replay", "--limit", "3"]).unwrap();
        assert!(matches!(
            a.command,
            Command::Dlq {
                action: DlqAction::Replay { limit: 3 }
            }
        ));
        let a = parse(&["dlq", "purge", "--yes"]).unwrap();
        assert!(matches!(
            a.command,
            Command::Dlq {
                action: DlqAction::Purge { yes: true }
            }
        ));

        let a = parse(&[
            "up",
            "--synthetic-scale",
            "0.01",
            "--cpu-workers",
            "3",
            "--no-gpu-worker",
        ])
        .unwrap();
        let Command::Up(u) = a.command else { panic!() };
        assert_eq!(
            (u.synthetic_scale, u.cpu_workers, u.no_gpu_worker),
            (Some(0.01), 3, true)
        );
        assert!(parse(&["up", "--synthetic-scale", "-2"]).is_err());
    }
}
