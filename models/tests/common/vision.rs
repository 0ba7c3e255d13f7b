//! Test media for the vision models: generated busy backgrounds (ffmpeg) with real
//! photographs pasted on them at a known place, size and angle, so the ground truth is where
//! the photograph went. The photographs are scikit-image's test images (public domain / CC0),
//! which `scripts/setup-models.sh` fetches ([[test_media]] in config/models.toml).

use std::process::Command;

use models::imgproc::RgbImage;

/// A photograph from `[[test_media]]`, decoded to RGB; missing means the setup has not run.
pub fn photo(id: &str) -> RgbImage {
    let file = super::config().test_media(id).expect("manifest lists it");
    file.verify()
        .unwrap_or_else(|e| panic!("{e}: run scripts/setup-models.sh"));
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(&file.path)
        .output()
        .expect("ffprobe runs");
    let dims = String::from_utf8_lossy(&out.stdout);
    let mut it = dims
        .trim()
        .split(',')
        .map(|v| v.parse::<usize>().expect("dimension"));
    let (w, h) = (it.next().expect("width"), it.next().expect("height"));
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&file.path)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg runs");
    assert_eq!(out.stdout.len(), w * h * 3, "{}", file.path.display());
    RgbImage {
        data: out.stdout,
        width: w,
        height: h,
    }
}

/// The generated backgrounds: noise, blocky colour noise, cellular automaton, fractal, test
/// pattern, fine stripes, a gradient and a plain colour.
pub const BACKGROUNDS: [&str; 8] = [
    "noise", "confetti", "cells", "fractal", "pattern", "stripes", "gradient", "plain",
];

/// One frame of background `kind` at `w` x `h` (RGB), made by ffmpeg; `seed` varies the noise.
pub fn background(kind: &str, w: usize, h: usize, seed: u32) -> Vec<u8> {
    let (src, filter) = match kind {
        "noise" => (
            format!("color=c=gray:s={w}x{h}"),
            format!("noise=alls=100:allf=t:all_seed={seed}"),
        ),
        "confetti" => (
            format!("color=c=gray:s={}x{}", w / 8, h / 8),
            format!(
                "noise=c0s=100:c1s=100:c2s=100:allf=t:all_seed={seed},scale={w}:{h}:flags=neighbor"
            ),
        ),
        "cells" => (
            format!("cellauto=s={w}x{h}:rule=110:random_fill_ratio=0.5:random_seed={seed}"),
            "null".into(),
        ),
        "fractal" => (format!("mandelbrot=s={w}x{h}"), "null".into()),
        "pattern" => (format!("testsrc2=s={w}x{h}"), "null".into()),
        "stripes" => (
            format!("color=c=gray:s={w}x{h}"),
            "geq=lum='if(mod(floor(X/3)\\,2)\\,220\\,30)':cb=128:cr=128".into(),
        ),
        "gradient" => (
            format!("gradients=s={w}x{h}:c0=0x203040:c1=0xf0c080:seed={seed}"),
            "null".into(),
        ),
        _ => (format!("color=c=0x3a6ea5:s={w}x{h}"), "null".into()),
    };
    let out = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            &src,
            "-frames:v",
            "1",
            "-vf",
        ])
        .arg(format!("{filter},format=rgb24"))
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg background {kind}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), w * h * 3, "background {kind}");
    out.stdout
}

/// Where a region of a photograph goes: its centre at `centre` (frame pixels), `scale` frame
/// pixels per photo pixel, turned by `angle` radians (clockwise on screen).
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    pub centre: [f32; 2],
    pub scale: f32,
    pub angle: f32,
}

/// A region `[x1, y1, x2, y2]` of a photograph, optionally cut out along a polygon (photo
/// pixels): only what is inside is pasted.
pub struct Cutout<'a> {
    pub photo: &'a RgbImage,
    pub region: [f32; 4],
    pub polygon: Option<&'a [[f32; 2]]>,
}

impl Cutout<'_> {
    fn centre(&self) -> [f32; 2] {
        [
            (self.region[0] + self.region[2]) / 2.0,
            (self.region[1] + self.region[3]) / 2.0,
        ]
    }

    /// A photo point's place in the frame.
    pub fn to_frame(&self, p: [f32; 2], pl: &Placement) -> [f32; 2] {
        let c = self.centre();
        let (dx, dy) = ((p[0] - c[0]) * pl.scale, (p[1] - c[1]) * pl.scale);
        let (s, co) = pl.angle.sin_cos();
        [
            pl.centre[0] + dx * co - dy * s,
            pl.centre[1] + dx * s + dy * co,
        ]
    }

    fn to_photo(&self, q: [f32; 2], pl: &Placement) -> [f32; 2] {
        let c = self.centre();
        let (dx, dy) = (q[0] - pl.centre[0], q[1] - pl.centre[1]);
        let (s, co) = pl.angle.sin_cos();
        [
            c[0] + (dx * co + dy * s) / pl.scale,
            c[1] + (-dx * s + dy * co) / pl.scale,
        ]
    }

    fn inside(&self, p: [f32; 2]) -> bool {
        let r = self.region;
        p[0] >= r[0]
            && p[0] < r[2]
            && p[1] >= r[1]
            && p[1] < r[3]
            && self.polygon.is_none_or(|poly| in_polygon(p, poly))
    }

    /// The axis-aligned box around the pasted region, clipped to the frame.
    pub fn frame_box(&self, pl: &Placement, w: usize, h: usize) -> [f32; 4] {
        let r = self.region;
        let corners =
            [[r[0], r[1]], [r[2], r[1]], [r[2], r[3]], [r[0], r[3]]].map(|p| self.to_frame(p, pl));
        let xs = corners.map(|c| c[0]);
        let ys = corners.map(|c| c[1]);
        let min = |v: [f32; 4]| v.iter().copied().fold(f32::MAX, f32::min);
        let max = |v: [f32; 4]| v.iter().copied().fold(f32::MIN, f32::max);
        [
            min(xs).max(0.0),
            min(ys).max(0.0),
            max(xs).min(w as f32),
            max(ys).min(h as f32),
        ]
    }

    /// Pastes the cut-out into `frame` (`w` x `h` RGB), sampling the photo bilinearly, and
    /// returns the ground-truth mask: which frame pixels now show the cut-out.
    pub fn paste(&self, frame: &mut [u8], w: usize, h: usize, pl: &Placement) -> Vec<bool> {
        let mut mask = vec![false; w * h];
        let b = self.frame_box(pl, w, h);
        let img = self.photo;
        for y in b[1].floor() as usize..(b[3].ceil() as usize).min(h) {
            for x in b[0].floor() as usize..(b[2].ceil() as usize).min(w) {
                let p = self.to_photo([x as f32 + 0.5, y as f32 + 0.5], pl);
                if !self.inside(p) {
                    continue;
                }
                mask[y * w + x] = true;
                let (sx, sy) = (
                    (p[0] - 0.5).clamp(0.0, img.width as f32 - 1.0),
                    (p[1] - 0.5).clamp(0.0, img.height as f32 - 1.0),
                );
                let (x0, y0) = (sx as usize, sy as usize);
                let (x1, y1) = ((x0 + 1).min(img.width - 1), (y0 + 1).min(img.height - 1));
                let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
                for c in 0..3 {
                    let v = |xx: usize, yy: usize| img.data[(yy * img.width + xx) * 3 + c] as f32;
                    let top = v(x0, y0) * (1.0 - fx) + v(x1, y0) * fx;
                    let bot = v(x0, y1) * (1.0 - fx) + v(x1, y1) * fx;
                    frame[(y * w + x) * 3 + c] = (top * (1.0 - fy) + bot * fy).round() as u8;
                }
            }
        }
        mask
    }
}

/// Even-odd rule.
pub fn in_polygon(p: [f32; 2], poly: &[[f32; 2]]) -> bool {
    let mut inside = false;
    let mut j = poly.len() - 1;
    for i in 0..poly.len() {
        let (a, b) = (poly[i], poly[j]);
        if (a[1] > p[1]) != (b[1] > p[1])
            && p[0] < (b[0] - a[0]) * (p[1] - a[1]) / (b[1] - a[1]) + a[0]
        {
            inside = !inside;
        }
        j = i;
    }
    inside
}

pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// A small deterministic generator for positions (no dependency on a random crate's stream).
pub struct Lcg(pub u64);

impl Lcg {
    /// Uniform in `[0, 1)`.
    pub fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / (1u64 << 24) as f32
    }
}

/// The astronaut's upper body in `astronaut.png` (photo pixels), traced by hand: hair, face,
/// the suit's neck ring and shoulders, cut at y = 340 (above the helmet she holds).
pub const ASTRONAUT_REGION: [f32; 4] = [0.0, 0.0, 400.0, 340.0];
pub const ASTRONAUT_OUTLINE: [[f32; 2]; 29] = [
    [220.0, 17.0],
    [262.0, 22.0],
    [290.0, 45.0],
    [300.0, 67.0],
    [293.0, 100.0],
    [287.0, 115.0],
    [273.0, 133.0],
    [262.0, 145.0],
    [257.0, 158.0],
    [256.0, 172.0],
    [287.0, 200.0],
    [303.0, 223.0],
    [300.0, 260.0],
    [333.0, 280.0],
    [353.0, 307.0],
    [362.0, 340.0],
    [15.0, 340.0],
    [20.0, 313.0],
    [53.0, 267.0],
    [100.0, 243.0],
    [113.0, 190.0],
    [125.0, 175.0],
    [153.0, 152.0],
    [183.0, 150.0],
    [180.0, 133.0],
    [172.0, 123.0],
    [158.0, 105.0],
    [155.0, 67.0],
    [177.0, 30.0],
];
/// Her iris centres (image-left eye first), marked by hand on an 8x enlargement.
pub const ASTRONAUT_IRIS: [[f32; 2]; 2] = [[203.2, 101.2], [245.6, 103.1]];
