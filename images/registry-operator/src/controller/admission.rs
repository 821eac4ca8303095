//! Who scans next. A fixed number of scan slots is shared by every namespace: each namespace
//! may hold at most its share of them, and a freed slot goes to the namespaces with waiting
//! scans in turn (round-robin), first come first served within one namespace. So a tenant
//! with thousands of objects, or with registries that hang until the scan timeout, delays the
//! others by at most one scan.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

use tokio::sync::oneshot;

/// The bookkeeping, without any waiting: which namespace starts next. `W` is whatever wakes a
/// waiter.
#[derive(Debug)]
pub(crate) struct Fair<W> {
    slots: usize,
    per_namespace: usize,
    running: usize,
    by_namespace: HashMap<String, usize>,
    queues: HashMap<String, VecDeque<W>>,
    /// Namespaces with waiters, in the order they get their next turn.
    turns: VecDeque<String>,
}

impl<W> Fair<W> {
    pub fn new(slots: usize, per_namespace: usize) -> Self {
        Self {
            slots: slots.max(1),
            per_namespace: per_namespace.clamp(1, slots.max(1)),
            running: 0,
            by_namespace: HashMap::new(),
            queues: HashMap::new(),
            turns: VecDeque::new(),
        }
    }

    fn has_room(&self, ns: &str) -> bool {
        self.running < self.slots
            && self.by_namespace.get(ns).copied().unwrap_or(0) < self.per_namespace
    }

    fn start(&mut self, ns: &str) {
        self.running += 1;
        *self.by_namespace.entry(ns.to_string()).or_default() += 1;
    }

    /// Starts at once when there is room and nobody of `ns` waits already; otherwise returns
    /// the waker to be queued with [`Fair::enqueue`].
    pub fn try_start(&mut self, ns: &str, waker: W) -> Result<(), W> {
        let queued = self.queues.get(ns).is_some_and(|q| !q.is_empty());
        if !queued && self.has_room(ns) {
            self.start(ns);
            Ok(())
        } else {
            Err(waker)
        }
    }

    pub fn enqueue(&mut self, ns: &str, waker: W) {
        let queue = self.queues.entry(ns.to_string()).or_default();
        if queue.is_empty() {
            self.turns.push_back(ns.to_string());
        }
        queue.push_back(waker);
    }

    /// Takes a waiter out of the queue (it gave up); false when it is not queued any more.
    pub fn withdraw(&mut self, ns: &str, is_it: impl Fn(&W) -> bool) -> bool {
        let Some(queue) = self.queues.get_mut(ns) else {
            return false;
        };
        let Some(at) = queue.iter().position(is_it) else {
            return false;
        };
        queue.remove(at);
        if queue.is_empty() {
            self.queues.remove(ns);
            self.turns.retain(|t| t != ns);
        }
        true
    }

    /// A scan of `ns` finished.
    pub fn finish(&mut self, ns: &str) {
        self.running = self.running.saturating_sub(1);
        if let Some(n) = self.by_namespace.get_mut(ns) {
            *n -= 1;
            if *n == 0 {
                self.by_namespace.remove(ns);
            }
        }
    }

    /// The next waiter that may start now, counted as running; `None` when no slot is free or
    /// every waiting namespace is at its share. The namespace with the fewest running scans
    /// goes first; among equals, the one whose turn came longest ago.
    pub fn next(&mut self) -> Option<(String, W)> {
        if self.running >= self.slots {
            return None;
        }
        let at = self
            .turns
            .iter()
            .enumerate()
            .filter(|(_, ns)| self.has_room(ns))
            .min_by_key(|(i, ns)| (self.by_namespace.get(*ns).copied().unwrap_or(0), *i))
            .map(|(i, _)| i)?;
        let ns = self.turns.remove(at)?;
        let queue = self.queues.get_mut(&ns)?;
        let waker = queue.pop_front()?;
        if queue.is_empty() {
            self.queues.remove(&ns);
        } else {
            self.turns.push_back(ns.clone());
        }
        self.start(&ns);
        Some((ns, waker))
    }

    /// Every waker still queued (on shutdown).
    pub fn drain(&mut self) -> Vec<W> {
        self.turns.clear();
        self.queues.drain().flat_map(|(_, q)| q).collect()
    }
}

type Waker = (u64, oneshot::Sender<()>);

struct State {
    fair: Fair<Waker>,
    next_id: u64,
    closed: bool,
}

/// Scan admission shared by all reconciles.
#[derive(Clone)]
pub struct Admission {
    state: Arc<Mutex<State>>,
}

/// Shutting down: no more scans start.
#[derive(Debug)]
pub struct Closed;

/// A running scan's slot; dropping it hands the slot on.
pub struct Slot {
    state: Arc<Mutex<State>>,
    namespace: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.state.lock();
        state.fair.finish(&self.namespace);
        hand_on(&mut state);
    }
}

/// Wakes waiters while slots are free. A waiter that vanished gives its slot straight back.
fn hand_on(state: &mut State) {
    while let Some((ns, (_, tx))) = state.fair.next() {
        if tx.send(()).is_err() {
            state.fair.finish(&ns);
        }
    }
}

/// Removes a waiter whose reconcile was dropped while it waited (or returns its slot, if it
/// was handed one in the meantime).
struct Waiting {
    state: Arc<Mutex<State>>,
    namespace: String,
    id: u64,
    rx: oneshot::Receiver<()>,
    done: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = self.state.lock();
        let id = self.id;
        if !state.fair.withdraw(&self.namespace, |(w, _)| *w == id) && self.rx.try_recv().is_ok() {
            state.fair.finish(&self.namespace);
            hand_on(&mut state);
        }
    }
}

impl Admission {
    /// `slots` scans at once, at most `per_namespace` of them from one namespace.
    pub fn new(slots: usize, per_namespace: usize) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                fair: Fair::new(slots, per_namespace),
                next_id: 0,
                closed: false,
            })),
        }
    }

    /// Waits for a slot for a scan of an object in `namespace`.
    pub async fn acquire(&self, namespace: &str) -> Result<Slot, Closed> {
        let slot = || Slot {
            state: self.state.clone(),
            namespace: namespace.to_string(),
        };
        let mut waiting = {
            let mut state = self.state.lock();
            if state.closed {
                return Err(Closed);
            }
            let id = state.next_id;
            state.next_id += 1;
            let (tx, rx) = oneshot::channel();
            match state.fair.try_start(namespace, (id, tx)) {
                Ok(()) => return Ok(slot()),
                Err(waker) => state.fair.enqueue(namespace, waker),
            }
            Waiting {
                state: self.state.clone(),
                namespace: namespace.to_string(),
                id,
                rx,
                done: false,
            }
        };
        let woken = (&mut waiting.rx).await;
        waiting.done = true;
        match woken {
            Ok(()) => Ok(slot()),
            Err(_) => Err(Closed),
        }
    }

    /// Wakes every waiter with [`Closed`]; running scans keep their slots.
    pub fn close(&self) {
        let mut state = self.state.lock();
        state.closed = true;
        drop(state.fair.drain());
    }
}

/// The default share of one namespace: half the slots, so that other tenants always find
/// room even while one tenant's scans hang until their timeout.
pub fn default_per_namespace(slots: usize) -> usize {
    slots.div_ceil(2).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn arrive(fair: &mut Fair<&'static str>, started: &mut Vec<&'static str>, w: &'static str) {
        let ns = &w[..1];
        match fair.try_start(ns, w) {
            Ok(()) => started.push(w),
            Err(w) => fair.enqueue(ns, w),
        }
    }

    fn next(fair: &mut Fair<&'static str>) -> Option<&'static str> {
        fair.next().map(|(ns, w)| {
            assert_eq!(ns, &w[..1]);
            w
        })
    }

    #[test]
    fn a_busy_namespace_gets_its_share_and_others_take_turns() {
        let mut fair: Fair<&'static str> = Fair::new(4, 2);
        let mut started = Vec::new();
        // Namespace a asks for six scans, then b for three and c for one.
        for w in ["a1", "a2", "a3", "a4", "a5", "a6", "b1", "b2", "b3", "c1"] {
            arrive(&mut fair, &mut started, w);
        }
        // a holds its share and leaves room: b takes the other two slots at once.
        assert_eq!(started, ["a1", "a2", "b1", "b2"]);
        assert_eq!(next(&mut fair), None, "every slot is taken");

        // A freed slot goes to the namespace with the fewest running scans.
        fair.finish("b");
        assert_eq!(next(&mut fair), Some("c1"));
        assert_eq!(next(&mut fair), None);
        // a and b both run one: a waited longer.
        fair.finish("a");
        assert_eq!(next(&mut fair), Some("a3"));
        fair.finish("c");
        assert_eq!(next(&mut fair), Some("b3"), "a is at its share");
        // Only a waits, at its share: a slot stays free rather than go to a third a scan.
        fair.finish("b");
        assert_eq!(next(&mut fair), None);
        fair.finish("a");
        assert_eq!(next(&mut fair), Some("a4"));
        assert_eq!(next(&mut fair), None);
        // Within a namespace, first come first served; newcomers queue behind waiters.
        arrive(&mut fair, &mut started, "a7");
        fair.finish("a");
        fair.finish("a");
        assert_eq!(next(&mut fair), Some("a5"));
        assert_eq!(next(&mut fair), Some("a6"));
        assert_eq!(next(&mut fair), None);
        assert!(fair.withdraw("a", |w| *w == "a7"));
        assert!(!fair.withdraw("a", |w| *w == "a7"));
        assert!(fair.drain().is_empty());
    }

    #[test]
    fn shares_are_at_least_one_and_at_most_every_slot() {
        let mut started = Vec::new();
        let mut fair: Fair<&'static str> = Fair::new(2, 0);
        for w in ["a1", "a2", "b1"] {
            arrive(&mut fair, &mut started, w);
        }
        assert_eq!(started, ["a1", "b1"]);
        let mut started = Vec::new();
        let mut fair: Fair<&'static str> = Fair::new(2, 10);
        for w in ["a1", "a2", "a3"] {
            arrive(&mut fair, &mut started, w);
        }
        assert_eq!(started, ["a1", "a2"]);
        assert_eq!(default_per_namespace(16), 8);
        assert_eq!(default_per_namespace(1), 1);
    }

    #[tokio::test]
    async fn slots_are_handed_on_and_never_leak() {
        let admission = Admission::new(2, 1);
        let a1 = admission.acquire("a").now_or_never().unwrap().unwrap();
        let b1 = admission.acquire("b").now_or_never().unwrap().unwrap();
        // a waits for its own slot, not b's.
        let mut a2 = Box::pin(admission.acquire("a"));
        assert!(futures::poll!(&mut a2).is_pending());
        drop(b1);
        assert!(futures::poll!(&mut a2).is_pending(), "a is at its share");
        // A waiter that gives up leaves no trace.
        let mut a3 = Box::pin(admission.acquire("a"));
        assert!(futures::poll!(&mut a3).is_pending());
        drop(a3);
        drop(a1);
        let a2 = a2.await.unwrap();
        // Handed a slot but dropped before it looked: the slot comes back.
        let mut a4 = Box::pin(admission.acquire("a"));
        assert!(futures::poll!(&mut a4).is_pending());
        drop(a2);
        drop(a4);
        let a5 = admission.acquire("a").now_or_never().unwrap().unwrap();
        let b2 = admission.acquire("b").now_or_never().unwrap().unwrap();
        // Shutdown wakes waiters with Closed and refuses newcomers.
        let mut c1 = Box::pin(admission.acquire("c"));
        assert!(futures::poll!(&mut c1).is_pending());
        admission.close();
        assert!(c1.await.is_err());
        assert!(admission.acquire("c").now_or_never().unwrap().is_err());
        drop((a5, b2));
    }
}
