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
/// Slowest download kept going once [`DEFAULT_DOWNLOAD_GRACE`] has passed: 64 KiB/s. A CDN
/// serves a 10 MB video in seconds; a server trickling bytes would otherwise hold the task
/// for the whole fetch timeout.
pub const DEFAULT_MIN_DOWNLOAD_RATE: u64 = 64 * 1024;
/// Time a download may take before the minimum rate applies (connection setup, slow start).
pub const DEFAULT_DOWNLOAD_GRACE: Duration = Duration::from_secs(10);
/// Downloads kept on disk by content hash: 5 GB, oldest evicted first.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 5_000_000_000;
/// The worker's decode memory budget: decoded frames and audio held by all jobs of one
/// [`crate::MediaCache`], decodes in progress included, 2 GiB. Every frame of a 3-minute
/// 30 fps video at 160 px is about 230 MB.
pub const DEFAULT_DECODE_MEMORY_BYTES: u64 = 2 << 30;
/// How long a decode waits for room in the budget (other jobs' decodes finishing, idle jobs
/// evicted) before the task is handed back to the queue.
pub const DEFAULT_BUDGET_WAIT: Duration = Duration::from_secs(60);
/// Jobs whose media a worker keeps at once. A job's analyzers arrive close together, so a
/// few recent jobs cover the reuse.
pub const DEFAULT_MAX_JOBS: usize = 16;
/// One ffprobe run. Probing reads headers only, so it is quick unless something is wrong.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// One ffmpeg decode (frames or audio). A 10-minute video decodes in well under a minute.
pub const DEFAULT_DECODE_TIMEOUT: Duration = Duration::from_secs(300);
/// Redirects followed per download, each one checked by the address guard again.
pub const DEFAULT_MAX_REDIRECTS: usize = 5;
/// Longest video (or audio track) decoded: 30 minutes, checked from the probe. Short-form
/// video is at most 10 minutes; a file announcing hours is refused before any decode.
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(1800);
/// Largest picture side decoded: 4096 px (4K). A 16000x16000 stream costs ffmpeg more than
/// a gigabyte per frame buffer however small the file.
pub const DEFAULT_MAX_DIMENSION: u32 = 4096;
/// Private memory (RLIMIT_DATA) of one ffmpeg/ffprobe process: 2 GiB. A 4K decode with frame
/// threads needs a few hundred MB.
pub const DEFAULT_FFMPEG_MEMORY_BYTES: u64 = 2 << 30;
/// CPU seconds (RLIMIT_CPU, all threads) of one ffmpeg/ffprobe process.
pub const DEFAULT_FFMPEG_CPU_SECS: u64 = 1200;
/// Demuxers ffprobe and ffmpeg may use, matched against ffmpeg's demuxer names: the
/// containers short-form video and its audio come in. Deliberately absent: playlists and
/// scripts that open other files or URLs (`hls`, `dash`, `concat`, `ffconcat`), image
/// sequences (`image2`, `*_pipe`), `lavfi`, `tty` and every other demuxer.
pub const DEFAULT_ALLOWED_FORMATS: &[&str] = &[
    "mov", "mp4", "matroska", "webm", "avi", "flv", "mpegts", "mpeg", "ogg", "wav", "mp3", "aac",
    "flac", "asf",
];

#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Largest file accepted, in bytes (checked from Content-Length, while streaming, and for
    /// local files from their size).
    pub max_bytes: u64,
    /// Whole-download timeout.
    pub fetch_timeout: Duration,
    /// Connect timeout of a download.
    pub connect_timeout: Duration,
    /// Bytes per second a download must keep up after `download_grace` (0 = no minimum).
    pub min_download_rate: u64,
    pub download_grace: Duration,
    /// Turns the SSRF guard off: any address may be fetched. For trusted networks only.
    pub allow_private: bool,
    /// Hosts or IP addresses exempt from the SSRF guard (exact, case-insensitive), e.g.
    /// `"127.0.0.1"` for tests or `"minio.internal"` for an in-cluster object store.
    pub allow_hosts: Vec<String>,
    /// Directories local sources must lie in, checked on the path with every link resolved.
    /// Empty (the default): no local file is read, only URLs.
    pub local_roots: Vec<PathBuf>,
    /// Demuxers allowed for probe and decode (see [`DEFAULT_ALLOWED_FORMATS`]).
    pub allowed_formats: Vec<String>,
    /// Where downloads are kept, named by the sha256 of their bytes. Created mode 0700; it
    /// must be owned by this user and writable by nobody else.
    pub cache_dir: PathBuf,
    /// Bound of `cache_dir`; the least recently used files go first.
    pub cache_max_bytes: u64,
    /// The decode memory budget of a [`crate::MediaCache`] (one per worker), shared by its
    /// concurrent decodes and the decoded media it holds; also the bound of one decode.
    pub decode_memory_bytes: u64,
    /// How long a decode waits for room in the budget.
    pub budget_wait: Duration,
    /// Most jobs a [`crate::MediaCache`] holds.
    pub max_jobs: usize,
    /// Longest duration decoded (checked from the probe; decodes also stop there).
    pub max_duration: Duration,
    /// Largest width or height of a video stream decoded.
    pub max_dimension: u32,
    pub probe_timeout: Duration,
    pub decode_timeout: Duration,
    pub max_redirects: usize,
    /// `ffmpeg` binary (looked up in `PATH` when not absolute).
    pub ffmpeg: PathBuf,
    /// `ffprobe` binary (looked up in `PATH` when not absolute).
    pub ffprobe: PathBuf,
    /// Decoder threads per ffmpeg run; 0 lets ffmpeg choose (one per core).
    pub ffmpeg_threads: u32,
    /// RLIMIT_DATA of each ffmpeg/ffprobe process (set through `prlimit`); 0 = none.
    pub ffmpeg_memory_bytes: u64,
    /// RLIMIT_CPU of each ffmpeg/ffprobe process in seconds; 0 = none.
    pub ffmpeg_cpu_secs: u64,
    /// Hardware video decoding for the frame passes (audio is always decoded on the CPU).
    pub hw_decode: HwDecode,
}

/// Where the video of a frame pass is decoded. Scaling and sampling stay on the CPU either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HwDecode {
    /// ffmpeg's software decoders.
    #[default]
    Cpu,
    /// NVDEC on this CUDA device (`-hwaccel cuda -hwaccel_device N`); frames come back to
    /// system memory. A pass that fails this way but decodes on the CPU turns it off for the
    /// rest of the process (logged once), so a host without a working NVDEC loses one pass.
    Cuda { device: u32 },
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            min_download_rate: DEFAULT_MIN_DOWNLOAD_RATE,
            download_grace: DEFAULT_DOWNLOAD_GRACE,
            allow_private: false,
            allow_hosts: Vec::new(),
            local_roots: Vec::new(),
            allowed_formats: DEFAULT_ALLOWED_FORMATS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            cache_dir: std::env::temp_dir().join("fleet-media"),
            cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
            decode_memory_bytes: DEFAULT_DECODE_MEMORY_BYTES,
            budget_wait: DEFAULT_BUDGET_WAIT,
            max_jobs: DEFAULT_MAX_JOBS,
            max_duration: DEFAULT_MAX_DURATION,
            max_dimension: DEFAULT_MAX_DIMENSION,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
            decode_timeout: DEFAULT_DECODE_TIMEOUT,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            ffmpeg: PathBuf::from("ffmpeg"),
            ffprobe: PathBuf::from("ffprobe"),
            ffmpeg_threads: 0,
            ffmpeg_memory_bytes: DEFAULT_FFMPEG_MEMORY_BYTES,
            ffmpeg_cpu_secs: DEFAULT_FFMPEG_CPU_SECS,
            hw_decode: HwDecode::Cpu,
        }
    }
}

impl MediaConfig {
    /// The allow-list as ffmpeg's `-format_whitelist` value.
    pub(crate) fn format_whitelist(&self) -> String {
        self.allowed_formats.join(",")
    }

    /// Whether ffprobe's `format_name` (a comma-separated list of names for one demuxer,
    /// e.g. `mov,mp4,m4a,3gp,3g2,mj2`) names an allowed demuxer.
    pub fn format_allowed(&self, format_name: &str) -> bool {
        format_name.split(',').any(|n| {
            self.allowed_formats
                .iter()
                .any(|a| a.eq_ignore_ascii_case(n))
        })
    }
}
