//! Which Registry objects this replica works on. The objects are split into a fixed number of
//! shards by a stable hash of `namespace/name` (FNV-1a with its standard offset, identical in
//! every replica and every release, unlike std's randomly seeded hasher); a replica works on the
//! shards whose Lease it holds (see `election.rs`).

use tokio::sync::watch;

pub struct Ownership {
    held: Vec<watch::Sender<bool>>,
}

impl Ownership {
    /// `count` shards, all held from the start (no leader election) or none.
    pub fn new(count: u32, all_held: bool) -> Self {
        Self {
            held: (0..count.max(1))
                .map(|_| watch::channel(all_held).0)
                .collect(),
        }
    }

    pub fn count(&self) -> u32 {
        self.held.len() as u32
    }

    pub fn shard_of(&self, namespace: &str, name: &str) -> u32 {
        shard_of(namespace, name, self.count())
    }

    /// While this replica holds the object's shard: a receiver that turns `false` the moment
    /// the shard is lost. `None` when the shard is not held.
    pub fn guard(&self, namespace: &str, name: &str) -> Option<watch::Receiver<bool>> {
        let rx = self.held[self.shard_of(namespace, name) as usize].subscribe();
        let held = *rx.borrow();
        held.then_some(rx)
    }

    pub fn is_held(&self, shard: u32) -> bool {
        *self.held[shard as usize].borrow()
    }

    /// Marks a shard held or lost; losing it cancels the work on its objects.
    pub fn set(&self, shard: u32, held: bool) {
        self.held[shard as usize].send_if_modified(|h| std::mem::replace(h, held) != held);
    }

    pub fn held_count(&self) -> usize {
        (0..self.count()).filter(|s| self.is_held(*s)).count()
    }

    /// Drops every shard (shutting down, or no longer leading).
    pub fn release_all(&self) {
        for s in 0..self.count() {
            self.set(s, false);
        }
    }
}

/// The shard of an object: FNV-1a (64 bit) of `namespace/name`, modulo `count`.
pub fn shard_of(namespace: &str, name: &str, count: u32) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for b in namespace.bytes().chain([b'/']).chain(name.bytes()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(PRIME);
    }
    (hash % u64::from(count.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fnv1a_and_spreads_evenly() {
        // Published FNV-1a 64 test vector: "a" → af63dc4c8601ec8c.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        h ^= u64::from(b'a');
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        assert_eq!(h, 0xaf63_dc4c_8601_ec8c);
        assert_eq!(shard_of("ns", "x", 1), 0);
        let mut counts = [0usize; 3];
        for i in 0..3000 {
            counts[shard_of("team", &format!("registry-{i}"), 3) as usize] += 1;
        }
        for c in counts {
            assert!((850..=1150).contains(&c), "{counts:?}");
        }
        // Pinned: replicas of different releases must agree on every object's shard.
        // (FNV-1a 64 of "team-a/registry" is 0xa334e5579087cbdc.)
        assert_eq!(shard_of("team-a", "registry", 1000), 788);
        assert_eq!(shard_of("team-a", "registry", 3), 0);
    }

    #[test]
    fn losing_a_shard_fires_its_guards() {
        let o = Ownership::new(2, true);
        let (ns, name) = ("n", "x");
        let mut g = o.guard(ns, name).unwrap();
        o.set(o.shard_of(ns, name), false);
        assert!(!*g.borrow_and_update());
        assert!(o.guard(ns, name).is_none());
    }
}
