//! The worker collects the frame specs its analyzers declare for a job, so the job's media
//! decodes them in one ffmpeg pass (real ffmpeg, the shipped config).

use std::path::Path;
use std::sync::Arc;

use common::config::{FleetConfig, StageClass};
use media::{FrameSpec, Media, MediaConfig};
use worker::{Backends, Registry};

fn config() -> FleetConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/fleet.toml");
    let mut c = FleetConfig::load(&path, |_| None).unwrap();
    // Every GPU analyzer configured (model files and servers are only named, never opened).
    for a in c.analyzers.values_mut() {
        if let Some(p) = a.params.as_object_mut() {
            p.entry("model").or_insert("operator-model.onnx".into());
            p.entry("sha256").or_insert("0".repeat(64).into());
            p.insert("endpoint".into(), "http://model-server.invalid/v1".into());
        }
    }
    c
}

fn gpu_analyzers(c: &FleetConfig) -> Vec<&str> {
    let stages: Vec<&str> = c
        .stages_of(StageClass::Gpu)
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    c.enabled_analyzers()
        .filter(|a| stages.contains(&a.stage.as_str()))
        .map(|a| a.name.as_str())
        .collect()
}

#[tokio::test]
async fn a_default_job_decodes_once_on_the_gpu_worker() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("v.mp4");
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=size=360x640:rate=30:duration=3")
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&video)
        .output()
        .expect("ffmpeg installed");
    assert!(out.status.success());
    let c = config();
    let registry = Registry::build(
        &c,
        Backends::Real {
            fallback_scale: 1.0,
        },
    );
    let names = gpu_analyzers(&c);
    let cfg = Arc::new(MediaConfig {
        cache_dir: dir.path().join("cache"),
        local_roots: vec![dir.path().to_path_buf()],
        ..MediaConfig::default()
    });
    let m = Media::new(video.to_str().unwrap(), cfg);
    let probe = m.probe().await.unwrap();
    let planner = registry.frame_planner(&c, names.iter().copied());
    let mut specs: Vec<FrameSpec> = planner(&probe);
    specs.sort_by_key(|s| (s.max_side, s.fps_milli));
    specs.dedup();
    assert_eq!(
        specs.len(),
        7,
        "the GPU analyzers' distinct specs: {specs:?}"
    );
    // Synthetic or audio analyzers declare none.
    let audio = registry.frame_planner(&c, ["audio_analysis", "speech_rate"]);
    assert!(audio(&probe).is_empty());

    assert!(m.plan_frames(planner));
    // Each analyzer asks for its own spec, concurrently, as the stage consumers would.
    let asks = names.iter().filter_map(|n| {
        let params = &c.analyzers[*n].params;
        registry.get(n).unwrap().frame_spec(params, &probe)
    });
    let got = futures::future::join_all(asks.map(|s| m.frames(s))).await;
    assert!(got.iter().all(|r| r.is_ok()), "{got:?}");
    assert_eq!(m.decode_passes(), 1, "one ffmpeg pass for the whole job");
}
