//! What an untrusted job may make a worker read and decode: local files only under the
//! configured roots (one answer for every refusal), only allowed container formats, limits
//! checked from the probe, one decode memory budget per worker, ffmpeg under process limits,
//! and one decode pass per job for every planned frame spec.

mod support;

use std::sync::Arc;
use std::time::Duration;

use media::{FrameSpec, Media, MediaCache, MediaConfig, MediaError};
use support::{config, ffmpeg, shared, video};

#[tokio::test]
async fn local_files_outside_the_roots_are_refused_alike() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let secret = video(outside.path(), "secret.mp4", 1.0, false);
    let inside = video(root.path(), "ok.mp4", 1.0, false);
    let link = root.path().join("link.mp4");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    std::fs::create_dir(root.path().join("a-dir")).unwrap();
    let cfg = shared(config(root.path()));
    let mut messages = Vec::new();
    for path in [
        secret.clone(),
        link,
        root.path().join("missing.mp4"),
        root.path().join("a-dir"),
        root.path()
            .join("../")
            .join(outside.path().file_name().unwrap())
            .join("secret.mp4"),
    ] {
        let err = Media::new(path.to_str().unwrap(), cfg.clone())
            .probe()
            .await
            .unwrap_err();
        let MediaError::NotFound(msg) = &err else {
            panic!("{}: {err}", path.display())
        };
        // The same words whatever the reason, apart from the path the job gave.
        messages.push(msg.replace(&format!("{:?}", path.to_str().unwrap()), "<path>"));
    }
    messages.dedup();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let url = format!("file://{}", secret.display());
    assert!(matches!(
        Media::new(&url, cfg.clone()).probe().await,
        Err(MediaError::NotFound(_))
    ));
    assert!(
        Media::new(inside.to_str().unwrap(), cfg)
            .probe()
            .await
            .is_ok()
    );
    // No roots (a URL-only deployment): no local file at all.
    let none = shared(MediaConfig {
        local_roots: Vec::new(),
        ..config(root.path())
    });
    assert!(matches!(
        Media::new(inside.to_str().unwrap(), none).probe().await,
        Err(MediaError::NotFound(_))
    ));
}

#[tokio::test]
async fn playlists_and_scripts_are_not_allowed_containers() {
    let dir = tempfile::tempdir().unwrap();
    let target = video(dir.path(), "target.mp4", 1.0, false);
    let hls = dir.path().join("hls.mp4");
    std::fs::write(
        &hls,
        format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1,\nfile://{}\n#EXT-X-ENDLIST\n",
            target.display()
        ),
    )
    .unwrap();
    let concat = dir.path().join("list.mp4");
    std::fs::write(
        &concat,
        format!("ffconcat version 1.0\nfile '{}'\n", target.display()),
    )
    .unwrap();
    for path in [hls, concat] {
        let m = Media::new(path.to_str().unwrap(), shared(config(dir.path())));
        let err = m.frames(FrameSpec::every_frame(32)).await.unwrap_err();
        assert!(
            matches!(err, MediaError::NotAVideo(ref msg) if msg.contains("media.allowed_formats")),
            "{}: {err}",
            path.display()
        );
    }
}

#[tokio::test]
async fn probe_limits_refuse_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    // Small file, huge picture.
    let huge = dir.path().join("huge.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=gray:size=5000x5000:rate=1:duration=1",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        huge.to_str().unwrap(),
    ]);
    let m = Media::new(huge.to_str().unwrap(), shared(config(dir.path())));
    let err = m.frames(FrameSpec::every_frame(160)).await.unwrap_err();
    assert!(
        matches!(err, MediaError::Limit(ref msg) if msg.contains("media.max_dimension")),
        "{err}"
    );
    assert_eq!(m.decode_passes(), 0, "refused from the probe");
    // Audio longer than allowed: refused from the probe too.
    let long = dir.path().join("long.flac");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=8000:cl=mono",
        "-t",
        "20",
        long.to_str().unwrap(),
    ]);
    let short_limit = shared(MediaConfig {
        max_duration: Duration::from_secs(10),
        ..config(dir.path())
    });
    let err = Media::new(long.to_str().unwrap(), short_limit)
        .audio()
        .await
        .unwrap_err();
    assert!(
        matches!(err, MediaError::Limit(ref msg) if msg.contains("media.max_duration_secs")),
        "{err}"
    );
}

#[tokio::test]
async fn ffmpeg_runs_under_its_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=3840x2160:rate=2:duration=1",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        big.to_str().unwrap(),
    ]);
    let tight = shared(MediaConfig {
        ffmpeg_memory_bytes: 40 << 20,
        ..config(dir.path())
    });
    let err = Media::new(big.to_str().unwrap(), tight)
        .frames(FrameSpec::every_frame(160))
        .await
        .unwrap_err();
    assert!(
        matches!(err, MediaError::Limit(ref msg) if msg.contains("media.ffmpeg_memory_bytes")),
        "{err}"
    );
    let roomy = shared(config(dir.path()));
    assert!(
        Media::new(big.to_str().unwrap(), roomy)
            .frames(FrameSpec::every_frame(160))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn concurrent_jobs_share_one_decode_budget() {
    let dir = tempfile::tempdir().unwrap();
    let path = video(dir.path(), "a.mp4", 2.0, true);
    let src = path.to_str().unwrap();
    // One job's every-frame decode at 160 px reserves ~4.5 MB; two do not fit in 6 MB.
    let cache = MediaCache::new(shared(MediaConfig {
        decode_memory_bytes: 6_000_000,
        budget_wait: Duration::from_millis(300),
        ..config(dir.path())
    }));
    let spec = FrameSpec::every_frame(160);
    let a = cache.get("job-a", src);
    a.frames(spec).await.unwrap();
    let b = cache.get("job-b", src);
    // Job a's analyzers still hold its media: b has to wait, then goes back to the queue.
    let err = b.frames(spec).await.unwrap_err();
    assert!(
        matches!(err, MediaError::Busy(ref m) if m.contains("media.decode_memory_bytes")),
        "{err}"
    );
    assert!(err.is_requeue() && !err.is_transient());
    drop(a);
    cache.forget("job-a");
    // Not cached as a failure: the retry decodes once a's memory is back.
    assert_eq!(b.frames(spec).await.unwrap().len(), 60);
}

#[tokio::test]
async fn a_job_decodes_every_planned_spec_in_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let path = video(dir.path(), "a.mp4", 2.0, true);
    let specs = [
        FrameSpec::every_frame(160),
        FrameSpec::at_fps(2000, 64),
        FrameSpec::at_fps(500, 320),
        FrameSpec::at_fps(1000, 96),
    ];
    let cfg = shared(config(dir.path()));
    let planned = Media::new(path.to_str().unwrap(), cfg.clone());
    assert!(planned.plan_frames(Arc::new(move |_probe| specs.to_vec())));
    let got = futures::future::join_all(specs.iter().map(|s| planned.frames(*s))).await;
    assert_eq!(
        planned.decode_passes(),
        1,
        "one ffmpeg run for all four specs"
    );
    // The same frames as decoding each spec on its own.
    let alone = Media::new(path.to_str().unwrap(), cfg);
    for (spec, frames) in specs.iter().zip(got) {
        let frames = frames.unwrap();
        let single = alone.frames(*spec).await.unwrap();
        assert_eq!(
            (frames.width, frames.height, frames.len()),
            (single.width, single.height, single.len()),
            "{spec:?}"
        );
        assert!(frames.data == single.data, "{spec:?}: pixels differ");
    }
    assert_eq!(alone.decode_passes(), 4);
    // A spec nobody planned still works, in a pass of its own.
    planned.frames(FrameSpec::at_fps(250, 48)).await.unwrap();
    assert_eq!(planned.decode_passes(), 2);
}
