//! `fleet-bench overhead`: what one task costs the fleet when the analyzer does nothing, next
//! to what the broker itself carries on the same machine and settings.
//!
//! Fleet path per task: job request on `{p}.jobs` (JSON) → dispatcher (Redis job record,
//! confirmed publish to the stage queue) → worker (dedupe read, no-op, outcome written to
//! Redis, confirmed notice on `{p}.outcomes`, ack) → dispatcher (advance, completion event).
//! Raw loop: confirmed persistent publishes to a quorum queue, consumed and acked one by one.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use common::config::StageClass;
use common::now_ms;
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use crate::harness::{self, Harness};
use crate::report;

mod raw;
mod tap;

use raw::{CpuUse, RawRun, raw_loop};
use tap::{RedisTap, Traffic};

/// Confirms a submitting driver keeps outstanding while it floods the intake.
const SUBMIT_WINDOW: usize = 512;
/// Unmeasured tasks before each shape, to warm connections and Redis' script cache.
const WARMUP_TASKS: usize = 200;
const ANALYZERS: usize = 20;

#[derive(Debug, Clone, clap::Args)]
pub struct OverheadArgs {
    /// No-op tasks per shape (as N/20 jobs of 20 analyzers, and as N jobs of one).
    #[arg(long, default_value_t = 10_000)]
    pub tasks: usize,
    /// The CPU stage's concurrency: the worker's AMQP prefetch.
    #[arg(long, default_value_t = 8)]
    pub prefetch: u16,
    /// Seconds of open-loop load at half the measured peak, per shape.
    #[arg(long, default_value_t = 10.0)]
    pub open_secs: f64,
    /// Outstanding publisher confirms in the raw loop.
    #[arg(long, default_value_t = 256)]
    pub raw_window: usize,
    /// Consumer prefetch in the raw loop.
    #[arg(long, default_value_t = 64)]
    pub raw_prefetch: u16,
    /// Markdown report to write the results section into.
    #[arg(long, default_value = "docs/benchmarks.md")]
    pub out: PathBuf,
    #[arg(long, default_value = "overhead")]
    pub section: String,
    /// Tasks per shape of the Redis traffic count (a separate, untimed pass through a
    /// counting tap in front of Redis).
    #[arg(long, default_value_t = 2_000)]
    pub traffic_tasks: usize,
}

/// The no-op workload: `noop01..noop20` on the CPU stage, each holding its slot for 0 s.
pub fn noop_config_toml(prefetch: u16) -> String {
    let mut t = format!(
        "# fleet-bench overhead: {ANALYZERS} synthetic no-op analyzers on the CPU stage\n\
         [stages.cpu]\nclass = \"cpu\"\nconcurrency = {prefetch}\n"
    );
    for i in 1..=ANALYZERS {
        t += &format!(
            "\n[analyzers.noop{i:02}]\nstage = \"cpu\"\nexpected_secs = 0.0\ndescription = \"no-op (synthetic)\"\n[analyzers.noop{i:02}.params]\nsynthetic_secs = 0.0\n"
        );
    }
    t
}

#[derive(Debug, Clone, Copy)]
struct Shape {
    per_job: usize,
}

impl Shape {
    /// Both shapes, many analyzers per job first.
    const BOTH: [Shape; 2] = [Shape { per_job: ANALYZERS }, Shape { per_job: 1 }];

    /// Run names' prefix.
    fn tag(self) -> &'static str {
        if self.per_job == 1 { "single" } else { "multi" }
    }

    /// A short unmeasured run before measuring: connections open, caches filled.
    async fn warm(self, h: &Harness, run: &str) -> anyhow::Result<()> {
        drive(
            h,
            &format!("{}-{run}", self.tag()),
            self,
            WARMUP_TASKS.div_ceil(self.per_job),
            None,
        )
        .await
        .map(drop)
    }

    fn label(self, tasks: usize) -> String {
        format!("{} jobs × {}", tasks / self.per_job, self.per_job)
    }

    fn analyzers(self, job: usize) -> Option<Vec<String>> {
        (self.per_job == 1).then(|| vec![format!("noop{:02}", job % ANALYZERS + 1)])
    }
}

#[derive(Debug, Default)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

pub(crate) fn percentiles(mut v: Vec<f64>) -> Latency {
    if v.is_empty() {
        return Latency::default();
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    Latency {
        p50: at(0.50),
        p99: at(0.99),
        max: v[v.len() - 1],
    }
}

struct FleetRun {
    tasks: usize,
    secs: f64,
    task_latency: Latency,
    job_latency: Latency,
    cpu: CpuUse,
}

impl FleetRun {
    fn rate(&self) -> f64 {
        self.tasks as f64 / self.secs
    }
}

/// Submits `jobs` (at `rate` jobs/s, or all at once), waits for them, reads latencies.
async fn drive(
    h: &Harness,
    tag: &str,
    shape: Shape,
    jobs: usize,
    rate: Option<f64>,
) -> anyhow::Result<FleetRun> {
    let ids: Vec<String> = (0..jobs).map(|j| format!("{tag}-{j:06}")).collect();
    let mut submitted: HashMap<String, u64> = HashMap::with_capacity(jobs);
    let cpu0 = CpuUse::sample();
    let start = tokio::time::Instant::now();
    let t0 = now_ms();
    let mut pending = FuturesUnordered::new();
    for (j, id) in ids.iter().enumerate() {
        if let Some(r) = rate {
            tokio::time::sleep_until(start + Duration::from_secs_f64(j as f64 / r)).await;
        }
        while pending.len() >= SUBMIT_WINDOW {
            if let Some(c) = pending.next().await {
                c?;
            }
        }
        submitted.insert(id.clone(), now_ms());
        pending.push(h.submit(id, "/bench/noop.mp4", shape.analyzers(j)).await?);
    }
    while let Some(c) = pending.next().await {
        c?;
    }
    h.wait(&ids, Duration::from_secs(240)).await?;
    let cpu = CpuUse::sample().since(&cpu0);
    let end = ids
        .iter()
        .filter_map(|id| h.completed_at(id))
        .max()
        .unwrap_or(t0);
    let outcomes = h.outcomes(&ids).await?;
    let mut task_lat = Vec::with_capacity(jobs * shape.per_job);
    let mut job_lat = Vec::with_capacity(jobs);
    for id in &ids {
        let sub = submitted[id];
        for o in outcomes[id].values() {
            task_lat.push(o.finished_at_ms.saturating_sub(sub) as f64);
        }
        if let Some(done) = h.completed_at(id) {
            job_lat.push(done.saturating_sub(sub) as f64);
        }
    }
    let tasks = task_lat.len();
    anyhow::ensure!(
        tasks == jobs * shape.per_job,
        "{tag}: {tasks} outcomes for {} tasks",
        jobs * shape.per_job
    );
    Ok(FleetRun {
        tasks,
        secs: (end.saturating_sub(t0) as f64 / 1000.0).max(1e-3),
        task_latency: percentiles(task_lat),
        job_latency: percentiles(job_lat),
        cpu,
    })
}

pub async fn run(args: OverheadArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.tasks >= ANALYZERS,
        "--tasks must be at least {ANALYZERS}"
    );
    let prefix = harness::new_prefix("overhead");
    let config = harness::load_config(&noop_config_toml(args.prefetch), "no-op config", &prefix)?;
    let url = config.connections.amqp_url.clone();
    let load_before = report::loadavg();
    eprintln!(
        "overhead: {} tasks per shape, prefetch {}, prefix {prefix}, load {load_before}",
        args.tasks, args.prefetch
    );

    let raw = raw_loop(
        &url,
        &format!("{prefix}.raw"),
        args.tasks,
        args.raw_window,
        args.raw_prefetch,
    )
    .await?;
    eprintln!("overhead: raw loop {:.0} msg/s", raw.msgs as f64 / raw.secs);
    let serial_n = (args.tasks / 5).max(100);
    let serial = raw_loop(
        &url,
        &format!("{prefix}.raw"),
        serial_n,
        1,
        args.raw_prefetch,
    )
    .await?;
    eprintln!(
        "overhead: raw loop, one confirm at a time {:.0} msg/s",
        serial.msgs as f64 / serial.secs
    );

    let h = Harness::start(config.clone(), &[StageClass::Cpu], 1.0).await?;
    let result = async {
        let mut rows = Vec::new();
        for shape in Shape::BOTH {
            let tag = shape.tag();
            shape.warm(&h, "warm").await?;
            let peak = drive(
                &h,
                &format!("{tag}-peak"),
                shape,
                args.tasks / shape.per_job,
                None,
            )
            .await?;
            eprintln!(
                "overhead: {} peak {:.0} tasks/s",
                shape.label(args.tasks),
                peak.rate()
            );
            let job_rate = peak.rate() / 2.0 / shape.per_job as f64;
            let jobs = ((job_rate * args.open_secs).ceil() as usize).max(1);
            let half = drive(&h, &format!("{tag}-half"), shape, jobs, Some(job_rate)).await?;
            eprintln!(
                "overhead: {} at half load, p99 {:.1} ms",
                shape.label(args.tasks),
                half.task_latency.p99
            );
            rows.push((shape, peak, half));
        }
        anyhow::Ok(rows)
    }
    .await;
    h.stop(false).await?;
    let rows = result?;
    let traffic = redis_traffic(config, args.traffic_tasks.max(ANALYZERS)).await?;

    let mut body = render(&args, &raw, &serial, &rows, &load_before);
    body += &render_traffic(&traffic);
    print!("{body}");
    report::write_section(&args.out, &args.section, &body)?;
    eprintln!("overhead: wrote {}", args.out.display());
    Ok(())
}

/// Redis commands and bytes per task, per shape: the fleet reaches Redis through a counting
/// tap (a separate harness, so the timed runs pay no extra hop).
async fn redis_traffic(
    config: common::config::FleetConfig,
    tasks: usize,
) -> anyhow::Result<Vec<(Shape, usize, Traffic)>> {
    let tap = RedisTap::start(&config.connections.redis_url).await?;
    let h = Harness::start_with_fleet_redis(config, &[StageClass::Cpu], 1.0, Some(tap.url.clone()))
        .await?;
    let result = async {
        let mut rows = Vec::new();
        for shape in Shape::BOTH {
            let tag = shape.tag();
            shape.warm(&h, "tapwarm").await?;
            let before = tap.snapshot();
            let run = drive(
                &h,
                &format!("{tag}-tap"),
                shape,
                tasks / shape.per_job,
                None,
            )
            .await?;
            let t = tap.snapshot().since(&before);
            eprintln!(
                "overhead: {} Redis traffic {:.2} commands/task",
                shape.label(run.tasks),
                t.total_commands() as f64 / run.tasks as f64
            );
            rows.push((shape, run.tasks, t));
        }
        anyhow::Ok(rows)
    }
    .await;
    h.stop(false).await?;
    result
}

fn render_traffic(rows: &[(Shape, usize, Traffic)]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n| Redis traffic of the fleet (dispatcher + worker), all submitted at once | tasks | commands per task | bytes to Redis per task | bytes from Redis per task | commands per task by name |\n|---|---:|---:|---:|---:|---|"
    );
    for (shape, tasks, t) in rows {
        let n = *tasks as f64;
        let mut by: Vec<(&String, &u64)> = t.commands.iter().collect();
        by.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let by: Vec<String> = by
            .iter()
            .filter(|(_, c)| **c as f64 / n >= 0.005)
            .map(|(k, c)| format!("{k} {:.2}", **c as f64 / n))
            .collect();
        let _ = writeln!(
            s,
            "| {} | {tasks} | {:.2} | {:.0} | {:.0} | {} |",
            shape.label(*tasks),
            t.total_commands() as f64 / n,
            t.to_redis as f64 / n,
            t.from_redis as f64 / n,
            by.join(", ")
        );
    }
    s
}

fn render(
    args: &OverheadArgs,
    raw: &RawRun,
    serial: &RawRun,
    rows: &[(Shape, FleetRun, FleetRun)],
    load_before: &str,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Generated by `fleet-bench overhead --tasks {} --prefetch {}` on {}. Machine: {}; load average before {load_before}, after {} (the run's own load included).\n",
        args.tasks,
        args.prefetch,
        report::utc_now(),
        report::machine(),
        report::loadavg()
    );
    let raw_rate = raw.msgs as f64 / raw.secs;
    let _ = writeln!(
        s,
        "| raw broker loop (quorum queue, persistent, confirms, ack per message) | msgs | msg/s | publish → consume p50 / p99 (ms) | CPU ms per message |\n|---|---:|---:|---:|---|"
    );
    let _ = writeln!(
        s,
        "| {} confirms outstanding, prefetch {} (the limit; latency is queueing) | {} | {:.0} | {:.1} / {:.1} | {} |",
        args.raw_window,
        args.raw_prefetch,
        raw.msgs,
        raw_rate,
        raw.latency.p50,
        raw.latency.p99,
        raw.cpu.per_task_ms(raw.msgs)
    );
    let _ = writeln!(
        s,
        "| one confirm at a time | {} | {:.0} | {:.1} / {:.1} | {} |",
        serial.msgs,
        serial.msgs as f64 / serial.secs,
        serial.latency.p50,
        serial.latency.p99,
        serial.cpu.per_task_ms(serial.msgs)
    );
    let _ = writeln!(
        s,
        "\n| fleet, no-op tasks | load | tasks | tasks/s | task latency p50 / p99 / max (ms) | job latency p50 / p99 (ms) | CPU ms per task |\n|---|---|---:|---:|---:|---:|---|"
    );
    for (shape, peak, half) in rows {
        for (load, r) in [
            ("all submitted at once (peak)", peak),
            ("open loop at 50 % of peak", half),
        ] {
            let _ = writeln!(
                s,
                "| {} | {load} | {} | {:.0} | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} | {} |",
                shape.label(args.tasks),
                r.tasks,
                r.rate(),
                r.task_latency.p50,
                r.task_latency.p99,
                r.task_latency.max,
                r.job_latency.p50,
                r.job_latency.p99,
                r.cpu.per_task_ms(r.tasks)
            );
        }
    }
    let _ = writeln!(
        s,
        "\n| target | shape | value | target | |\n|---|---|---:|---:|---|"
    );
    for (shape, peak, half) in rows {
        let r = peak.rate() / raw_rate;
        let _ = writeln!(
            s,
            "| fleet ÷ raw broker throughput | {} | {r:.2} | ≥ 0.33 | {} |",
            shape.label(args.tasks),
            report::verdict(r >= 1.0 / 3.0)
        );
        let p = half.task_latency.p99;
        let _ = writeln!(
            s,
            "| p99 at 50 % of peak | {} | {p:.0} ms | < 20 ms | {} |",
            shape.label(args.tasks),
            report::verdict(p < 20.0)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_noop_config_loads() {
        let c = common::config::FleetConfig::parse(&noop_config_toml(8), "noop", |_| None).unwrap();
        assert_eq!(c.enabled_analyzers().count(), ANALYZERS);
        assert_eq!(
            c.analyzers["noop20"].params["synthetic_secs"],
            serde_json::json!(0.0)
        );
        assert_eq!(c.stages["cpu"].concurrency, 8);
    }

    #[test]
    fn percentiles_pick_ranks() {
        let l = percentiles((1..=100).map(f64::from).collect());
        assert_eq!((l.p50, l.p99, l.max), (50.0, 99.0, 100.0));
        assert_eq!(percentiles(vec![]).p99, 0.0);
    }
}
