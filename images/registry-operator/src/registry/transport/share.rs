//! A counted resource shared fairly by tenants (namespaces): the body budget's bytes and the
//! parse pool's threads.
//!
//! The rule is one line: with `n` tenants holding or waiting, a tenant may hold at most
//! `total / (n + 1)`. Whoever is active always leaves one share free, so a tenant that comes
//! along finds room for its own share at once, however long the others hold theirs (a stalled
//! body, a slow parse). A tenant holding nothing may always take one unit of work of any size
//! (a body larger than its share) once that much is free, so big bodies still go through, one
//! at a time per tenant. Within a tenant requests are served in arrival order; across tenants,
//! whoever fits goes first — one tenant's queue never holds up another's.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

#[derive(Debug)]
pub(crate) struct FairShare {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    total: u64,
    state: Mutex<State>,
    /// Woken on every release, arrival and departure: each waiter checks its own turn.
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    free: u64,
    tenants: HashMap<String, Tenant>,
    next_ticket: u64,
}

#[derive(Debug, Default)]
struct Tenant {
    held: u64,
    /// Tickets of this tenant's waiters, oldest first.
    queue: VecDeque<u64>,
}

/// Units taken from a [`FairShare`]; given back on drop.
#[derive(Debug)]
pub(crate) struct Permit {
    inner: Arc<Inner>,
    tenant: String,
    units: u64,
}

impl Inner {
    /// Nothing is ever left half-done under the lock, so a poisoned one is still consistent.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn forget_if_idle(&mut self, tenant: &str) {
        if self
            .tenants
            .get(tenant)
            .is_some_and(|t| t.held == 0 && t.queue.is_empty())
        {
            self.tenants.remove(tenant);
        }
    }
}

impl FairShare {
    /// `total` units (at least one).
    pub fn new(total: u64) -> Self {
        let total = total.max(1);
        Self {
            inner: Arc::new(Inner {
                total,
                state: Mutex::new(State {
                    free: total,
                    ..State::default()
                }),
                changed: Notify::new(),
            }),
        }
    }

    /// Waits until `tenant` may take `units` (at most the total).
    pub async fn acquire(&self, tenant: &str, units: u64) -> Permit {
        let units = units.clamp(1, self.inner.total);
        let ticket = {
            let mut state = self.inner.state();
            let ticket = state.next_ticket;
            state.next_ticket = state.next_ticket.wrapping_add(1);
            state
                .tenants
                .entry(tenant.to_string())
                .or_default()
                .queue
                .push_back(ticket);
            ticket
        };
        // A new tenant lowers everyone's share; nobody needs waking for that, but a waiter
        // that is dropped must leave the line (the guard does).
        let mut waiting = Waiting {
            inner: &self.inner,
            tenant,
            ticket,
            served: false,
        };
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.try_take(tenant, ticket, units) {
                waiting.served = true;
                // The next of this tenant's line may fit as well.
                self.inner.changed.notify_waiters();
                return Permit {
                    inner: self.inner.clone(),
                    tenant: tenant.to_string(),
                    units,
                };
            }
            notified.await;
        }
    }

    fn try_take(&self, tenant: &str, ticket: u64, units: u64) -> bool {
        let mut state = self.inner.state();
        let active = state.tenants.len() as u64;
        let share = (self.inner.total / active.saturating_add(1)).max(1);
        let free = state.free;
        let Some(t) = state.tenants.get_mut(tenant) else {
            return false;
        };
        let first = t.queue.front() == Some(&ticket);
        let within_share = t.held == 0 || t.held.saturating_add(units) <= share;
        if !(first && within_share && free >= units) {
            return false;
        }
        t.queue.pop_front();
        t.held = t.held.saturating_add(units);
        state.free -= units;
        true
    }

    /// Units free right now.
    pub fn available(&self) -> u64 {
        self.inner.state().free
    }

    /// What `tenant` holds right now.
    #[cfg(test)]
    pub fn held_by(&self, tenant: &str) -> u64 {
        self.inner.state().tenants.get(tenant).map_or(0, |t| t.held)
    }
}

/// A waiter's place in its tenant's line, given up if the wait is abandoned (a deadline).
struct Waiting<'w> {
    inner: &'w Inner,
    tenant: &'w str,
    ticket: u64,
    served: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.served {
            return;
        }
        {
            let mut state = self.inner.state();
            if let Some(t) = state.tenants.get_mut(self.tenant) {
                t.queue.retain(|&x| x != self.ticket);
            }
            state.forget_if_idle(self.tenant);
        }
        self.inner.changed.notify_waiters();
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        {
            let mut state = self.inner.state();
            state.free = state.free.saturating_add(self.units).min(self.inner.total);
            if let Some(t) = state.tenants.get_mut(&self.tenant) {
                t.held = t.held.saturating_sub(self.units);
            }
            state.forget_if_idle(&self.tenant);
        }
        self.inner.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[tokio::test]
    async fn a_tenant_leaves_room_for_one_more() {
        let share = FairShare::new(12);
        // Alone, "a" may hold half: 12 / (1 + 1).
        let a1 = share.acquire("a", 6).now_or_never().unwrap();
        let mut a2 = Box::pin(share.acquire("a", 1));
        assert!(futures::poll!(&mut a2).is_pending(), "a is at its share");
        // "b" finds the other half at once; with two tenants each may hold 12 / 3 = 4.
        let b1 = share.acquire("b", 4).now_or_never().unwrap();
        let mut b2 = Box::pin(share.acquire("b", 1));
        assert!(futures::poll!(&mut b2).is_pending(), "b is at its share");
        // "c" still finds room: 2 units are free, its share is 12 / 4 = 3.
        let c1 = share.acquire("c", 2).now_or_never().unwrap();
        assert_eq!(share.available(), 0);
        drop(a1);
        // a's 6 are back: a (holding nothing) and b (at 4 of a share of 3) — a goes.
        let a2 = a2.await;
        assert_eq!(share.held_by("a"), 1);
        assert!(futures::poll!(&mut b2).is_pending(), "b is over its share");
        drop((a2, b1, c1));
        b2.await;
        assert_eq!(share.held_by("a"), 0);
    }

    #[tokio::test]
    async fn one_tenants_line_does_not_hold_up_another() {
        let share = FairShare::new(8);
        let a1 = share.acquire("a", 4).now_or_never().unwrap();
        // a's next waits (at its share) and so does everything a asks for after it.
        let mut a2 = Box::pin(share.acquire("a", 4));
        assert!(futures::poll!(&mut a2).is_pending());
        let mut a3 = Box::pin(share.acquire("a", 1));
        assert!(
            futures::poll!(&mut a3).is_pending(),
            "no overtaking within a"
        );
        // b is not behind a's line.
        let b = share.acquire("b", 2).now_or_never().unwrap();
        drop((a1, b));
        a2.await;
        a3.await;
    }

    #[tokio::test]
    async fn big_bodies_go_one_at_a_time_and_abandoned_waits_leave_the_line() {
        let share = FairShare::new(8);
        // Larger than a's share (4) and than the total: all of it, since a holds nothing.
        let all = share.acquire("a", 100).now_or_never().unwrap();
        assert_eq!(share.available(), 0);
        let mut b = Box::pin(share.acquire("b", 1));
        assert!(futures::poll!(&mut b).is_pending());
        drop(b);
        drop(all);
        assert_eq!(share.available(), 8);
        assert_eq!(share.inner.state().tenants.len(), 0, "nobody left behind");
        let mut a = Box::pin(share.acquire("a", 8));
        assert!(futures::poll!(&mut a).is_ready());
    }
}
