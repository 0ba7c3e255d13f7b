//! Decode benchmark (not a test): the frames one job needs on a GPU worker, decoded as before
//! (one ffmpeg pass per distinct frame spec) and as now (one pass for every spec), side by
//! side on the same generated 30 s 1080x1920 video. Reports CPU seconds of the ffmpeg
//! children, wall time and passes, and writes a markdown report.
//!
//! The specs come from the analyzers themselves (`Analyzer::frame_spec`), collected by the
//! worker's `Registry::frame_planner` for the GPU-stage analyzers of the config: once as
//! shipped (operator models and model servers unconfigured, so their analyzers read no
//! frames) and once with every GPU analyzer configured.
//!
//! `cargo run --release -p worker --bin bench-decode -- [OUT.md] [--config PATH] [--only shipped|configured] [--video PATH] [--nvdec DEVICE]`
//!
//! `--nvdec DEVICE` adds a third way, on a GPU host: the one pass per job with the video
//! decoded by NVDEC on that CUDA device (the GPU worker's `[media] hw_decode = "auto"`).
//! `--video PATH` uses that file instead of the generated one.
//!
//! Only the ffmpeg children's CPU time is counted, so a debug build of this binary measures
//! the same thing. The report is rewritten after each case.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use common::config::{FleetConfig, StageClass};
use media::{FrameSpec, Media, MediaConfig};
use worker::{Backends, Registry};

const WIDTH: u32 = 1080;
const HEIGHT: u32 = 1920;
const SECONDS: u32 = 30;
/// Linux reports process times in USER_HZ ticks, 100 per second on every mainstream arch.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds of this process's waited-for children (the ffmpeg runs).
fn children_cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    let rest = stat
        .rsplit_once(')')
        .context("unexpected /proc/self/stat")?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // cutime and cstime: fields 16 and 17 overall, 13 and 14 after the command name.
    let ticks: f64 = fields[13..15]
        .iter()
        .map(|f| f.parse::<f64>().unwrap_or(0.0))
        .sum();
    Ok(ticks / TICKS_PER_SECOND)
}

fn generate(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("bench-1080x1920.mp4");
    let s = format!("{WIDTH}x{HEIGHT}");
    // Moving test pattern with a panned texture and noise: detail at every scale, as phone
    // video has; a tone as the soundtrack.
    let graph = format!(
        "testsrc2=s={s}:r=30:d={SECONDS},noise=alls=12:allf=t,format=yuv420p[v];\
         sine=frequency=440:sample_rate=48000:duration={SECONDS}[a]"
    );
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-filter_complex", &graph])
        .args([
            "-map", "[v]", "-map", "[a]", "-c:v", "libx264", "-preset", "veryfast",
        ])
        .args(["-crf", "23", "-c:a", "aac"])
        .arg(&path)
        .output()
        .context("running ffmpeg (install ffmpeg)")?;
    if !out.status.success() {
        bail!("ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(path)
}

/// The frame specs the GPU worker's analyzers of a default job (every enabled analyzer)
/// declare for this video.
fn gpu_specs(config: &FleetConfig, probe: &media::Probe) -> Vec<FrameSpec> {
    let registry = Registry::build(
        config,
        Backends::Real {
            fallback_scale: 1.0,
        },
    );
    let gpu_stages: Vec<&str> = config
        .stages_of(StageClass::Gpu)
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    let names = config
        .enabled_analyzers()
        .filter(|a| gpu_stages.contains(&a.stage.as_str()))
        .map(|a| a.name.as_str());
    let mut specs = registry.frame_planner(config, names)(probe);
    specs.sort_by_key(|s| (s.max_side, s.fps_milli));
    specs.dedup();
    specs
}

/// Every GPU analyzer configured: model files and a model server named (never opened here).
fn fully_configured(config: &FleetConfig) -> FleetConfig {
    let mut c = config.clone();
    for a in c.analyzers.values_mut() {
        if let Some(p) = a.params.as_object_mut() {
            p.entry("model").or_insert("operator-model.onnx".into());
            p.entry("sha256").or_insert("0".repeat(64).into());
            p.insert("endpoint".into(), "http://model-server.invalid/v1".into());
        }
    }
    c
}

struct Run {
    wall_s: f64,
    cpu_s: f64,
    passes: u32,
    frames: usize,
}

async fn decode(
    video: &Path,
    cfg: &Arc<MediaConfig>,
    specs: &[FrameSpec],
    planned: bool,
) -> anyhow::Result<Run> {
    let m = Media::new(video.to_str().context("path")?, cfg.clone());
    m.probe().await?;
    if planned {
        let all = specs.to_vec();
        m.plan_frames(Arc::new(move |_| all.clone()));
    }
    let cpu = children_cpu_seconds()?;
    let start = Instant::now();
    let mut frames = 0;
    for spec in specs {
        frames += m.frames(*spec).await?.len();
    }
    Ok(Run {
        wall_s: start.elapsed().as_secs_f64(),
        cpu_s: children_cpu_seconds()? - cpu,
        passes: m.decode_passes(),
        frames,
    })
}

fn describe(s: &FrameSpec) -> String {
    match s.fps_milli {
        None => format!("every frame, {} px", s.max_side),
        Some(m) => format!("{} fps, {} px", f64::from(m) / 1000.0, s.max_side),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut out_path = PathBuf::from("docs/bench-decode.md");
    let mut config_path = PathBuf::from(common::config::DEFAULT_CONFIG_PATH);
    let mut only: Option<String> = None;
    let mut nvdec: Option<u32> = None;
    let mut given_video: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => config_path = args.next().context("--config PATH")?.into(),
            "--only" => only = Some(args.next().context("--only shipped|configured")?),
            "--nvdec" => nvdec = Some(args.next().context("--nvdec DEVICE")?.parse()?),
            "--video" => given_video = Some(args.next().context("--video PATH")?.into()),
            other => out_path = PathBuf::from(other),
        }
    }
    let config = FleetConfig::load(&config_path, |_| None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = std::env::temp_dir().join(format!("bench-decode-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    eprintln!(
        "generating a {SECONDS} s {WIDTH}x{HEIGHT} video in {}",
        dir.display()
    );
    let video = match given_video {
        Some(v) => std::fs::canonicalize(&v).with_context(|| format!("{}", v.display()))?,
        None => generate(&dir)?,
    };
    let cfg = Arc::new(MediaConfig {
        cache_dir: dir.join("cache"),
        local_roots: vec![
            dir.clone(),
            video.parent().context("video dir")?.to_path_buf(),
        ],
        ..MediaConfig::default()
    });
    let probe = Media::new(video.to_str().context("path")?, cfg.clone())
        .probe()
        .await?;
    let mut report = String::new();
    let bytes = std::fs::metadata(&video)?.len();
    report.push_str(&format!(
        "# Decoding once per job: speed\n\n\
         Command: `cargo run --release -p worker --bin bench-decode -- {}`\n\n\
         Machine: {cores} cores. CPU = user + system time of the ffmpeg children; the ways \
         run one after the other in one process, on the same file.\n\n\
         Video: {SECONDS} s, {WIDTH}x{HEIGHT}, 30 fps, H.264 + AAC ({bytes} bytes). The frame \
         specs are the ones the GPU stages' analyzers declare (`Analyzer::frame_spec`), \
         collected by `Registry::frame_planner` as the worker does for a job.\n\n",
        out_path.display(),
        cores = std::thread::available_parallelism().map_or(1, |n| n.get()),
    ));
    for (key, label, c) in [
        (
            "shipped",
            "as shipped (no operator models, no model server)",
            config.clone(),
        ),
        (
            "configured",
            "every GPU analyzer configured",
            fully_configured(&config),
        ),
    ] {
        if only.as_deref().is_some_and(|o| o != key) {
            continue;
        }
        let specs = gpu_specs(&c, &probe);
        eprintln!("{label}: {} specs", specs.len());
        let before = decode(&video, &cfg, &specs, false).await?;
        eprintln!(
            "  one pass per spec: {:.2} s CPU, {:.2} s wall, {} passes",
            before.cpu_s, before.wall_s, before.passes
        );
        let after = decode(&video, &cfg, &specs, true).await?;
        eprintln!(
            "  one pass per job:  {:.2} s CPU, {:.2} s wall, {} passes",
            after.cpu_s, after.wall_s, after.passes
        );
        if before.frames != after.frames {
            bail!("frame counts differ: {} vs {}", before.frames, after.frames);
        }
        let hw = match nvdec {
            Some(device) => {
                let hw_cfg = Arc::new(MediaConfig {
                    hw_decode: media::HwDecode::Cuda { device },
                    ..(*cfg).clone()
                });
                let r = decode(&video, &hw_cfg, &specs, true).await?;
                if media::hw_decode_disabled() {
                    bail!("NVDEC failed on device {device} (the pass fell back to the CPU)");
                }
                eprintln!(
                    "  one pass per job, NVDEC: {:.2} s CPU, {:.2} s wall, {} frames",
                    r.cpu_s, r.wall_s, r.frames
                );
                if r.frames != after.frames {
                    bail!(
                        "NVDEC frame count differs: {} vs {}",
                        r.frames,
                        after.frames
                    );
                }
                format!(
                    "| now, video decoded by NVDEC (device {device}) | {} | {} | {:.2} | {:.2} |\n",
                    r.passes, r.frames, r.cpu_s, r.wall_s
                )
            }
            None => String::new(),
        };
        let list: Vec<String> = specs.iter().map(describe).collect();
        report.push_str(&format!(
            "## GPU worker, {label}\n\nSpecs ({}): {}.\n\n\
             | decode | ffmpeg passes | frames | CPU (s) | wall (s) |\n|---|---:|---:|---:|---:|\n\
             | before: one pass per spec | {} | {} | {:.2} | {:.2} |\n\
             | now: one pass per job | {} | {} | {:.2} | {:.2} |\n{hw}\n\
             One pass per job takes **{:.2}x** the CPU time of one pass per spec \
             ({:.2} s saved per video).\n\n",
            specs.len(),
            list.join("; "),
            before.passes,
            before.frames,
            before.cpu_s,
            before.wall_s,
            after.passes,
            after.frames,
            after.cpu_s,
            after.wall_s,
            after.cpu_s / before.cpu_s.max(1e-9),
            before.cpu_s - after.cpu_s,
        ));
        std::fs::write(&out_path, &report)?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("wrote {}", out_path.display());
    Ok(())
}
