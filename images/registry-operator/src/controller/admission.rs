//! Admission of scans: a bounded number run at once, admitted first come, first served.
//!
//! kube-runtime's own concurrency limit picks due objects from a set, which starves some objects
//! when more are due than can run; this queue does not. Everything that costs the API server or a
//! registry (Secret reads, the scan, the status write) happens while holding a slot, so a
//! startup with thousands of objects never bursts.

use tokio::sync::{Semaphore, SemaphorePermit};

pub struct Admission {
    slots: Semaphore,
}

/// Held while one Registry is being worked on; dropping it frees the slot.
pub struct Slot<'a> {
    _permit: SemaphorePermit<'a>,
}

impl Admission {
    pub fn new(slots: usize) -> Self {
        Self {
            slots: Semaphore::new(slots.max(1)),
        }
    }

    /// Waits for a free slot; `None` once admission is closed (shutting down).
    pub async fn admit(&self, _namespace: &str) -> Option<Slot<'_>> {
        let permit = self.slots.acquire().await.ok()?;
        Some(Slot { _permit: permit })
    }

    /// Lets everything that waits for a slot return at once, so shutdown does not wait for
    /// every queued scan.
    pub fn close(&self) {
        self.slots.close();
    }
}
