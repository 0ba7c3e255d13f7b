//! Shot boundaries on generated videos with known cut and transition times.

mod support;

use signal::specs::MOTION_SPEC;
use signal::{CutConfig, SceneConfig, TransitionKind, cut_analysis, scene_segmentation};
use support::{SIZE, assert_times, encode, frames, texture};

/// One sampled frame at 30 fps.
const FRAME: f64 = 1.0 / 30.0 + 1e-6;

fn cut_times(a: &signal::CutAnalysis) -> Vec<f64> {
    a.cuts.iter().map(|c| c.time_s).collect()
}

#[tokio::test]
async fn cuts_between_different_sources() {
    let dir = tempfile::tempdir().unwrap();
    let graph = format!(
        "testsrc2=s={SIZE}:r=30:d=2[a];smptebars=s={SIZE}:r=30:d=1.5[b];\
         life=s={SIZE}:r=30:seed=7:mold=10:life_color=yellow:death_color=0x202080,trim=duration=2[c];\
         rgbtestsrc=s={SIZE}:r=30:d=1.5[d];[a][b][c][d]concat=n=4:v=1:a=0[v]"
    );
    let path = encode(dir.path(), "sources.mp4", &[], &graph);
    let f = frames(&path, MOTION_SPEC).await;
    let result = cut_analysis(&f, &CutConfig::default());
    assert_times(&cut_times(&result), &[2.0, 3.5, 5.5], FRAME);
    assert_eq!(result.shot_count, 4);
    assert!(result.cuts.iter().all(|c| c.confidence >= 0.5));
    assert!(
        (result.cuts_per_minute - 3.0 * 60.0 / 7.0).abs() < 0.5,
        "{}",
        result.cuts_per_minute
    );
}

#[tokio::test]
async fn cuts_between_solid_and_static_shots_and_none_inside() {
    let dir = tempfile::tempdir().unwrap();
    let graph = format!(
        "color=c=red:s={SIZE}:r=30:d=1.5[a];color=c=blue:s={SIZE}:r=30:d=1[b];\
         testsrc=s={SIZE}:r=30:d=2[c];color=c=green:s={SIZE}:r=30:d=1.5[d];\
         [a][b][c][d]concat=n=4:v=1:a=0[v]"
    );
    let path = encode(dir.path(), "static.mp4", &[], &graph);
    let result = cut_analysis(&*frames(&path, MOTION_SPEC).await, &CutConfig::default());
    assert_times(&cut_times(&result), &[1.5, 2.5, 4.5], FRAME);
}

#[tokio::test]
async fn cut_between_slow_pans_and_none_during_them() {
    let dir = tempfile::tempdir().unwrap();
    let tex_a = texture(dir.path(), "a.png", "testsrc2=s=960x540:d=1");
    let tex_b = texture(dir.path(), "b.png", "mandelbrot=s=960x540");
    let graph = "[0]crop=320:180:x='20+t*40':y=100[a];[1]crop=320:180:x='600-t*40':y=200[b];\
                 [a][b]concat=n=2:v=1:a=0[v]";
    let inputs = [
        "-loop",
        "1",
        "-framerate",
        "30",
        "-t",
        "3",
        "-i",
        tex_a.to_str().unwrap(),
        "-loop",
        "1",
        "-framerate",
        "30",
        "-t",
        "3",
        "-i",
        tex_b.to_str().unwrap(),
    ];
    let path = encode(dir.path(), "pans.mp4", &inputs, graph);
    let result = cut_analysis(&*frames(&path, MOTION_SPEC).await, &CutConfig::default());
    assert_times(&cut_times(&result), &[3.0], FRAME);
}

#[tokio::test]
async fn fade_out_fade_in_is_one_gradual_transition() {
    let dir = tempfile::tempdir().unwrap();
    let graph = format!(
        "testsrc2=s={SIZE}:r=30:d=2,fade=t=out:st=1.5:d=0.5[a];\
         smptebars=s={SIZE}:r=30:d=2,fade=t=in:st=0:d=0.5[b];[a][b]concat=n=2:v=1:a=0[v]"
    );
    let path = encode(dir.path(), "fade.mp4", &[], &graph);
    let f = frames(&path, MOTION_SPEC).await;
    assert_eq!(
        cut_analysis(&f, &CutConfig::default()).cut_count,
        0,
        "a fade is not a cut"
    );
    let scenes = scene_segmentation(&f, &SceneConfig::default());
    assert_eq!(scenes.transitions.len(), 1, "{:?}", scenes.transitions);
    let t = &scenes.transitions[0];
    assert_eq!(t.kind, TransitionKind::FadeOutIn);
    assert!(
        (t.start_s - 1.5).abs() <= 0.1 && (t.end_s - 2.5).abs() <= 0.1,
        "{t:?}"
    );
    assert_eq!(scenes.scene_count, 2);
    assert_eq!(scenes.shot_count, 2);
}

#[tokio::test]
async fn dissolve_is_one_gradual_transition() {
    let dir = tempfile::tempdir().unwrap();
    let graph = format!(
        "smptebars=s={SIZE}:r=30:d=2.5[a];testsrc=s={SIZE}:r=30:d=2.5[b];\
         [a][b]xfade=transition=fade:duration=0.6:offset=1.7[v]"
    );
    let path = encode(dir.path(), "dissolve.mp4", &[], &graph);
    let f = frames(&path, MOTION_SPEC).await;
    assert_eq!(cut_analysis(&f, &CutConfig::default()).cut_count, 0);
    let scenes = scene_segmentation(&f, &SceneConfig::default());
    assert_eq!(scenes.transitions.len(), 1, "{:?}", scenes.transitions);
    let t = &scenes.transitions[0];
    assert_eq!(t.kind, TransitionKind::Dissolve);
    assert!(
        (t.start_s - 1.7).abs() <= 0.15 && (t.end_s - 2.3).abs() <= 0.15,
        "{t:?}"
    );
}

#[tokio::test]
async fn alternating_shots_form_one_scene() {
    let dir = tempfile::tempdir().unwrap();
    // A-B-A-B (shot / reverse shot), then a different place C.
    let graph = format!(
        "testsrc2=s={SIZE}:r=30:d=4,split=2[x][y];[x]trim=0:1,setpts=PTS-STARTPTS[a1];\
         [y]trim=2:3,setpts=PTS-STARTPTS[a2];smptebars=s={SIZE}:r=30:d=2,split=2[p][q];\
         [p]trim=0:1,setpts=PTS-STARTPTS[b1];[q]trim=1:2,setpts=PTS-STARTPTS[b2];\
         color=c=0x802020:s={SIZE}:r=30:d=1.5[c];[a1][b1][a2][b2][c]concat=n=5:v=1:a=0[v]"
    );
    let path = encode(dir.path(), "dialogue.mp4", &[], &graph);
    let scenes = scene_segmentation(&*frames(&path, MOTION_SPEC).await, &SceneConfig::default());
    assert_eq!(scenes.shot_count, 5);
    assert_eq!(scenes.scene_count, 2, "{:?}", scenes.scenes);
    assert_eq!(scenes.scenes[0].shots, vec![0, 1, 2, 3]);
    assert!((scenes.scenes[1].start_s - 4.0).abs() <= FRAME);
}
