//! Fixed spatial buckets: every frame a model sees is scaled (aspect kept) into one of a few
//! canvases and padded right and below, so a GPU session meets the same handful of input
//! shapes whatever the video's size. Results are mapped back with the scale alone.

use crate::imgproc::{self, Rgb, RgbImage};

/// A model input size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Canvas {
    pub width: usize,
    pub height: usize,
}

impl Canvas {
    pub const fn new(width: usize, height: usize) -> Self {
        Self { width, height }
    }
}

/// Where a frame goes in its canvas: scaled by `scale` to `width` x `height` at the top left.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    pub canvas: Canvas,
    pub scale: f32,
    pub width: usize,
    pub height: usize,
}

/// The canvases for a short side of `short`: 9:16, 3:4 and 1:1 in both orientations, sides
/// rounded to multiples of `multiple` (what strided networks need).
pub fn orientations(short: usize, multiple: usize) -> Vec<Canvas> {
    let m = multiple.max(1);
    let round = |v: f64| (((v / m as f64).round() as usize) * m).max(m);
    let s = round(short as f64);
    let tall = round(short as f64 * 16.0 / 9.0);
    let mid = round(short as f64 * 4.0 / 3.0);
    vec![
        Canvas::new(s, tall),
        Canvas::new(tall, s),
        Canvas::new(s, mid),
        Canvas::new(mid, s),
        Canvas::new(s, s),
    ]
}

/// The canvas a `width` x `height` frame fills best (the largest share of the canvas covered
/// by the scaled frame; the smaller canvas on ties), and how the frame is scaled into it.
pub fn fit(width: usize, height: usize, canvases: &[Canvas]) -> Fit {
    let (w, h) = (width.max(1) as f32, height.max(1) as f32);
    let mut best: Option<(f32, Fit)> = None;
    for &c in canvases {
        let scale = (c.width as f32 / w).min(c.height as f32 / h);
        let (sw, sh) = (
            ((w * scale).round() as usize).clamp(1, c.width),
            ((h * scale).round() as usize).clamp(1, c.height),
        );
        let fill = (sw * sh) as f32 / (c.width * c.height) as f32;
        let candidate = Fit {
            canvas: c,
            scale,
            width: sw,
            height: sh,
        };
        let better = match &best {
            None => true,
            Some((f, b)) => {
                fill > *f + 1e-4
                    || ((fill - *f).abs() <= 1e-4
                        && c.width * c.height < b.canvas.width * b.canvas.height)
            }
        };
        if better {
            best = Some((fill, candidate));
        }
    }
    best.map(|(_, f)| f).unwrap_or(Fit {
        canvas: Canvas::new(width.max(1), height.max(1)),
        scale: 1.0,
        width: width.max(1),
        height: height.max(1),
    })
}

/// The frame scaled into its canvas (bilinear), the rest filled with `pad`.
pub fn letterbox(frame: Rgb<'_>, fit: &Fit, pad: u8) -> RgbImage {
    let resized = if fit.width == frame.width && fit.height == frame.height {
        None
    } else {
        Some(imgproc::resize(frame, fit.width, fit.height))
    };
    let src = resized.as_ref().map(|r| r.view()).unwrap_or(frame);
    place(src, fit, pad)
}

/// Like [`letterbox`] with area averaging when shrinking (what MTCNN was trained with).
pub fn letterbox_area(frame: Rgb<'_>, fit: &Fit, pad: u8) -> RgbImage {
    let resized = if fit.width == frame.width && fit.height == frame.height {
        None
    } else {
        Some(imgproc::resize_area(frame, fit.width, fit.height))
    };
    let src = resized.as_ref().map(|r| r.view()).unwrap_or(frame);
    place(src, fit, pad)
}

fn place(src: Rgb<'_>, fit: &Fit, pad: u8) -> RgbImage {
    let (cw, ch) = (fit.canvas.width, fit.canvas.height);
    let mut data = vec![pad; cw * ch * 3];
    let row = src.width.min(cw) * 3;
    for y in 0..src.height.min(ch) {
        data[y * cw * 3..y * cw * 3 + row]
            .copy_from_slice(&src.data[y * src.width * 3..y * src.width * 3 + row]);
    }
    RgbImage {
        data,
        width: cw,
        height: ch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portrait_video_fills_the_tall_canvas() {
        let c = orientations(736, 32);
        assert_eq!(c[0], Canvas::new(736, 1312));
        let f = fit(540, 960, &c);
        assert_eq!(f.canvas, Canvas::new(736, 1312));
        assert_eq!((f.width, f.height), (736, 1308));
        let f = fit(1080, 1920, &c);
        assert_eq!(f.canvas, Canvas::new(736, 1312));
    }

    #[test]
    fn every_size_lands_in_one_of_the_few_canvases() {
        let c = orientations(736, 32);
        for (w, h) in [
            (1920, 1080),
            (720, 1280),
            (1000, 1000),
            (640, 480),
            (101, 777),
            (4000, 30),
        ] {
            let f = fit(w, h, &c);
            assert!(c.contains(&f.canvas), "{w}x{h} -> {f:?}");
            assert!(f.width <= f.canvas.width && f.height <= f.canvas.height);
        }
        assert_eq!(fit(1920, 1080, &c).canvas, Canvas::new(1312, 736));
        assert_eq!(fit(1000, 1000, &c).canvas, Canvas::new(736, 736));
    }

    #[test]
    fn letterbox_pads_right_and_below() {
        let frame = vec![200u8; 4 * 2 * 3];
        let f = fit(4, 2, &[Canvas::new(4, 4)]);
        let img = letterbox(Rgb::new(&frame, 4, 2), &f, 7);
        assert_eq!((img.width, img.height), (4, 4));
        assert!(img.data[..4 * 2 * 3].iter().all(|&v| v == 200));
        assert!(img.data[4 * 2 * 3..].iter().all(|&v| v == 7));
    }
}
