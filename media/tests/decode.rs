//! Probe and decode against real ffmpeg, on files made at run time: good files, the bad
//! inputs a worker must survive, rotation, sharing and limits.

mod support;

use std::sync::Arc;

use media::{FrameSpec, Media, MediaCache, MediaConfig, MediaError};
use support::{config, ffmpeg, shared, video};

fn media(path: &std::path::Path, dir: &std::path::Path) -> Arc<Media> {
    Media::new(path.to_str().unwrap(), shared(config(dir)))
}

#[tokio::test]
async fn probe_reports_the_streams() {
    let dir = tempfile::tempdir().unwrap();
    let path = video(dir.path(), "a.mp4", 2.0, true);
    let probe = media(&path, dir.path()).probe().await.unwrap();
    assert!((probe.duration_s - 2.0).abs() < 0.1, "{probe:?}");
    assert_eq!((probe.width, probe.height, probe.rotation), (320, 240, 0));
    assert!((probe.fps - 30.0).abs() < 0.01);
    assert!(probe.has_video && probe.has_audio);
    assert_eq!(probe.video_codec.as_deref(), Some("h264"));
    assert!(probe.bit_rate.is_some_and(|b| b > 0));
    assert_eq!(probe.size_bytes, std::fs::metadata(&path).unwrap().len());
}

#[tokio::test]
async fn frames_are_sampled_scaled_and_shared() {
    let dir = tempfile::tempdir().unwrap();
    let path = video(dir.path(), "a.mp4", 2.0, false);
    let m = media(&path, dir.path());
    let spec = FrameSpec::every_frame(160);
    let (a, b) = tokio::join!(m.frames(spec), m.frames(spec));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(
        Arc::ptr_eq(&a, &b),
        "concurrent callers must share one decode"
    );
    assert_eq!((a.width, a.height), (160, 120));
    assert_eq!(a.len(), 60);
    assert_eq!(a.data.len(), 60 * 160 * 120 * 3);
    assert!((a.times[30] - 1.0).abs() < 1e-9);
    let sampled = m.frames(FrameSpec::at_fps(2000, 64)).await.unwrap();
    assert_eq!((sampled.width, sampled.height), (64, 48));
    assert!((4..=5).contains(&sampled.len()), "{}", sampled.len());
    assert!((sampled.times[1] - 0.5).abs() < 1e-9);
    assert_eq!(
        m.decoded_bytes(),
        (a.data.len() + sampled.data.len()) as u64
    );
    // The same spec again is served from memory.
    assert!(Arc::ptr_eq(&a, &m.frames(spec).await.unwrap()));
}

#[tokio::test]
async fn audio_is_16k_mono_at_the_right_level() {
    let dir = tempfile::tempdir().unwrap();
    let path = video(dir.path(), "a.mp4", 2.0, true);
    let audio = media(&path, dir.path()).audio().await.unwrap();
    assert_eq!(audio.sample_rate, media::AUDIO_SAMPLE_RATE);
    assert!(
        (audio.duration_s() - 2.0).abs() < 0.1,
        "{}",
        audio.duration_s()
    );
    // A 0.1 amplitude sine: RMS 0.0707 (AAC keeps the level within a few percent).
    let mid = &audio.samples[8000..24000];
    let rms = (mid.iter().map(|x| x * x).sum::<f32>() / mid.len() as f32).sqrt();
    assert!((rms - 0.0707).abs() < 0.005, "rms {rms}");
}

#[tokio::test]
async fn rotation_metadata_gives_display_size_and_upright_frames() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("lr.mp4");
    // Left half red, right half blue, stored landscape with a 90 degree display matrix.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=red:s=320x240:d=1,drawbox=x=160:y=0:w=160:h=240:color=blue:t=fill",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        src.to_str().unwrap(),
    ]);
    let rotated = dir.path().join("rot.mp4");
    ffmpeg(&[
        "-i",
        src.to_str().unwrap(),
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        rotated.to_str().unwrap(),
    ]);
    let m = media(&rotated, dir.path());
    let probe = m.probe().await.unwrap();
    assert_eq!((probe.width, probe.height, probe.rotation), (240, 320, 90));
    let frames = m.frames(FrameSpec::every_frame(160)).await.unwrap();
    assert_eq!((frames.width, frames.height), (120, 160));
    let f = frames.frame(0);
    let px = |x: usize, y: usize| &f[(y * 120 + x) * 3..(y * 120 + x) * 3 + 3];
    // Turned a quarter counter-clockwise, as ffmpeg displays it: blue on top, red below.
    assert!(
        px(60, 10)[2] > 200 && px(60, 10)[0] < 50,
        "top {:?}",
        px(60, 10)
    );
    assert!(
        px(60, 150)[0] > 200 && px(60, 150)[2] < 50,
        "bottom {:?}",
        px(60, 150)
    );
}

#[tokio::test]
async fn a_one_second_clip_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let path = video(dir.path(), "short.mp4", 1.0, true);
    let m = media(&path, dir.path());
    assert!((m.probe().await.unwrap().duration_s - 1.0).abs() < 0.1);
    assert_eq!(
        m.frames(FrameSpec::every_frame(160)).await.unwrap().len(),
        30
    );
    assert!(m.audio().await.unwrap().samples.len() > 15_000);
}

#[tokio::test]
async fn zero_byte_file_is_not_a_video() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.mp4");
    std::fs::write(&path, b"").unwrap();
    let err = media(&path, dir.path())
        .frames(FrameSpec::every_frame(160))
        .await
        .unwrap_err();
    assert!(
        matches!(err, MediaError::NotAVideo(ref m) if m.contains("empty")),
        "{err}"
    );
}

#[tokio::test]
async fn truncated_files_are_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = video(dir.path(), "a.mp4", 2.0, true);
    let bytes = std::fs::read(&path).unwrap();
    // Index at the end (ffmpeg's default): the cut-off file has no index at all.
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = media(&cut, dir.path()).probe().await.unwrap_err();
    assert!(matches!(err, MediaError::Truncated(_)), "{err}");
    // Index first (faststart): probing works, decoding runs out of data.
    let fast = dir.path().join("fast.mp4");
    ffmpeg(&[
        "-i",
        path.to_str().unwrap(),
        "-c",
        "copy",
        "-movflags",
        "+faststart",
        fast.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&fast).unwrap();
    let cut_fast = dir.path().join("cut_fast.mp4");
    std::fs::write(&cut_fast, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let m = media(&cut_fast, dir.path());
    assert!(m.probe().await.is_ok());
    let err = m.frames(FrameSpec::every_frame(64)).await.unwrap_err();
    assert!(matches!(err, MediaError::Truncated(_)), "{err}");
}

#[tokio::test]
async fn random_bytes_and_text_are_not_videos() {
    let dir = tempfile::tempdir().unwrap();
    let random = dir.path().join("random.mp4");
    // A fixed xorshift stream: random-looking, and the same on every run.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let bytes: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    std::fs::write(&random, bytes).unwrap();
    let text = dir.path().join("notes.mp4");
    std::fs::write(
        &text,
        "This is a shopping list, not a video.\nmilk\neggs\n".repeat(50),
    )
    .unwrap();
    for path in [random, text] {
        let m = media(&path, dir.path());
        let err = m.frames(FrameSpec::every_frame(160)).await.unwrap_err();
        assert!(
            matches!(err, MediaError::NotAVideo(_)),
            "{}: {err}",
            path.display()
        );
        // The same error again, from memory (one ffprobe per job).
        assert_eq!(m.audio().await.unwrap_err(), err);
    }
}

#[tokio::test]
async fn audio_only_has_audio_and_no_video_stream() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tone.m4a");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=300:duration=2",
        "-c:a",
        "aac",
        path.to_str().unwrap(),
    ]);
    let m = media(&path, dir.path());
    let probe = m.probe().await.unwrap();
    assert!(!probe.has_video && probe.has_audio);
    let err = m.frames(FrameSpec::every_frame(160)).await.unwrap_err();
    assert_eq!(err, MediaError::NoVideoStream);
    assert!(err.is_skip());
    assert!(m.audio().await.unwrap().duration_s() > 1.9);
}

#[tokio::test]
async fn video_without_audio_has_no_audio_track() {
    let dir = tempfile::tempdir().unwrap();
    let path = video(dir.path(), "silent.mp4", 1.0, false);
    let m = media(&path, dir.path());
    let err = m.audio().await.unwrap_err();
    assert_eq!(err, MediaError::NoAudioTrack);
    assert!(err.is_skip() && err.to_string() == "no audio track");
    assert!(m.frames(FrameSpec::every_frame(32)).await.is_ok());
}

#[tokio::test]
async fn missing_and_unsupported_sources_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = shared(config(dir.path()));
    // Creating a handle does no I/O, even for a file that does not exist.
    let missing = Media::new(dir.path().join("nope.mp4").to_str().unwrap(), cfg.clone());
    assert!(matches!(
        missing.probe().await,
        Err(MediaError::NotFound(_))
    ));
    let ftp = Media::new("ftp://example.invalid/v.mp4", cfg.clone());
    assert!(matches!(
        ftp.probe().await,
        Err(MediaError::UnsupportedSource(_))
    ));
    let path = video(dir.path(), "a b.mp4", 1.0, false);
    let url = format!("file://{}", path.to_str().unwrap().replace(' ', "%20"));
    assert!(Media::new(&url, cfg).probe().await.is_ok());
}

#[tokio::test]
async fn limits_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let path = video(dir.path(), "a.mp4", 2.0, false);
    let small = MediaConfig {
        max_bytes: 1000,
        ..config(dir.path())
    };
    let err = Media::new(path.to_str().unwrap(), shared(small))
        .probe()
        .await
        .unwrap_err();
    assert!(
        matches!(err, MediaError::TooLarge { limit: 1000, .. }),
        "{err}"
    );
    let tight = MediaConfig {
        decode_memory_bytes: 1_000_000,
        ..config(dir.path())
    };
    let err = Media::new(path.to_str().unwrap(), shared(tight))
        .frames(FrameSpec::every_frame(320))
        .await
        .unwrap_err();
    assert!(matches!(err, MediaError::DecodeTooLarge { .. }), "{err}");
}

#[tokio::test]
async fn media_cache_shares_per_job_and_evicts_least_recent() {
    let dir = tempfile::tempdir().unwrap();
    let path = video(dir.path(), "a.mp4", 1.0, false);
    let src = path.to_str().unwrap();
    let cache = MediaCache::new(shared(MediaConfig {
        max_jobs: 2,
        ..config(dir.path())
    }));
    let a = cache.get("job-a", src);
    assert!(Arc::ptr_eq(&a, &cache.get("job-a", src)));
    cache.get("job-b", src);
    cache.get("job-a", src); // a is now the most recent
    cache.get("job-c", src); // evicts b
    assert_eq!(cache.len(), 2);
    assert!(Arc::ptr_eq(&a, &cache.get("job-a", src)));
    cache.forget("job-a");
    assert!(!Arc::ptr_eq(&a, &cache.get("job-a", src)));

    // Memory bound: a decode that finds the budget full pushes idle jobs out.
    let bounded = MediaCache::new(shared(MediaConfig {
        decode_memory_bytes: 4_000_000,
        ..config(dir.path())
    }));
    let first = bounded.get("one", src);
    first.frames(FrameSpec::every_frame(160)).await.unwrap(); // ~2.6 MB reserved
    drop(first); // no task uses job one any more
    let second = bounded.get("two", src);
    second.frames(FrameSpec::every_frame(160)).await.unwrap();
    assert_eq!(bounded.len(), 1, "job one was dropped to make room");
    assert!(Arc::ptr_eq(&second, &bounded.get("two", src)));
}
