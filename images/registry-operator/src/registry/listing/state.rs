//! Per registry: which native listing API it has; per (registry, repository): whether a guard
//! disagreement turned it off.

use super::Lister;
use crate::registry::cache::BoundedCache;

/// Registries remembered, in all and per tenant; past that the least recently used is
/// forgotten (detection is cheap: one probe).
const LISTERS_BYTES: usize = 2 << 20;
const LISTERS_SHARE: usize = 256 << 10;
/// Repositories whose native listing is off, in all and per tenant. Past that the one looked
/// up least recently is forgotten (its next scan trusts the guard again), one at a time: a
/// tenant that makes many repositories disagree forgets only its own, and a repository scanned
/// regularly stays recent.
const OFF_BYTES: usize = 4 << 20;
const OFF_SHARE: usize = 512 << 10;

/// Registry base URL and repository.
type RepoKey = (String, String);

/// Per registry base URL, which native listing API it has; per (registry, repository),
/// whether a guard disagreement turned it off (until the process restarts or the entry is
/// evicted). Nothing else of a disagreement is kept: a tag name in it is the business of the
/// scan that listed it.
pub(crate) struct Listers {
    detected: BoundedCache<String, Lister>,
    off: BoundedCache<RepoKey, ()>,
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

    /// Whether a disagreement turned the native API off for this repository of this registry.
    pub fn is_off(&self, base: &str, repository: &str) -> bool {
        self.off
            .with(&(base.to_string(), repository.to_string()), |()| ())
            .is_some()
    }

    pub fn turn_off(&self, tenant: &str, base: &str, repository: &str) {
        let bytes = base.len() + repository.len();
        self.off.put(
            tenant,
            (base.to_string(), repository.to_string()),
            (),
            bytes,
        );
    }

    pub fn bytes(&self) -> usize {
        self.detected.bytes() + self.off.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_repositories_are_bounded_and_forgotten_least_recent_first() {
        let listers = Listers::default();
        listers.turn_off("victim", "https://r", "victim");
        listers.turn_off("evil", "https://r", "other");
        for i in 0..50_000 {
            listers.turn_off("evil", "https://evil", &format!("repo{i}"));
        }
        assert!(listers.bytes() <= OFF_SHARE + (64 << 10));
        assert!(
            listers.is_off("https://r", "victim"),
            "another tenant's flood"
        );
        assert!(
            !listers.is_off("https://r", "other"),
            "least recent went first"
        );
        assert!(listers.is_off("https://evil", "repo49999"));
        assert!(!listers.is_off("https://r", "never"));
        assert!(!listers.is_off("https://evil", "victim"), "per registry");
    }

    #[test]
    fn a_flood_of_registries_forgets_only_the_flooders_own() {
        let listers = Listers::default();
        listers.detected_as("victim", "https://harbor.example/", Lister::Harbor);
        for i in 0..50_000 {
            let base = format!("https://r{i}.example/");
            listers.detected_as("attacker", &base, Lister::Harbor);
        }
        assert!(listers.bytes() <= LISTERS_SHARE + (64 << 10));
        assert_eq!(
            listers.detected("https://harbor.example/"),
            Some(Lister::Harbor)
        );
        assert_eq!(
            listers.detected("https://r0.example/"),
            None,
            "its oldest went"
        );
        assert!(listers.detected("https://r49999.example/").is_some());
    }
}
