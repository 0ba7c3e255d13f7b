//! `text_overlay` reads rendered overlay texts exactly, with their on-screen times, through the
//! real PP-OCR models and ONNX Runtime.

mod common;

use std::process::Command;

use models::ocr::{Ocr, OcrParams};

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";

/// (text, from_s, to_s, y, font size) rendered with ffmpeg drawtext on a plain background,
/// boxed like TikTok captions.
const OVERLAYS: [(&str, f64, f64, u32, u32); 3] = [
    ("LINK IN BIO", 1.0, 4.0, 200, 44),
    ("SALE 50% OFF", 2.5, 6.0, 450, 44),
    ("Schöne Grüße aus München", 4.5, 7.5, 700, 30),
];

fn render(dir: &std::path::Path) -> std::path::PathBuf {
    assert!(
        std::path::Path::new(FONT).exists(),
        "font {FONT} missing: apt-get install fonts-dejavu-core (scripts/setup-models.sh does)"
    );
    let mut filters = Vec::new();
    for (i, (text, from, to, y, size)) in OVERLAYS.iter().enumerate() {
        // A text file avoids drawtext's escaping rules for %, : and quotes.
        let file = dir.join(format!("text{i}.txt"));
        std::fs::write(&file, text).expect("write text file");
        filters.push(format!(
            "drawtext=fontfile={FONT}:textfile={}:expansion=none:fontsize={size}:fontcolor=white:\
             box=1:boxcolor=black@0.6:boxborderw=12:x=(w-text_w)/2:y={y}:enable='between(t,{from},{to})'",
            file.display()
        ));
    }
    let video = dir.join("overlay.mp4");
    common::run(
        Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "color=c=0x2a4d6e:s=540x960:d=8:r=25",
                "-vf",
            ])
            .arg(filters.join(","))
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-crf",
                "18",
                "-pix_fmt",
                "yuv420p",
            ])
            .arg(&video),
    );
    video
}

#[test]
fn reads_overlay_texts_exactly_with_their_times() {
    let dir = common::tmpdir("ocr");
    let frames = common::decode_frames(&render(&dir), 2, 960);
    assert_eq!(frames.len(), 16);
    let ocr =
        Ocr::load(&common::registry()).expect("PP-OCR models load (run scripts/setup-models.sh)");
    let params = OcrParams::default();
    let result = ocr.run(&frames, &params).expect("text_overlay runs");
    assert_eq!(result.execution_provider, "cpu");

    let found: Vec<&str> = result.texts.iter().map(|t| t.text.as_str()).collect();
    let want: Vec<&str> = OVERLAYS.iter().map(|o| o.0).collect();
    assert_eq!(found, want, "texts found: {:#?}", result.texts);
    let step = 0.5; // one sampled frame at 2 fps
    for (t, (text, from, to, ..)) in result.texts.iter().zip(OVERLAYS) {
        assert!(
            (t.first_s - from).abs() <= step,
            "{text}: first seen {} s, shown from {from} s",
            t.first_s
        );
        assert!(
            (t.last_s - to).abs() <= step,
            "{text}: last seen {} s, shown until {to} s",
            t.last_s
        );
        assert!(t.confidence > 0.8, "{text}: confidence {}", t.confidence);
    }
    // Unchanged frames are not analyzed again, unchanged lines not recognized again.
    assert!(
        result.stats.frames_analyzed < frames.len() / 2,
        "{:?}",
        result.stats
    );
    assert!(result.stats.lines_reused > 0, "{:?}", result.stats);

    // Skipping is an optimisation only: analyzing every frame finds the same texts and times.
    let every = OcrParams {
        frame_diff: 0.0,
        line_diff: 0.0,
        ..OcrParams::default()
    };
    let full = ocr.run(&frames, &every).expect("text_overlay runs");
    assert_eq!(full.stats.frames_analyzed, frames.len());
    let key = |r: &models::ocr::OcrResult| {
        r.texts
            .iter()
            .map(|t| (t.text.clone(), t.first_s, t.last_s))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&full), key(&result));
}

#[test]
fn a_frame_without_text_gives_no_lines() {
    let ocr = Ocr::load(&common::registry()).expect("PP-OCR models load");
    let (w, h) = (320usize, 240usize);
    let data: Vec<u8> = (0..w * h)
        .flat_map(|i| [((i % w) * 255 / w) as u8, ((i / w) * 255 / h) as u8, 90])
        .collect();
    let lines = ocr
        .read(
            models::imgproc::Rgb::new(&data, w, h),
            &OcrParams::default(),
        )
        .expect("runs");
    assert!(lines.is_empty(), "{lines:?}");
}

#[test]
fn the_greedy_head_reads_what_every_class_probability_reads() {
    use models::ocr::{RecHead, det::DetParams};
    let dir = common::tmpdir("ocr-greedy");
    let frames = common::decode_frames(&render(&dir), 2, 960);
    let registry = common::registry();
    let greedy = Ocr::load(&registry).expect("PP-OCR models load (run scripts/setup-models.sh)");
    assert_eq!(
        greedy.rec_head(),
        RecHead::Greedy,
        "the setup builds ppocr.rec.greedy"
    );
    let full = Ocr::load_head(&registry, &DetParams::default(), RecHead::Probabilities)
        .expect("PP-OCR models load");
    assert_eq!(full.rec_head(), RecHead::Probabilities);
    let every = OcrParams {
        frame_diff: 0.0,
        line_diff: 0.0,
        ..OcrParams::default()
    };
    let a = greedy.run(&frames, &every).expect("greedy head runs");
    let b = full.run(&frames, &every).expect("probabilities run");
    assert_eq!(a.per_frame.len(), b.per_frame.len());
    let mut lines = 0;
    for (fa, fb) in a.per_frame.iter().zip(&b.per_frame) {
        assert_eq!(fa.len(), fb.len());
        for (la, lb) in fa.iter().zip(fb) {
            assert_eq!(la.text, lb.text);
            assert!(
                (la.confidence - lb.confidence).abs() < 1e-5,
                "{}: {} vs {}",
                la.text,
                la.confidence,
                lb.confidence
            );
            lines += 1;
        }
    }
    assert!(lines >= 6, "the frames hold text: {lines} lines");
}
