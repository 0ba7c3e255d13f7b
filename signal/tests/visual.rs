//! Colour, camera motion, visual effects, quality and pacing on generated videos.

mod support;

use std::path::{Path, PathBuf};

use serde_json::json;
use signal::specs::{MOTION_SPEC, QUALITY_SPEC};
use signal::{
    CameraConfig, CameraMotion, ColorConfig, EffectKind, EffectsConfig, FlowConfig, QualityConfig,
    camera_analysis, color_analysis, content_quality, temporal_flow, visual_effects,
};
use support::{SIZE, encode, frames, probe, texture};

#[tokio::test]
async fn dominant_hue_per_shot() {
    let dir = tempfile::tempdir().unwrap();
    let graph = format!(
        "color=c=red:s={SIZE}:r=30:d=1[a];color=c=green:s={SIZE}:r=30:d=1[b];\
         color=c=blue:s={SIZE}:r=30:d=1[c];color=c=orange:s={SIZE}:r=30:d=1,noise=alls=40:allf=t+u[d];\
         color=c=0x8020c0:s={SIZE}:r=30:d=1,noise=alls=40:allf=t+u[e];\
         testsrc2=s={SIZE}:r=30:d=1,hue=h=0:s=0[f];[a][b][c][d][e][f]concat=n=6:v=1:a=0[v]"
    );
    let path = encode(dir.path(), "colors.mp4", &[], &graph);
    let result = color_analysis(&*frames(&path, MOTION_SPEC).await, &ColorConfig::default());
    let hues: Vec<&str> = result
        .shots
        .iter()
        .map(|s| s.stats.dominant_hue.as_str())
        .collect();
    assert_eq!(
        hues,
        ["red", "green", "blue", "orange", "purple", "neutral"]
    );
    let red = &result.shots[0].stats;
    assert!(
        red.palette[0].share > 0.95 && red.saturation > 0.9 && red.warmth > 0.9,
        "{red:?}"
    );
    assert!(result.shots[2].stats.warmth < -0.9);
    assert!(result.shots[5].stats.saturation < 0.05 && result.shots[5].stats.contrast > 0.1);
    // Overall: six one-second shots; the solid ones are a sixth each.
    let overall = &result.overall.palette;
    let names: Vec<&str> = overall.iter().map(|s| s.name).collect();
    for name in ["red", "green", "orange"] {
        assert!(names.contains(&name), "{names:?}");
    }
    let red = overall.iter().find(|s| s.name == "red").unwrap();
    assert!((red.share - 1.0 / 6.0).abs() < 0.03, "{overall:?}");
    assert!((overall.iter().map(|s| s.share).sum::<f32>() - 1.0).abs() < 1e-3);
}

/// A shot of `seconds` moving over a still texture, made by `graph` on input `[0]`.
fn moving_shot(dir: &Path, tex: &Path, name: &str, seconds: f64, graph: &str) -> PathBuf {
    let t = seconds.to_string();
    let tex = tex.to_str().unwrap();
    let inputs = ["-loop", "1", "-framerate", "30", "-t", &t, "-i", tex];
    encode(dir, name, &inputs, &format!("[0]{graph}[v]"))
}

#[tokio::test]
async fn camera_pan_tilt_zoom_and_static() {
    let dir = tempfile::tempdir().unwrap();
    let tex = texture(dir.path(), "tex.png", "testsrc2=s=960x540:d=1");
    let zoom = |expr: &str| {
        format!("zoompan=z='{expr}':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':d=1:s={SIZE}:fps=30")
    };
    let cases = [
        (
            "static",
            "crop=320:180:x=300:y=200".to_string(),
            CameraMotion::Static,
        ),
        (
            "pan_right",
            "crop=320:180:x='100+t*80':y=200".to_string(),
            CameraMotion::PanRight,
        ),
        (
            "pan_left",
            "crop=320:180:x='500-t*80':y=200".to_string(),
            CameraMotion::PanLeft,
        ),
        (
            "tilt_down",
            "crop=320:180:x=300:y='60+t*50'".to_string(),
            CameraMotion::TiltDown,
        ),
        ("zoom_in", zoom("1+0.006*on"), CameraMotion::ZoomIn),
        ("zoom_out", zoom("1.5-0.006*on"), CameraMotion::ZoomOut),
    ];
    for (name, graph, expected) in cases {
        let path = moving_shot(dir.path(), &tex, &format!("{name}.mp4"), 2.0, &graph);
        let result = camera_analysis(&*frames(&path, MOTION_SPEC).await, &CameraConfig::default());
        let share = result.shares.get(&expected).copied().unwrap_or(0.0);
        assert_eq!(result.dominant, Some(expected), "{name}: {result:?}");
        assert!(
            share >= 0.7,
            "{name}: {expected:?} for {share:.2} of the time: {result:?}"
        );
    }
}

#[tokio::test]
async fn effects_flash_freeze_and_fade() {
    let dir = tempfile::tempdir().unwrap();
    let tex = texture(dir.path(), "tex.png", "testsrc2=s=960x540:d=1");
    // A pan with a fade-in, a two-frame white flash at 1.0 s, and frame 60 (2.0 s) held for
    // 20 frames.
    let graph = "crop=320:180:x='100+t*60':y=200,fade=t=in:st=0:d=0.5,\
                 drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='between(n,30,31)',\
                 loop=loop=20:size=1:start=60,setpts=N/30/TB";
    let path = moving_shot(dir.path(), &tex, "effects.mp4", 2.5, graph);
    let f = frames(&path, MOTION_SPEC).await;
    let result = visual_effects(&f, &EffectsConfig::default());
    let find = |kind| {
        result
            .events
            .iter()
            .find(|e| e.kind == kind)
            .unwrap_or_else(|| panic!("{kind:?}: {result:?}"))
    };
    let fade = find(EffectKind::FadeIn);
    assert!(
        fade.start_s <= 0.05 && (fade.end_s - 0.5).abs() <= 0.1,
        "{fade:?}"
    );
    let flash = find(EffectKind::Flash);
    assert!(
        (flash.start_s - 1.0).abs() <= 0.04 && flash.end_s - flash.start_s <= 0.1,
        "{flash:?}"
    );
    let freeze = find(EffectKind::FreezeFrame);
    assert!(
        (freeze.start_s - 2.0).abs() <= 0.05 && (freeze.end_s - 2.67).abs() <= 0.05,
        "{freeze:?}"
    );
    assert_eq!(result.events.len(), 3, "{result:?}");
    // The flash is not two cuts.
    assert_eq!(signal::cut_analysis(&f, &Default::default()).cut_count, 0);
}

#[tokio::test]
async fn quality_tells_sharp_from_blurred_and_noisy() {
    let dir = tempfile::tempdir().unwrap();
    let tex = texture(dir.path(), "tex.png", "testsrc2=s=960x540:d=1");
    let clean = "scale=640:360:flags=lanczos,crop=320:180";
    let shot = |name: &str, extra: &str| {
        moving_shot(dir.path(), &tex, name, 1.5, &format!("{clean}{extra}"))
    };
    let sharp = shot("sharp.mp4", "");
    let blurred = shot("blurred.mp4", ",boxblur=4");
    let noisy = shot("noisy.mp4", ",noise=alls=50:allf=t+u");
    let mut results = Vec::new();
    for path in [&sharp, &blurred, &noisy] {
        let p = probe(path).await;
        results.push(content_quality(
            &*frames(path, QUALITY_SPEC).await,
            &p,
            &QualityConfig::default(),
        ));
    }
    let [sharp, blurred, noisy] = [&results[0], &results[1], &results[2]];
    assert!(
        sharp.sharpness.score > blurred.sharpness.score + 0.3,
        "{sharp:?}\n{blurred:?}"
    );
    assert!(
        noisy.noise.value > sharp.noise.value * 2.0,
        "{noisy:?}\n{sharp:?}"
    );
    assert!(sharp.score > blurred.score && sharp.score > noisy.score);
    assert!(
        sharp.blockiness.is_some(),
        "native-size frames measure blockiness"
    );
    assert_eq!(
        (sharp.resolution.width, sharp.resolution.height),
        (320, 180)
    );
}

#[tokio::test]
async fn temporal_flow_uses_what_is_present() {
    let dir = tempfile::tempdir().unwrap();
    let graph = format!(
        "testsrc2=s={SIZE}:r=30:d=1.2[a];smptebars=s={SIZE}:r=30:d=1[b];\
         color=c=0x205080:s={SIZE}:r=30:d=2.3[c];rgbtestsrc=s={SIZE}:r=30:d=1.5[d];\
         [a][b][c][d]concat=n=4:v=1:a=0[v]"
    );
    let path = encode(dir.path(), "flow.mp4", &[], &graph);
    let f = frames(&path, MOTION_SPEC).await;
    let transcript = json!({
        "text": "Stop scrolling! Here is the trick. It takes ten seconds.",
        "segments": [
            {"start": 0.3, "end": 1.5, "text": "Stop scrolling!"},
            {"start": 2.0, "end": 3.0, "text": "Here is the trick."},
            {"start": 4.0, "end": 5.0, "text": "It takes ten seconds."}
        ]
    });
    let cfg = FlowConfig {
        window_s: 2.5,
        ..FlowConfig::default()
    };
    let result = temporal_flow(&f, None, Some(&transcript), None, None, &cfg);
    assert_eq!(result.cut_count, 3);
    assert_eq!(result.hook.cuts, 2, "cuts at 1.2 and 2.2 s are in the hook");
    assert_eq!(result.speech.source, "transcript");
    assert_eq!(result.hook.speech_starts_s, Some(0.3));
    assert!(result.hook.signals.iter().any(|s| s.contains("speech")));
    // 10 words over 3.2 s of speech.
    let wpm = result.speech.words_per_minute.unwrap();
    assert!((wpm - 10.0 * 60.0 / 3.2).abs() < 1.0, "{wpm}");
    let cuts: Vec<usize> = result.rate_curve.iter().map(|w| w.cuts).collect();
    assert_eq!(cuts, [2, 1, 0]);
    assert!(
        result.missing.iter().any(|m| m.starts_with("text_overlay")),
        "{:?}",
        result.missing
    );
    assert_eq!(result.hook.text_on_screen, None);

    let bare = temporal_flow(&f, None, None, None, None, &cfg);
    assert_eq!(bare.speech.source, "none");
    assert!(
        bare.missing
            .iter()
            .any(|m| m.starts_with("speech_transcription"))
    );
    assert!(bare.missing.iter().any(|m| m.starts_with("audio")));
    let ocr = json!({"texts": [{"text": "3 tricks", "first_s": 0.0, "last_s": 2.0}]});
    let with_text = temporal_flow(&f, None, None, Some(&ocr), None, &cfg);
    assert_eq!(with_text.hook.text_on_screen, Some(true));

    // cut_analysis's cuts are the pacing's: one reported cut at 4 s (two shots) overrides the
    // three cuts the frames show.
    let reported = json!({"cuts": [{"time_s": 4.0, "confidence": 1.0, "score": 0.9}],
                          "shots": [{"index": 0}, {"index": 1}]});
    let from_dep = temporal_flow(&f, None, None, None, Some(&reported), &cfg);
    assert_eq!(from_dep.cut_count, 1);
    let per_window: Vec<usize> = from_dep.rate_curve.iter().map(|w| w.cuts).collect();
    assert_eq!(per_window, [0, 1, 0]);
    assert!(
        !from_dep
            .missing
            .iter()
            .any(|m| m.starts_with("cut_analysis"))
    );
    // An unreadable result: the cuts are detected here, and the result says so.
    let broken = temporal_flow(&f, None, None, None, Some(&json!({"cuts": "?"})), &cfg);
    assert_eq!(broken.cut_count, 3);
    assert!(broken.missing.iter().any(|m| m.starts_with("cut_analysis")));
}
