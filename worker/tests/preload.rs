//! `FLEET_PRELOAD_MODELS`: a worker loads its stages' models before it takes a task, through
//! the same pipelines as a task (real ONNX Runtime, the shipped models, CPU provider here).

use std::path::Path;

use common::config::FleetConfig;
use models::ModelRegistry;
use worker::{Backends, Registry};

#[test]
fn preload_loads_every_model_of_the_workers_stages_and_nothing_else() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    ModelRegistry::configure_global(|c| {
        c.fleet_dir = root.join(".fleet");
        c.manifest_path = root.join("config/models.toml");
    })
    .expect("this test binary configures the registry first");
    let config = FleetConfig::load(&root.join("config/fleet.toml"), |_| None).unwrap();
    let registry = Registry::build(
        &config,
        Backends::Real {
            fallback_scale: 1.0,
        },
    );
    assert!(ModelRegistry::global().loaded().is_empty());

    // Stage 4: age_estimation (MTCNN + age/gender) and cut_analysis (Rust, nothing to load).
    let done = registry.preload(&config, &["stage4".to_string()]);
    let outcome = |name: &str| {
        done.iter()
            .find(|(n, ..)| n == name)
            .map(|(_, r, _)| r.clone())
            .unwrap_or_else(|| panic!("{name} not preloaded: {done:?}"))
    };
    assert_eq!(outcome("age_estimation"), Ok(true), "{done:?}");
    assert_eq!(outcome("cut_analysis"), Ok(false), "{done:?}");
    assert!(
        done.iter()
            .all(|(n, ..)| config.analyzers[n].stage == "stage4"),
        "only the given stages: {done:?}"
    );
    let loaded: Vec<String> = ModelRegistry::global()
        .loaded()
        .iter()
        .map(|m| m.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for model in [
        "pnet.onnx",
        "rnet.onnx",
        "onet.onnx",
        "age-v1.onnx",
        "gender-v1.onnx",
    ] {
        assert!(
            loaded.iter().any(|l| l == model),
            "{model} not loaded: {loaded:?}"
        );
    }
    assert!(
        !loaded.iter().any(|l| l.starts_with("PP-OCR")),
        "stage 2's OCR is not this worker's: {loaded:?}"
    );
}
