//! The benchmark's frame sets, decoded once with ffmpeg into raw RGB files that both the
//! Rust and the Python side read, so both run on the same pixels.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use media::{FrameSpec, Frames};
use serde::{Deserialize, Serialize};

/// (name, fps or 0 for every frame, longest side).
pub const SETS: [(&str, u32, u32); 3] = [
    // text_overlay samples 2 fps at 960 px.
    ("ocr", 2, 960),
    // age_estimation and eye_tracking sample 2 fps at 640 px.
    ("faces", 2, 640),
    // Every frame at 640 px: YOLOv8 "over every frame of a 30 s, 30 fps clip".
    ("dense", 0, 640),
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetMeta {
    pub width: u32,
    pub height: u32,
    pub frames: usize,
    pub fps: f64,
    pub file: String,
}

pub fn prepare(video: &Path, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let (sw, sh, rate) = probe(video)?;
    let mut meta = BTreeMap::new();
    for (name, fps, side) in SETS {
        let scale = (side as f64 / sw.max(sh) as f64).min(1.0);
        let even = |v: u32| ((v as f64 * scale / 2.0).round() as u32 * 2).max(2);
        let (w, h) = (even(sw), even(sh));
        let file = format!("{name}.rgb");
        let mut filter = String::new();
        if fps > 0 {
            filter.push_str(&format!("fps={fps},"));
        }
        filter.push_str(&format!("scale={w}:{h}:flags=area"));
        let status = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-y", "-i"])
            .arg(video)
            .args(["-an", "-vf", &filter, "-f", "rawvideo", "-pix_fmt", "rgb24"])
            .arg(out.join(&file))
            .status()
            .context("running ffmpeg (is it on PATH?)")?;
        if !status.success() {
            bail!("ffmpeg could not decode {}", video.display());
        }
        let bytes = std::fs::metadata(out.join(&file))?.len() as usize;
        let frames = bytes / (w as usize * h as usize * 3);
        eprintln!("{name}: {frames} frames of {w}x{h}");
        meta.insert(
            name.to_string(),
            SetMeta {
                width: w,
                height: h,
                frames,
                fps: if fps > 0 { fps as f64 } else { rate },
                file,
            },
        );
    }
    std::fs::write(out.join("meta.json"), serde_json::to_vec_pretty(&meta)?)?;
    Ok(())
}

fn probe(video: &Path) -> anyhow::Result<(u32, u32, f64)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["stream=width,height,avg_frame_rate", "-of", "csv=p=0"])
        .arg(video)
        .output()
        .context("running ffprobe")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let parts: Vec<&str> = text.trim().split(',').collect();
    if parts.len() < 3 {
        bail!("ffprobe gave {text:?} for {}", video.display());
    }
    let rate = match parts[2].split_once('/') {
        Some((a, b)) => a.parse::<f64>()? / b.parse::<f64>()?.max(1.0),
        None => parts[2].parse()?,
    };
    Ok((parts[0].parse()?, parts[1].parse()?, rate))
}

/// The frame sets by name.
pub struct Sets(pub BTreeMap<String, Frames>);

impl Sets {
    pub fn get(&self, name: &str) -> anyhow::Result<&Frames> {
        self.0
            .get(name)
            .with_context(|| format!("frame set {name} missing (run `bench-gpu prepare`)"))
    }
}

pub fn load(dir: &Path) -> anyhow::Result<Sets> {
    let meta: BTreeMap<String, SetMeta> = serde_json::from_slice(
        &std::fs::read(dir.join("meta.json")).context("reading meta.json")?,
    )?;
    let mut sets = BTreeMap::new();
    for (name, m) in meta {
        let data = std::fs::read(dir.join(&m.file))?;
        let frame = m.width as usize * m.height as usize * 3;
        let n = data.len() / frame;
        sets.insert(
            name,
            Frames {
                spec: FrameSpec::at_fps((m.fps * 1000.0) as u32, m.width.max(m.height)),
                width: m.width,
                height: m.height,
                times: (0..n).map(|i| i as f64 / m.fps).collect(),
                data,
            },
        );
    }
    Ok(Sets(sets))
}

/// The first `n` frames of a set.
pub fn head(f: &Frames, n: usize) -> Frames {
    let n = n.min(f.len());
    Frames {
        spec: f.spec,
        width: f.width,
        height: f.height,
        times: f.times[..n].to_vec(),
        data: f.data[..n * f.frame_bytes()].to_vec(),
    }
}
