//! Per registry: which native listing API it has, and whether a guard disagreement turned it off.

use super::Lister;
use crate::registry::cache::BoundedCache;

/// Registries remembered, in all and per tenant; past that the least recently used is
/// forgotten (detection is cheap: one probe).
const LISTERS_BYTES: usize = 2 << 20;
const LISTERS_SHARE: usize = 256 << 10;
/// Why a registry's native API is off: kept longer, since forgetting it means trusting a
/// registry that lied again; the reason is a short message.
const OFF_BYTES: usize = 4 << 20;
const OFF_SHARE: usize = 512 << 10;
/// A reason is the scan core's own message around a registry's tag name: cut, not kept whole.
const MAX_REASON_BYTES: usize = 1024;

/// Per registry base URL: which native listing API it has, and whether a guard disagreement
/// turned it off (until the process restarts or the entry is evicted).
pub(crate) struct Listers {
    detected: BoundedCache<String, Lister>,
    off: BoundedCache<String, String>,
}

impl Default for Listers {
    fn default() -> Self {
        Self {
            detected: BoundedCache::new(LISTERS_BYTES, LISTERS_SHARE),
            off: BoundedCache::new(OFF_BYTES, OFF_SHARE),
        }
    }
}

impl Listers {
    pub fn detected(&self, base: &str) -> Option<Lister> {
        self.detected.get(&base.to_string())
    }

    pub fn detected_as(&self, tenant: &str, base: &str, lister: Lister) {
        self.detected
            .put(tenant, base.to_string(), lister, base.len());
    }

    /// Why the native API of this registry is off, if it is.
    pub fn off(&self, base: &str) -> Option<String> {
        self.off.get(&base.to_string())
    }

    pub fn turn_off(&self, tenant: &str, base: &str, mut reason: String) {
        if reason.len() > MAX_REASON_BYTES {
            let mut cut = MAX_REASON_BYTES;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
            reason.push('…');
        }
        let bytes = base.len() + reason.len();
        self.off.put(tenant, base.to_string(), reason, bytes);
    }

    pub fn bytes(&self) -> usize {
        self.detected.bytes() + self.off.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_registries_forgets_only_the_flooders_own() {
        let listers = Listers::default();
        listers.detected_as("victim", "https://harbor.example/", Lister::Harbor);
        listers.turn_off("victim", "https://quay.example/", "q".repeat(1 << 20));
        for i in 0..50_000 {
            let base = format!("https://r{i}.example/");
            listers.detected_as("attacker", &base, Lister::Harbor);
            listers.turn_off("attacker", &base, format!("disagreed {i}"));
        }
        assert!(listers.bytes() <= LISTERS_SHARE + OFF_SHARE + (64 << 10));
        assert_eq!(
            listers.detected("https://harbor.example/"),
            Some(Lister::Harbor)
        );
        let reason = listers.off("https://quay.example/").unwrap();
        assert!(reason.len() <= MAX_REASON_BYTES + 3, "the reason is cut");
        assert_eq!(
            listers.detected("https://r0.example/"),
            None,
            "its oldest went"
        );
        assert!(listers.detected("https://r49999.example/").is_some());
    }
}
