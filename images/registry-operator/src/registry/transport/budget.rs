//! One memory budget for the response bodies all scans hold at once. Each body is bounded by
//! its own limit (a tag page, a manifest), but 16 scans × 64 requests × 4 MiB would still be
//! gigabytes; a body reserves its expected size here before it is read and returns it when the
//! reply is dropped, so huge answers wait for room instead of exhausting memory.
//!
//! The budget is shared fairly by tenants (see [`super::share`]): a namespace holds at most
//! `total / (active namespaces + 1)`, so one whose registry stalls its bodies (a
//! `Content-Length`, then nothing, until the idle timeout drops them) never holds what the
//! others' GETs need.

use super::share::{FairShare, Permit};

const UNIT: usize = 1024;

#[derive(Debug)]
pub struct BodyBudget {
    units: FairShare,
}

/// Room for one body; given back on drop.
#[derive(Debug)]
pub(crate) struct Reservation {
    _permit: Permit,
}

impl BodyBudget {
    /// Room for `bytes` of bodies at once (at least one unit).
    pub fn new(bytes: usize) -> Self {
        Self {
            units: FairShare::new(bytes.div_ceil(UNIT) as u64),
        }
    }

    /// Waits until `bytes` fit within `tenant`'s share (a body larger than the whole budget
    /// takes all of it).
    pub(crate) async fn reserve(&self, tenant: &str, bytes: usize) -> Reservation {
        let units = bytes.div_ceil(UNIT) as u64;
        Reservation {
            _permit: self.units.acquire(tenant, units).await,
        }
    }

    /// Bytes free right now.
    pub fn available(&self) -> usize {
        usize::try_from(self.units.available())
            .unwrap_or(usize::MAX)
            .saturating_mul(UNIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[tokio::test]
    async fn bodies_wait_for_room_and_give_it_back() {
        let budget = BodyBudget::new(8 * UNIT);
        let a = budget.reserve("t", 4 * UNIT).now_or_never().unwrap();
        let mut b = Box::pin(budget.reserve("t", 4 * UNIT));
        assert!(
            futures::poll!(&mut b).is_pending(),
            "past the tenant's half"
        );
        assert!(
            budget.reserve("t", UNIT).now_or_never().is_none(),
            "no overtaking within a tenant"
        );
        drop(a);
        let b = b.await;
        assert_eq!(budget.available(), 4 * UNIT);
        drop(b);
        // Larger than everything: takes it all rather than waiting forever.
        let all = budget.reserve("t", 100 * UNIT).now_or_never().unwrap();
        assert_eq!(budget.available(), 0);
        drop(all);
        assert_eq!(budget.available(), 8 * UNIT);
    }

    #[tokio::test]
    async fn one_tenants_stalled_bodies_leave_room_for_another() {
        let budget = BodyBudget::new(128 * UNIT);
        // Tenant a's registry stalls: its bodies pile up until a's share is held.
        let mut stalled = Vec::new();
        while let Some(r) = budget.reserve("a", 4 * UNIT).now_or_never() {
            stalled.push(r);
        }
        assert_eq!(stalled.len(), 16, "a holds half while alone");
        // b's bodies go through at once, up to b's own share.
        let b: Vec<_> = (0..10)
            .map(|_| {
                budget
                    .reserve("b", 4 * UNIT)
                    .now_or_never()
                    .expect("room for b")
            })
            .collect();
        assert!(budget.available() >= 4 * UNIT, "room for a third tenant");
        drop(b);
    }
}
