//! Limits and places for fetching and decoding. One `MediaConfig` per worker process,
//! shared by every job's [`crate::Media`].

use std::path::PathBuf;
use std::time::Duration;

/// Largest video accepted, downloaded or local: 500 MB. Short-form videos are far below this;
/// the bound keeps one bad link from filling the disk.
pub const DEFAULT_MAX_BYTES: u64 = 500_000_000;
/// Whole download, headers to last byte.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// Connecting only; an unreachable host fails fast instead of eating the whole fetch timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Downloads kept on disk by content hash: 5 GB, oldest evicted first.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 5_000_000_000;
/// Decoded frames and audio held in memory by one worker's [`crate::MediaCache`]: 2 GiB.
/// Also the bound of any single decode: every frame of a 3-minute 30 fps video at 160 px is
/// about 230 MB.
pub const DEFAULT_DECODE_MEMORY_BYTES: u64 = 2 << 30;
/// Jobs whose media a worker keeps at once. A job's analyzers arrive close together, so a
/// few recent jobs cover the reuse.
pub const DEFAULT_MAX_JOBS: usize = 16;
/// One ffprobe run. Probing reads headers only, so it is quick unless something is wrong.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// One ffmpeg decode (frames or audio). A 10-minute video decodes in well under a minute.
pub const DEFAULT_DECODE_TIMEOUT: Duration = Duration::from_secs(300);
/// Redirects followed per download, each one checked by the address guard again.
pub const DEFAULT_MAX_REDIRECTS: usize = 5;

#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Largest file accepted, in bytes (checked from Content-Length, while streaming, and for
    /// local files from their size).
    pub max_bytes: u64,
    /// Whole-download timeout.
    pub fetch_timeout: Duration,
    /// Connect timeout of a download.
    pub connect_timeout: Duration,
    /// Turns the SSRF guard off: any address may be fetched. For trusted networks only.
    pub allow_private: bool,
    /// Hosts or IP addresses exempt from the SSRF guard (exact, case-insensitive), e.g.
    /// `"127.0.0.1"` for tests or `"minio.internal"` for an in-cluster object store.
    pub allow_hosts: Vec<String>,
    /// Where downloads are kept, named by the sha256 of their bytes.
    pub cache_dir: PathBuf,
    /// Bound of `cache_dir`; the least recently used files go first.
    pub cache_max_bytes: u64,
    /// Bound of decoded frames and audio held by a [`crate::MediaCache`], and of one decode.
    pub decode_memory_bytes: u64,
    /// Most jobs a [`crate::MediaCache`] holds.
    pub max_jobs: usize,
    pub probe_timeout: Duration,
    pub decode_timeout: Duration,
    pub max_redirects: usize,
    /// `ffmpeg` binary (looked up in `PATH` when not absolute).
    pub ffmpeg: PathBuf,
    /// `ffprobe` binary (looked up in `PATH` when not absolute).
    pub ffprobe: PathBuf,
    /// Decoder threads per ffmpeg run; 0 lets ffmpeg choose (one per core).
    pub ffmpeg_threads: u32,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            allow_private: false,
            allow_hosts: Vec::new(),
            cache_dir: std::env::temp_dir().join("fleet-media"),
            cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
            decode_memory_bytes: DEFAULT_DECODE_MEMORY_BYTES,
            max_jobs: DEFAULT_MAX_JOBS,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
            decode_timeout: DEFAULT_DECODE_TIMEOUT,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            ffmpeg: PathBuf::from("ffmpeg"),
            ffprobe: PathBuf::from("ffprobe"),
            ffmpeg_threads: 0,
        }
    }
}
