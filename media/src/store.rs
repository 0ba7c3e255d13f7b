//! The download cache on the worker's disk: files named by the sha256 of their bytes, a small
//! index from URL to content hash, and eviction of the least recently used files past a size
//! bound. Several worker processes may share the directory: files appear by atomic rename.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::types::MediaError;

const CONTENT_EXT: &str = "media";
const INDEX_EXT: &str = "url";

pub(crate) fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn content_path(dir: &Path, sha256_hex: &str) -> PathBuf {
    dir.join(format!("{sha256_hex}.{CONTENT_EXT}"))
}

fn index_path(dir: &Path, url: &str) -> PathBuf {
    dir.join(format!(
        "{}.{INDEX_EXT}",
        hex(&Sha256::digest(url.as_bytes()))
    ))
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> MediaError {
    MediaError::Io(format!("{what} {}: {e} (media.cache_dir)", path.display()))
}

/// A unique name for a download in progress, in the cache directory so the final rename
/// stays on one file system.
pub(crate) fn partial_path(dir: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".part-{}-{n}-{nanos}", std::process::id()))
}

/// Creates the cache directory (mode 0700) or checks the one that is there: a real directory,
/// owned by this process's user, writable by nobody else. Anyone who could write into it
/// could plant the "download" of any URL (the index is trusted), so an unsafe directory is
/// refused rather than used.
pub(crate) async fn ensure_dir(dir: &Path) -> Result<(), MediaError> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || check_dir(&dir))
        .await
        .map_err(|e| MediaError::Io(format!("checking media.cache_dir: {e}")))?
}

fn check_dir(dir: &Path) -> Result<(), MediaError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io_err("creating", dir, e))?;
        }
        Err(e) => return Err(io_err("reading", dir, e)),
        Ok(_) => {}
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| io_err("reading", dir, e))?;
    let unsafe_dir = |why: String| {
        MediaError::Setup(format!(
            "media.cache_dir {} {why}: give the worker a directory of its own (chmod 700,              owned by the worker's user)",
            dir.display()
        ))
    };
    if !meta.file_type().is_dir() {
        return Err(unsafe_dir(
            "is not a directory (or is a symbolic link)".into(),
        ));
    }
    let me = current_uid()?;
    if meta.uid() != me {
        return Err(unsafe_dir(format!(
            "is owned by uid {}, not by this worker (uid {me})",
            meta.uid()
        )));
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(unsafe_dir(format!(
            "is writable by group or others (mode {:o})",
            mode & 0o777
        )));
    }
    Ok(())
}

/// The effective uid of this process: `/proc/self` is owned by it.
fn current_uid() -> Result<u32, MediaError> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|e| MediaError::Io(format!("reading /proc/self: {e}")))
}

/// The cached file for `url`, if an earlier download left one. Video URLs of the platforms we
/// analyze are immutable (a new upload gets a new URL), so the index is trusted: callers check
/// the URL against the address guard first and the directory with [`ensure_dir`].
pub(crate) async fn lookup_url(dir: &Path, url: &str) -> Option<PathBuf> {
    let digest = tokio::fs::read_to_string(index_path(dir, url)).await.ok()?;
    let digest = digest.trim();
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let path = content_path(dir, digest);
    touch(&path).await.ok()?;
    Some(path)
}

/// Moves a finished download into place under its content hash and records the URL.
pub(crate) async fn commit(
    dir: &Path,
    partial: &Path,
    sha256_hex: &str,
    url: &str,
) -> Result<PathBuf, MediaError> {
    let path = content_path(dir, sha256_hex);
    if tokio::fs::metadata(&path).await.is_ok() {
        // Same bytes already cached (another URL or another worker): keep the one copy.
        let _ = tokio::fs::remove_file(partial).await;
        touch(&path)
            .await
            .map_err(|e| io_err("touching", &path, e))?;
    } else {
        tokio::fs::rename(partial, &path)
            .await
            .map_err(|e| io_err("storing", &path, e))?;
    }
    let index = index_path(dir, url);
    let tmp = partial_path(dir);
    // Index by rename as well, so a reader never sees half a hash.
    if tokio::fs::write(&tmp, sha256_hex).await.is_ok() {
        let _ = tokio::fs::rename(&tmp, &index).await;
    }
    Ok(path)
}

/// Marks a file as just used, so eviction takes older ones first.
async fn touch(path: &Path) -> std::io::Result<()> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::fs::File::options()
            .append(true)
            .open(&path)?
            .set_modified(SystemTime::now())
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Deletes the least recently used content files until the directory holds at most
/// `max_bytes`, never `keep` (the file the caller is about to use). Index files pointing at
/// deleted content are harmless: lookups check that the content exists.
pub(crate) async fn evict(dir: &Path, max_bytes: u64, keep: &Path) {
    let (dir, keep) = (dir.to_path_buf(), keep.to_path_buf());
    let result = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut files = Vec::new();
        let mut total = 0u64;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some(CONTENT_EXT) {
                continue;
            }
            let meta = entry.metadata()?;
            total += meta.len();
            files.push((
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                meta.len(),
                path,
            ));
        }
        files.sort();
        for (_, len, path) in files {
            if total <= max_bytes {
                break;
            }
            if path != keep && std::fs::remove_file(&path).is_ok() {
                tracing::debug!(path = %path.display(), "evicted cached media");
                total -= len;
            }
        }
        Ok(())
    })
    .await;
    if let Ok(Err(e)) | Err(e) = result.map_err(std::io::Error::other) {
        tracing::warn!(error = %e, "media cache eviction failed");
    }
}
