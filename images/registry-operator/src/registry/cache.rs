//! One bounded cache for everything the operator keeps between scans (tokens, auth modes,
//! host gates, native listers, the TLS client pool, per-object snapshots).
//!
//! Bounded in bytes, not entries: an entry's weight is what it holds. Full, it evicts the
//! least recently used entries one at a time — never everything. And fair: every entry is
//! charged to the tenant (namespace) that put it; no tenant holds more than `share` bytes (it
//! evicts its own entries first), and when the whole cache is full the entry evicted is the
//! least recently used one of the tenant holding the most. A tenant within its fair share of
//! the total is therefore never evicted by another one's flood.
//!
//! No crate fits as is: `lru`/`quick_cache`/`moka` bound one cache, not each owner's part of
//! it, and a second index per owner on top of them is this file again.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::Mutex;

/// What every entry costs beyond its key and value (map slots, order index, bookkeeping).
pub(crate) const ENTRY_OVERHEAD: usize = 96;

pub(crate) struct BoundedCache<K, V> {
    inner: Mutex<Inner<K, V>>,
    max_bytes: usize,
    share: usize,
}

struct Inner<K, V> {
    entries: HashMap<K, Slot<V>>,
    tenants: HashMap<Arc<str>, Tenant<K>>,
    bytes: usize,
    /// Use counter: a larger tick is more recent.
    tick: u64,
}

struct Slot<V> {
    value: V,
    bytes: usize,
    tenant: Arc<str>,
    tick: u64,
}

struct Tenant<K> {
    bytes: usize,
    /// Tick → key, least recently used first.
    order: BTreeMap<u64, K>,
}

impl<K: Eq + Hash + Clone, V> BoundedCache<K, V> {
    /// At most `max_bytes` in all, at most `share` bytes per tenant (`share ≤ max_bytes`).
    pub fn new(max_bytes: usize, share: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                tenants: HashMap::new(),
                bytes: 0,
                tick: 0,
            }),
            max_bytes,
            share: share.min(max_bytes),
        }
    }

    /// Runs `f` on the entry for `key` (marking it used).
    pub fn with<R>(&self, key: &K, f: impl FnOnce(&V) -> R) -> Option<R> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        inner.tick = inner.tick.wrapping_add(1);
        let tick = inner.tick;
        let slot = inner.entries.get_mut(key)?;
        if let Some(t) = inner.tenants.get_mut(&slot.tenant)
            && let Some(k) = t.order.remove(&slot.tick)
        {
            t.order.insert(tick, k);
        }
        slot.tick = tick;
        Some(f(&slot.value))
    }

    /// Puts `value` under `key` for `tenant`, charged `bytes` (plus [`ENTRY_OVERHEAD`]).
    /// Returns false, and keeps nothing, when the entry alone is more than a tenant's share.
    pub fn put(&self, tenant: &str, key: K, value: V, bytes: usize) -> bool {
        let bytes = bytes.saturating_add(ENTRY_OVERHEAD);
        let mut inner = self.inner.lock();
        inner.take(&key);
        if bytes > self.share {
            return false;
        }
        // Its own entries first: a tenant over its share makes room from itself.
        while inner
            .tenants
            .get(tenant)
            .is_some_and(|t| t.bytes.saturating_add(bytes) > self.share)
        {
            if !inner.evict_from(tenant) {
                break;
            }
        }
        // Then the biggest tenant's least recently used entry, one at a time.
        while inner.bytes.saturating_add(bytes) > self.max_bytes {
            let Some(biggest) = inner
                .tenants
                .iter()
                .max_by_key(|(_, t)| t.bytes)
                .map(|(name, _)| name.clone())
            else {
                break;
            };
            if !inner.evict_from(&biggest) {
                break;
            }
        }
        inner.tick = inner.tick.wrapping_add(1);
        let tick = inner.tick;
        let tenant: Arc<str> = match inner.tenants.get_key_value(tenant) {
            Some((name, _)) => name.clone(),
            None => Arc::from(tenant),
        };
        let t = inner
            .tenants
            .entry(tenant.clone())
            .or_insert_with(|| Tenant {
                bytes: 0,
                order: BTreeMap::new(),
            });
        t.bytes = t.bytes.saturating_add(bytes);
        t.order.insert(tick, key.clone());
        inner.bytes = inner.bytes.saturating_add(bytes);
        inner.entries.insert(
            key,
            Slot {
                value,
                bytes,
                tenant,
                tick,
            },
        );
        true
    }

    /// Removes `key` when `pred` says so of its value; returns whether it did.
    pub fn remove_if(&self, key: &K, pred: impl FnOnce(&V) -> bool) -> bool {
        let mut inner = self.inner.lock();
        if inner.entries.get(key).is_some_and(|s| pred(&s.value)) {
            inner.take(key);
            true
        } else {
            false
        }
    }

    pub fn remove(&self, key: &K) -> Option<V> {
        self.inner.lock().take(key)
    }

    /// Runs `f` holding the cache's lock (the fault-injection build panics there).
    #[cfg(feature = "fault-injection")]
    pub fn while_locked<R>(&self, f: impl FnOnce() -> R) -> R {
        let _held = self.inner.lock();
        f()
    }

    /// Bytes held in all.
    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }

    /// Bytes held for `tenant`.
    #[cfg(test)]
    pub fn tenant_bytes(&self, tenant: &str) -> usize {
        self.inner.lock().tenants.get(tenant).map_or(0, |t| t.bytes)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }
}

impl<K: Eq + Hash + Clone, V: Clone> BoundedCache<K, V> {
    pub fn get(&self, key: &K) -> Option<V> {
        self.with(key, V::clone)
    }
}

impl<K: Eq + Hash + Clone, V> Inner<K, V> {
    fn take(&mut self, key: &K) -> Option<V> {
        let slot = self.entries.remove(key)?;
        self.bytes = self.bytes.saturating_sub(slot.bytes);
        if let Some(t) = self.tenants.get_mut(&slot.tenant) {
            t.order.remove(&slot.tick);
            t.bytes = t.bytes.saturating_sub(slot.bytes);
            if t.order.is_empty() {
                self.tenants.remove(&slot.tenant);
            }
        }
        Some(slot.value)
    }

    /// Evicts `tenant`'s least recently used entry; false when it has none.
    fn evict_from(&mut self, tenant: &str) -> bool {
        let Some(key) = self
            .tenants
            .get(tenant)
            .and_then(|t| t.order.first_key_value())
            .map(|(_, k)| k.clone())
        else {
            return false;
        };
        self.take(&key).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: usize = 100 - ENTRY_OVERHEAD;

    #[test]
    fn the_byte_bound_holds_and_the_least_recently_used_goes_first() {
        let cache = BoundedCache::<u32, u32>::new(1000, 1000);
        for i in 0..10 {
            assert!(cache.put("t", i, i, E));
        }
        assert_eq!(cache.bytes(), 1000);
        assert_eq!(
            cache.get(&0),
            Some(0),
            "0 is used again, so 1 is the oldest"
        );
        assert!(cache.put("t", 10, 10, E));
        assert_eq!(cache.bytes(), 1000);
        assert_eq!(cache.get(&1), None, "the least recently used went");
        assert_eq!(cache.get(&0), Some(0));
        assert_eq!(cache.len(), 10, "one at a time, not everything");
        assert!(cache.put("t", 11, 11, 3 * 100 - ENTRY_OVERHEAD));
        assert!(cache.bytes() <= 1000);
        assert_eq!(cache.len(), 8, "a heavy entry evicts as many as it needs");
        assert!(
            !cache.put("t", 12, 12, 2000),
            "larger than the cache: refused"
        );
        assert!(cache.remove_if(&0, |v| *v == 0));
        assert_eq!(cache.remove(&11), Some(11));
        assert_eq!(cache.bytes(), 600);
        assert!(
            cache.put("t", 10, 10, E),
            "a replaced entry is not charged twice"
        );
        assert_eq!(cache.bytes(), 600);
    }

    #[test]
    fn a_flooding_tenant_evicts_only_itself_within_its_share() {
        let cache = BoundedCache::<String, ()>::new(1000, 300);
        for i in 0..3 {
            cache.put("victim", format!("v{i}"), (), E);
        }
        for i in 0..10_000 {
            cache.put("attacker", format!("a{i}"), (), E);
            assert!(cache.tenant_bytes("attacker") <= 300);
        }
        assert_eq!(cache.tenant_bytes("victim"), 300);
        for i in 0..3 {
            assert!(cache.get(&format!("v{i}")).is_some(), "v{i} survived");
        }
        assert!(
            !cache.put("attacker", "big".into(), (), 400),
            "over its share"
        );
    }

    #[test]
    fn a_full_cache_evicts_from_the_biggest_tenant() {
        // Shares add up to more than the cache: many tenants at once must still fit, and the
        // one holding the most gives way.
        let cache = BoundedCache::<String, ()>::new(1000, 600);
        for i in 0..2 {
            cache.put("small", format!("s{i}"), (), E);
        }
        for i in 0..6 {
            cache.put("big", format!("b{i}"), (), E);
        }
        for i in 0..4 {
            cache.put("third", format!("t{i}"), (), E);
            assert!(cache.bytes() <= 1000);
        }
        assert_eq!(
            cache.tenant_bytes("small"),
            200,
            "below its fair part: untouched"
        );
        assert_eq!(cache.tenant_bytes("third"), 400);
        assert_eq!(cache.tenant_bytes("big"), 400);
        assert!(cache.get(&"b0".to_string()).is_none() && cache.get(&"b1".to_string()).is_none());
    }
}
