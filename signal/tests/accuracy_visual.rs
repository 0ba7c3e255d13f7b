//! Accuracy of colour, camera motion, visual effects, quality and pacing against ground truth on
//! generated clips unlike the ones the analyzers were written against: other textures
//! (fractal, cellular automaton, bars), odd and portrait sizes, textured colour fields, shake,
//! slow motion. Each test prints its figure (the README's accuracy table quotes them).

mod support;

use std::path::{Path, PathBuf};

use signal::specs::{MOTION_SPEC, QUALITY_SPEC};
use signal::{
    CameraConfig, CameraMotion, ColorConfig, EffectKind, EffectsConfig, FlowConfig, QualityConfig,
    camera_analysis, color_analysis, content_quality, temporal_flow, visual_effects,
};
use support::{encode, frames, probe, texture};

fn still(dir: &Path, tex: &Path, name: &str, seconds: f64, graph: &str) -> PathBuf {
    let t = seconds.to_string();
    let inputs = [
        "-loop",
        "1",
        "-framerate",
        "30",
        "-t",
        &t,
        "-i",
        tex.to_str().unwrap(),
    ];
    encode(dir, name, &inputs, &format!("[0]{graph}[v]"))
}

#[tokio::test]
async fn dominant_hue_of_textured_colour_fields() {
    let dir = tempfile::tempdir().unwrap();
    // Colour fields with grain and a grey grid, in a portrait odd size: the hue must still be
    // the field's.
    let cases = [
        ("0xd02020", "red"),
        ("0xe07810", "orange"),
        ("0xd8c820", "yellow"),
        ("0x30a040", "green"),
        ("0x20b0c0", "cyan"),
        ("0x2040d0", "blue"),
        ("0x7030b0", "purple"),
        ("0xc030a0", "magenta"),
    ];
    let mut shots = Vec::new();
    for (i, (hex, _)) in cases.iter().enumerate() {
        shots.push(format!(
            "color=c={hex}:s=202x358:r=30:d=1,noise=alls=35:allf=t+u,\
             drawgrid=w=24:h=24:t=2:c=gray@0.9[s{i}]"
        ));
    }
    let labels: String = (0..cases.len()).map(|i| format!("[s{i}]")).collect();
    let graph = format!("{};{labels}concat=n={}[v]", shots.join(";"), cases.len());
    let path = encode(dir.path(), "hues.mp4", &[], &graph);
    let r = color_analysis(&*frames(&path, MOTION_SPEC).await, &ColorConfig::default());
    let got: Vec<&str> = r
        .shots
        .iter()
        .map(|s| s.stats.dominant_hue.as_str())
        .collect();
    let want: Vec<&str> = cases.iter().map(|c| c.1).collect();
    let right = got.iter().zip(&want).filter(|(g, w)| g == w).count();
    println!(
        "color_analysis accuracy: dominant hue right for {right}/{} textured fields ({got:?})",
        want.len()
    );
    assert_eq!(got, want);
}

#[tokio::test]
async fn camera_motion_on_other_textures_and_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let fractal = texture(dir.path(), "fractal.png", "mandelbrot=s=960x540");
    let cells = texture(
        dir.path(),
        "cells.png",
        "cellauto=s=960x540:rule=30:scroll=0:full=1:seed=7",
    );
    let zoom = |expr: &str, size: &str| {
        format!("zoompan=z='{expr}':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':d=1:s={size}:fps=30")
    };
    let cases: Vec<(&str, &Path, String, CameraMotion)> = vec![
        (
            "static",
            &fractal,
            "crop=240:426:x=300:y=60".into(),
            CameraMotion::Static,
        ),
        (
            "pan_left",
            &cells,
            "crop=320:180:x='600-t*120':y=150".into(),
            CameraMotion::PanLeft,
        ),
        (
            "pan_right",
            &fractal,
            "crop=240:426:x='100+t*60':y=60".into(),
            CameraMotion::PanRight,
        ),
        (
            "tilt_up",
            &cells,
            "crop=320:180:x=300:y='300-t*60'".into(),
            CameraMotion::TiltUp,
        ),
        (
            "tilt_down",
            &fractal,
            "crop=426:240:x=200:y='40+t*50'".into(),
            CameraMotion::TiltDown,
        ),
        (
            "zoom_in",
            &cells,
            zoom("1+0.005*on", "320x180"),
            CameraMotion::ZoomIn,
        ),
        (
            "zoom_out",
            &fractal,
            zoom("1.4-0.005*on", "240x426"),
            CameraMotion::ZoomOut,
        ),
        (
            "shake",
            &fractal,
            "crop=320:180:x='300+14*sin(n*2.1)':y='200+12*cos(n*2.9)'".into(),
            CameraMotion::Shake,
        ),
    ];
    let mut right = 0;
    let mut report = Vec::new();
    for (name, tex, graph, want) in &cases {
        let path = still(dir.path(), tex, &format!("{name}.mp4"), 2.0, graph);
        let r = camera_analysis(&*frames(&path, MOTION_SPEC).await, &CameraConfig::default());
        if r.dominant == Some(*want) {
            right += 1;
        }
        report.push(format!("{name}: {:?}", r.dominant));
    }
    println!(
        "camera_analysis accuracy: dominant motion right for {right}/{} clips ({report:?})",
        cases.len()
    );
    assert_eq!(right, cases.len(), "{report:?}");
}

#[tokio::test]
async fn effects_on_a_moving_fractal() {
    let dir = tempfile::tempdir().unwrap();
    let tex = texture(dir.path(), "fractal.png", "mandelbrot=s=960x540");
    // Fade in 0–0.8 s, a white flash at 1.5 s (2 frames), frame 75 (2.5 s) frozen for 25
    // frames, over a pan that moves diagonally.
    let graph = "crop=320:180:x='100+t*70':y='150+t*20',fade=t=in:st=0:d=0.8,\
                 drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='between(n,45,46)',\
                 loop=loop=25:size=1:start=75,setpts=N/30/TB";
    let path = still(dir.path(), &tex, "effects.mp4", 4.5, graph);
    let f = frames(&path, MOTION_SPEC).await;
    let r = visual_effects(&f, &EffectsConfig::default());
    let truth = [
        (EffectKind::FadeIn, 0.0, 0.8),
        (EffectKind::Flash, 1.5, 1.57),
        (EffectKind::FreezeFrame, 2.5, 3.33),
    ];
    let found = truth
        .iter()
        .filter(|(k, s, e)| {
            r.events.iter().any(|ev| {
                ev.kind == *k && (ev.start_s - s).abs() <= 0.15 && (ev.end_s - e).abs() <= 0.15
            })
        })
        .count();
    println!(
        "visual_effects accuracy: {found}/{} events with kind and times within 0.15 s, {} reported ({:?})",
        truth.len(),
        r.events.len(),
        r.events
            .iter()
            .map(|e| (e.kind, e.start_s, e.end_s))
            .collect::<Vec<_>>()
    );
    assert_eq!(found, truth.len(), "{r:?}");
    assert_eq!(r.events.len(), truth.len(), "nothing else: {r:?}");
}

#[tokio::test]
async fn quality_ranks_blur_and_noise_levels() {
    let dir = tempfile::tempdir().unwrap();
    // A fractal: flat areas and fine detail, like most real pictures. (On a picture that is
    // fine high-contrast texture everywhere the noise estimate reads the texture as noise:
    // see the README's accuracy table.)
    let tex = texture(dir.path(), "fractal.png", "mandelbrot=s=960x540");
    let base = "scale=640:360:flags=lanczos,crop=426:240";
    let mut blur = Vec::new();
    for (i, sigma) in [0.0, 1.0, 2.0, 4.0].iter().enumerate() {
        let extra = if *sigma > 0.0 {
            format!(",gblur=sigma={sigma}")
        } else {
            String::new()
        };
        let path = still(
            dir.path(),
            &tex,
            &format!("b{i}.mp4"),
            1.0,
            &format!("{base}{extra}"),
        );
        let r = content_quality(
            &*frames(&path, QUALITY_SPEC).await,
            &*probe(&path).await,
            &QualityConfig::default(),
        );
        blur.push(r.sharpness.score);
    }
    let mut noise = Vec::new();
    for (i, amount) in [0, 15, 30, 60].iter().enumerate() {
        let path = still(
            dir.path(),
            &tex,
            &format!("n{i}.mp4"),
            1.0,
            &format!("{base},noise=alls={amount}:allf=t+u"),
        );
        let r = content_quality(
            &*frames(&path, QUALITY_SPEC).await,
            &*probe(&path).await,
            &QualityConfig::default(),
        );
        noise.push(r.noise.value);
    }
    let ordered = |v: &[f64], falling: bool| {
        v.windows(2)
            .filter(|w| if falling { w[0] > w[1] } else { w[0] < w[1] })
            .count()
    };
    let pairs = ordered(&blur, true) + ordered(&noise, false);
    println!(
        "content_quality accuracy: {pairs}/6 neighbouring levels in the right order (sharpness {blur:.3?}, noise {noise:.2?})"
    );
    assert_eq!(pairs, 6);
}

#[tokio::test]
async fn pacing_counts_cuts_per_window() {
    let dir = tempfile::tempdir().unwrap();
    // A montage: shots of 0.5, 0.7, 1.0, 1.3, 2.5, 4 s from different sources (cuts at 0.5, 1.2,
    // 2.2, 3.5, 6.0): 4 cuts in the first 5 s window, 1 in the second.
    let srcs = [
        "testsrc2",
        "smptebars",
        "rgbtestsrc",
        "mandelbrot",
        "testsrc",
        "yuvtestsrc",
    ];
    let lens = [0.5, 0.7, 1.0, 1.3, 2.5, 4.0];
    let shots: Vec<String> = srcs
        .iter()
        .zip(lens)
        .enumerate()
        .map(|(i, (s, d))| {
            format!("{s}=s=250x446:r=30,trim=duration={d},setpts=PTS-STARTPTS,format=yuv420p[s{i}]")
        })
        .collect();
    let labels: String = (0..srcs.len()).map(|i| format!("[s{i}]")).collect();
    let graph = format!("{};{labels}concat=n={}[v]", shots.join(";"), srcs.len());
    let path = encode(dir.path(), "montage.mp4", &[], &graph);
    let r = temporal_flow(
        &*frames(&path, MOTION_SPEC).await,
        None,
        None,
        None,
        None,
        &FlowConfig::default(),
    );
    let per_window: Vec<usize> = r.rate_curve.iter().map(|w| w.cuts).collect();
    println!(
        "temporal_flow accuracy: cuts per 5 s window {per_window:?} (truth [4, 1]), {} cuts (truth 5)",
        r.cut_count
    );
    assert_eq!(r.cut_count, 5);
    assert_eq!(per_window, [4, 1]);
}
