//! Turning a job's video reference into a local file: a path as it is, a URL downloaded
//! through the SSRF guard with a size limit and a timeout into the content-hash cache.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use reqwest::Url;
use reqwest::header::{CONTENT_LENGTH, LOCATION};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use url::Host;

use crate::config::MediaConfig;
use crate::guard::choose_address;
use crate::store;
use crate::types::MediaError;

/// Where a video reference points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SourceKind {
    Local(PathBuf),
    Http(String),
}

pub(crate) fn classify(source: &str) -> Result<SourceKind, MediaError> {
    let trimmed = source.trim();
    let lower = trimmed.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(SourceKind::Http(trimmed.to_string()));
    }
    if lower.starts_with("file://") {
        let url =
            Url::parse(trimmed).map_err(|_| MediaError::UnsupportedSource(source.to_string()))?;
        let path = url
            .to_file_path()
            .map_err(|_| MediaError::UnsupportedSource(source.to_string()))?;
        return Ok(SourceKind::Local(path));
    }
    if trimmed.is_empty() || trimmed.contains("://") {
        return Err(MediaError::UnsupportedSource(source.to_string()));
    }
    Ok(SourceKind::Local(PathBuf::from(trimmed)))
}

/// The local file for `source`, downloading it if needed.
pub(crate) async fn fetch(source: &str, cfg: &MediaConfig) -> Result<PathBuf, MediaError> {
    match classify(source)? {
        SourceKind::Local(path) => local(&path, cfg).await,
        SourceKind::Http(url) => {
            match tokio::time::timeout(cfg.fetch_timeout, download(&url, cfg)).await {
                Ok(result) => result,
                Err(_) => Err(unreachable(
                    &url,
                    format!(
                        "timed out after {} s (media.fetch_timeout)",
                        cfg.fetch_timeout.as_secs()
                    ),
                )),
            }
        }
    }
}

/// A local source: only a regular file whose real path (every link resolved) lies under one
/// of `media.local_roots`. Every refusal reads the same, whatever the reason, so a submitter
/// cannot probe which paths exist. The resolved path is what ffprobe/ffmpeg open.
async fn local(path: &Path, cfg: &MediaConfig) -> Result<PathBuf, MediaError> {
    let refused = || {
        MediaError::NotFound(format!(
            "local file {} (local sources must be regular files under media.local_roots)",
            shown(&path.display().to_string())
        ))
    };
    if cfg.local_roots.is_empty() {
        return Err(refused());
    }
    let real = tokio::fs::canonicalize(path).await.map_err(|_| refused())?;
    let mut inside = false;
    for root in &cfg.local_roots {
        if let Ok(root) = tokio::fs::canonicalize(root).await
            && real.starts_with(&root)
        {
            inside = true;
            break;
        }
    }
    if !inside {
        return Err(refused());
    }
    let meta = tokio::fs::metadata(&real).await.map_err(|_| refused())?;
    if !meta.is_file() {
        return Err(refused());
    }
    if meta.len() > cfg.max_bytes {
        return Err(MediaError::TooLarge {
            size: meta.len(),
            limit: cfg.max_bytes,
        });
    }
    Ok(real)
}

/// A submitted reference as it appears in messages: quoted (control characters escaped) and
/// cut to a length a message can carry.
pub(crate) fn shown(s: &str) -> String {
    const KEEP: usize = 200;
    let mut cut: String = s.chars().take(KEEP).collect();
    if cut.len() < s.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

fn unreachable(url: &str, reason: impl Into<String>) -> MediaError {
    MediaError::Unreachable {
        url: url.to_string(),
        reason: reason.into(),
    }
}

/// The error and its causes on one line: reqwest's top-level message alone says little.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn download(url: &str, cfg: &MediaConfig) -> Result<PathBuf, MediaError> {
    let mut current =
        Url::parse(url).map_err(|_| MediaError::UnsupportedSource(url.to_string()))?;
    // The guard first: a URL the guard refuses today is refused even when an earlier
    // download (under another configuration) left its bytes in the cache.
    resolve_checked(&current, cfg).await?;
    store::ensure_dir(&cfg.cache_dir).await?;
    if let Some(path) = store::lookup_url(&cfg.cache_dir, url).await {
        tracing::debug!(url = ?url, path = %path.display(), "media download cache hit");
        return Ok(path);
    }
    for _ in 0..=cfg.max_redirects {
        let response = request(&current, cfg).await?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| unreachable(url, format!("HTTP {status} without a Location")))?;
            current = current
                .join(location)
                .map_err(|_| unreachable(url, format!("bad redirect target {location:?}")))?;
            if !matches!(current.scheme(), "http" | "https") {
                return Err(MediaError::UnsupportedSource(current.to_string()));
            }
            continue;
        }
        if status.is_client_error() && status.as_u16() != 429 {
            // 404/403/410 will not change on a retry: permanent.
            return Err(MediaError::NotFound(format!("{url} (HTTP {status})")));
        }
        if !status.is_success() {
            return Err(unreachable(url, format!("HTTP {status}")));
        }
        return save(url, response, cfg).await;
    }
    Err(unreachable(
        url,
        format!(
            "more than {} redirects (media.max_redirects)",
            cfg.max_redirects
        ),
    ))
}

/// The host of `url` resolved once and the address the guard approves, with the host name.
async fn resolve_checked(url: &Url, cfg: &MediaConfig) -> Result<(String, SocketAddr), MediaError> {
    let shown = url.as_str();
    let port = url.port_or_known_default().unwrap_or(80);
    let (host, addrs): (String, Vec<SocketAddr>) = match url.host() {
        Some(Host::Domain(name)) => {
            let addrs =
                tokio::time::timeout(cfg.connect_timeout, tokio::net::lookup_host((name, port)))
                    .await
                    .map_err(|_| unreachable(shown, format!("resolving {name} timed out")))?
                    .map_err(|e| unreachable(shown, format!("cannot resolve {name}: {e}")))?
                    .collect();
            (name.to_string(), addrs)
        }
        Some(Host::Ipv4(ip)) => (ip.to_string(), vec![SocketAddr::new(ip.into(), port)]),
        Some(Host::Ipv6(ip)) => (ip.to_string(), vec![SocketAddr::new(ip.into(), port)]),
        None => return Err(MediaError::UnsupportedSource(shown.to_string())),
    };
    let addr = choose_address(cfg, &host, &addrs)?;
    Ok((host, addr))
}

/// One request, redirects not followed, connected to the address the guard approved.
async fn request(url: &Url, cfg: &MediaConfig) -> Result<reqwest::Response, MediaError> {
    let shown = url.as_str();
    let (host, addr) = resolve_checked(url, cfg).await?;
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(cfg.connect_timeout)
        .timeout(cfg.fetch_timeout)
        // A proxy would connect wherever it likes: the pinned address would mean nothing.
        .no_proxy();
    if matches!(url.host(), Some(Host::Domain(_))) {
        // Pin the checked address: no second DNS lookup that could answer differently.
        builder = builder.resolve(&host, addr);
    }
    let client = builder
        .build()
        .map_err(|e| MediaError::Io(format!("HTTP client: {}", describe(&e))))?;
    client.get(url.clone()).send().await.map_err(|e| {
        let why = if e.is_timeout() {
            "timed out".to_string()
        } else {
            describe(&e)
        };
        unreachable(shown, why)
    })
}

/// Streams the body to a partial file while hashing it, enforcing the size limit as bytes
/// arrive (Content-Length may be absent or lie), then stores it under its hash.
async fn save(
    url: &str,
    mut response: reqwest::Response,
    cfg: &MediaConfig,
) -> Result<PathBuf, MediaError> {
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(size) = declared
        && size > cfg.max_bytes
    {
        return Err(MediaError::TooLarge {
            size,
            limit: cfg.max_bytes,
        });
    }
    let partial = PartialFile(store::partial_path(&cfg.cache_dir));
    let file = tokio::fs::File::create(&partial.0)
        .await
        .map_err(|e| MediaError::Io(format!("creating {}: {e}", partial.0.display())))?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let started = tokio::time::Instant::now();
    loop {
        // The next chunk must come while the average rate still meets the minimum.
        let next = response.chunk();
        let chunk = match rate_deadline(cfg, size) {
            Some(after) => tokio::time::timeout_at(started + after, next)
                .await
                .map_err(|_| {
                    unreachable(
                        url,
                        format!(
                            "slower than the minimum of {} bytes/s after {} s \
                             ({size} bytes so far; media.min_download_rate)",
                            cfg.min_download_rate,
                            started.elapsed().as_secs()
                        ),
                    )
                })?,
            None => next.await,
        };
        let chunk = chunk.map_err(|e| {
            let why = if e.is_timeout() {
                "timed out while downloading".into()
            } else {
                describe(&e)
            };
            unreachable(url, why)
        })?;
        let Some(chunk) = chunk else { break };
        size += chunk.len() as u64;
        if size > cfg.max_bytes {
            return Err(MediaError::TooLarge {
                size,
                limit: cfg.max_bytes,
            });
        }
        hasher.update(&chunk);
        out.write_all(&chunk)
            .await
            .map_err(|e| MediaError::Io(format!("writing download: {e}")))?;
    }
    out.flush()
        .await
        .map_err(|e| MediaError::Io(format!("writing download: {e}")))?;
    drop(out);
    if let Some(declared) = declared
        && declared != size
    {
        return Err(unreachable(
            url,
            format!("connection closed after {size} of {declared} bytes"),
        ));
    }
    let digest = store::hex(&hasher.finalize());
    let path = store::commit(&cfg.cache_dir, &partial.0, &digest, url).await?;
    store::evict(&cfg.cache_dir, cfg.cache_max_bytes, &path).await;
    tracing::info!(url = ?url, bytes = size, sha256 = %digest, "downloaded media");
    Ok(path)
}

/// How long after the start of a download the byte after `received` may arrive: the grace
/// period, or the time at which `received + 1` bytes meet the minimum rate, whichever is
/// later. `None`: no minimum.
fn rate_deadline(cfg: &MediaConfig, received: u64) -> Option<std::time::Duration> {
    if cfg.min_download_rate == 0 {
        return None;
    }
    let by_rate =
        std::time::Duration::from_secs_f64((received + 1) as f64 / cfg.min_download_rate as f64);
    Some(by_rate.max(cfg.download_grace))
}

/// Removes a download that did not finish (error, limit, cancelled task).
struct PartialFile(PathBuf);

impl Drop for PartialFile {
    fn drop(&mut self) {
        // After a successful commit the path no longer exists; the error is expected then.
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_sources() {
        assert_eq!(
            classify("/a/b.mp4").unwrap(),
            SourceKind::Local("/a/b.mp4".into())
        );
        assert_eq!(
            classify("file:///a/b%20c.mp4").unwrap(),
            SourceKind::Local("/a/b c.mp4".into())
        );
        assert!(matches!(
            classify("HTTPS://x.y/v.mp4").unwrap(),
            SourceKind::Http(_)
        ));
        assert!(matches!(
            classify("ftp://x/y"),
            Err(MediaError::UnsupportedSource(_))
        ));
        assert!(matches!(
            classify("  "),
            Err(MediaError::UnsupportedSource(_))
        ));
    }
}
