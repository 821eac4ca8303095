//! Per registry: which native listing API it has; per (registry, repository): whether a guard
//! disagreement turned it off.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Lister;

/// Registries remembered at most; past that the map starts over (detection is cheap).
const MAX_LISTERS: usize = 10_000;

/// Repositories whose native listing is off, at most. Past that the one looked up least
/// recently is forgotten (its next scan trusts the guard again), one per new entry: a tenant
/// that makes many repositories disagree cannot wipe out the others, and a repository scanned
/// regularly stays recent.
const MAX_OFF: usize = 10_000;

/// Registry base URL and repository.
type RepoKey = (String, String);

/// Per registry base URL, which native listing API it has; per (registry, repository),
/// whether a guard disagreement turned it off (until the process restarts). Nothing else of
/// a disagreement is kept: a tag name in it is the business of the scan that listed it.
#[derive(Default)]
pub(crate) struct Listers {
    detected: Mutex<HashMap<String, Lister>>,
    off: Mutex<OffRepos>,
}

#[derive(Default)]
struct OffRepos {
    /// The tick each entry was last looked up at.
    entries: HashMap<RepoKey, u64>,
    tick: u64,
}

impl OffRepos {
    fn touch(&mut self, key: &RepoKey) -> bool {
        self.tick = self.tick.wrapping_add(1);
        match self.entries.get_mut(key) {
            Some(t) => {
                *t = self.tick;
                true
            }
            None => false,
        }
    }

    fn insert(&mut self, key: RepoKey) {
        if self.touch(&key) {
            return;
        }
        if self.entries.len() >= MAX_OFF {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, self.tick);
    }
}

impl Listers {
    pub fn detected(&self, base: &str) -> Option<Lister> {
        self.detected
            .lock()
            .expect("listers poisoned")
            .get(base)
            .copied()
    }

    pub fn detected_as(&self, base: &str, lister: Lister) {
        let mut m = self.detected.lock().expect("listers poisoned");
        if m.len() >= MAX_LISTERS && !m.contains_key(base) {
            m.clear();
        }
        m.insert(base.to_string(), lister);
    }

    /// Whether a disagreement turned the native API off for this repository of this registry.
    pub fn is_off(&self, base: &str, repository: &str) -> bool {
        self.off
            .lock()
            .expect("listers poisoned")
            .touch(&(base.to_string(), repository.to_string()))
    }

    pub fn turn_off(&self, base: &str, repository: &str) {
        self.off
            .lock()
            .expect("listers poisoned")
            .insert((base.to_string(), repository.to_string()));
    }

    #[cfg(test)]
    fn off_len(&self) -> usize {
        self.off.lock().expect("listers poisoned").entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_repositories_are_bounded_and_forgotten_least_recent_first() {
        let listers = Listers::default();
        listers.turn_off("https://r", "victim");
        listers.turn_off("https://r", "other");
        for i in 0..MAX_OFF + 5 {
            listers.turn_off("https://evil", &format!("repo{i}"));
            // The victim is scanned now and then; its entry stays recent.
            if i % 1000 == 0 {
                assert!(listers.is_off("https://r", "victim"));
            }
        }
        assert!(listers.off_len() <= MAX_OFF);
        assert!(listers.is_off("https://r", "victim"));
        assert!(
            !listers.is_off("https://r", "other"),
            "least recent went first"
        );
        assert!(listers.is_off("https://evil", &format!("repo{}", MAX_OFF + 4)));
        assert!(!listers.is_off("https://r", "never"));
        assert!(!listers.is_off("https://evil", "victim"), "per registry");
    }
}
