//! YOLOv8, SegFormer and audio-classifier pre/post-processing checked exactly against tiny
//! ONNX models with known outputs (scripts/models/make_test_models.py), and the errors a
//! missing or wrong model file gives.

mod common;

use media::{Audio, FrameSpec, Frames};
use models::config::sha256_hex;
use models::emotion::{Emotion, EmotionParams};
use models::imgproc::Rgb;
use models::segformer::{SegFormer, SegParams};
use models::yolo::{Yolo, YoloParams};
use models::{ErrorClass, ModelError, ModelFile, Params};
use serde_json::json;

fn file(name: &str) -> ModelFile {
    let path = common::test_model(name);
    let sha256 = sha256_hex(&std::fs::read(&path).expect("read test model"));
    ModelFile {
        path,
        sha256,
        fix: "run scripts/setup-models.sh".into(),
        fp16: None,
    }
}

fn solid(w: usize, h: usize, rgb: [u8; 3]) -> Vec<u8> {
    rgb.repeat(w * h)
}

fn frames(w: u32, h: u32, images: Vec<Vec<u8>>) -> Frames {
    Frames {
        spec: FrameSpec::at_fps(1000, w.max(h)),
        width: w,
        height: h,
        times: (0..images.len()).map(|i| i as f64).collect(),
        data: images.concat(),
    }
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 1e-4
}

#[test]
fn yolo_letterbox_decode_and_nms_are_exact() {
    let reg = common::registry();
    let yolo = Yolo::load(&reg, &file("tiny_yolov8.onnx"), &YoloParams::default()).expect("loads");
    // 64x32 frames into the 32x32 input: scale 0.5, 8 grey (114) rows above and below.
    let (red, green) = (solid(64, 32, [255, 0, 0]), solid(64, 32, [0, 255, 0]));
    let imgs = [Rgb::new(&red, 64, 32), Rgb::new(&green, 64, 32)];
    let dets = yolo
        .detect(
            &imgs,
            &YoloParams {
                batch: 2,
                ..Default::default()
            },
        )
        .expect("runs");
    // The model scores class c as mean(channel c) * k: half the input is the colour, half grey.
    let main = 0.5 + 0.5 * 114.0 / 255.0;
    for (d, label) in dets.iter().zip(["red_thing", "green_thing"]) {
        // Candidate 1 overlaps candidate 0 (IoU 0.8) and is suppressed.
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].label, label);
        assert!(close(d[0].confidence, main), "{d:?}");
        assert_eq!(d[0].bbox, [22.0, 6.0, 42.0, 26.0]);
        assert!(close(d[1].confidence, main * 0.5), "{d:?}");
        assert_eq!(d[1].bbox, [14.0, 20.0, 26.0, 28.0]);
    }
    // The 0.25 confidence threshold drops candidate 2 of a darker frame.
    let dark = solid(64, 32, [100, 0, 0]);
    let d = yolo
        .detect(&[Rgb::new(&dark, 64, 32)], &YoloParams::default())
        .expect("runs");
    let score = 0.5 * 100.0 / 255.0 + 0.5 * 114.0 / 255.0;
    assert_eq!(d[0].len(), 1, "{:?}", d[0]);
    assert!(close(d[0][0].confidence, score));

    let summary = yolo
        .analyze(
            &frames(64, 32, vec![red.clone(), red, green]),
            &YoloParams::default(),
        )
        .expect("runs");
    assert_eq!(summary["classes"][0]["label"], "green_thing");
    assert_eq!(summary["classes"][1]["label"], "red_thing");
    assert_eq!(summary["classes"][1]["frames"], 2);
    assert_eq!(summary["classes"][1]["max_count"], 2);
}

#[test]
fn yolo_class_names_from_config_must_match_the_model() {
    let reg = common::registry();
    let p = YoloParams {
        classes: Some(vec!["only_one".into()]),
        ..Default::default()
    };
    let err = Yolo::load(&reg, &file("tiny_yolov8.onnx"), &p)
        .err()
        .expect("1 name for 2 classes is refused");
    assert!(matches!(err, ModelError::BadShape { .. }), "{err}");
    assert!(err.to_string().contains("tiny_yolov8.onnx"), "{err}");
}

#[test]
fn segformer_normalization_argmax_and_shares_are_exact() {
    let reg = common::registry();
    let seg =
        SegFormer::load(&reg, &file("tiny_segformer.onnx"), &SegParams::default()).expect("loads");
    // 128x64: the left quarter red, the rest green; resized to 64x64, pooled to 16x16 logits.
    let (w, h) = (128usize, 64usize);
    let img: Vec<u8> = (0..w * h)
        .flat_map(|i| if i % w < 32 { [255, 0, 0] } else { [0, 255, 0] })
        .collect();
    let labels = vec!["person".to_string(), "wall".to_string(), "sky".to_string()];
    let p = SegParams {
        labels: Some(labels),
        background: vec![1, 2],
        ..Default::default()
    };
    let shares = seg.class_shares(&[Rgb::new(&img, w, h)], &p).expect("runs");
    assert_eq!(shares, vec![vec![0.25, 0.75, 0.0]]);
    let v = seg
        .analyze(
            &frames(
                w as u32,
                h as u32,
                vec![img.clone(), solid(w, h, [0, 0, 255])],
            ),
            &p,
        )
        .expect("runs");
    // Frame 2 is all blue (class 2): mean shares 0.125 / 0.375 / 0.5.
    assert_eq!(
        v["classes"][0],
        json!({"class_id": 2, "label": "sky", "share": 0.5})
    );
    assert_eq!(v["foreground_ratio"], 0.125);
    assert_eq!(v["frames"][0]["foreground_ratio"], 0.25);
}

#[test]
fn emotion_normalization_and_softmax_are_exact() {
    let reg = common::registry();
    let params_json = json!({"labels": ["happy", "sad", "neutral"], "window_s": 1.0});
    let p =
        EmotionParams::from_params(&Params::new("speech_emotion", &params_json)).expect("params");
    let emo = Emotion::load(&reg, &file("tiny_emotion.onnx"), &p).expect("loads");
    let samples: Vec<f32> = (0..32_000)
        .map(|i| 0.3 * (2.0 * std::f32::consts::PI * 220.0 * i as f32 / 16_000.0).sin() + 0.1)
        .collect();
    // Expected: normalize each 1 s window (f64), logits [max, -max, mean |x|], softmax.
    let window = &samples[..16_000];
    let mean = window.iter().map(|&v| v as f64).sum::<f64>() / 16_000.0;
    let var = window
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / 16_000.0;
    let norm: Vec<f64> = window
        .iter()
        .map(|&v| (v as f64 - mean) / (var + 1e-7).sqrt())
        .collect();
    let max = norm.iter().copied().fold(f64::MIN, f64::max);
    let mean_abs = norm.iter().map(|v| v.abs()).sum::<f64>() / norm.len() as f64;
    let exp = [max.exp(), (-max).exp(), mean_abs.exp()];
    let total: f64 = exp.iter().sum();
    let want: Vec<f32> = exp.iter().map(|e| (e / total) as f32).collect();
    let got = emo.classify(window, &p).expect("runs");
    assert!(
        got.iter().zip(&want).all(|(a, b)| close(*a, *b)),
        "{got:?} vs {want:?}"
    );

    let v = emo
        .analyze(
            &Audio {
                sample_rate: 16_000,
                samples,
            },
            &p,
        )
        .expect("runs");
    assert_eq!(v["label"], "happy");
    assert_eq!(v["windows"].as_array().map(Vec::len), Some(2));
    assert!(close(
        v["probabilities"]["happy"].as_f64().unwrap_or_default() as f32,
        want[0]
    ));
}

#[test]
fn missing_wrong_and_misfit_models_give_clear_errors() {
    let reg = common::registry();
    // Absent file: names the file and the fix.
    let missing = ModelFile {
        path: "/nonexistent/yolov8s.onnx".into(),
        sha256: "0".repeat(64),
        fix: "set params.model".into(),
        fp16: None,
    };
    let err = Yolo::load(&reg, &missing, &YoloParams::default())
        .err()
        .expect("missing file");
    assert!(
        matches!(err, ModelError::ModelMissing { .. }) && err.class() == ErrorClass::Fail,
        "{err}"
    );
    assert!(
        err.to_string().contains("/nonexistent/yolov8s.onnx")
            && err.to_string().contains("set params.model"),
        "{err}"
    );
    // Wrong sha256.
    let mut wrong = file("tiny_yolov8.onnx");
    wrong.sha256 = "ab".repeat(32);
    let err = Yolo::load(&reg, &wrong, &YoloParams::default())
        .err()
        .expect("bad hash");
    assert!(matches!(err, ModelError::ChecksumMismatch { .. }), "{err}");
    assert!(err.to_string().contains("tiny_yolov8.onnx"), "{err}");
    // Wrong input shape: an audio classifier given as a detector, and the other way round.
    let err = Yolo::load(&reg, &file("tiny_emotion.onnx"), &YoloParams::default())
        .err()
        .expect("misfit");
    assert!(matches!(err, ModelError::BadShape { .. }), "{err}");
    assert!(
        err.to_string().contains("tiny_emotion.onnx") && err.to_string().contains("YOLOv8"),
        "{err}"
    );
    let p = EmotionParams::from_params(&Params::new(
        "speech_emotion",
        &json!({"labels": ["a", "b", "c"]}),
    ))
    .expect("params");
    assert!(matches!(
        Emotion::load(&reg, &file("tiny_segformer.onnx"), &p),
        Err(ModelError::BadShape { .. })
    ));
    // Not configured at all: the analyzer is skipped, and told where to configure it.
    let err =
        ModelFile::from_params("object_detection", &json!({}), "model").expect_err("no model");
    assert_eq!(err.class(), ErrorClass::Skip);
    assert!(
        err.to_string().contains("params.model") && err.to_string().contains("config/fleet.toml"),
        "{err}"
    );
    let err = ModelFile::from_params("object_detection", &json!({"model": "/m.onnx"}), "model")
        .expect_err("no sha");
    assert!(err.to_string().contains("sha256"), "{err}");
    // No ONNX Runtime library configured.
    let mut cfg = common::config();
    cfg.ort_dylib = None;
    let lonely = models::ModelRegistry::new(cfg);
    let err = lonely
        .get(&file("tiny_emotion.onnx"))
        .err()
        .expect("no runtime");
    assert!(
        err.to_string().contains("scripts/setup-models.sh")
            && err.to_string().contains("ORT_DYLIB_PATH"),
        "{err}"
    );
}

#[test]
fn registry_keeps_models_warm_and_unloads_on_demand() {
    let reg = models::ModelRegistry::new(common::config());
    let f = file("tiny_segformer.onnx");
    let a = reg.get(&f).expect("loads");
    let b = reg.get(&f).expect("cached");
    assert!(
        std::sync::Arc::ptr_eq(&a, &b),
        "second get reuses the session"
    );
    assert_eq!(reg.loaded().len(), 1);
    assert_eq!(reg.unload_idle(std::time::Duration::from_secs(3600)), 0);
    assert_eq!(reg.unload_idle(std::time::Duration::ZERO), 1);
    assert!(reg.loaded().is_empty());
    let c = reg.get(&f).expect("reloads");
    assert!(!std::sync::Arc::ptr_eq(&a, &c));
    assert_eq!(reg.unload_all(), 1);
}
