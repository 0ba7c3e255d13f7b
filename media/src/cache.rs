//! Per worker process: the media of recent jobs, so a job's analyzers share one fetch and one
//! decode, and one decode memory budget for all of them. Least recently used jobs leave first,
//! bounded by decoded memory and job count; when a decode finds the budget full, jobs no task
//! is using are dropped at once.
//!
//! Evicting only drops the cache's reference: analyzers still running keep their `Arc` and
//! the memory (and its share of the budget) is freed when the last one finishes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crate::budget::DecodeBudget;
use crate::config::MediaConfig;
use crate::media::Media;

pub struct MediaCache {
    cfg: Arc<MediaConfig>,
    budget: Arc<DecodeBudget>,
    inner: Arc<Mutex<Inner>>,
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
        let budget = DecodeBudget::new(cfg.decode_memory_bytes, cfg.budget_wait);
        let inner: Arc<Mutex<Inner>> = Arc::default();
        let weak: Weak<Mutex<Inner>> = Arc::downgrade(&inner);
        budget.set_reclaim(Box::new(move || {
            if let Some(inner) = weak.upgrade() {
                let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
                let before = inner.entries.len();
                // Only the cache holds these: no task of theirs is running.
                inner.entries.retain(|_, e| Arc::strong_count(&e.media) > 1);
                let dropped = before - inner.entries.len();
                if dropped > 0 {
                    tracing::debug!(dropped, "decode budget full: idle jobs' media dropped");
                }
            }
        }));
        Self { cfg, budget, inner }
    }

    /// The budget every job's decodes draw on.
    pub fn budget(&self) -> &Arc<DecodeBudget> {
        &self.budget
    }

    /// The job's media, created (lazily, without I/O) on first use.
    pub fn get(&self, job_id: &str, source: &str) -> Arc<Media> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let reusable = inner
            .entries
            .get(job_id)
            .is_some_and(|e| e.media.source() == source);
        if !reusable {
            let media = Media::with_budget(source, self.cfg.clone(), self.budget.clone());
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
