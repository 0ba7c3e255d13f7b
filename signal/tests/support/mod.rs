//! Media the tests make with ffmpeg (lavfi sources) and espeak-ng at run time, decoded
//! through the real media pipeline.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use media::{Audio, FrameSpec, Frames, Media, MediaConfig, Probe};

pub const SIZE: &str = "320x180";

/// Runs `ffmpeg -v error -y <args>` and panics with its stderr when it fails.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg must be installed for these tests");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Encodes the video filter graph `graph` (its output labelled `[v]`) to H.264 at 30 fps.
/// `inputs` are extra input arguments (`-loop 1 -i tex.png`...).
pub fn encode(dir: &Path, name: &str, inputs: &[&str], graph: &str) -> PathBuf {
    let path = dir.join(name);
    let mut args: Vec<&str> = inputs.to_vec();
    args.extend(["-filter_complex", graph, "-map", "[v]", "-r", "30"]);
    args.extend([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-crf",
        "18",
        "-pix_fmt",
        "yuv420p",
    ]);
    let p = path.to_str().unwrap();
    args.push(p);
    ffmpeg(&args);
    path
}

/// A still 960x540 texture (test pattern with grain) to pan and zoom over.
pub fn texture(dir: &Path, name: &str, source: &str) -> PathBuf {
    let path = dir.join(name);
    let graph = format!("{source},noise=alls=30:allf=u");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &graph,
        "-frames:v",
        "1",
        path.to_str().unwrap(),
    ]);
    path
}

/// Writes audio made by an `aevalsrc`/lavfi graph to a 48 kHz WAV file.
pub fn audio_file(dir: &Path, name: &str, graph: &str) -> PathBuf {
    let path = dir.join(name);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        graph,
        "-ac",
        "1",
        "-ar",
        "48000",
        path.to_str().unwrap(),
    ]);
    path
}

fn open(path: &Path) -> Arc<Media> {
    let cfg = MediaConfig {
        cache_dir: path.parent().unwrap().join("cache"),
        local_roots: vec![path.parent().unwrap().to_path_buf()],
        ..MediaConfig::default()
    };
    Media::new(path.to_str().unwrap(), Arc::new(cfg))
}

pub async fn frames(path: &Path, spec: FrameSpec) -> Arc<Frames> {
    open(path).frames(spec).await.unwrap()
}

pub async fn probe(path: &Path) -> Arc<Probe> {
    open(path).probe().await.unwrap()
}

pub async fn audio(path: &Path) -> Arc<Audio> {
    open(path).audio().await.unwrap()
}

/// Asserts that `found` matches `expected` one to one, each within `tolerance` seconds.
pub fn assert_times(found: &[f64], expected: &[f64], tolerance: f64) {
    assert_eq!(
        found.len(),
        expected.len(),
        "found {found:?}, expected {expected:?}"
    );
    for (f, e) in found.iter().zip(expected) {
        assert!(
            (f - e).abs() <= tolerance,
            "found {found:?}, expected {expected:?} (±{tolerance})"
        );
    }
}
