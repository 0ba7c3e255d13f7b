//! One job's video: fetched, probed and decoded lazily, each step at most once, shared by
//! every analyzer of the job that runs in this process.
//!
//! Frames: when the worker has told the handle which frame specs the job's analyzers will ask
//! for ([`Media::plan_frames`]), the first request decodes all of them in one ffmpeg pass; a
//! spec nobody announced gets a pass of its own.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::OnceCell;

use crate::budget::{DecodeBudget, Reservation};
use crate::config::MediaConfig;
use crate::decode::Planned;
use crate::probe::Probed;
use crate::types::{Audio, FrameSpec, Frames, MediaError, Probe};
use crate::{decode, fetch, probe};

/// Outcomes are cached whole, permanent errors included: eleven analyzers of a job over a
/// corrupt file get one ffprobe run and one clear error, not eleven runs. Transient errors
/// (network, timeouts, a full decode budget) are never cached: the next attempt really tries
/// again.
type Slot<T> = OnceCell<Result<Arc<T>, MediaError>>;

/// The frame specs a job's analyzers on this worker will ask for, given the probe (some
/// specs depend on the duration).
pub type FramePlanner = Arc<dyn Fn(&Probe) -> Vec<FrameSpec> + Send + Sync>;

pub struct Media {
    source: String,
    cfg: Arc<MediaConfig>,
    budget: Arc<DecodeBudget>,
    file: Slot<PathBuf>,
    probed: Slot<Probed>,
    frames: Mutex<HashMap<FrameSpec, Arc<Slot<Frames>>>>,
    plan: OnceLock<FramePlanner>,
    /// The planned pass, once it ran to a permanent outcome (its results are in `frames`).
    planned_pass: OnceCell<()>,
    audio: Slot<Audio>,
    /// Budget held for the decoded media this handle keeps.
    reservations: Mutex<Vec<Reservation>>,
    decoded_bytes: AtomicU64,
    passes: AtomicU32,
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Media")
            .field("source", &self.source)
            .field("decoded_bytes", &self.decoded_bytes())
            .field("decode_passes", &self.decode_passes())
            .finish_non_exhaustive()
    }
}

/// Runs `work` for an empty `cell`, storing its outcome unless it is an error a later attempt
/// may not see.
async fn once<T, F>(cell: &Slot<T>, work: F) -> Result<Arc<T>, MediaError>
where
    F: std::future::Future<Output = Result<T, MediaError>>,
{
    let stored = cell
        .get_or_try_init(|| async {
            match work.await {
                Err(e) if e.is_transient() || e.is_requeue() => Err(e),
                other => Ok(other.map(Arc::new)),
            }
        })
        .await?;
    stored.clone()
}

impl Media {
    /// A handle on `source` (path, `file://` or `http(s)://` URL) with a decode budget of its
    /// own (`cfg.decode_memory_bytes`). Does no I/O: nothing is fetched until an analyzer asks
    /// for something.
    pub fn new(source: &str, cfg: Arc<MediaConfig>) -> Arc<Media> {
        let budget = DecodeBudget::new(cfg.decode_memory_bytes, cfg.budget_wait);
        Self::with_budget(source, cfg, budget)
    }

    /// A handle whose decodes draw on a shared budget (a worker's [`crate::MediaCache`]).
    pub fn with_budget(
        source: &str,
        cfg: Arc<MediaConfig>,
        budget: Arc<DecodeBudget>,
    ) -> Arc<Media> {
        Arc::new(Media {
            source: source.to_string(),
            cfg,
            budget,
            file: OnceCell::new(),
            probed: OnceCell::new(),
            frames: Mutex::new(HashMap::new()),
            plan: OnceLock::new(),
            planned_pass: OnceCell::new(),
            audio: OnceCell::new(),
            reservations: Mutex::new(Vec::new()),
            decoded_bytes: AtomicU64::new(0),
            passes: AtomicU32::new(0),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Announces the frame specs the job's analyzers will ask for. The first call wins (every
    /// task of a job computes the same plan); false when a plan was set already.
    pub fn plan_frames(&self, planner: FramePlanner) -> bool {
        self.plan.set(planner).is_ok()
    }

    pub fn has_frame_plan(&self) -> bool {
        self.plan.get().is_some()
    }

    /// The local file: the source path itself (resolved), or the cached download of a URL.
    pub async fn path(&self) -> Result<PathBuf, MediaError> {
        // Boxed here and below: these futures are large (HTTP client, subprocess plumbing),
        // and nesting them by value overflows a test thread's stack in debug builds.
        once(&self.file, Box::pin(fetch::fetch(&self.source, &self.cfg)))
            .await
            .map(|p| p.as_ref().clone())
    }

    /// Duration, display size, rotation, frame rate and streams (one ffprobe per job).
    pub async fn probe(&self) -> Result<Arc<Probe>, MediaError> {
        Ok(Arc::new(self.probed().await?.probe.clone()))
    }

    async fn probed(&self) -> Result<Arc<Probed>, MediaError> {
        once(
            &self.probed,
            Box::pin(async {
                let path = self.path().await?;
                probe::probe_file(&path, &self.cfg).await
            }),
        )
        .await
    }

    fn slot(&self, spec: FrameSpec) -> Arc<Slot<Frames>> {
        let mut map = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(spec).or_default().clone()
    }

    /// Frames sampled as `spec` says. A planned spec comes from the job's one decode pass;
    /// concurrent callers wait for that pass and share its result.
    pub async fn frames(&self, spec: FrameSpec) -> Result<Arc<Frames>, MediaError> {
        let probed = self.probed().await?;
        if let Some(planner) = self.plan.get() {
            let mut specs = planner(&probed.probe);
            if specs.contains(&spec) {
                specs.sort_by_key(|s| (s.max_side, s.fps_milli));
                specs.dedup();
                self.run_planned_pass(&probed, &specs).await?;
            }
        }
        let slot = self.slot(spec);
        once(
            &slot,
            Box::pin(async {
                let planned = decode::plan(&probed, &[spec], &self.cfg);
                let mut results = self.pass(&probed, &planned).await?;
                results.pop().unwrap_or(Err(MediaError::NoVideoStream))
            }),
        )
        .await
    }

    /// The job's one pass over every planned spec not decoded yet; fills their slots.
    async fn run_planned_pass(
        &self,
        probed: &Probed,
        specs: &[FrameSpec],
    ) -> Result<(), MediaError> {
        self.planned_pass
            .get_or_try_init(|| async {
                let todo: Vec<FrameSpec> = specs
                    .iter()
                    .copied()
                    .filter(|s| self.slot(*s).get().is_none())
                    .collect();
                let planned = decode::plan(probed, &todo, &self.cfg);
                let total: u64 = planned.iter().map(|p| p.bytes).sum();
                if todo.len() > 1 && total > self.budget.total_bytes() {
                    // Together they cannot fit: each spec decodes on its own when asked.
                    tracing::warn!(
                        source = ?self.source, specs = todo.len(), bytes = total,
                        budget = self.budget.total_bytes(),
                        "the job's frame specs exceed the decode budget together; decoding them one at a time"
                    );
                    return Ok(());
                }
                match Box::pin(self.pass(probed, &planned)).await {
                    Ok(results) => {
                        for (p, r) in planned.iter().zip(results) {
                            let _ = self.slot(p.spec).set(r.map(Arc::new));
                        }
                        Ok(())
                    }
                    Err(e) if e.is_transient() || e.is_requeue() => Err(e),
                    Err(e) => {
                        for p in &planned {
                            let _ = self.slot(p.spec).set(Err(e.clone()));
                        }
                        Ok(())
                    }
                }
            })
            .await
            .map(|_| ())
    }

    /// One decode pass: reserve the budget for every output, decode, keep the reservation for
    /// as long as this handle keeps the frames.
    async fn pass(
        &self,
        probed: &Probed,
        planned: &[Planned],
    ) -> Result<Vec<Result<Frames, MediaError>>, MediaError> {
        if !probed.probe.has_video {
            return Err(MediaError::NoVideoStream);
        }
        decode::check_limits(probed, &self.cfg)?;
        let bytes: u64 = planned.iter().map(|p| p.bytes).sum();
        let reservation = self.budget.reserve(bytes).await?;
        let path = self.path().await?;
        self.passes.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let results = Box::pin(decode::decode_pass(&path, probed, planned, &self.cfg)).await?;
        let got: u64 = results.iter().flatten().map(|f| f.data.len() as u64).sum();
        self.decoded_bytes.fetch_add(got, Ordering::Relaxed);
        self.keep(reservation);
        tracing::info!(
            source = ?self.source, specs = planned.len(), bytes = got,
            elapsed_ms = started.elapsed().as_millis() as u64,
            nvdec = matches!(self.cfg.hw_decode, crate::HwDecode::Cuda { .. })
                && !decode::hw_decode_disabled(),
            "decoded frames in one pass"
        );
        Ok(results)
    }

    /// The audio track as 16 kHz mono f32; `Err(NoAudioTrack)` when there is none.
    pub async fn audio(&self) -> Result<Arc<Audio>, MediaError> {
        once(
            &self.audio,
            Box::pin(async {
                let probed = self.probed().await?;
                if !probed.probe.has_audio {
                    return Err(MediaError::NoAudioTrack);
                }
                decode::check_limits(&probed, &self.cfg)?;
                let reservation = self
                    .budget
                    .reserve(decode::audio_bytes(&probed, &self.cfg))
                    .await?;
                let path = self.path().await?;
                let audio = Box::pin(decode::decode_audio(&path, &probed, &self.cfg)).await?;
                self.decoded_bytes
                    .fetch_add(audio.samples.len() as u64 * 4, Ordering::Relaxed);
                self.keep(reservation);
                Ok(audio)
            }),
        )
        .await
    }

    fn keep(&self, r: Reservation) {
        self.reservations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r);
    }

    /// Bytes of decoded frames and audio this handle holds.
    pub fn decoded_bytes(&self) -> u64 {
        self.decoded_bytes.load(Ordering::Relaxed)
    }

    /// ffmpeg runs that decoded video for this handle (one per job when every spec was
    /// planned).
    pub fn decode_passes(&self) -> u32 {
        self.passes.load(Ordering::Relaxed)
    }
}
