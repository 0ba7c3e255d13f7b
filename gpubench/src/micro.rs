//! One model at a time: load, the first (cold) run of a new shape, and steady state at
//! batch 1 and at the pipeline's batch; device memory per model; each cuDNN search policy.

use std::time::Instant;

use models::{ConvSearch, ModelFile, ModelSpec, Precision};
use serde_json::{Value, json};

use crate::Run;
use crate::report::{Section, ms, stats};
use crate::setup::{Config, Env, Kind, OperatorModel};

/// A model of the micro-benchmark: how to get it and the item shape its pipeline feeds.
struct Subject {
    name: String,
    source: Source,
    item: Vec<i64>,
    batch: usize,
}

enum Source {
    Fetched(&'static str),
    File(ModelFile),
}

fn subjects(operator: &[OperatorModel]) -> Vec<Subject> {
    let fetched = |id: &'static str, item: &[i64], batch: usize| Subject {
        name: id.to_string(),
        source: Source::Fetched(id),
        item: item.to_vec(),
        batch,
    };
    let mut list = vec![
        fetched("ppocr.det", &[3, 1312, 736], models::ocr::DET_BATCH),
        fetched("ppocr.cls", &[3, 48, 192], 32),
        fetched("ppocr.rec", &[3, 48, 640], 32),
        // P-Net's first pyramid level of a 360x640 canvas ([width, height, 3]: swapped axes).
        fetched("mtcnn.pnet", &[216, 384, 3], models::faces::PNET_BATCH),
        fetched("mtcnn.rnet", &[24, 24, 3], 256),
        fetched("mtcnn.onet", &[48, 48, 3], 64),
        fetched("agegender.age", &[3, 64, 64], 64),
        fetched("agegender.gender", &[3, 32, 32], 64),
    ];
    for m in operator {
        let item = match m.kind {
            Kind::Yolo => vec![3, 640, 640],
            Kind::SegFormer => vec![3, 512, 512],
        };
        list.push(Subject {
            name: m.name.clone(),
            source: Source::File(m.file.clone()),
            item,
            batch: 16,
        });
    }
    list
}

/// Values in [-1, 1) that differ per call (never zeros: kernels take shortcuts on zeros).
pub fn noise(len: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(12345);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn spec_for(batch: usize, precision: Precision, search: Option<ConvSearch>) -> ModelSpec {
    ModelSpec {
        batches: vec![1, batch],
        // Nothing warmed: the first run of each shape is the cold cost being measured.
        warm: Vec::new(),
        conv_search: search.unwrap_or(ConvSearch::Exhaustive),
        precision,
        ..ModelSpec::default()
    }
}

pub fn models(env: &Env, run: &Run, operator: &[OperatorModel]) -> anyhow::Result<Section> {
    let mut rows = Vec::new();
    let mut table = String::from(
        "| model | provider | precision | load ms | batch | first run ms | steady ms/run (median) | p99 | ms/item | device MiB (weights / after runs) |\n|---|---|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let mut configs = vec![(Config::cpu(), Precision::Fp32)];
    if env.gpu {
        configs.push((Config::cuda(), Precision::Fp32));
        configs.push((Config::cuda(), Precision::Fp16));
    }
    for s in subjects(operator) {
        for (cfg, precision) in &configs {
            eprintln!("micro: {} on {} {}", s.name, cfg.label, precision.label());
            let before = env.used();
            let reg = env.registry(cfg);
            let spec = spec_for(s.batch, *precision, None);
            let t0 = Instant::now();
            let model = match &s.source {
                Source::Fetched(id) => reg.fetched_spec(id, spec),
                Source::File(f) => reg.get_spec(f, &s.name, spec),
            };
            let model = match model {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("micro: {} failed to load: {e}", s.name);
                    continue;
                }
            };
            if *precision == Precision::Fp16 && model.precision() != Precision::Fp16 {
                // No FP16 variant of this file.
                continue;
            }
            let load_ms = ms(t0.elapsed());
            let weights = model.device_bytes();
            let reps = if cfg.gpu { run.reps } else { 3 };
            for batch in [1, s.batch] {
                let len: usize = s.item.iter().map(|&d| d as usize).product();
                let input = noise(len * batch, batch as u32);
                let t = Instant::now();
                model.infer(&s.item, batch, &input)?;
                let first = ms(t.elapsed());
                let mut times = Vec::with_capacity(reps);
                for r in 0..reps {
                    let input = noise(len * batch, 1000 + r as u32);
                    let t = Instant::now();
                    model.infer(&s.item, batch, &input)?;
                    times.push(ms(t.elapsed()));
                }
                let st = stats(&times);
                let after = match (env.used(), before) {
                    (Some(a), Some(b)) => Some(a.saturating_sub(b)),
                    _ => None,
                };
                let mib = |b: Option<u64>| {
                    b.map_or("-".into(), |b| format!("{:.0}", b as f64 / 1048576.0))
                };
                table.push_str(&format!(
                    "| {} | {} | {} | {:.0} | {} | {:.1} | {:.2} | {:.2} | {:.3} | {} / {} |\n",
                    s.name,
                    model.provider.label(),
                    model.precision().label(),
                    load_ms,
                    batch,
                    first,
                    st.median,
                    st.p99,
                    st.median / batch as f64,
                    mib(weights),
                    mib(after),
                ));
                rows.push(json!({
                    "model": s.name, "provider": model.provider.label(),
                    "precision": model.precision().label(), "load_ms": load_ms, "batch": batch,
                    "first_ms": first, "median_ms": st.median, "p99_ms": st.p99,
                    "ms_per_item": st.median / batch as f64,
                    "device_bytes_weights": weights, "device_bytes_after_runs": after,
                }));
            }
            drop(model);
            drop(reg);
        }
    }
    // CUDA against CPU per model, steady state at the pipeline's batch.
    let mut ratio = String::from(
        "\n| model | CPU ms/item | CUDA FP32 ms/item | CUDA FP16 ms/item | best CUDA vs CPU |\n|---|---:|---:|---:|---:|\n",
    );
    let find = |m: &str, p: &str, prec: &str, b: usize| {
        rows.iter()
            .find(|r| {
                r["model"] == m && r["provider"] == p && r["precision"] == prec && r["batch"] == b
            })
            .and_then(|r| r["ms_per_item"].as_f64())
    };
    for s in subjects(operator) {
        let cpu = find(&s.name, "cpu", "fp32", s.batch);
        let f32_ = find(&s.name, "cuda", "fp32", s.batch);
        let f16 = find(&s.name, "cuda", "fp16", s.batch);
        let best = [f32_, f16]
            .into_iter()
            .flatten()
            .fold(f64::INFINITY, f64::min);
        let show = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
        ratio.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            s.name,
            show(cpu),
            show(f32_),
            show(f16),
            match cpu {
                Some(c) if best.is_finite() => format!("{:.0}x", c / best),
                _ => "-".into(),
            }
        ));
    }
    Ok(Section {
        title: "Models one at a time".into(),
        body: format!(
            "Random inputs in [-1, 1). `first run` is the first run of that shape in a fresh \
             session with nothing warmed (the cuDNN search of the exhaustive policy included); \
             steady state is the median of the following runs. Device memory from NVML: after \
             loading (weights and the provider's workspace), and after the runs (the arena \
             holding the largest batch's activations).\n\n{table}{ratio}"
        ),
        json: Value::Array(rows),
    })
}

/// The cuDNN search policies on the shapes where they matter: the first run of a new shape
/// and the steady state that follows.
pub fn search(
    env: &Env,
    run: &Run,
    _sets: &crate::frames::Sets,
    operator: &[OperatorModel],
) -> anyhow::Result<Section> {
    if !env.gpu {
        return Ok(Section::skipped(
            "cuDNN search policies",
            "no CUDA execution provider",
        ));
    }
    let mut rows = Vec::new();
    let mut table = String::from(
        "| model | shape | policy | first run ms | steady ms (median) | p99 |\n|---|---|---|---:|---:|---:|\n",
    );
    let picks: Vec<Subject> = subjects(operator)
        .into_iter()
        .filter(|s| {
            [
                "ppocr.det",
                "ppocr.rec",
                "mtcnn.pnet",
                "yolov8x",
                "segformer-b2",
            ]
            .contains(&s.name.as_str())
        })
        .collect();
    for s in picks {
        for policy in [
            ConvSearch::Exhaustive,
            ConvSearch::Heuristic,
            ConvSearch::Default,
        ] {
            let cfg = Config {
                conv_search: Some(policy),
                ..Config::cuda()
            };
            let reg = env.registry(&cfg);
            let spec = spec_for(s.batch, Precision::Fp32, Some(policy));
            let model = match &s.source {
                Source::Fetched(id) => reg.fetched_spec(id, spec)?,
                Source::File(f) => reg.get_spec(f, &s.name, spec)?,
            };
            let len: usize = s.item.iter().map(|&d| d as usize).product();
            let input = noise(len * s.batch, 7);
            let t = Instant::now();
            model.infer(&s.item, s.batch, &input)?;
            let first = ms(t.elapsed());
            let mut times = Vec::new();
            for r in 0..run.reps {
                let input = noise(len * s.batch, 100 + r as u32);
                let t = Instant::now();
                model.infer(&s.item, s.batch, &input)?;
                times.push(ms(t.elapsed()));
            }
            let st = stats(&times);
            let shape = format!("{}x{:?}", s.batch, s.item);
            table.push_str(&format!(
                "| {} | {} | {} | {:.0} | {:.2} | {:.2} |\n",
                s.name,
                shape,
                policy.label(),
                first,
                st.median,
                st.p99
            ));
            rows.push(
                json!({"model": s.name, "shape": shape, "policy": policy.label(),
                "first_ms": first, "median_ms": st.median, "p99_ms": st.p99}),
            );
        }
    }
    Ok(Section {
        title: "cuDNN convolution algorithm search".into(),
        body: format!(
            "FP32, one fresh session per policy; `first run` is the new shape's cost (the \
             search), steady state what every later batch of that shape costs.\n\n{table}"
        ),
        json: Value::Array(rows),
    })
}
