//! Which shards this replica holds right now. A replica works on an object only while it
//! holds the shard the object's spec hashes to (see `placement.rs`; never the label, which
//! anyone who can edit the object can write); losing a shard fires the guards of its work.

use tokio::sync::watch;

use super::placement;
use crate::api::RegistrySpec;

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
        // ok: built from a u32 count.
        self.held.len() as u32
    }

    /// The shard of an object with this spec.
    pub fn shard_of(&self, spec: &RegistrySpec) -> u32 {
        placement::shard_of_bucket(placement::bucket_of_spec(spec), self.count())
    }

    /// Whether this replica works on an object with this spec now.
    pub fn holds(&self, spec: &RegistrySpec) -> bool {
        self.is_held(self.shard_of(spec))
    }

    /// While this replica holds the object's shard: a receiver that turns `false` the moment
    /// the shard is lost. `None` when the shard is not held.
    pub fn guard(&self, spec: &RegistrySpec) -> Option<watch::Receiver<bool>> {
        let rx = self.held[self.shard_of(spec) as usize].subscribe();
        let held = *rx.borrow();
        held.then_some(rx)
    }

    pub fn is_held(&self, shard: u32) -> bool {
        self.held.get(shard as usize).is_some_and(|h| *h.borrow())
    }

    /// Marks a shard held or lost; losing it cancels the work on its objects.
    pub fn set(&self, shard: u32, held: bool) {
        if let Some(h) = self.held.get(shard as usize) {
            h.send_if_modified(|h| std::mem::replace(h, held) != held);
        }
    }

    /// The shards held now, in order.
    pub fn held(&self) -> Vec<u32> {
        (0..self.count()).filter(|s| self.is_held(*s)).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(repository: &str) -> RegistrySpec {
        serde_json::from_value(
            serde_json::json!({"url": "r.example.com", "repository": repository}),
        )
        .unwrap()
    }

    #[test]
    fn losing_a_shard_fires_its_guards() {
        let o = Ownership::new(2, true);
        let s = spec("team/app");
        let mut g = o.guard(&s).unwrap();
        o.set(o.shard_of(&s), false);
        assert!(!*g.borrow_and_update());
        assert!(o.guard(&s).is_none());
        assert!(!o.holds(&s));
        assert_eq!(o.held(), vec![1 - o.shard_of(&s)]);
    }
}
