//! The decode memory budget of one worker: every decode reserves the bytes its output may
//! take before it starts, and the reservation lives as long as the decoded media it produced
//! (until the job's `Media` is dropped). Concurrent decodes of different jobs therefore share
//! one bound, instead of each being bounded on its own.
//!
//! When the budget is full, the cache is asked to evict jobs nobody is using, then the decode
//! waits for room up to `media.budget_wait`; past that it gives up with [`MediaError::Busy`]
//! and the task goes back to the queue.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::types::MediaError;

/// Reservations are counted in KiB, so a `u32` permit count covers 4 TiB.
const UNIT: u64 = 1024;

type Reclaim = Box<dyn Fn() + Send + Sync>;

pub struct DecodeBudget {
    sem: Arc<Semaphore>,
    total_units: u32,
    wait: Duration,
    reclaim: Mutex<Option<Reclaim>>,
}

impl std::fmt::Debug for DecodeBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodeBudget")
            .field("total_bytes", &self.total_bytes())
            .field("free_bytes", &self.free_bytes())
            .finish()
    }
}

/// Bytes reserved from a [`DecodeBudget`]; released on drop.
#[derive(Debug)]
pub struct Reservation {
    _permit: Option<OwnedSemaphorePermit>,
    pub bytes: u64,
}

impl DecodeBudget {
    pub fn new(total_bytes: u64, wait: Duration) -> Arc<Self> {
        let total_units = (total_bytes / UNIT).min(u64::from(u32::MAX)) as u32;
        Arc::new(Self {
            sem: Arc::new(Semaphore::new(total_units as usize)),
            total_units,
            wait,
            reclaim: Mutex::new(None),
        })
    }

    pub fn total_bytes(&self) -> u64 {
        u64::from(self.total_units) * UNIT
    }

    pub fn free_bytes(&self) -> u64 {
        self.sem.available_permits() as u64 * UNIT
    }

    /// Called when a reservation does not fit at once (the cache drops idle jobs).
    pub(crate) fn set_reclaim(&self, reclaim: Reclaim) {
        *self.reclaim.lock().unwrap_or_else(|e| e.into_inner()) = Some(reclaim);
    }

    /// Reserves `bytes`, waiting for room. More than the whole budget can never fit: that is
    /// [`MediaError::DecodeTooLarge`] at once.
    pub async fn reserve(&self, bytes: u64) -> Result<Reservation, MediaError> {
        let units = bytes.div_ceil(UNIT);
        if units > u64::from(self.total_units) {
            return Err(MediaError::DecodeTooLarge {
                bytes,
                limit: self.total_bytes(),
            });
        }
        let units = units as u32;
        if units == 0 {
            return Ok(Reservation {
                _permit: None,
                bytes,
            });
        }
        if let Ok(p) = self.sem.clone().try_acquire_many_owned(units) {
            return Ok(reserved(p, bytes));
        }
        if let Some(reclaim) = self
            .reclaim
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            reclaim();
        }
        match tokio::time::timeout(self.wait, self.sem.clone().acquire_many_owned(units)).await {
            Ok(Ok(p)) => Ok(reserved(p, bytes)),
            Ok(Err(_)) => Err(MediaError::Busy("the decode budget was closed".into())),
            Err(_) => Err(MediaError::Busy(format!(
                "no room for {bytes} bytes of decoded media within {} s: the worker's decode \
                 memory budget of {} bytes (media.decode_memory_bytes) is held by other jobs",
                self.wait.as_secs(),
                self.total_bytes()
            ))),
        }
    }
}

fn reserved(p: OwnedSemaphorePermit, bytes: u64) -> Reservation {
    Reservation {
        _permit: Some(p),
        bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_share_one_bound_and_free_on_drop() {
        let b = DecodeBudget::new(10 * UNIT, Duration::from_millis(50));
        let a = b.reserve(6 * UNIT).await.unwrap();
        assert!(matches!(
            b.reserve(6 * UNIT).await,
            Err(MediaError::Busy(_))
        ));
        assert!(matches!(
            b.reserve(11 * UNIT).await,
            Err(MediaError::DecodeTooLarge { .. })
        ));
        drop(a);
        assert!(b.reserve(6 * UNIT).await.is_ok());
    }
}
