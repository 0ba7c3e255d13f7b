//! The decoded forms of a video that analyzers read. This is a contract between the media
//! pipeline, the worker and every analyzer family: change it only together with them.

use serde::{Deserialize, Serialize};

/// Sample rate of [`Audio`]: 16 kHz mono, what speech models expect.
pub const AUDIO_SAMPLE_RATE: u32 = 16_000;

/// What ffprobe says about a file, after rotation metadata is applied to width/height.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub duration_s: f64,
    /// Display width (after rotation).
    pub width: u32,
    /// Display height (after rotation).
    pub height: u32,
    /// Rotation from the container/side data, degrees (0, 90, 180, 270).
    pub rotation: i32,
    pub fps: f64,
    pub has_video: bool,
    pub has_audio: bool,
    pub video_codec: Option<String>,
    pub bit_rate: Option<u64>,
    pub size_bytes: u64,
}

/// How frames are sampled. Two analyzers asking for the same spec share one decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FrameSpec {
    /// Frames per second to sample, in millihertz (2000 = 2 fps); `None` = every frame.
    pub fps_milli: Option<u32>,
    /// Longest side of the scaled frame in pixels, aspect ratio kept (even dimensions).
    pub max_side: u32,
}

impl FrameSpec {
    pub const fn every_frame(max_side: u32) -> Self {
        Self {
            fps_milli: None,
            max_side,
        }
    }

    pub const fn at_fps(fps_milli: u32, max_side: u32) -> Self {
        Self {
            fps_milli: Some(fps_milli),
            max_side,
        }
    }
}

/// Sampled frames, packed RGB24, row-major, all of one size.
#[derive(Debug, Clone)]
pub struct Frames {
    pub spec: FrameSpec,
    pub width: u32,
    pub height: u32,
    /// Presentation time of each frame in seconds.
    pub times: Vec<f64>,
    /// `times.len() * width * height * 3` bytes.
    pub data: Vec<u8>,
}

impl Frames {
    pub fn len(&self) -> usize {
        self.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    pub fn frame_bytes(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }

    /// The RGB bytes of frame `i`.
    pub fn frame(&self, i: usize) -> &[u8] {
        let n = self.frame_bytes();
        &self.data[i * n..(i + 1) * n]
    }

    pub fn iter(&self) -> impl Iterator<Item = (f64, &[u8])> {
        self.times
            .iter()
            .copied()
            .zip(self.data.chunks_exact(self.frame_bytes().max(1)))
    }
}

/// The audio track, 16 kHz mono f32 in [-1, 1].
#[derive(Debug, Clone)]
pub struct Audio {
    pub sample_rate: u32,
    pub samples: Vec<f32>,
}

impl Audio {
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / self.sample_rate as f64
    }
}

/// Why a video could not be used. The message is what the analyzer's `failed`/`skipped`
/// outcome shows to the user, so it names the problem and, where there is one, the fix.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MediaError {
    #[error("not a video: {0}")]
    NotAVideo(String),
    #[error("no audio track")]
    NoAudioTrack,
    #[error("no video stream")]
    NoVideoStream,
    #[error("truncated or corrupt media: {0}")]
    Truncated(String),
    #[error("unreachable URL {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("too large: {size} bytes exceeds the limit of {limit} bytes (media.max_bytes)")]
    TooLarge { size: u64, limit: u64 },
    #[error(
        "refused address {0}: private, loopback, link-local or metadata targets are not allowed (media.allow_hosts)"
    )]
    Refused(String),
    /// Missing, unreadable, not a regular file, or outside `media.local_roots`: one answer
    /// for all, so a submitter learns nothing about files it may not read.
    #[error("not found or not allowed: {0}")]
    NotFound(String),
    #[error("unsupported source {0:?}: give a local path or an http(s) URL")]
    UnsupportedSource(String),
    #[error(
        "decoding would take {bytes} bytes of memory, over the limit of {limit} bytes \
         (media.decode_memory_bytes): ask for fewer frames per second or a smaller max_side"
    )]
    DecodeTooLarge { bytes: u64, limit: u64 },
    /// Over a limit checked before or during decoding (duration, picture size, ffmpeg's own
    /// memory or CPU limit): the message names the setting.
    #[error("over a limit: {0}")]
    Limit(String),
    /// The worker's decode memory budget stayed full: the task goes back to the queue.
    #[error("busy: {0}")]
    Busy(String),
    /// The worker's own setup is unsafe or broken (e.g. a download cache others can write).
    #[error("worker setup: {0}")]
    Setup(String),
    #[error("ffmpeg/ffprobe could not run: {0} (install ffmpeg)")]
    Tool(String),
    #[error("i/o error: {0}")]
    Io(String),
}

impl MediaError {
    /// Whether the same request may work later (network hiccup), so the task should be retried.
    pub fn is_transient(&self) -> bool {
        matches!(self, MediaError::Unreachable { .. } | MediaError::Io(_))
    }

    /// Whether the machine, not the input, is short of something: try elsewhere or later
    /// without counting an attempt.
    pub fn is_requeue(&self) -> bool {
        matches!(self, MediaError::Busy(_))
    }

    /// Whether this outcome is a `skipped` (the analyzer has nothing to work on) rather than
    /// a `failed`.
    pub fn is_skip(&self) -> bool {
        matches!(self, MediaError::NoAudioTrack | MediaError::NoVideoStream)
    }
}
