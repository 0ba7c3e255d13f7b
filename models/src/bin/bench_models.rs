//! Speed benchmark (not a test): our `text_overlay` and VAD against the rapidocr and
//! silero-vad Python packages' own pipelines, on the same frames/audio and the same ONNX
//! models, on this machine's CPU; writes a markdown report.
//!
//! `scripts/setup-models.sh --bench && cargo run --release -p models --bin bench-models -- docs/bench-models.md`

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use media::{Audio, FrameSpec, Frames};
use models::ocr::{Ocr, OcrParams};
use models::vad::{Vad, VadParams};
use models::{ModelRegistry, ModelsConfig, ProviderPreference};
use serde_json::Value;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";
const FPS: u32 = 2;
/// (text, from, to, y, size): a 30 s clip in three 10 s scenes, the middle one over a moving
/// background (captions in opaque boxes), the others over a still one.
const OVERLAYS: [(&str, f64, f64, u32, u32); 6] = [
    ("NEW DROP", 0.0, 6.0, 150, 48),
    ("LINK IN BIO", 2.0, 10.0, 780, 44),
    ("SALE 50% OFF", 10.0, 20.0, 300, 48),
    ("Nur heute: Größen S bis XL", 12.0, 20.0, 600, 30),
    ("Schöne Grüße aus München", 20.0, 30.0, 450, 30),
    ("Follow for more", 24.0, 30.0, 800, 40),
];
const SENTENCES: [&str; 4] = [
    "Welcome back to the channel, today we test three new products",
    "This one arrived yesterday and I love the colour",
    "Use the link in my bio to get fifty percent off",
    "Let me know in the comments what you think",
];

fn main() {
    if let Err(e) = run() {
        eprintln!("bench-models: {e}");
        std::process::exit(1);
    }
}

fn sh(cmd: &mut Command) -> Result<Vec<u8>, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out.stdout)
}

fn run() -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no repo root")?
        .to_path_buf();
    let report = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("docs/bench-models.md"));
    let python = root.join(".fleet/venv/bin/python");
    let mut cfg = ModelsConfig::with_root(&root);
    cfg.ort_dylib = Some(
        std::env::var("ORT_DYLIB_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join(".fleet/ort/libonnxruntime.so.1.31.1")),
    );
    cfg.provider = ProviderPreference::Cpu;
    let registry = ModelRegistry::new(cfg);
    let dir = std::env::temp_dir().join(format!("bench-models-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;

    // --- text_overlay -------------------------------------------------------------------
    let video = render_video(&dir)?;
    let frames = decode_frames(&video)?;
    let raw = dir.join("frames.rgb");
    std::fs::write(&raw, &frames.data).map_err(|e| e.to_string())?;
    eprintln!(
        "{} frames of {}x{}; running rapidocr (Python)...",
        frames.len(),
        frames.width,
        frames.height
    );
    let py: Value = serde_json::from_slice(&sh(Command::new(&python)
        .arg(root.join("scripts/models/bench_rapidocr.py"))
        .arg(&raw)
        .arg(frames.width.to_string())
        .arg(frames.height.to_string()))?)
    .map_err(|e| e.to_string())?;

    let t0 = Instant::now();
    let ocr = Ocr::load(&registry).map_err(|e| e.to_string())?;
    let frame0 = models::imgproc::Rgb::new(
        frames.frame(0),
        frames.width as usize,
        frames.height as usize,
    );
    ocr.read(frame0, &OcrParams::default())
        .map_err(|e| e.to_string())?;
    let our_load = t0.elapsed().as_secs_f64();
    eprintln!("running ours (every frame)...");
    let every = OcrParams {
        frame_diff: 0.0,
        line_diff: 0.0,
        ..OcrParams::default()
    };
    let t0 = Instant::now();
    let full = ocr.run(&frames, &every).map_err(|e| e.to_string())?;
    let our_full = t0.elapsed().as_secs_f64();
    eprintln!("running ours (with frame and line reuse)...");
    let t0 = Instant::now();
    let ours = ocr
        .run(&frames, &OcrParams::default())
        .map_err(|e| e.to_string())?;
    let our_time = t0.elapsed().as_secs_f64();

    let py_frames: Vec<BTreeSet<String>> = py["frames"]
        .as_array()
        .ok_or("rapidocr output has no frames")?
        .iter()
        .map(|f| {
            f.as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l["text"].as_str().map(str::to_string))
                .collect()
        })
        .collect();
    let set = |lines: &[Vec<models::ocr::Line>]| -> Vec<BTreeSet<String>> {
        lines
            .iter()
            .map(|f| f.iter().map(|l| l.text.clone()).collect())
            .collect()
    };
    let same_full = set(&full.per_frame)
        .iter()
        .zip(&py_frames)
        .filter(|(a, b)| a == b)
        .count();
    let same_ours = set(&ours.per_frame)
        .iter()
        .zip(&py_frames)
        .filter(|(a, b)| a == b)
        .count();
    let py_texts: BTreeSet<String> = py_frames.iter().flatten().cloned().collect();
    let our_texts: BTreeSet<String> = ours.texts.iter().map(|t| t.text.clone()).collect();
    let py_time = py["total_s"].as_f64().unwrap_or(f64::NAN);

    // --- VAD ---------------------------------------------------------------------------
    let audio = speech_audio(&dir)?;
    let raw_audio = dir.join("audio.f32");
    std::fs::write(
        &raw_audio,
        audio
            .samples
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .map_err(|e| e.to_string())?;
    eprintln!(
        "{:.1} s of speech audio; running silero-vad (Python)...",
        audio.duration_s()
    );
    let pv: Value = serde_json::from_slice(&sh(Command::new(&python)
        .arg(root.join("scripts/models/bench_silero.py"))
        .arg(&raw_audio))?)
    .map_err(|e| e.to_string())?;
    let vad = Vad::load(&registry).map_err(|e| e.to_string())?;
    vad.probabilities(&audio.samples[..16_000])
        .map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let probs = vad
        .probabilities(&audio.samples)
        .map_err(|e| e.to_string())?;
    let segs = models::vad::timestamps(&probs, audio.samples.len(), &VadParams::default());
    let our_vad = t0.elapsed().as_secs_f64();
    let py_segs: Vec<(usize, usize)> = pv["segments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s[0].as_u64()? as usize, s[1].as_u64()? as usize)))
        .collect();
    let py_vad = pv["total_s"].as_f64().unwrap_or(f64::NAN);

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let n = frames.len() as f64;
    let md = format!(
        "# Model benchmarks: Rust pipelines vs the Python packages\n\n\
Generated by `cargo run --release -p models --bin bench-models -- docs/bench-models.md` after\n\
`scripts/setup-models.sh --bench`. Same machine, same CPU execution provider, same ONNX files and\n\
ONNX Runtime 1.31.1 on both sides; both timed warm (models loaded, one warm-up call).\n\n\
Machine: {cpu}, {cores} cores.\n\n\
## text_overlay vs rapidocr 3.10.0 (PP-OCRv6 small det/rec + mobile cls)\n\n\
A 30 s 540x960 clip (three 10 s scenes: still, moving background with boxed captions, still;\n\
six overlay texts incl. German umlauts), sampled at {FPS} fps = {nf} frames, identical RGB\n\
frames fed to both.\n\n\
| pipeline | total for the 30 s clip | frames/s | speed-up |\n|---|---|---|---|\n\
| rapidocr (Python), every frame | {py_time:.2} s | {py_fps:.2} | 1.0x |\n\
| ours, every frame (no reuse) | {our_full:.2} s | {full_fps:.2} | {s_full:.2}x |\n\
| ours, `text_overlay` default (frame + line reuse) | {our_time:.2} s | {our_fps:.2} | {s_ours:.2}x |\n\n\
Ours analyzed {fa} of {nf} frames with the detector, recognized {lr} lines and reused {lu}.\n\n\
Same texts found: rapidocr {py_texts:?}; ours {our_texts:?} -> {same_texts}.\n\
Frames whose set of line texts equals rapidocr's: every-frame mode {same_full}/{nf}, default mode {same_ours}/{nf}.\n\n\
Model loading (first call included): rapidocr {py_load:.2} s, ours {our_load:.2} s.\n\n\
## VAD vs silero-vad 6.2.3 (`load_silero_vad(onnx=True)` + `get_speech_timestamps`)\n\n\
{dur:.1} s of espeak-ng speech with pauses, 16 kHz.\n\n\
| pipeline | time | real-time factor | speed-up |\n|---|---|---|---|\n\
| silero-vad (Python, torch {tt} thread(s)) | {py_vad:.3} s | {py_rtf:.0}x | 1.0x |\n\
| ours | {our_vad:.3} s | {our_rtf:.0}x | {s_vad:.2}x |\n\n\
Segments (samples): silero-vad {py_segs:?}\n\n\
ours {segs:?} -> {same_segs}.\n",
        nf = frames.len(),
        py_fps = n / py_time,
        full_fps = n / our_full,
        our_fps = n / our_time,
        s_full = py_time / our_full,
        s_ours = py_time / our_time,
        fa = ours.stats.frames_analyzed,
        lr = ours.stats.lines_recognized,
        lu = ours.stats.lines_reused,
        same_texts = if py_texts == our_texts {
            "identical"
        } else {
            "DIFFERENT"
        },
        py_load = py["load_s"].as_f64().unwrap_or(f64::NAN),
        dur = audio.duration_s(),
        tt = pv["torch_threads"],
        py_rtf = audio.duration_s() / py_vad,
        our_rtf = audio.duration_s() / our_vad,
        s_vad = py_vad / our_vad,
        same_segs = if py_segs == segs {
            "identical"
        } else {
            "DIFFERENT"
        },
    );
    std::fs::write(&report, &md).map_err(|e| format!("{}: {e}", report.display()))?;
    println!("{md}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn render_video(dir: &Path) -> Result<PathBuf, String> {
    let mut filters = vec![
        // Scene 2 (10-20 s) is a moving gradient, the rest a still colour.
        "[0][1]overlay=enable='between(t,10,20)'".to_string(),
    ];
    for (i, (text, from, to, y, size)) in OVERLAYS.iter().enumerate() {
        let file = dir.join(format!("text{i}.txt"));
        std::fs::write(&file, text).map_err(|e| e.to_string())?;
        filters.push(format!(
            "drawtext=fontfile={FONT}:textfile={}:expansion=none:fontsize={size}:fontcolor=white:box=1:\
             boxcolor=black:boxborderw=12:x=(w-text_w)/2:y={y}:enable='between(t,{from},{to})'",
            file.display()
        ));
    }
    let video = dir.join("clip.mp4");
    sh(Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "color=c=0x2a4d6e:s=540x960:d=30:r=25",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "gradients=s=540x960:d=30:r=25:speed=0.02",
        ])
        .arg("-filter_complex")
        .arg(filters.join(","))
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-t",
            "30",
        ])
        .arg(&video))?;
    Ok(video)
}

fn decode_frames(video: &Path) -> Result<Frames, String> {
    let (w, h) = (540u32, 960u32);
    let data = sh(Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(video)
        .args([
            "-vf",
            &format!("fps={FPS}"),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ]))?;
    let n = data.len() / (w * h * 3) as usize;
    Ok(Frames {
        spec: FrameSpec::at_fps(FPS * 1000, h),
        width: w,
        height: h,
        times: (0..n).map(|i| i as f64 / FPS as f64).collect(),
        data,
    })
}

/// Sentences with pauses of 0.4 to 1.6 s, repeated to about a minute.
fn speech_audio(dir: &Path) -> Result<Audio, String> {
    let mut samples: Vec<f32> = vec![0.0; 8_000];
    for round in 0..3 {
        for (i, s) in SENTENCES.iter().enumerate() {
            let wav = dir.join(format!("s{round}{i}.wav"));
            sh(Command::new("espeak-ng")
                .args(["-v", "en-us", "-s", &(140 + 15 * round).to_string(), "-w"])
                .arg(&wav)
                .arg(s))?;
            let pcm = sh(Command::new("ffmpeg")
                .args(["-v", "error", "-i"])
                .arg(&wav)
                .args(["-ac", "1", "-ar", "16000", "-f", "f32le", "-"]))?;
            samples.extend(
                pcm.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
            samples.extend(std::iter::repeat_n(0.0, 6_400 + 6_400 * ((i + round) % 4)));
        }
    }
    Ok(Audio {
        sample_rate: 16_000,
        samples,
    })
}
