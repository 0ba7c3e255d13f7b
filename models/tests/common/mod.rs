//! Shared test helpers: the real ONNX Runtime and models from `scripts/setup-models.sh`, and
//! media made on the spot with ffmpeg and espeak-ng.
#![allow(dead_code)]

pub mod vision;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use media::{Audio, FrameSpec, Frames};
use models::{ModelRegistry, ModelsConfig, ProviderPreference};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate has a parent")
        .to_path_buf()
}

/// The ONNX Runtime library: `ORT_DYLIB_PATH`, else the one the setup script fetched. Missing
/// means the setup has not run, which fails the test (never a silent pass).
pub fn ort_dylib() -> PathBuf {
    let path = std::env::var("ORT_DYLIB_PATH")
        .ok()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".fleet/ort/libonnxruntime.so.1.31.1"));
    assert!(
        path.exists(),
        "ONNX Runtime library {} not found: run scripts/setup-models.sh (and export ORT_DYLIB_PATH)",
        path.display()
    );
    path
}

pub fn config() -> ModelsConfig {
    let mut cfg = ModelsConfig::with_root(&repo_root());
    cfg.ort_dylib = Some(ort_dylib());
    cfg.provider = ProviderPreference::Cpu;
    cfg
}

/// One registry per test binary: ONNX Runtime can only be loaded once per process.
pub fn registry() -> Arc<ModelRegistry> {
    static REG: OnceLock<Arc<ModelRegistry>> = OnceLock::new();
    REG.get_or_init(|| ModelRegistry::new(config())).clone()
}

pub fn test_model(name: &str) -> PathBuf {
    let p = repo_root().join(".fleet/test-models").join(name);
    assert!(
        p.exists(),
        "test model {} missing: run scripts/setup-models.sh",
        p.display()
    );
    p
}

pub fn tmpdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("models-test-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

pub fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?} could not start ({e}): install ffmpeg and espeak-ng (scripts/setup-models.sh does)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Samples frames of a video with ffmpeg (what the media crate does for the worker):
/// `fps` frames per second, longest side `max_side`, times `i / fps`.
pub fn decode_frames(video: &Path, fps: u32, max_side: u32) -> Frames {
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(video)
        .output()
        .expect("ffprobe runs");
    let dims = String::from_utf8_lossy(&probe.stdout);
    let mut it = dims
        .trim()
        .split(',')
        .map(|v| v.parse::<u32>().expect("dimension"));
    let (w, h) = (it.next().expect("width"), it.next().expect("height"));
    let scale = max_side as f64 / w.max(h) as f64;
    let (fw, fh) = if scale < 1.0 {
        (
            ((w as f64 * scale) as u32) & !1,
            ((h as f64 * scale) as u32) & !1,
        )
    } else {
        (w, h)
    };
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(video)
        .args([
            "-vf",
            &format!("fps={fps},scale={fw}:{fh}"),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg decode failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n = out.stdout.len() / (fw * fh * 3) as usize;
    Frames {
        spec: FrameSpec::at_fps(fps * 1000, max_side),
        width: fw,
        height: fh,
        times: (0..n).map(|i| i as f64 / fps as f64).collect(),
        data: out.stdout,
    }
}

/// 16 kHz mono f32 samples of any audio file.
pub fn decode_audio(path: &Path) -> Audio {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-ac", "1", "-ar", "16000", "-f", "f32le", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg audio decode failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples = out
        .stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Audio {
        sample_rate: 16_000,
        samples,
    }
}

/// espeak-ng speech at 16 kHz, trimmed to where the voice is audible, so its first and last
/// sample are the true speech edges.
pub fn speech(text: &str, dir: &Path, name: &str) -> Vec<f32> {
    let wav = dir.join(format!("{name}.wav"));
    run(Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&wav)
        .arg(text));
    let audio = decode_audio(&wav);
    let loud = |s: &&f32| s.abs() > 0.02;
    let first = audio
        .samples
        .iter()
        .position(|s| loud(&s))
        .expect("espeak produced sound");
    let last = audio
        .samples
        .iter()
        .rposition(|s| loud(&s))
        .expect("espeak produced sound");
    audio.samples[first..=last].to_vec()
}
