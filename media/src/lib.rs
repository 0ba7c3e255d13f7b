//! Fetch, probe and decode a video once per job: sampled RGB frames and 16 kHz mono audio.
//!
//! Layout:
//! - `types`: the decoded forms every analyzer reads (`Probe`, `Frames`, `Audio`) and `MediaError`.
//! - `config`: `MediaConfig`, the limits (size, timeouts, memory) and where downloads live.
//! - `media`: `Media`, one job's video; each step (fetch, probe, frames, audio) at most once,
//!   concurrent callers sharing it; every planned frame spec from one decode pass.
//! - `cache`: `MediaCache`, job id -> `Media` per worker process, LRU within a memory bound.
//! - `budget`: `DecodeBudget`, the decode memory shared by a worker's concurrent decodes.
//! - `fetch`, `guard`, `store`: local paths and downloads (SSRF guard, size limit, timeout)
//!   into a content-hash cache on disk.
//! - `probe`, `decode`, `process`: ffprobe/ffmpeg as subprocesses (argument vectors, stderr
//!   kept for the error, timeout, killed on drop) and what their failures mean.
//!
//! Invariants: nothing here panics or hangs on bad input; every failure is a `MediaError`
//! whose message names the problem. ffprobe/ffmpeg only ever open local files (a resolved
//! path under `local_roots`, or a download in the checked cache directory) through an allowed
//! demuxer, under process limits, after the probe passed the duration and size limits.
#![forbid(unsafe_code)]

mod budget;
mod cache;
mod config;
mod decode;
mod fetch;
mod guard;
mod media;
mod probe;
mod process;
mod store;
mod types;

pub use budget::{DecodeBudget, Reservation};
pub use cache::MediaCache;
pub use config::{
    DEFAULT_ALLOWED_FORMATS, DEFAULT_BUDGET_WAIT, DEFAULT_CACHE_MAX_BYTES, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DECODE_MEMORY_BYTES, DEFAULT_DECODE_TIMEOUT, DEFAULT_DOWNLOAD_GRACE,
    DEFAULT_FETCH_TIMEOUT, DEFAULT_FFMPEG_CPU_SECS, DEFAULT_FFMPEG_MEMORY_BYTES, DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DIMENSION, DEFAULT_MAX_DURATION, DEFAULT_MAX_JOBS, DEFAULT_MAX_REDIRECTS,
    DEFAULT_MIN_DOWNLOAD_RATE, DEFAULT_PROBE_TIMEOUT, HwDecode, MediaConfig,
};
pub use decode::hw_decode_disabled;
pub use guard::forbidden_reason;
pub use media::{FramePlanner, Media};
pub use probe::parse_probe_output;
pub use types::{AUDIO_SAMPLE_RATE, Audio, FrameSpec, Frames, MediaError, Probe};
