//! One job's video: fetched, probed and decoded lazily, each step at most once, shared by
//! every analyzer of the job that runs in this process.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::config::MediaConfig;
use crate::probe::Probed;
use crate::types::{Audio, FrameSpec, Frames, MediaError, Probe};
use crate::{decode, fetch, probe};

/// Outcomes are cached whole, errors included: eleven analyzers of a job over a corrupt file
/// get one ffprobe run and one clear error, not eleven runs. A transient error marks the
/// `Media` so that [`crate::MediaCache`] replaces it on the task's next attempt.
type Slot<T> = OnceCell<Result<Arc<T>, MediaError>>;

pub struct Media {
    source: String,
    cfg: Arc<MediaConfig>,
    file: Slot<PathBuf>,
    probed: Slot<Probed>,
    frames: Mutex<HashMap<FrameSpec, Arc<Slot<Frames>>>>,
    audio: Slot<Audio>,
    decoded_bytes: AtomicU64,
    transient_failure: AtomicBool,
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Media")
            .field("source", &self.source)
            .field("decoded_bytes", &self.decoded_bytes())
            .finish_non_exhaustive()
    }
}

impl Media {
    /// A handle on `source` (path, `file://` or `http(s)://` URL). Does no I/O: nothing is
    /// fetched until an analyzer asks for something.
    pub fn new(source: &str, cfg: Arc<MediaConfig>) -> Arc<Media> {
        Arc::new(Media {
            source: source.to_string(),
            cfg,
            file: OnceCell::new(),
            probed: OnceCell::new(),
            frames: Mutex::new(HashMap::new()),
            audio: OnceCell::new(),
            decoded_bytes: AtomicU64::new(0),
            transient_failure: AtomicBool::new(false),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The local file: the source path itself, or the cached download of a URL.
    pub async fn path(&self) -> Result<PathBuf, MediaError> {
        let cell = self
            .file
            .get_or_init(|| async {
                self.note(fetch::fetch(&self.source, &self.cfg).await)
                    .map(Arc::new)
            })
            .await;
        cell.clone().map(|p| p.as_ref().clone())
    }

    /// Duration, display size, rotation, frame rate and streams (one ffprobe per job).
    pub async fn probe(&self) -> Result<Arc<Probe>, MediaError> {
        Ok(Arc::new(self.probed().await?.probe.clone()))
    }

    async fn probed(&self) -> Result<Arc<Probed>, MediaError> {
        self.probed
            .get_or_init(|| async {
                let path = self.path().await?;
                self.note(probe::probe_file(&path, &self.cfg).await)
                    .map(Arc::new)
            })
            .await
            .clone()
    }

    /// Frames sampled as `spec` says. One ffmpeg run per distinct spec; concurrent callers
    /// with the same spec wait for that one run and share its result.
    pub async fn frames(&self, spec: FrameSpec) -> Result<Arc<Frames>, MediaError> {
        let slot = {
            let mut map = self.frames.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(spec).or_default().clone()
        };
        slot.get_or_init(|| async {
            let probed = self.probed().await?;
            let path = self.path().await?;
            let frames = decode::decode_frames(&path, &probed, spec, &self.cfg).await;
            let frames = self.note(frames)?;
            self.decoded_bytes
                .fetch_add(frames.data.len() as u64, Ordering::Relaxed);
            tracing::debug!(source = %self.source, ?spec, frames = frames.len(), "decoded frames");
            Ok(Arc::new(frames))
        })
        .await
        .clone()
    }

    /// The audio track as 16 kHz mono f32; `Err(NoAudioTrack)` when there is none.
    pub async fn audio(&self) -> Result<Arc<Audio>, MediaError> {
        self.audio
            .get_or_init(|| async {
                let probed = self.probed().await?;
                let path = self.path().await?;
                let audio = self.note(decode::decode_audio(&path, &probed, &self.cfg).await)?;
                self.decoded_bytes
                    .fetch_add(audio.samples.len() as u64 * 4, Ordering::Relaxed);
                Ok(Arc::new(audio))
            })
            .await
            .clone()
    }

    /// Bytes of decoded frames and audio this handle holds.
    pub fn decoded_bytes(&self) -> u64 {
        self.decoded_bytes.load(Ordering::Relaxed)
    }

    /// Whether a step failed in a way a later attempt may not (network, timeout); the cache
    /// then starts over with a fresh handle instead of replaying the error.
    pub fn has_transient_failure(&self) -> bool {
        self.transient_failure.load(Ordering::Relaxed)
    }

    fn note<T>(&self, result: Result<T, MediaError>) -> Result<T, MediaError> {
        if let Err(e) = &result
            && e.is_transient()
        {
            self.transient_failure.store(true, Ordering::Relaxed);
        }
        result
    }
}
