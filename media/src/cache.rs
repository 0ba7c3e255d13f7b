//! Per worker process: the media of recent jobs, so a job's analyzers share one fetch and one
//! decode. Least recently used jobs leave first, bounded by decoded memory and job count.
//!
//! Evicting only drops the cache's reference: analyzers still running keep their `Arc` and
//! the memory is freed when the last one finishes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::config::MediaConfig;
use crate::media::Media;

pub struct MediaCache {
    cfg: Arc<MediaConfig>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    clock: u64,
}

struct Entry {
    media: Arc<Media>,
    last_used: u64,
}

impl MediaCache {
    pub fn new(cfg: Arc<MediaConfig>) -> Self {
        Self {
            cfg,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The job's media, created (lazily, without I/O) on first use. A handle whose fetch or
    /// decode failed transiently is replaced, so a retried task tries again.
    pub fn get(&self, job_id: &str, source: &str) -> Arc<Media> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let reusable = inner
            .entries
            .get(job_id)
            .is_some_and(|e| e.media.source() == source && !e.media.has_transient_failure());
        if !reusable {
            let media = Media::new(source, self.cfg.clone());
            inner.entries.insert(
                job_id.to_string(),
                Entry {
                    media,
                    last_used: now,
                },
            );
        }
        let entry = inner.entries.get_mut(job_id).expect("inserted above");
        entry.last_used = now;
        let media = entry.media.clone();
        self.trim(&mut inner, job_id);
        media
    }

    /// Drops the job's media (the job is complete or cancelled).
    pub fn forget(&self, job_id: &str) {
        self.lock().entries.remove(job_id);
    }

    /// Jobs held now.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decoded bytes held by all cached jobs.
    pub fn decoded_bytes(&self) -> u64 {
        self.lock()
            .entries
            .values()
            .map(|e| e.media.decoded_bytes())
            .sum()
    }

    /// Evicts least recently used jobs until both bounds hold; call after large decodes to
    /// release memory early (every `get` does it too).
    pub fn trim_now(&self) {
        let mut inner = self.lock();
        self.trim(&mut inner, "");
    }

    fn trim(&self, inner: &mut Inner, keep: &str) {
        loop {
            let bytes: u64 = inner
                .entries
                .values()
                .map(|e| e.media.decoded_bytes())
                .sum();
            let over = inner.entries.len() > self.cfg.max_jobs.max(1)
                || bytes > self.cfg.decode_memory_bytes;
            if !over {
                return;
            }
            let oldest = inner
                .entries
                .iter()
                .filter(|(id, _)| id.as_str() != keep)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => {
                    tracing::debug!(job_id = %id, "media cache evicts job");
                    inner.entries.remove(&id);
                }
                None => return,
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves the map consistent (every
        // mutation is a single insert or remove), so the poison can be ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
