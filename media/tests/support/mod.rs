//! Media the tests make with ffmpeg at run time, in a temporary directory.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use media::MediaConfig;

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

/// A 320x240 test pattern at 30 fps, with a 440 Hz tone at -20 dBFS when `audio`.
pub fn video(dir: &Path, name: &str, seconds: f64, audio: bool) -> PathBuf {
    let path = dir.join(name);
    let d = seconds.to_string();
    let v = format!("testsrc=size=320x240:rate=30:duration={d}");
    let a = format!("aevalsrc=0.1*sin(2*PI*440*t):s=48000:d={d}");
    let mut args = vec!["-f", "lavfi", "-i", &v];
    if audio {
        args.extend(["-f", "lavfi", "-i", &a, "-c:a", "aac", "-b:a", "96k"]);
    }
    args.extend([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-g",
        "30",
    ]);
    let p = path.to_str().unwrap();
    args.push(p);
    ffmpeg(&args);
    path
}

/// Config for tests: the download cache inside `dir`, local files allowed under `dir`.
pub fn config(dir: &Path) -> MediaConfig {
    MediaConfig {
        cache_dir: dir.join("cache"),
        local_roots: vec![dir.to_path_buf()],
        ..MediaConfig::default()
    }
}

pub fn shared(cfg: MediaConfig) -> Arc<MediaConfig> {
    Arc::new(cfg)
}
