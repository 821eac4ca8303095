//! One memory budget for the response bodies all scans hold at once. Each body is bounded by
//! its own limit (a tag page, a manifest), but 16 scans × 64 requests × 4 MiB would still be
//! gigabytes; a body reserves its expected size here before it is read and returns it when the
//! reply is dropped, so a tenant's huge answers wait for room instead of exhausting memory.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const UNIT: usize = 1024;

#[derive(Debug)]
pub struct BodyBudget {
    units: Arc<Semaphore>,
    total: u32,
}

/// Room for one body; given back on drop.
#[derive(Debug)]
pub(crate) struct Reservation {
    _permit: OwnedSemaphorePermit,
}

impl BodyBudget {
    /// Room for `bytes` of bodies at once (at least one unit).
    pub fn new(bytes: usize) -> Self {
        let total = bytes
            .div_ceil(UNIT)
            .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize)) as u32;
        Self {
            units: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// Waits until `bytes` fit (a body larger than the whole budget takes all of it).
    pub(crate) async fn reserve(&self, bytes: usize) -> Reservation {
        let units = bytes.div_ceil(UNIT).clamp(1, self.total as usize) as u32;
        let permit = self
            .units
            .clone()
            .acquire_many_owned(units)
            .await
            .expect("the body budget is never closed");
        Reservation { _permit: permit }
    }

    /// Bytes free right now.
    pub fn available(&self) -> usize {
        self.units.available_permits() * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[tokio::test]
    async fn bodies_wait_for_room_and_give_it_back() {
        let budget = BodyBudget::new(8 * UNIT);
        let a = budget.reserve(5 * UNIT).now_or_never().unwrap();
        let mut b = Box::pin(budget.reserve(4 * UNIT));
        assert!(futures::poll!(&mut b).is_pending(), "only 3 KiB left");
        assert!(
            budget.reserve(UNIT).now_or_never().is_none(),
            "no overtaking"
        );
        drop(a);
        let b = b.await;
        assert_eq!(budget.available(), 4 * UNIT);
        drop(b);
        // Larger than everything: takes it all rather than waiting forever.
        let all = budget.reserve(100 * UNIT).now_or_never().unwrap();
        assert_eq!(budget.available(), 0);
        drop(all);
        assert_eq!(budget.available(), 8 * UNIT);
    }
}
