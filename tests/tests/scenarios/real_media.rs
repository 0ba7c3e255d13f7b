//! Real analyzers through the real fleet: a generated video with known cuts, a tone and a
//! fade; and bad inputs, which give each analyzer a clear outcome while the job completes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::config::StageClass;
use common::message::OutcomeStatus;
use serde_json::json;
use tests::Fleet;
use worker::Backends;

const SIGNAL: [&str; 6] = [
    "cut_analysis",
    "color_analysis",
    "audio_analysis",
    "scene_segmentation",
    "temporal_flow",
    "comment_cta_detection",
];

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg installed (make services)");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn workdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("fleet-real-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Three solid shots (red, green, blue; 2 s each) with hard cuts at 2 s and 4 s, and a 440 Hz tone.
fn three_shots(dir: &Path) -> String {
    let p = dir.join("shots.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=red:size=320x240:rate=25:duration=2",
        "-f",
        "lavfi",
        "-i",
        "color=c=green:size=320x240:rate=25:duration=2",
        "-f",
        "lavfi",
        "-i",
        "color=c=blue:size=320x240:rate=25:duration=2",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000:duration=6",
        "-filter_complex",
        "[0:v][1:v][2:v]concat=n=3:v=1:a=0[v]",
        "-map",
        "[v]",
        "-map",
        "3:a",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-shortest",
        p.to_str().unwrap(),
    ]);
    p.to_string_lossy().into_owned()
}

async fn real_fleet() -> Fleet {
    let mut fleet = Fleet::new(|_| {}).await;
    fleet.start_dispatcher().await;
    let b = Backends::Real {
        fallback_scale: 0.001,
    };
    fleet.start_worker(StageClass::Gpu, "gpu-real", b).await;
    fleet.start_worker(StageClass::Cpu, "cpu-real", b).await;
    fleet
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_analyzers_find_the_cuts_and_the_tone() {
    let dir = workdir();
    let video = three_shots(&dir);
    let fleet = real_fleet().await;
    let id = fleet
        .submit(json!({"video": video, "analyzers": SIGNAL}))
        .await;
    let o = fleet.wait_completed(&id, Duration::from_secs(120)).await;
    for name in SIGNAL {
        assert_eq!(
            o[name].backend, "rust",
            "{name} ran its real implementation"
        );
    }
    let cuts = &o["cut_analysis"];
    assert_eq!(cuts.status, OutcomeStatus::Ok, "{cuts:?}");
    let times: Vec<f64> = cuts.result.as_ref().unwrap()["cuts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["time_s"].as_f64().unwrap())
        .collect();
    assert_eq!(times.len(), 2, "two hard cuts: {times:?}");
    assert!(
        (times[0] - 2.0).abs() <= 0.08 && (times[1] - 4.0).abs() <= 0.08,
        "{times:?}"
    );
    let audio = &o["audio_analysis"];
    assert_eq!(audio.status, OutcomeStatus::Ok, "{audio:?}");
    let lufs = audio.result.as_ref().unwrap()["integrated_lufs"]
        .as_f64()
        .unwrap();
    assert!(
        lufs.is_finite() && lufs < -3.0 && lufs > -40.0,
        "a loud tone: {lufs}"
    );
    // temporal_flow used the cuts it needs; comment_cta_detection says what it missed.
    assert_eq!(o["temporal_flow"].status, OutcomeStatus::Ok);
    assert_eq!(o["comment_cta_detection"].status, OutcomeStatus::Ok);
    fleet.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_videos_fail_or_skip_each_analyzer_clearly() {
    let dir = workdir();
    let empty = dir.join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.join("notes.mp4");
    std::fs::write(&text, b"this is a text file, not a video\n").unwrap();
    let silent = dir.join("silent.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=160x120:rate=10:duration=1",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        silent.to_str().unwrap(),
    ]);

    let fleet = real_fleet().await;
    let analyzers = ["cut_analysis", "audio_analysis", "color_analysis"];
    let bad_empty = fleet
        .submit(json!({"video": empty, "analyzers": analyzers}))
        .await;
    let bad_text = fleet
        .submit(json!({"video": text, "analyzers": analyzers}))
        .await;
    let missing = fleet
        .submit(json!({"video": dir.join("nope.mp4"), "analyzers": analyzers}))
        .await;
    let no_audio = fleet
        .submit(json!({"video": silent, "analyzers": analyzers}))
        .await;

    for id in [&bad_empty, &bad_text, &missing] {
        let o = fleet.wait_completed(id, Duration::from_secs(60)).await;
        for (name, out) in &o {
            assert_eq!(out.status, OutcomeStatus::Failed, "{name}: {out:?}");
            assert_eq!(out.attempts, 1, "bad input is not retried: {name}");
        }
    }
    let text_err = fleet.outcomes(&bad_text).await["cut_analysis"]
        .error
        .clone()
        .unwrap();
    assert!(text_err.contains("not a video"), "{text_err}");
    let missing_err = fleet.outcomes(&missing).await["cut_analysis"]
        .error
        .clone()
        .unwrap();
    assert!(missing_err.contains("not found"), "{missing_err}");

    let o = fleet
        .wait_completed(&no_audio, Duration::from_secs(60))
        .await;
    assert_eq!(o["audio_analysis"].status, OutcomeStatus::Skipped);
    assert_eq!(o["audio_analysis"].error.as_deref(), Some("no audio track"));
    assert_eq!(o["cut_analysis"].status, OutcomeStatus::Ok);
    fleet.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A spoken sentence under an overlay that says "LINK IN BIO": OCR (ONNX Runtime) reads the
/// overlay, Whisper tiny.en transcribes the speech in process (no server configured), CTA
/// detection finds calls to action in both, speech_flow uses the transcript, and the
/// model-server analyzer without an endpoint is skipped saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onnx_analyzers_read_the_overlay_and_hear_the_speech() {
    let dir = workdir();
    let wav = dir.join("speech.wav");
    let spoken =
        "Hello and welcome. Today I show you three tricks for better videos. Follow for more.";
    let ok = Command::new("espeak-ng")
        .arg("-w")
        .arg(&wav)
        .arg(spoken)
        .status()
        .expect("espeak-ng (make services)");
    assert!(ok.success());
    let font = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";
    let video = dir.join("talk.mp4");
    let vf = format!(
        "drawtext=fontfile={font}:text='LINK IN BIO':fontsize=44:fontcolor=white:box=1:boxcolor=black:x=40:y=300"
    );
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=0x2a4d6e:size=360x640:rate=25:duration=8",
        "-i",
        wav.to_str().unwrap(),
        "-vf",
        &vf,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-shortest",
        video.to_str().unwrap(),
    ]);
    let fleet = real_fleet().await;
    let analyzers = [
        "text_overlay",
        "comment_cta_detection",
        "speech_flow",
        "speech_transcription",
        "qwen2_vl_temporal",
    ];
    let id = fleet
        .submit(json!({"video": video, "analyzers": analyzers}))
        .await;
    let o = fleet.wait_completed(&id, Duration::from_secs(240)).await;

    let ocr = &o["text_overlay"];
    assert_eq!(ocr.status, OutcomeStatus::Ok, "{ocr:?}");
    assert!(ocr.backend.starts_with("onnx:"), "{}", ocr.backend);
    let texts: Vec<&str> = ocr.result.as_ref().unwrap()["texts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["text"].as_str())
        .collect();
    assert!(texts.contains(&"LINK IN BIO"), "OCR read {texts:?}");

    let cta = &o["comment_cta_detection"];
    assert_eq!(cta.status, OutcomeStatus::Ok, "{cta:?}");
    assert_eq!(
        cta.result.as_ref().unwrap()["has_cta"],
        true,
        "{:?}",
        cta.result
    );

    let flow = &o["speech_flow"];
    assert_eq!(flow.status, OutcomeStatus::Ok, "{flow:?}");
    assert!(
        flow.result.as_ref().unwrap().to_string().contains("speech"),
        "{:?}",
        flow.result
    );

    // Without a Whisper server, transcription runs in process (tiny.en, English).
    let st = &o["speech_transcription"];
    assert_eq!(st.status, OutcomeStatus::Ok, "{st:?}");
    assert!(st.backend.starts_with("onnx:"), "{}", st.backend);
    let transcript = st.result.as_ref().unwrap();
    assert_eq!(transcript["model"], "whisper-tiny.en");
    assert_eq!(transcript["language"], "en");
    let heard = transcript["text"].as_str().unwrap().to_lowercase();
    // tiny.en on espeak-ng's default voice through AAC mishears some words ("three" as
    // "free"); these it hears.
    for word in ["welcome", "show", "tricks", "follow"] {
        assert!(heard.contains(word), "transcript {heard:?} lacks {word:?}");
    }
    assert_eq!(
        flow.result.as_ref().unwrap()["method"],
        "transcript",
        "speech_flow uses the transcript: {:?}",
        flow.result
    );
    let cta_text = cta.result.as_ref().unwrap().to_string().to_lowercase();
    assert!(
        cta_text.contains("follow"),
        "CTA from the speech: {cta_text}"
    );

    let s = &o["qwen2_vl_temporal"];
    assert_eq!(s.status, OutcomeStatus::Skipped, "{s:?}");
    assert!(
        s.error
            .as_deref()
            .unwrap()
            .contains("no endpoint configured"),
        "{s:?}"
    );
    fleet.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// The shipped vision models through the fleet: a clip of a person (scikit-image's astronaut
/// photograph over a moving test pattern) gives object_detection a person, background
/// segmentation a person mask, eye_tracking a face with iris gaze, and product_detection an
/// `ok` outcome that reports no person; each labelled with its ONNX backend and model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_vision_models_see_the_person() {
    let dir = workdir();
    let fleet_dir = std::env::var("FLEET_DIR").expect("FLEET_DIR (.cargo/config.toml)");
    let photo = Path::new(&fleet_dir).join("test-media/astronaut.png");
    assert!(
        photo.exists(),
        "{} missing: run scripts/setup-models.sh",
        photo.display()
    );
    let video = dir.join("person.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=720x1280:rate=25:duration=4",
        "-loop",
        "1",
        "-i",
        photo.to_str().unwrap(),
        "-filter_complex",
        "[1:v]scale=640:640[p];[0:v][p]overlay=40:560:shortest=1,format=yuv420p",
        "-t",
        "4",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        video.to_str().unwrap(),
    ]);
    let fleet = real_fleet().await;
    let analyzers = [
        "object_detection",
        "product_detection",
        "background_segmentation",
        "eye_tracking",
    ];
    let id = fleet
        .submit(json!({"video": video, "analyzers": analyzers}))
        .await;
    let o = fleet.wait_completed(&id, Duration::from_secs(240)).await;
    for a in analyzers {
        assert_eq!(o[a].status, OutcomeStatus::Ok, "{a}: {:?}", o[a]);
        assert!(o[a].backend.starts_with("onnx:"), "{a}: {}", o[a].backend);
    }
    let result = |a: &str| o[a].result.clone().unwrap();
    let labels = |a: &str| -> Vec<String> {
        result(a)["classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["label"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        result("object_detection")["model"]
            .as_str()
            .unwrap()
            .contains("nanodet")
    );
    assert!(
        labels("object_detection").contains(&"person".to_string()),
        "{:?}",
        labels("object_detection")
    );
    assert!(!labels("product_detection").contains(&"person".to_string()));
    let seg = result("background_segmentation");
    assert!(seg["model"].as_str().unwrap().contains("selfie"), "{seg}");
    assert!(seg["person_share"].as_f64().unwrap() > 0.1, "{seg}");
    let eyes = result("eye_tracking");
    assert!(eyes["method"].as_str().unwrap().contains("iris"), "{eyes}");
    assert!(eyes["frames_with_face"].as_u64().unwrap() >= 1, "{eyes}");
    assert!(
        eyes["looking_at_camera_share"].as_f64().unwrap() >= 0.5,
        "{eyes}"
    );
    fleet.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
}
