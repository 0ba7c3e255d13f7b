//! Speed benchmark of the signal analyzers (not a test): generates a 30 s 720x1280 video with
//! ffmpeg, then times probe, each decode and each analyzer, wall clock and CPU (this process
//! plus its ffmpeg children), and writes a markdown table.
//!
//! `cargo run --release -p signal --bin bench-signal -- [OUT.md] [--ffmpeg-threads N]`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use media::{Media, MediaConfig};
use serde_json::json;
use signal::specs;

const WIDTH: u32 = 720;
const HEIGHT: u32 = 1280;
const SECONDS: u32 = 30;
/// Linux reports process times in USER_HZ ticks, 100 per second on every mainstream arch.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds of this process and its waited-for children (the ffmpeg runs).
fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // Fields after the ")" closing the command name; utime is field 14 overall.
    let rest = stat
        .rsplit_once(')')
        .context("unexpected /proc/self/stat")?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11..15]
        .iter()
        .map(|f| f.parse::<f64>().unwrap_or(0.0))
        .sum();
    Ok(ticks / TICKS_PER_SECOND)
}

struct Row {
    step: String,
    wall_s: f64,
    cpu_s: f64,
}

struct Timer(Vec<Row>);

impl Timer {
    async fn time<T, F: std::future::Future<Output = T>>(
        &mut self,
        step: &str,
        work: F,
    ) -> anyhow::Result<T> {
        let (cpu, wall) = (cpu_seconds()?, Instant::now());
        let out = work.await;
        let row = Row {
            step: step.into(),
            wall_s: wall.elapsed().as_secs_f64(),
            cpu_s: cpu_seconds()? - cpu,
        };
        eprintln!(
            "{:<36} {:>8.3} s wall {:>8.3} s cpu",
            row.step, row.wall_s, row.cpu_s
        );
        self.0.push(row);
        Ok(out)
    }
}

fn generate(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("bench.mp4");
    let s = format!("{WIDTH}x{HEIGHT}");
    // Six 5 s shots: motion, bars with a fade, texture pan, cellular automaton, gradient, a
    // dissolve into a test pattern; a chord with a beat as the soundtrack.
    let graph = format!(
        "testsrc2=s={s}:r=30:d=5[a];smptebars=s={s}:r=30:d=5,fade=t=out:st=4.5:d=0.5[b];\
         testsrc2=s=1440x2560:r=30:d=5,crop={WIDTH}:{HEIGHT}:x='t*60':y='t*30'[c];\
         life=s={s}:r=30:seed=1:mold=10,trim=duration=5[d];\
         gradients=s={s}:r=30:d=5[e];rgbtestsrc=s={s}:r=30:d=5.5[f];[e][f]xfade=duration=0.5:offset=4.5[ef];\
         [a][b][c][d][ef]concat=n=5:v=1:a=0,format=yuv420p[v];\
         aevalsrc='0.15*sin(2*PI*220*t)+0.1*sin(2*PI*330*t)+0.4*exp(-30*mod(t,0.5))*sin(2*PI*1000*t)':s=48000:d={SECONDS}[au]"
    );
    let out = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-filter_complex",
            &graph,
            "-map",
            "[v]",
            "-map",
            "[au]",
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "23",
            "-c:a",
            "aac",
            "-t",
            &SECONDS.to_string(),
        ])
        .arg(&path)
        .output()
        .context("running ffmpeg (install ffmpeg)")?;
    if !out.status.success() {
        bail!("ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(path)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut out_path = PathBuf::from("docs/bench-signal.md");
    let mut threads = 0u32;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ffmpeg-threads" => threads = args.next().context("--ffmpeg-threads N")?.parse()?,
            other => out_path = PathBuf::from(other),
        }
    }
    let dir = std::env::temp_dir().join(format!("bench-signal-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    eprintln!(
        "generating a {SECONDS} s {WIDTH}x{HEIGHT} video in {}",
        dir.display()
    );
    let video = generate(&dir)?;
    let cfg = Arc::new(MediaConfig {
        cache_dir: dir.join("cache"),
        local_roots: vec![dir.clone()],
        ffmpeg_threads: threads,
        ..MediaConfig::default()
    });
    let m = Media::new(video.to_str().context("path")?, cfg);

    let start_cpu = cpu_seconds()?;
    let start = Instant::now();
    let mut t = Timer(Vec::new());
    let probe = t.time("probe (ffprobe)", m.probe()).await??;
    let motion = t
        .time(
            "decode: every frame at 160 px",
            m.frames(specs::MOTION_SPEC),
        )
        .await??;
    let quality_spec = specs::quality_spec(probe.duration_s);
    let full = t
        .time("decode: quality frames, full size", m.frames(quality_spec))
        .await??;
    let audio = t.time("decode: audio 16 kHz mono", m.audio()).await??;
    let decode_cpu: f64 = t.0.iter().map(|r| r.cpu_s).sum();

    let transcript = json!({"segments": [
        {"start": 1.0, "end": 4.0, "text": "Three tricks for better videos, watch till the end."},
        {"start": 26.0, "end": 29.0, "text": "Follow for more and comment below which one you liked."}
    ]});
    let f = &motion;
    t.time("cut_analysis", async {
        signal::cut_analysis(f, &Default::default())
    })
    .await?;
    t.time("scene_segmentation", async {
        signal::scene_segmentation(f, &Default::default())
    })
    .await?;
    t.time("color_analysis", async {
        signal::color_analysis(f, &Default::default())
    })
    .await?;
    t.time("camera_analysis", async {
        signal::camera_analysis(f, &Default::default())
    })
    .await?;
    t.time("visual_effects", async {
        signal::visual_effects(f, &Default::default())
    })
    .await?;
    t.time("content_quality", async {
        signal::content_quality(&full, &probe, &Default::default())
    })
    .await?;
    t.time("audio_analysis", async {
        signal::audio_analysis(&audio, &Default::default())
    })
    .await?;
    t.time("audio_environment", async {
        signal::audio_environment(&audio, &Default::default())
    })
    .await?;
    t.time("sound_effects", async {
        signal::sound_effects(&audio, &Default::default())
    })
    .await?;
    t.time("temporal_flow", async {
        signal::temporal_flow(
            f,
            Some(&audio),
            Some(&transcript),
            None,
            // Detecting the cuts itself (the fleet hands it cut_analysis's result instead):
            // the upper bound of its cost.
            None,
            &Default::default(),
        )
    })
    .await?;
    t.time("comment_cta_detection", async {
        signal::comment_cta_detection(Some(&transcript), None, &Default::default())
    })
    .await?;
    let total_wall = start.elapsed().as_secs_f64();
    let total_cpu = cpu_seconds()? - start_cpu;
    let slowest = t.0.iter().skip(4).map(|r| r.cpu_s).fold(0.0, f64::max);

    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut md = String::from("# Signal analyzers: speed\n\n");
    md.push_str(&format!(
        "Command: `cargo run --release -p signal --bin bench-signal -- {}{}`\n\n\
         Machine: {cpu_model}, {cores} cores (shared). CPU = user + system time of the process \
         and its ffmpeg children; analyzers run one after another on one thread.\n\n",
        out_path.display(),
        if threads == 0 {
            String::new()
        } else {
            format!(" --ffmpeg-threads {threads}")
        },
    ));
    md.push_str(&format!(
        "Video: {SECONDS} s, {WIDTH}x{HEIGHT}, 30 fps, H.264 + AAC ({} bytes). ffmpeg threads: {}. \
         Frames: {} at {}x{} (every frame), {} at {}x{} (quality).\n\n",
        probe.size_bytes,
        if threads == 0 {
            "auto".to_string()
        } else {
            threads.to_string()
        },
        motion.len(),
        motion.width,
        motion.height,
        full.len(),
        full.width,
        full.height,
    ));
    md.push_str("| step | wall (s) | CPU (s) |\n|---|---:|---:|\n");
    for r in &t.0 {
        md.push_str(&format!(
            "| {} | {:.3} | {:.3} |\n",
            r.step, r.wall_s, r.cpu_s
        ));
    }
    md.push_str(&format!("| **decode total** | | **{decode_cpu:.2}** |\n"));
    md.push_str(&format!(
        "| **everything** | **{total_wall:.2}** | **{total_cpu:.2}** |\n\n"
    ));
    md.push_str(&format!(
        "The generated patterns compress poorly: {:.1} Mbit/s, several times a typical short-form \
         upload, and decoding (two passes over the video: every frame at 160 px for the motion \
         family, a dozen full-size frames for quality) is most of the cost.\n\n",
        probe.size_bytes as f64 * 8.0 / probe.duration_s / 1e6
    ));
    md.push_str(&format!(
        "Target: all signal analyzers with decode under 10 s CPU: {}; slowest analyzer {slowest:.2} s CPU \
         against a {SECONDS} s video: {}.\n",
        if total_cpu < 10.0 { "met" } else { "NOT met" },
        if slowest < f64::from(SECONDS) { "met" } else { "NOT met" },
    ));
    println!("{md}");
    if let Some(parent) = out_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&out_path, &md).with_context(|| format!("writing {}", out_path.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
