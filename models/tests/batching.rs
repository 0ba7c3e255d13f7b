//! Batched runs give the results of one-by-one runs: frames of several sizes through the
//! OCR and MTCNN pipelines at once and alone, padded batches against exact ones, and
//! concurrent callers whose items are merged into one run.

mod common;

use std::process::Command;
use std::sync::{Arc, Barrier};

use models::faces::{Mtcnn, MtcnnParams};
use models::imgproc::Rgb;
use models::ocr::{Ocr, OcrParams};
use models::{ModelRegistry, ModelSpec};

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";

/// One frame of `w` x `h` with a text drawn on a noisy background, decoded as RGB.
fn text_frame(dir: &std::path::Path, w: u32, h: u32, text: &str, size: u32) -> Vec<u8> {
    let file = dir.join(format!("t{w}x{h}.txt"));
    std::fs::write(&file, text).expect("write text");
    let png = dir.join(format!("f{w}x{h}.rgb"));
    let filter = format!(
        "noise=alls=30:allf=t,drawtext=fontfile={FONT}:textfile={}:expansion=none:fontsize={size}:fontcolor=white:\
         box=1:boxcolor=black@0.7:boxborderw=10:x=(w-text_w)/2:y=h*0.6",
        file.display()
    );
    common::run(
        Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("color=c=0x406080:s={w}x{h}:d=1"))
            .args(["-vf", &filter, "-frames:v", "1", "-f", "rawvideo"])
            .args(["-pix_fmt", "rgb24"])
            .arg(&png),
    );
    let data = std::fs::read(&png).expect("read frame");
    assert_eq!(data.len(), (w * h * 3) as usize);
    data
}

#[test]
fn ocr_of_frames_of_several_sizes_is_the_same_batched_and_alone() {
    let dir = common::tmpdir("batch-ocr");
    let sizes = [
        (540, 960, "LINK IN BIO"),
        (960, 540, "SALE 50% OFF"),
        (700, 700, "NEW DROP"),
    ];
    let frames: Vec<(Vec<u8>, usize, usize)> = sizes
        .iter()
        .map(|&(w, h, t)| (text_frame(&dir, w, h, t, 40), w as usize, h as usize))
        .collect();
    let ocr = Ocr::load(&common::registry()).expect("PP-OCR loads");
    let params = OcrParams::default();
    let imgs: Vec<Rgb<'_>> = frames.iter().map(|(d, w, h)| Rgb::new(d, *w, *h)).collect();
    let batched = ocr.read_batch(&imgs, &params).expect("batched read");
    for ((img, lines), (_, _, text)) in imgs.iter().zip(&batched).zip(sizes) {
        let alone = ocr.read(*img, &params).expect("single read");
        let texts = |l: &[models::ocr::Line]| l.iter().map(|l| l.text.clone()).collect::<Vec<_>>();
        assert_eq!(texts(lines), texts(&alone), "{}x{}", img.width, img.height);
        assert_eq!(
            texts(lines),
            vec![text.to_string()],
            "{}x{}",
            img.width,
            img.height
        );
        for (a, b) in lines.iter().zip(&alone) {
            assert_eq!(a.quad, b.quad);
            assert!((a.confidence - b.confidence).abs() < 1e-4);
        }
    }
}

/// A drawn face (skin ellipse, eyes, brows, nose, mouth) at `(cx, cy)` of size `r`.
fn draw_face(img: &mut [u8], w: usize, h: usize, cx: f32, cy: f32, r: f32) {
    let ellipse = |x: f32, y: f32, ex: f32, ey: f32, ax: f32, ay: f32| {
        ((x - ex) / ax).powi(2) + ((y - ey) / ay).powi(2) <= 1.0
    };
    let (rx, ry) = (r * 0.75, r);
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32, y as f32);
            let mut c = None;
            if ellipse(fx, fy, cx, cy, rx, ry) {
                c = Some([224u8, 172, 140]);
            }
            for side in [-1.0f32, 1.0] {
                let ex = cx + side * rx * 0.42;
                let ey = cy - ry * 0.2;
                if ellipse(fx, fy, ex, ey - ry * 0.2, rx * 0.25, ry * 0.04) {
                    c = Some([60, 40, 30]);
                }
                if ellipse(fx, fy, ex, ey, rx * 0.2, ry * 0.08) {
                    c = Some([245, 245, 245]);
                }
                if ellipse(fx, fy, ex, ey, rx * 0.08, ry * 0.07) {
                    c = Some([50, 35, 25]);
                }
            }
            if ellipse(fx, fy, cx, cy + ry * 0.15, rx * 0.1, ry * 0.12) {
                c = Some([190, 135, 110]);
            }
            if ellipse(fx, fy, cx, cy + ry * 0.5, rx * 0.35, ry * 0.07) {
                c = Some([170, 60, 60]);
            }
            if let Some(c) = c {
                img[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&c);
            }
        }
    }
}

fn face_frame(w: usize, h: usize, faces: &[(f32, f32, f32)], seed: u32) -> Vec<u8> {
    // A textured background so the detector has something to reject.
    let mut img: Vec<u8> = (0..w * h * 3)
        .map(|i| {
            let (p, c) = (i / 3, i % 3);
            let (x, y) = ((p % w) as u32, (p / w) as u32);
            ((x.wrapping_mul(7) ^ y.wrapping_mul(13)).wrapping_add(seed * 31 + c as u32 * 50) % 160
                + 40) as u8
        })
        .collect();
    for &(cx, cy, r) in faces {
        draw_face(&mut img, w, h, cx, cy, r);
    }
    img
}

#[test]
fn faces_of_frames_of_several_sizes_are_the_same_batched_and_alone() {
    let mtcnn = Mtcnn::load(&common::registry()).expect("MTCNN loads");
    let p = MtcnnParams::default();
    let frames = [
        (360, 640, face_frame(360, 640, &[(180.0, 300.0, 90.0)], 1)),
        (
            640,
            360,
            face_frame(640, 360, &[(200.0, 180.0, 70.0), (470.0, 170.0, 60.0)], 2),
        ),
        (480, 640, face_frame(480, 640, &[(240.0, 320.0, 120.0)], 3)),
        (360, 640, face_frame(360, 640, &[], 4)),
    ];
    let imgs: Vec<Rgb<'_>> = frames.iter().map(|(w, h, d)| Rgb::new(d, *w, *h)).collect();
    let batched = mtcnn.detect_batch(&imgs, &p).expect("batched detect");
    let mut found = 0;
    for (img, faces) in imgs.iter().zip(&batched) {
        let alone = mtcnn.detect(*img, &p).expect("single detect");
        assert_eq!(faces.len(), alone.len(), "{}x{}", img.width, img.height);
        for (a, b) in faces.iter().zip(&alone) {
            for (x, y) in a.bbox.iter().zip(b.bbox) {
                assert!((x - y).abs() < 1e-2, "{a:?} vs {b:?}");
            }
            assert!((a.score - b.score).abs() < 1e-4);
        }
        found += faces.len();
    }
    // The pipeline must find something for the comparison to mean anything.
    assert!(found >= 2, "faces found: {batched:?}");
    assert!(
        batched[3].is_empty(),
        "no face drawn, found {:?}",
        batched[3]
    );
}

/// A registry that pads every batch up to its bucket, as GPU sessions do.
fn padding_registry() -> Arc<ModelRegistry> {
    let mut cfg = common::config();
    cfg.pad_batches = Some(true);
    ModelRegistry::new(cfg)
}

fn chips(n: usize, seed: u32) -> Vec<f32> {
    (0..n * 3 * 64 * 64)
        .map(|i| {
            (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 1000) as f32 / 1000.0
                - 0.5
        })
        .collect()
}

#[test]
fn padded_batches_give_the_exact_batches_results() {
    let spec = ModelSpec {
        batches: vec![8],
        ..ModelSpec::default()
    };
    let exact = common::registry()
        .fetched_spec("agegender.age", spec.clone())
        .expect("age model");
    let padded_reg = padding_registry();
    let padded = padded_reg
        .fetched_spec("agegender.age", spec)
        .expect("age model");
    let input = chips(3, 7);
    let a = exact.infer(&[3, 64, 64], 3, &input).expect("exact run");
    padded.take_stats();
    let b = padded.infer(&[3, 64, 64], 3, &input).expect("padded run");
    let stats = padded.take_stats();
    assert_eq!(
        (stats.items, stats.padded, stats.runs),
        (3, 5, 1),
        "{stats:?}"
    );
    assert_eq!(a[0].shape, b[0].shape);
    assert_eq!(a[0].shape[0], 3);
    for (x, y) in a[0].data.iter().zip(&b[0].data) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }
}

#[test]
fn concurrent_callers_are_merged_and_each_gets_its_own_results() {
    let registry = ModelRegistry::new(common::config());
    let det = registry
        .fetched_spec(
            "ppocr.det",
            ModelSpec {
                batches: vec![16],
                ..ModelSpec::default()
            },
        )
        .expect("det model");
    let item = [3i64, 256, 256];
    let one = |seed: u32| -> Vec<f32> {
        (0..3 * 256 * 256)
            .map(|i| {
                ((i as u32).wrapping_mul(2246822519).wrapping_add(seed * 977) % 255) as f32 / 127.5
                    - 1.0
            })
            .collect()
    };
    let alone: Vec<Vec<f32>> = (0..6)
        .map(|s| {
            det.infer(&item, 1, &one(s)).expect("solo run")[0]
                .data
                .clone()
        })
        .collect();
    det.take_stats();
    // A long run holds the model while six callers queue behind it.
    let barrier = Arc::new(Barrier::new(7));
    std::thread::scope(|scope| {
        let (det, barrier) = (&det, &barrier);
        scope.spawn(move || {
            let big: Vec<f32> = (0..8).flat_map(|s| one(100 + s)).collect();
            barrier.wait();
            det.infer(&item, 8, &big).expect("long run");
        });
        let handles: Vec<_> = (0..6u32)
            .map(|s| {
                scope.spawn(move || {
                    barrier.wait();
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    det.infer(&item, 1, &one(s)).expect("queued run")[0]
                        .data
                        .clone()
                })
            })
            .collect();
        for (s, h) in handles.into_iter().enumerate() {
            let got = h.join().expect("caller thread");
            assert_eq!(got.len(), alone[s].len());
            let worst = got
                .iter()
                .zip(&alone[s])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst < 1e-3,
                "caller {s} got another caller's map (max diff {worst})"
            );
        }
    });
    let stats = det.take_stats();
    assert_eq!(stats.items, 14, "{stats:?}");
    assert!(
        stats.merged_runs >= 1 && stats.runs < 7,
        "queued callers were not merged: {stats:?}"
    );
}
