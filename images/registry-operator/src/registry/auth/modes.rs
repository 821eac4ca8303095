//! How each (registry, repository, credential) authenticates, learned from its challenges, so a
//! rescan sends its cached token up front instead of collecting a 401.

use super::tokens::TokenKey;
use crate::registry::cache::BoundedCache;

/// How a repository authenticates, learned from the registry's challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AuthMode {
    Anonymous,
    Basic,
    Bearer(TokenKey),
}

/// Registry base URL, repository, credential fingerprint (empty when anonymous).
pub(crate) type AuthKey = (String, String, String);

/// All learned modes, and one tenant's part (a mode is ~100 bytes + its key): past its share a
/// tenant forgets its own least recently used, and a rescan pays one 401 to learn it again.
const AUTH_MODES_BYTES: usize = 8 << 20;
const AUTH_MODES_SHARE: usize = 1 << 20;

pub(crate) struct AuthModes {
    modes: BoundedCache<AuthKey, AuthMode>,
}

impl Default for AuthModes {
    fn default() -> Self {
        Self {
            modes: BoundedCache::new(AUTH_MODES_BYTES, AUTH_MODES_SHARE),
        }
    }
}

/// A test build's panic inside this cache's lock, once, for the repository
/// [`crate::registry::FAULT_INJECTION_REPOSITORY`]: shows that a panic is contained and that
/// the lock does not stay poisoned. Compiled only with the `fault-injection` feature.
#[cfg(feature = "fault-injection")]
fn injected_fault(modes: &BoundedCache<AuthKey, AuthMode>, key: &AuthKey) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static FIRED: AtomicBool = AtomicBool::new(false);
    if key.1 == crate::registry::FAULT_INJECTION_REPOSITORY && !FIRED.swap(true, Ordering::SeqCst) {
        modes.while_locked(|| {
            panic!("injected panic (fault-injection build) while holding the auth-mode cache lock")
        });
    }
}

impl AuthModes {
    pub fn get(&self, key: &AuthKey) -> Option<AuthMode> {
        #[cfg(feature = "fault-injection")]
        injected_fault(&self.modes, key);
        self.modes.get(key)
    }

    pub fn put(&self, tenant: &str, key: AuthKey, mode: AuthMode) {
        let bytes = key.0.len()
            + key.1.len()
            + key.2.len()
            + match &mode {
                AuthMode::Bearer(k) => {
                    k.realm.len() + k.service.len() + k.scope.len() + k.credential.len()
                }
                _ => 0,
            };
        self.modes.put(tenant, key, mode, bytes);
    }

    pub fn bytes(&self) -> usize {
        self.modes.bytes()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.modes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_modes_are_bounded() {
        let modes = AuthModes::default();
        let victim = ("https://v".to_string(), "app".to_string(), String::new());
        modes.put("victim", victim.clone(), AuthMode::Basic);
        for i in 0..20_000 {
            modes.put(
                "attacker",
                ("https://r".into(), format!("repo{i}"), String::new()),
                AuthMode::Basic,
            );
        }
        assert!(modes.bytes() <= AUTH_MODES_SHARE + 1024);
        assert_eq!(
            modes.get(&victim),
            Some(AuthMode::Basic),
            "another tenant's flood"
        );
        assert!(modes.len() > 1_000, "evicted one at a time");
        assert_eq!(
            modes.get(&("https://r".into(), "repo19999".into(), String::new())),
            Some(AuthMode::Basic)
        );
    }
}
