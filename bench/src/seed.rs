//! `fleet-bench seed`: the seed's active analyzers as synthetic analyzers through the real
//! dispatcher, RabbitMQ, one GPU worker and one CPU worker; the fleet's pipelined schedule
//! against the seed's barrier schedule and the bound the config allows.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use common::config::{DEFAULT_CONFIG_PATH, StageClass};
use common::message::OutcomeStatus;
use common::now_ms;

use crate::harness::{self, Harness};
use crate::model::{self, Workload};
use crate::plot::{self, Panel, Span};
use crate::report;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Schedule {
    Fleet,
    Barrier,
    Both,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SeedArgs {
    /// Videos submitted.
    #[arg(long, default_value_t = 20)]
    pub videos: usize,
    /// Synthetic analyzers hold their slot for expected seconds x this.
    #[arg(long, default_value_t = 0.01)]
    pub scale: f64,
    #[arg(long, value_enum, default_value = "both")]
    pub schedule: Schedule,
    /// Config to run (default: FLEET_CONFIG, then config/fleet.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Markdown report to write the results section into.
    #[arg(long, default_value = "docs/benchmarks.md")]
    pub out: PathBuf,
    /// Section name in the report (default: `seed`, or `seed-<file stem>` with --config).
    #[arg(long)]
    pub section: Option<String>,
    /// Occupancy plot (default: docs/img/occupancy.png, or occupancy-<section>.png).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// TrueType font for the plot's text (default: DejaVu Sans from fonts-dejavu-core).
    #[arg(long, env = "FLEET_BENCH_FONT")]
    pub font: Option<PathBuf>,
    /// Keep the run's Redis keys (for `plan --measured-prefix`); queues are always removed.
    #[arg(long)]
    pub keep: bool,
}

struct Measured {
    makespan_s: f64,
    spans: Vec<Span>,
    tasks: usize,
    not_ok: usize,
}

fn video(v: usize) -> String {
    format!("/bench/seed/video-{v:02}.mp4")
}

pub async fn run(args: SeedArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.videos > 0 && args.scale > 0.0,
        "--videos and --scale must be positive"
    );
    let path = args
        .config
        .clone()
        .or_else(|| {
            std::env::var(common::config::env::CONFIG)
                .ok()
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let prefix = harness::new_prefix("seed");
    let config = harness::load_config(&text, &path.display().to_string(), &prefix)?;
    let section = args.section.clone().unwrap_or_else(|| match &args.config {
        Some(p) => format!(
            "seed-{}",
            p.file_stem()
                .map_or("config".into(), |s| s.to_string_lossy().into_owned())
        ),
        None => "seed".into(),
    });
    let plot_path = args.plot.clone().unwrap_or_else(|| {
        PathBuf::from(if section == "seed" {
            "docs/img/occupancy.png".into()
        } else {
            format!("docs/img/occupancy-{section}.png")
        })
    });

    let w = Workload::from_config(&config);
    let ws = w.scaled(args.scale);
    let plan = model::barrier_plan(&w).map_err(|e| anyhow::anyhow!("barrier schedule: {e}"))?;
    let predicted_fleet =
        model::makespan(&model::simulate(&ws, &model::fleet_jobs(&ws, args.videos)));
    let predicted_barrier = model::makespan(&model::simulate(
        &ws,
        &model::barrier_jobs(&plan, args.videos),
    ));
    let load_before = report::loadavg();
    eprintln!(
        "seed: {} analyzers, {} videos, scale {}, prefix {prefix}, load {load_before}",
        w.analyzers.len(),
        args.videos,
        args.scale
    );

    let harness = Harness::start(config, &[StageClass::Gpu, StageClass::Cpu], args.scale).await?;
    let result = async {
        let mut out: Vec<(&str, Measured)> = Vec::new();
        if matches!(args.schedule, Schedule::Fleet | Schedule::Both) {
            let timeout = Duration::from_secs_f64(predicted_fleet * 3.0 + 60.0);
            let m = run_fleet(&harness, args.videos, timeout).await?;
            eprintln!(
                "seed: fleet done in {:.2} s (predicted {predicted_fleet:.2} s)",
                m.makespan_s
            );
            out.push(("fleet", m));
        }
        if matches!(args.schedule, Schedule::Barrier | Schedule::Both) {
            let timeout = Duration::from_secs_f64(predicted_barrier * 3.0 + 60.0);
            let m = run_barrier(&harness, &plan, args.videos, timeout).await?;
            eprintln!(
                "seed: barrier done in {:.2} s (predicted {predicted_barrier:.2} s)",
                m.makespan_s
            );
            out.push(("barrier", m));
        }
        anyhow::Ok(out)
    }
    .await;
    harness.stop(args.keep).await?;
    let runs = result?;
    if args.keep {
        eprintln!(
            "seed: Redis keys kept under prefix {prefix} (fleet-bench plan --measured-prefix {prefix} --synthetic-scale {})",
            args.scale
        );
    }

    let ctx = RenderCtx {
        args: &args,
        path: &path,
        w: &w,
        plan: &plan,
        predicted_fleet,
        predicted_barrier,
        load_before,
        plot: &plot_path,
    };
    let body = render(&ctx, &runs);
    print!("{body}");
    report::write_section(&args.out, &section, &body)?;
    let panels: Vec<Panel> = runs
        .iter()
        .map(|(name, m)| Panel {
            title: format!("{name} ({:.1} s)", m.makespan_s),
            spans: m.spans.clone(),
        })
        .collect();
    let stages: Vec<(String, u32)> = w
        .stages
        .iter()
        .map(|s| (s.name.clone(), s.concurrency))
        .collect();
    let title = format!(
        "Slot occupancy per stage: {} videos, synthetic scale {} ({})",
        args.videos,
        args.scale,
        path.display()
    );
    plot::occupancy(&plot_path, &title, &stages, &panels, args.font.as_deref())?;
    eprintln!(
        "seed: wrote {} and {}",
        args.out.display(),
        plot_path.display()
    );
    Ok(())
}

async fn run_fleet(h: &Harness, videos: usize, timeout: Duration) -> anyhow::Result<Measured> {
    let ids: Vec<String> = (1..=videos).map(|v| format!("fleet-v{v:02}")).collect();
    let t0 = now_ms();
    let mut confirms = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        confirms.push(h.submit(id, &video(i + 1), None).await?);
    }
    for c in confirms {
        c.await?;
    }
    h.wait(&ids, timeout).await?;
    collect(h, &ids, t0).await
}

async fn run_barrier(
    h: &Harness,
    plan: &model::BarrierPlan,
    videos: usize,
    timeout: Duration,
) -> anyhow::Result<Measured> {
    let mut ids = Vec::new();
    let t0 = now_ms();
    for v in 1..=videos {
        let along = format!("barrier-v{v:02}-cpu");
        let mut first = true;
        for (stage, subset) in &plan.steps {
            let id = format!("barrier-v{v:02}-{stage}");
            let confirm = h.submit(&id, &video(v), Some(subset.clone())).await?;
            if first && !plan.alongside.is_empty() {
                // The CPU group starts with stage 1 and runs alongside the barriers.
                h.submit(&along, &video(v), Some(plan.alongside.clone()))
                    .await?
                    .await?;
                ids.push(along.clone());
            }
            first = false;
            confirm.await?;
            h.wait(std::slice::from_ref(&id), timeout).await?;
            ids.push(id);
        }
        if !plan.alongside.is_empty() {
            h.wait(std::slice::from_ref(&along), timeout).await?;
        }
    }
    collect(h, &ids, t0).await
}

async fn collect(h: &Harness, ids: &[String], t0: u64) -> anyhow::Result<Measured> {
    let end = ids
        .iter()
        .filter_map(|id| h.completed_at(id))
        .max()
        .unwrap_or(t0);
    let outcomes = h.outcomes(ids).await?;
    let mut spans = Vec::new();
    let mut not_ok = 0;
    for o in outcomes.values().flat_map(|m| m.values()) {
        if o.status != OutcomeStatus::Ok || o.backend != "synthetic" {
            not_ok += 1;
        }
        spans.push(Span {
            stage: o.stage.clone(),
            start_s: o.started_at_ms.saturating_sub(t0) as f64 / 1000.0,
            end_s: o.finished_at_ms.saturating_sub(t0) as f64 / 1000.0,
        });
    }
    Ok(Measured {
        makespan_s: end.saturating_sub(t0) as f64 / 1000.0,
        tasks: spans.len(),
        spans,
        not_ok,
    })
}

struct RenderCtx<'a> {
    args: &'a SeedArgs,
    path: &'a std::path::Path,
    w: &'a Workload,
    plan: &'a model::BarrierPlan,
    predicted_fleet: f64,
    predicted_barrier: f64,
    load_before: String,
    plot: &'a std::path::Path,
}

fn render(c: &RenderCtx, runs: &[(&str, Measured)]) -> String {
    let get = |name: &str| runs.iter().find(|(n, _)| *n == name).map(|(_, m)| m);
    let (a, w) = (c.args, c.w);
    let n = a.videos as f64;
    let (bottleneck, bound_spv) = w.bottleneck();
    let bound_vph = 3600.0 / bound_spv;
    let vph_real = |makespan_scaled: f64| n * 3600.0 / (makespan_scaled / a.scale);
    let mut s = String::new();
    let cmd = match &a.config {
        Some(p) => format!(
            "fleet-bench seed --videos {} --scale {} --config {}",
            a.videos,
            a.scale,
            p.display()
        ),
        None => format!("fleet-bench seed --videos {} --scale {}", a.videos, a.scale),
    };
    let _ = writeln!(
        s,
        "Generated by `{cmd}` on {}; config `{}`.",
        report::utc_now(),
        c.path.display()
    );
    let _ = writeln!(
        s,
        "Machine: {}; load average before {}, after {} (the run's own load included). {} videos of {} synthetic analyzers each.\n",
        report::machine(),
        c.load_before,
        report::loadavg(),
        a.videos,
        w.analyzers.len()
    );
    let _ = writeln!(
        s,
        "| schedule | makespan (s) | videos/hour at scale {} | videos/hour in real seconds | model (s) | tasks |",
        a.scale
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
    for (name, m) in runs {
        let predicted = if *name == "fleet" {
            c.predicted_fleet
        } else {
            c.predicted_barrier
        };
        let bad = if m.not_ok > 0 {
            format!(" ({} not ok)", m.not_ok)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "| {name} | {:.2} | {:.0} | {:.1} | {:.2} | {}{bad} |",
            m.makespan_s,
            n * 3600.0 / m.makespan_s,
            vph_real(m.makespan_s),
            predicted,
            m.tasks
        );
    }
    let _ = writeln!(
        s,
        "| bound ({bottleneck}: {:.1} s of work per video on its slots) | {:.2} | {:.0} | {:.1} | | |",
        bound_spv,
        n * bound_spv * a.scale,
        bound_vph / a.scale,
        bound_vph
    );
    let lb = model::barrier_lower_bound(w, c.plan);
    let _ = writeln!(
        s,
        "\nBarrier schedule per video from the config: {:.1} s as the fleet runs it (FIFO in plan order), {:.1} s with the best packing of every stage (a lower bound for any barrier schedule).",
        c.predicted_barrier / a.scale / n,
        lb
    );
    let _ = writeln!(s, "\n| ratio | value | target | |\n|---|---:|---:|---|");
    if let Some(f) = get("fleet") {
        let r = vph_real(f.makespan_s) / bound_vph;
        let _ = writeln!(
            s,
            "| fleet ÷ bound (throughput) | {:.3} | ≥ 0.95 | {} |",
            r,
            report::verdict(r >= 0.95)
        );
        let p = c.predicted_fleet / f.makespan_s;
        let _ = writeln!(
            s,
            "| model ÷ measured makespan (fleet) | {p:.3} | | messaging overhead and list-scheduling tail |"
        );
    }
    if let (Some(f), Some(b)) = (get("fleet"), get("barrier")) {
        let r = b.makespan_s / f.makespan_s;
        let _ = writeln!(
            s,
            "| fleet ÷ barrier (throughput) | {:.2}× | ≥ 1.5× | {} |",
            r,
            report::verdict(r >= 1.5)
        );
        let ideal = lb * n * a.scale / f.makespan_s;
        let _ = writeln!(
            s,
            "| fleet ÷ best-packed barrier (model) | {ideal:.2}× | | against the best any barrier schedule could do |"
        );
    }
    let _ = writeln!(
        s,
        "\n| stage | slots | work per video (s) | s per video on its slots | busy share, fleet | busy share, barrier |\n|---|---:|---:|---:|---:|---:|"
    );
    for (stage, work) in w.stage_work() {
        let slots = w.stage(&stage).map_or(1, |x| x.concurrency);
        let busy = |m: Option<&Measured>| {
            m.map_or("".into(), |m| {
                let t: f64 = m
                    .spans
                    .iter()
                    .filter(|x| x.stage == stage)
                    .map(|x| x.end_s - x.start_s)
                    .sum();
                format!("{:.0} %", 100.0 * t / (f64::from(slots) * m.makespan_s))
            })
        };
        let _ = writeln!(
            s,
            "| {stage} | {slots} | {work:.1} | {:.1} | {} | {} |",
            work / f64::from(slots),
            busy(get("fleet")),
            busy(get("barrier"))
        );
    }
    let rel = c.plot.strip_prefix("docs/").unwrap_or(c.plot);
    let _ = writeln!(s, "\n![slot occupancy per stage]({})", rel.display());
    s
}
