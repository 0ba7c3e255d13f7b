//! Fetch, probe and decode a video once per job: sampled RGB frames and 16 kHz mono audio.
//!
//! Layout:
//! - `types`: the decoded forms every analyzer reads (`Probe`, `Frames`, `Audio`) and `MediaError`.
//! - `config`: `MediaConfig`, the limits (size, timeouts, memory) and where downloads live.
//! - `media`: `Media`, one job's video; each step (fetch, probe, each frame spec, audio) at
//!   most once, concurrent callers sharing it.
//! - `cache`: `MediaCache`, job id -> `Media` per worker process, LRU within a memory bound.
//! - `fetch`, `guard`, `store`: local paths and downloads (SSRF guard, size limit, timeout)
//!   into a content-hash cache on disk.
//! - `probe`, `decode`, `process`: ffprobe/ffmpeg as subprocesses (argument vectors, stderr
//!   kept for the error, timeout, killed on drop) and what their failures mean.
//!
//! Invariant: nothing here panics or hangs on bad input; every failure is a `MediaError`
//! whose message names the problem.
#![forbid(unsafe_code)]

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

pub use cache::MediaCache;
pub use config::{
    DEFAULT_CACHE_MAX_BYTES, DEFAULT_CONNECT_TIMEOUT, DEFAULT_DECODE_MEMORY_BYTES,
    DEFAULT_DECODE_TIMEOUT, DEFAULT_FETCH_TIMEOUT, DEFAULT_MAX_BYTES, DEFAULT_MAX_JOBS,
    DEFAULT_MAX_REDIRECTS, DEFAULT_PROBE_TIMEOUT, MediaConfig,
};
pub use guard::forbidden_reason;
pub use media::Media;
pub use types::{AUDIO_SAMPLE_RATE, Audio, FrameSpec, Frames, MediaError, Probe};
