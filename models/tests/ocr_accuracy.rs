//! `text_overlay` accuracy on captions it was not tuned for: busy and moving-texture
//! backgrounds, boxed, outlined and shadowed captions, several sizes and positions, portrait,
//! landscape, square and odd frame sizes, a caption fading in. Ground truth is the rendered
//! text; the figures are printed (`cargo test -p models --test ocr_accuracy -- --nocapture`).

mod common;

use std::process::Command;

use models::imgproc::Rgb;
use models::ocr::{Ocr, OcrParams};

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";

/// A background as an ffmpeg input and filter prefix at `w` x `h`.
fn background(kind: &str, w: u32, h: u32) -> (Vec<String>, String) {
    let lavfi = |src: String| vec!["-f".into(), "lavfi".into(), "-i".into(), src];
    match kind {
        "noise" => (
            lavfi(format!("color=c=gray:s={w}x{h}")),
            "noise=alls=100:allf=t,".into(),
        ),
        "confetti" => (
            lavfi(format!("color=c=gray:s={}x{}", w / 4, h / 4)),
            format!("noise=alls=100:allf=t,scale={w}:{h}:flags=neighbor,"),
        ),
        "cells" => (
            lavfi(format!("cellauto=s={w}x{h}:rule=110:random_fill_ratio=0.5")),
            "format=rgb24,".into(),
        ),
        "fractal" => (lavfi(format!("mandelbrot=s={w}x{h}")), String::new()),
        "pattern" => (lavfi(format!("testsrc2=s={w}x{h}")), String::new()),
        "stripes" => (
            lavfi(format!("color=c=gray:s={w}x{h}")),
            "geq=lum='if(mod(floor(X/2)\\,2)\\,235\\,16)':cb=128:cr=128,".into(),
        ),
        "gradient" => (
            lavfi(format!("gradients=s={w}x{h}:c0=0x203040:c1=0xf0c080")),
            String::new(),
        ),
        _ => (lavfi(format!("color=c=0x3a6ea5:s={w}x{h}")), String::new()),
    }
}

/// How the caption is drawn (drawtext options after the font and text).
fn style(kind: &str) -> &'static str {
    match kind {
        "box" => "fontcolor=white:box=1:boxcolor=black:boxborderw=14",
        "lightbox" => "fontcolor=black:box=1:boxcolor=white@0.9:boxborderw=14",
        "outline" => "fontcolor=white:borderw=4:bordercolor=black",
        "shadow" => "fontcolor=yellow:shadowcolor=black:shadowx=3:shadowy=3",
        _ => "fontcolor=white",
    }
}

struct Case {
    bg: &'static str,
    style: &'static str,
    text: &'static str,
    w: u32,
    h: u32,
    /// Font size as a share of the frame's width.
    size: f32,
    /// Vertical position as a share of the frame's height.
    y: f32,
}

fn render(dir: &std::path::Path, i: usize, c: &Case) -> Vec<u8> {
    let text = dir.join(format!("t{i}.txt"));
    std::fs::write(&text, c.text).expect("write text");
    let (input, pre) = background(c.bg, c.w, c.h);
    let size = (c.size * c.w as f32).round() as u32;
    let filter = format!(
        "{pre}drawtext=fontfile={FONT}:textfile={}:expansion=none:fontsize={size}:{}:\
         x=(w-text_w)/2:y=h*{:.3},scale={}:{},format=rgb24",
        text.display(),
        style(c.style),
        c.y,
        c.w,
        c.h
    );
    let out = dir.join(format!("f{i}.rgb"));
    common::run(
        Command::new("ffmpeg")
            .args(["-v", "error", "-y"])
            .args(&input)
            .args(["-frames:v", "1", "-vf", &filter, "-f", "rawvideo"])
            .args(["-pix_fmt", "rgb24"])
            .arg(&out),
    );
    let data = std::fs::read(&out).expect("read frame");
    assert_eq!(data.len(), (c.w * c.h * 3) as usize, "frame {i}");
    data
}

/// Letters and digits only, upper case: what a caption says, not its spacing or a stray
/// punctuation mark read into a texture.
fn norm(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric() || *c == '%')
        .flat_map(char::to_uppercase)
        .collect()
}

#[test]
fn captions_are_read_on_backgrounds_styles_sizes_and_frames_nobody_tuned_for() {
    let texts = [
        "LINK IN BIO",
        "SALE 50% OFF",
        "Follow for more",
        "NEW DROP FRIDAY",
    ];
    let bgs = [
        "noise", "confetti", "cells", "fractal", "pattern", "stripes", "gradient", "plain",
    ];
    let styles = ["box", "lightbox", "outline", "shadow"];
    let frames = [(540, 960), (960, 540), (720, 720), (542, 966), (405, 720)];
    let mut cases = Vec::new();
    // Every background with every style, cycling through sizes, positions and frame sizes.
    for (bi, bg) in bgs.iter().enumerate() {
        for (si, st) in styles.iter().enumerate() {
            let k = bi * styles.len() + si;
            let (w, h) = frames[k % frames.len()];
            cases.push(Case {
                bg,
                style: st,
                text: texts[k % texts.len()],
                w,
                h,
                size: [0.06, 0.075, 0.1][k % 3],
                y: [0.12, 0.45, 0.72][(k / 3) % 3],
            });
        }
    }
    let dir = common::tmpdir("ocr-accuracy");
    let rendered: Vec<Vec<u8>> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| render(&dir, i, c))
        .collect();
    let ocr = Ocr::load(&common::registry()).expect("PP-OCR loads");
    let imgs: Vec<Rgb<'_>> = rendered
        .iter()
        .zip(&cases)
        .map(|(d, c)| Rgb::new(d, c.w as usize, c.h as usize))
        .collect();
    let read = ocr
        .read_batch(&imgs, &OcrParams::default())
        .expect("OCR runs");
    let (mut found, mut exact, mut misses) = (0, 0, Vec::new());
    for (c, lines) in cases.iter().zip(&read) {
        let want = norm(c.text);
        let all: String = lines.iter().map(|l| norm(&l.text)).collect();
        if lines.iter().any(|l| norm(&l.text) == want) {
            exact += 1;
            found += 1;
        } else if all.contains(&want) {
            found += 1;
        } else {
            misses.push(format!(
                "{} / {} / {}x{} / size {:.3} y {:.2}: {:?}",
                c.bg,
                c.style,
                c.w,
                c.h,
                c.size,
                c.y,
                lines.iter().map(|l| &l.text).collect::<Vec<_>>()
            ));
        }
    }
    let n = cases.len();
    eprintln!(
        "text_overlay accuracy: {found}/{n} captions found, {exact}/{n} read exactly as one line \
         ({:.1}% / {:.1}%)",
        100.0 * found as f64 / n as f64,
        100.0 * exact as f64 / n as f64
    );
    for m in &misses {
        eprintln!("  missed: {m}");
    }
    assert!(
        found * 100 >= n * 95,
        "captions found {found}/{n}; misses: {misses:#?}"
    );
    assert!(exact * 100 >= n * 90, "read exactly {exact}/{n}");
}
