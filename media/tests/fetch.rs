//! Downloads from a tiny HTTP server on 127.0.0.1 started by each test: the SSRF guard, the
//! allow list, redirects, size limits, timeouts and the content-hash cache on disk.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use media::{Media, MediaCache, MediaConfig, MediaError};
use sha2::{Digest, Sha256};
use support::{config, shared, video};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

struct Server {
    base: String,
    hits: Arc<AtomicUsize>,
}

/// Serves: /video.mp4 and /other.mp4 (with Content-Length), /nolength (body until close),
/// /redirect-ok (to /video.mp4 on 127.0.0.1), /redirect-away (to 127.0.0.2), /missing (404),
/// /hang (never answers), /flaky (503 the first time, then the video), /trickle (a byte every
/// 100 ms), /playlist.mp4 (the `playlist` bytes).
async fn serve(video: Vec<u8>, other: Vec<u8>) -> Server {
    serve_with(video, other, Vec::new()).await
}

async fn serve_with(video: Vec<u8>, other: Vec<u8>, playlist: Vec<u8>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let (video, other, counter) = (Arc::new(video), Arc::new(other), hits.clone());
    let playlist = Arc::new(playlist);
    let flaky = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let (video, other, playlist, flaky) = (
                video.clone(),
                other.clone(),
                playlist.clone(),
                flaky.clone(),
            );
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let with_length = |body: &[u8]| {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(body);
                    r
                };
                let response = match path.as_str() {
                    "/video.mp4" => with_length(&video),
                    "/other.mp4" => with_length(&other),
                    "/nolength" => {
                        let mut r = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
                        r.extend_from_slice(&video);
                        r
                    }
                    "/redirect-ok" => format!(
                        "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/video.mp4\r\nContent-Length: 0\r\n\r\n"
                    )
                    .into_bytes(),
                    "/redirect-away" => format!(
                        "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.2:{port}/video.mp4\r\nContent-Length: 0\r\n\r\n"
                    )
                    .into_bytes(),
                    "/hang" => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    "/flaky" if flaky.fetch_add(1, Ordering::SeqCst) == 0 => {
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".to_vec()
                    }
                    "/flaky" => with_length(&video),
                    "/playlist.mp4" => with_length(&playlist),
                    "/trickle" => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                            video.len()
                        );
                        if sock.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        for b in video.iter().take(600) {
                            if sock.write_all(&[*b]).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        return;
                    }
                    _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
                };
                let _ = sock.write_all(&response).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Server {
        base: format!("http://127.0.0.1:{port}"),
        hits,
    }
}

fn allowed(dir: &std::path::Path) -> MediaConfig {
    MediaConfig {
        allow_hosts: vec!["127.0.0.1".into()],
        ..config(dir)
    }
}

async fn fixture() -> (tempfile::TempDir, Vec<u8>, Server) {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(video(dir.path(), "v.mp4", 1.0, true)).unwrap();
    let other = std::fs::read(video(dir.path(), "w.mp4", 2.0, false)).unwrap();
    let server = serve(bytes.clone(), other).await;
    (dir, bytes, server)
}

#[tokio::test]
async fn loopback_is_refused_unless_allowed() {
    let (dir, _, server) = fixture().await;
    let url = format!("{}/video.mp4", server.base);
    let err = Media::new(&url, shared(config(dir.path())))
        .probe()
        .await
        .unwrap_err();
    assert!(
        matches!(err, MediaError::Refused(ref m) if m.contains("loopback")),
        "{err}"
    );
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        0,
        "a refused address is never contacted"
    );
    let localhost = url.replace("127.0.0.1", "localhost");
    let err = Media::new(&localhost, shared(config(dir.path())))
        .probe()
        .await
        .unwrap_err();
    assert!(
        matches!(err, MediaError::Refused(_)),
        "names resolving to loopback too: {err}"
    );
    let ok = Media::new(&url, shared(allowed(dir.path())));
    assert!(ok.probe().await.unwrap().has_audio);
}

#[tokio::test]
async fn downloads_are_cached_by_content_hash() {
    let (dir, bytes, server) = fixture().await;
    let url = format!("{}/video.mp4", server.base);
    let cfg = shared(allowed(dir.path()));
    let path = Media::new(&url, cfg.clone()).path().await.unwrap();
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(path.file_stem().unwrap().to_str().unwrap(), digest);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    // Another job with the same URL uses the file on disk: no second request.
    let again = Media::new(&url, cfg.clone());
    assert!(
        again
            .frames(media::FrameSpec::every_frame(32))
            .await
            .is_ok()
    );
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    // A redirect within the allowed host is followed (and lands on the same content).
    let redirected = Media::new(&format!("{}/redirect-ok", server.base), cfg)
        .path()
        .await
        .unwrap();
    assert_eq!(redirected, path);
}

#[tokio::test]
async fn redirects_are_checked_again() {
    let (dir, _, server) = fixture().await;
    let url = format!("{}/redirect-away", server.base);
    let err = Media::new(&url, shared(allowed(dir.path())))
        .probe()
        .await
        .unwrap_err();
    assert!(
        matches!(err, MediaError::Refused(ref m) if m.contains("127.0.0.2")),
        "{err}"
    );
}

#[tokio::test]
async fn size_limit_applies_to_declared_and_streamed_sizes() {
    let (dir, bytes, server) = fixture().await;
    let limit = bytes.len() as u64 / 2;
    let cfg = shared(MediaConfig {
        max_bytes: limit,
        ..allowed(dir.path())
    });
    for route in ["/video.mp4", "/nolength"] {
        let err = Media::new(&format!("{}{route}", server.base), cfg.clone())
            .probe()
            .await
            .unwrap_err();
        assert!(
            matches!(err, MediaError::TooLarge { limit: l, .. } if l == limit),
            "{route}: {err}"
        );
    }
    let leftovers = std::fs::read_dir(&cfg.cache_dir)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "no partial download is left behind");
}

#[tokio::test]
async fn unreachable_missing_and_slow_urls_fail_clearly() {
    let (dir, _, server) = fixture().await;
    let cfg = MediaConfig {
        fetch_timeout: Duration::from_secs(1),
        ..allowed(dir.path())
    };
    let cfg = shared(cfg);
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = Media::new(&format!("http://127.0.0.1:{closed}/v.mp4"), cfg.clone())
        .probe()
        .await
        .unwrap_err();
    assert!(
        matches!(err, MediaError::Unreachable { .. }) && err.is_transient(),
        "{err}"
    );
    let err = Media::new(&format!("{}/missing", server.base), cfg.clone())
        .probe()
        .await
        .unwrap_err();
    assert!(
        matches!(err, MediaError::NotFound(ref m) if m.contains("404")),
        "{err}"
    );
    let started = Instant::now();
    let err = Media::new(&format!("{}/hang", server.base), cfg)
        .probe()
        .await
        .unwrap_err();
    assert!(
        matches!(err, MediaError::Unreachable { ref reason, .. } if reason.contains("timed out")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_transient_failure_is_retried_not_replayed() {
    let (dir, _, server) = fixture().await;
    let url = format!("{}/flaky", server.base);
    let cache = MediaCache::new(shared(allowed(dir.path())));
    let media = cache.get("job", &url);
    let err = media.probe().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    // The task's retry uses the same handle: it must fetch again, not replay the error.
    assert!(media.probe().await.unwrap().has_audio);
    assert!(Arc::ptr_eq(&media, &cache.get("job", &url)));
}

#[tokio::test]
async fn a_trickling_download_fails_at_the_minimum_rate() {
    let (dir, _, server) = fixture().await;
    let cfg = shared(MediaConfig {
        fetch_timeout: Duration::from_secs(30),
        min_download_rate: 1000,
        download_grace: Duration::from_millis(500),
        ..allowed(dir.path())
    });
    let started = Instant::now();
    let err = Media::new(&format!("{}/trickle", server.base), cfg)
        .probe()
        .await
        .unwrap_err();
    assert!(
        matches!(err, MediaError::Unreachable { ref reason, .. } if reason.contains("media.min_download_rate")),
        "{err}"
    );
    assert!(err.is_transient());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopped by the rate, not by the fetch timeout"
    );
}

#[tokio::test]
async fn the_guard_runs_before_the_download_cache() {
    let (dir, _, server) = fixture().await;
    let url = format!("{}/video.mp4", server.base);
    // An earlier worker configuration allowed the host and cached the download...
    Media::new(&url, shared(allowed(dir.path())))
        .path()
        .await
        .unwrap();
    // ...today's does not: the cached bytes must not be served.
    let err = Media::new(&url, shared(config(dir.path())))
        .probe()
        .await
        .unwrap_err();
    assert!(matches!(err, MediaError::Refused(_)), "{err}");
}

#[tokio::test]
async fn an_unsafe_cache_directory_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, _, server) = fixture().await;
    let url = format!("{}/video.mp4", server.base);
    let cfg = allowed(dir.path());
    std::fs::create_dir_all(&cfg.cache_dir).unwrap();
    std::fs::set_permissions(&cfg.cache_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = Media::new(&url, shared(cfg.clone()))
        .probe()
        .await
        .unwrap_err();
    assert!(
        matches!(err, MediaError::Setup(ref m) if m.contains("writable by group or others")),
        "{err}"
    );
    assert_eq!(server.hits.load(Ordering::SeqCst), 0);
    std::fs::set_permissions(&cfg.cache_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(Media::new(&url, shared(cfg)).probe().await.is_ok());
}

#[tokio::test]
async fn a_downloaded_playlist_cannot_open_local_files() {
    let dir = tempfile::tempdir().unwrap();
    let local = video(dir.path(), "private.mp4", 1.0, true);
    let playlist = format!(
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1,\nfile://{}\n#EXT-X-ENDLIST\n",
        local.display()
    );
    let server = serve_with(Vec::new(), Vec::new(), playlist.into_bytes()).await;
    let m = Media::new(
        &format!("{}/playlist.mp4", server.base),
        shared(allowed(dir.path())),
    );
    let err = m.probe().await.unwrap_err();
    assert!(
        matches!(err, MediaError::NotAVideo(ref msg) if msg.contains("hls") && msg.contains("media.allowed_formats")),
        "{err}"
    );
    assert!(m.frames(media::FrameSpec::every_frame(32)).await.is_err());
}

#[tokio::test]
async fn disk_cache_evicts_the_oldest_download() {
    let (dir, bytes, server) = fixture().await;
    let cfg = shared(MediaConfig {
        cache_max_bytes: bytes.len() as u64 * 3 / 2,
        ..allowed(dir.path())
    });
    let first = Media::new(&format!("{}/video.mp4", server.base), cfg.clone())
        .path()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = Media::new(&format!("{}/other.mp4", server.base), cfg.clone())
        .path()
        .await
        .unwrap();
    assert!(second.exists());
    assert!(
        !first.exists(),
        "the older download is evicted past cache_max_bytes"
    );
}
