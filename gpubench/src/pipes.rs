//! The analyzers' pipelines end to end (pre-processing, inference, post-processing) on the
//! prepared frames: as shipped on the GPU, with FP32 everywhere, at batch 1, with pageable
//! transfers, and on the CPU provider; FP16 against FP32 on the same frames; the Python
//! pipelines' figures next to ours.

use std::collections::BTreeSet;
use std::time::Instant;

use media::Frames;
use models::age::{self, AgeGender};
use models::faces::MtcnnParams;
use models::ocr::{Ocr, OcrParams};
use models::segformer::{SegFormer, SegParams};
use models::yolo::{Detection, Yolo, YoloParams};
use models::{LoadedModel, ModelRegistry};
use serde_json::{Value, json};

use crate::Run;
use crate::frames::{Sets, head};
use crate::report::{Section, ms, stats};
use crate::setup::{Config, Env, OperatorModel};

/// Repetitions of a whole pipeline on the GPU (the median is reported).
const REPS: usize = 3;

/// One measured configuration of one pipeline.
struct Measured {
    label: String,
    frames: usize,
    /// First call after loading (sessions warmed at load), then the median of the rest.
    first_ms: f64,
    median_ms: f64,
    load_ms: f64,
    /// Per-run timings of the models in the steady runs: median and p99 per batch.
    runs: Vec<(String, f64, f64, u64)>,
    /// Per model, the steady runs over twice its median (slowest first, at most
    /// [`SLOW_SHOWN`]): where in the run sequence they fell and with which input shape, to
    /// tell a shape's stall from a periodic one.
    slow: Vec<(String, Vec<SlowRun>)>,
}

/// A run's index in the model's steady runs, its input shape, its wall time (ms).
type SlowRun = (usize, Vec<i64>, f64);

const SLOW_SHOWN: usize = 4;

impl Measured {
    fn per_frame(&self) -> f64 {
        self.median_ms / self.frames.max(1) as f64
    }
}

fn measure<T>(
    label: &str,
    frames: usize,
    reps: usize,
    load: impl FnOnce() -> anyhow::Result<(T, Vec<std::sync::Arc<LoadedModel>>)>,
    mut run: impl FnMut(&T) -> anyhow::Result<()>,
) -> anyhow::Result<(Measured, T)> {
    eprintln!("pipeline: {label} on {frames} frames");
    let t = Instant::now();
    let (subject, sessions) = load()?;
    let load_ms = ms(t.elapsed());
    let t = Instant::now();
    run(&subject)?;
    let first_ms = ms(t.elapsed());
    for s in &sessions {
        s.take_stats();
    }
    let mut times = Vec::new();
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        run(&subject)?;
        times.push(ms(t.elapsed()));
    }
    let mut slow = Vec::new();
    let runs = sessions
        .iter()
        .map(|s| {
            let st = s.take_stats();
            let per: Vec<f64> = st.log.iter().map(|(_, ms)| *ms).collect();
            let d = stats(&per);
            let mut over: Vec<SlowRun> = st
                .log
                .iter()
                .enumerate()
                .filter(|(_, (_, ms))| *ms > 2.0 * d.median)
                .map(|(i, (shape, ms))| (i, shape.clone(), *ms))
                .collect();
            over.sort_by(|a, b| b.2.total_cmp(&a.2));
            over.truncate(SLOW_SHOWN);
            if !over.is_empty() {
                slow.push((s.name(), over));
            }
            (s.name(), d.median, d.p99, st.runs)
        })
        .collect();
    Ok((
        Measured {
            label: label.to_string(),
            frames,
            first_ms,
            median_ms: stats(&times).median,
            load_ms,
            runs,
            slow,
        },
        subject,
    ))
}

fn table(rows: &[Measured], cpu_label: &str) -> String {
    let cpu = rows
        .iter()
        .find(|r| r.label == cpu_label)
        .map(|r| r.per_frame());
    let mut t = String::from(
        "| configuration | frames | load + warm-up ms | first call ms | steady ms (median) | ms/frame | vs CPU EP |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        t.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.1} | {:.2} | {} |\n",
            r.label,
            r.frames,
            r.load_ms,
            r.first_ms,
            r.median_ms,
            r.per_frame(),
            match cpu {
                Some(c) => format!("{:.1}x", c / r.per_frame()),
                None => "-".into(),
            }
        ));
    }
    t.push_str("\nPer model run (steady state): median and p99 of one batch's run, runs in all steady passes.\n\n| configuration | model | median ms | p99 ms | p99 / median | runs |\n|---|---|---:|---:|---:|---:|\n");
    for r in rows {
        for (name, med, p99, n) in &r.runs {
            if *n == 0 {
                continue;
            }
            t.push_str(&format!(
                "| {} | {} | {:.2} | {:.2} | {:.2} | {} |\n",
                r.label,
                name,
                med,
                p99,
                if *med > 0.0 { p99 / med } else { 0.0 },
                n
            ));
        }
    }
    let slow: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            r.slow.iter().map(move |(name, runs)| {
                let list: Vec<String> = runs
                    .iter()
                    .map(|(i, shape, ms)| format!("run {i} {shape:?} {ms:.1} ms"))
                    .collect();
                format!("- {} / {name}: {}\n", r.label, list.join("; "))
            })
        })
        .collect();
    if !slow.is_empty() {
        t.push_str(
            "\nSteady runs over twice their model's median (slowest first; `run i` counts the \
             model's runs across the steady passes, with the input shape):\n\n",
        );
        t.extend(slow);
    }
    t
}

fn to_json(rows: &[Measured]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                json!({"config": r.label, "frames": r.frames, "load_ms": r.load_ms,
                "first_ms": r.first_ms, "median_ms": r.median_ms, "ms_per_frame": r.per_frame(),
                "runs": r.runs.iter().map(|(n, m, p, c)| json!({"model": n, "median_ms": m, "p99_ms": p, "runs": c})).collect::<Vec<_>>(),
                "slow_runs": r.slow.iter().map(|(n, runs)| json!({"model": n, "runs": runs.iter().map(|(i, shape, ms)| json!({"run": i, "shape": shape, "ms": ms})).collect::<Vec<_>>()})).collect::<Vec<_>>()})
            })
            .collect(),
    )
}

/// The GPU configurations a pipeline is measured in; `transfers` adds pageable transfers
/// (for the pipelines that move the most bytes).
fn gpu_configs(env: &Env, transfers: bool) -> Vec<Config> {
    if !env.gpu {
        return Vec::new();
    }
    let mut c = vec![
        Config::cuda(),
        Config::cuda_fp32(),
        Config::cuda_batch1(),
        Config::cuda_nhwc(),
    ];
    if transfers {
        c.push(Config::cuda_pageable());
    }
    // `BENCH_CONFIGS=shipped,nhwc` keeps the labels that contain one of the words (a device
    // call has a time limit; the shipped configuration always stays).
    if let Ok(keep) = std::env::var("BENCH_CONFIGS") {
        let words: Vec<String> = keep.split(',').map(|w| w.trim().to_lowercase()).collect();
        c.retain(|cfg| {
            let label = cfg.label.to_lowercase();
            label.contains("as shipped") || words.iter().any(|w| !w.is_empty() && label.contains(w))
        });
    }
    c
}

fn texts(lines: &[Vec<models::ocr::Line>]) -> Vec<BTreeSet<String>> {
    lines
        .iter()
        .map(|f| f.iter().map(|l| l.text.clone()).collect())
        .collect()
}

fn agree(a: &[BTreeSet<String>], b: &[BTreeSet<String>]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x == y).count()
}

pub fn ocr(env: &Env, run: &Run, sets: &Sets, python: Option<&Value>) -> anyhow::Result<Section> {
    let frames = sets.get("ocr")?;
    let every = OcrParams {
        frame_diff: 0.0,
        line_diff: 0.0,
        ..OcrParams::default()
    };
    let mut rows = Vec::new();
    let mut results: Vec<(String, Vec<BTreeSet<String>>)> = Vec::new();
    let mut default_rows = Vec::new();
    for cfg in gpu_configs(env, true) {
        let reg = env.registry(&cfg);
        let (m, ocr) = measure(
            cfg.label,
            frames.len(),
            REPS,
            || load_ocr(&reg),
            |o| {
                o.run(frames, &every)?;
                Ok(())
            },
        )?;
        let out = ocr.run(frames, &every)?;
        results.push((cfg.label.to_string(), texts(&out.per_frame)));
        rows.push(m);
        if cfg.label == Config::cuda().label {
            // The analyzer as it runs in the fleet: unchanged frames and lines reused.
            let (m, _) = measure(
                "CUDA EP (as shipped), text_overlay defaults",
                frames.len(),
                REPS,
                || Ok((Ocr::load(&reg)?, Vec::new())),
                |o| {
                    o.run(frames, &OcrParams::default())?;
                    Ok(())
                },
            )?;
            let out = ocr.run(frames, &OcrParams::default())?;
            default_rows.push((m, out.stats.frames_analyzed, out.texts.len()));
        }
    }
    let cpu_frames = head(frames, run.cpu_frames);
    let reg = env.registry(&Config::cpu());
    let (m, ocr) = measure(
        Config::cpu().label,
        cpu_frames.len(),
        1,
        || load_ocr(&reg),
        |o| {
            o.run(&cpu_frames, &every)?;
            Ok(())
        },
    )?;
    let cpu_texts = texts(&ocr.run(&cpu_frames, &every)?.per_frame);
    rows.push(m);
    let n = cpu_frames.len();
    let mut agreement = String::from(
        "\nSame frames, same text sets per frame (every-frame mode):\n\n| configuration | frames equal to the CPU EP's (first frames) | equal to CUDA FP32 |\n|---|---:|---:|\n",
    );
    let fp32 = results
        .iter()
        .find(|(l, _)| l == Config::cuda_fp32().label)
        .map(|(_, t)| t.clone());
    for (label, t) in &results {
        agreement.push_str(&format!(
            "| {label} | {}/{n} | {} |\n",
            agree(&t[..n.min(t.len())], &cpu_texts),
            fp32.as_ref()
                .map_or("-".into(), |f| format!("{}/{}", agree(t, f), t.len()))
        ));
    }
    let mut body = format!(
        "`Ocr::run` on {} frames of {}x{} (2 fps of the 30 s clip), every frame analyzed \
         (no reuse): detection, line classification and recognition with pre- and \
         post-processing. The CPU EP runs the first {n} frames.\n\n{}{agreement}",
        frames.len(),
        frames.width,
        frames.height,
        table(&rows, Config::cpu().label),
    );
    for (m, analyzed, found) in &default_rows {
        body.push_str(&format!(
            "\n`text_overlay` as the fleet runs it (frame and line reuse): {:.0} ms for the \
             30 s clip ({} of {} frames through the detector, {} texts), first call {:.0} ms.\n",
            m.median_ms,
            analyzed,
            frames.len(),
            found,
            m.first_ms
        ));
    }
    if let Some(py) = python.and_then(|p| p.get("rapidocr")) {
        body.push_str(&python_rows("rapidocr with onnxruntime-gpu", py, &rows));
    }
    Ok(Section {
        title: "text_overlay: PP-OCR".into(),
        body,
        json: json!({"every_frame": to_json(&rows), "python": python.and_then(|p| p.get("rapidocr")).cloned()}),
    })
}

fn load_ocr(reg: &ModelRegistry) -> anyhow::Result<(Ocr, Vec<std::sync::Arc<LoadedModel>>)> {
    let ocr = Ocr::load(reg)?;
    let sessions = ["ppocr.det", "ppocr.cls", "ppocr.rec"]
        .iter()
        .map(|id| reg.fetched(id))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((ocr, sessions))
}

/// Our steady ms/frame against the Python side's, per Python configuration.
fn python_rows(what: &str, py: &Value, ours: &[Measured]) -> String {
    let best = ours
        .iter()
        .filter(|r| r.label.starts_with("CUDA"))
        .map(|r| r.per_frame())
        .fold(f64::INFINITY, f64::min);
    let mut s = format!(
        "\nThe Python way on the same GPU and frames ({what}):\n\n| Python configuration | frames | ms/frame | ours (best CUDA) ms/frame | ours faster |\n|---|---:|---:|---:|---:|\n"
    );
    if let Some(obj) = py.as_object() {
        for (label, v) in obj {
            let Some(pf) = v.get("ms_per_frame").and_then(Value::as_f64) else {
                continue;
            };
            s.push_str(&format!(
                "| {label} | {} | {pf:.2} | {best:.2} | {:.1}x |\n",
                v.get("frames").and_then(Value::as_u64).unwrap_or(0),
                pf / best
            ));
        }
    }
    s
}

pub fn faces(env: &Env, run: &Run, sets: &Sets) -> anyhow::Result<Section> {
    let frames = sets.get("faces")?;
    let p = MtcnnParams::default();
    let mut rows = Vec::new();
    let mut eye_rows = Vec::new();
    let mut found = Vec::new();
    let load =
        |reg: &ModelRegistry| -> anyhow::Result<(AgeGender, Vec<std::sync::Arc<LoadedModel>>)> {
            let ag = AgeGender::load(reg)?;
            let sessions = [
                "mtcnn.pnet",
                "mtcnn.rnet",
                "mtcnn.onet",
                "agegender.age",
                "agegender.gender",
            ]
            .iter()
            .map(|id| reg.fetched(id))
            .collect::<Result<Vec<_>, _>>()?;
            Ok((ag, sessions))
        };
    let mut configs = gpu_configs(env, false);
    configs.push(Config::cpu());
    for cfg in configs {
        let f = if cfg.gpu {
            frames.clone()
        } else {
            head(frames, run.cpu_frames.max(24))
        };
        let reg = env.registry(&cfg);
        let reps = if cfg.gpu { REPS } else { 1 };
        let (m, ag) = measure(
            cfg.label,
            f.len(),
            reps,
            || load(&reg),
            |ag| {
                ag.observe(&f, &p)?;
                Ok(())
            },
        )?;
        let obs = ag.observe(&f, &p)?;
        let tracks = age::age_tracks(&obs, &f.times, 1);
        found.push((
            cfg.label,
            obs.len(),
            tracks.iter().map(|t| t.age).collect::<Vec<_>>(),
        ));
        rows.push(m);
        let (m, _) = measure(
            cfg.label,
            f.len(),
            reps,
            || Ok(((), Vec::new())),
            |_| {
                age::eye_tracking(ag.detector(), &f, &p)?;
                Ok(())
            },
        )?;
        eye_rows.push(m);
    }
    let mut agreement = String::from(
        "\n| configuration | faces found (all frames) | expected age per track |\n|---|---:|---|\n",
    );
    for (label, n, ages) in &found {
        agreement.push_str(&format!("| {label} | {n} | {ages:?} |\n"));
    }
    Ok(Section {
        title: "age_estimation and eye_tracking: MTCNN + age/gender".into(),
        body: format!(
            "`AgeGender::observe` (MTCNN cascade, then the age and gender networks on every \
             face) on {} frames of {}x{}; the CPU EP runs the first {} frames.\n\n{}{agreement}\n\
             `eye_tracking` (the MTCNN cascade and the landmark geometry):\n\n{}",
            frames.len(),
            frames.width,
            frames.height,
            run.cpu_frames.max(24).min(frames.len()),
            table(&rows, Config::cpu().label),
            table(&eye_rows, Config::cpu().label)
        ),
        json: json!({"age": to_json(&rows), "eye_tracking": to_json(&eye_rows)}),
    })
}

/// A threshold that leaves about 100 candidates a frame, as a trained model on a busy scene
/// would (NMS over every anchor would make NMS, not the model, the cost). The Python side
/// calibrates the same way.
fn calibrate(yolo: &Yolo, frames: &Frames) -> anyhow::Result<f32> {
    let one = head(frames, 1);
    let probe = YoloParams {
        conf: 0.0,
        max_det: 0,
        ..YoloParams::default()
    };
    let scores = yolo.raw_scores(&one, &probe)?;
    let mut s = scores;
    s.sort_by(|a, b| b.total_cmp(a));
    let (top, at100) = (
        s.first().copied().unwrap_or(0.0),
        s.get(100).copied().unwrap_or(0.0),
    );
    // Untrained heads can score every anchor alike (the class bias alone): then no threshold
    // leaves ~100, and both sides run above the top score (NMS sees nothing).
    Ok(if at100 >= top * 0.999 {
        top * 1.01
    } else {
        at100
    })
}

fn detection_agreement(a: &[Vec<Detection>], b: &[Vec<Detection>]) -> (usize, usize) {
    let (mut matched, mut total) = (0, 0);
    for (x, y) in a.iter().zip(b) {
        total += x.len().max(y.len());
        matched += x
            .iter()
            .filter(|d| {
                y.iter().any(|e| {
                    e.class_id == d.class_id && models::ocr::geometry::iou(d.bbox, e.bbox) > 0.9
                })
            })
            .count();
    }
    (matched, total)
}

pub fn yolo(
    env: &Env,
    run: &Run,
    sets: &Sets,
    m: &OperatorModel,
    python: Option<&Value>,
) -> anyhow::Result<Section> {
    let frames = sets.get("dense")?;
    let mut rows = Vec::new();
    let mut dets: Vec<(String, Vec<Vec<Detection>>)> = Vec::new();
    let mut conf = 0.25;
    let mut configs = gpu_configs(env, true);
    configs.push(Config::cpu());
    for cfg in configs {
        let reg = env.registry(&cfg);
        let f = if cfg.gpu {
            frames.clone()
        } else {
            head(frames, run.cpu_frames)
        };
        let base = YoloParams::default();
        let t = Instant::now();
        let yolo = Yolo::load(&reg, &m.file, &base)?;
        let load_ms = ms(t.elapsed());
        if rows.is_empty() {
            conf = python
                .and_then(|p| p.get(&m.name))
                .and_then(|p| p.get("conf"))
                .and_then(Value::as_f64)
                .map(|c| c as f32)
                .map_or_else(|| calibrate(&yolo, &f), Ok)?;
        }
        let p = YoloParams { conf, ..base };
        let reps = if cfg.gpu { REPS } else { 1 };
        let session = reg.get(&m.file).ok();
        let (mut meas, yolo) = measure(
            cfg.label,
            f.len(),
            reps,
            || Ok((yolo, session.into_iter().collect())),
            |y| {
                y.analyze(&f, &p)?;
                Ok(())
            },
        )?;
        meas.load_ms = load_ms;
        let imgs: Vec<models::imgproc::Rgb<'_>> = f
            .iter()
            .take(run.cpu_frames)
            .map(|(_, d)| models::imgproc::Rgb::new(d, f.width as usize, f.height as usize))
            .collect();
        dets.push((cfg.label.to_string(), yolo.detect(&imgs, &p)?));
        rows.push(meas);
    }
    let mut agreement = format!(
        "\nDetections on the first {} frames matched (same class, IoU > 0.9) against the CPU EP's:\n\n| configuration | matched / total |\n|---|---:|\n",
        run.cpu_frames
    );
    if let Some((_, cpu)) = dets.iter().find(|(l, _)| l == Config::cpu().label) {
        for (label, d) in &dets {
            let (a, t) = detection_agreement(d, cpu);
            agreement.push_str(&format!("| {label} | {a}/{t} |\n"));
        }
    }
    let mut body = format!(
        "`Yolo::analyze` (letterbox to 640x640, inference, decoding, per-class NMS) over every \
         frame of the 30 s, 30 fps clip: {} frames of {}x{}; random weights, score threshold \
         {conf:.6} (NMS sees about 100 candidates a frame, or none where the untrained head scores every anchor alike). The CPU EP runs the first {} \
         frames.\n\n{}{agreement}",
        frames.len(),
        frames.width,
        frames.height,
        run.cpu_frames,
        table(&rows, Config::cpu().label)
    );
    if let Some(py) = python
        .and_then(|p| p.get(&m.name))
        .and_then(|p| p.get("runs"))
    {
        body.push_str(&python_rows("ultralytics, PyTorch eager", py, &rows));
    }
    Ok(Section {
        title: format!("object_detection: {} (random weights)", m.name),
        body,
        json: json!({"rows": to_json(&rows), "conf": conf}),
    })
}

pub fn segformer(
    env: &Env,
    run: &Run,
    sets: &Sets,
    m: &OperatorModel,
    python: Option<&Value>,
) -> anyhow::Result<Section> {
    let frames = sets.get("dense")?;
    let mut rows = Vec::new();
    let mut shares: Vec<(String, Vec<Vec<f64>>)> = Vec::new();
    let mut configs = gpu_configs(env, false);
    configs.push(Config::cpu());
    for cfg in configs {
        let reg = env.registry(&cfg);
        let f = if cfg.gpu {
            frames.clone()
        } else {
            head(frames, run.cpu_frames)
        };
        let p = SegParams::default();
        let t = Instant::now();
        let seg = SegFormer::load(&reg, &m.file, &p)?;
        let load_ms = ms(t.elapsed());
        let session = reg.get(&m.file).ok();
        let reps = if cfg.gpu { REPS } else { 1 };
        let (mut meas, seg) = measure(
            cfg.label,
            f.len(),
            reps,
            || Ok((seg, session.into_iter().collect())),
            |s| {
                s.analyze(&f, &p)?;
                Ok(())
            },
        )?;
        meas.load_ms = load_ms;
        let imgs: Vec<models::imgproc::Rgb<'_>> = f
            .iter()
            .take(run.cpu_frames)
            .map(|(_, d)| models::imgproc::Rgb::new(d, f.width as usize, f.height as usize))
            .collect();
        shares.push((cfg.label.to_string(), seg.class_shares(&imgs, &p)?));
        rows.push(meas);
    }
    let mut agreement = String::from(
        "\nClass shares per frame against the CPU EP's (largest absolute difference over classes and frames):\n\n| configuration | max share difference |\n|---|---:|\n",
    );
    if let Some((_, cpu)) = shares.iter().find(|(l, _)| l == Config::cpu().label) {
        for (label, s) in &shares {
            let worst = s
                .iter()
                .zip(cpu)
                .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
                .fold(0.0f64, f64::max);
            agreement.push_str(&format!("| {label} | {worst:.4} |\n"));
        }
    }
    let mut body = format!(
        "`SegFormer::analyze` (resize to 512x512, inference, per-pixel argmax over 150 \
         classes) on {} frames of {}x{}; random weights. The CPU EP runs the first {} \
         frames.\n\n{}{agreement}",
        frames.len(),
        frames.width,
        frames.height,
        run.cpu_frames,
        table(&rows, Config::cpu().label)
    );
    if let Some(py) = python
        .and_then(|p| p.get(&m.name))
        .and_then(|p| p.get("runs"))
    {
        body.push_str(&python_rows("transformers, PyTorch eager", py, &rows));
    }
    Ok(Section {
        title: format!("background_segmentation: {} (random weights)", m.name),
        body,
        json: to_json(&rows),
    })
}
