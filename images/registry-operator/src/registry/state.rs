//! What outlives one scan: how each (registry, repository, credential) authenticates, its
//! bearer tokens, and one rate-limit gate per registry host. The CLI keeps it for one scan; the
//! controller shares one across every scan so a rescan sends its cached token up front.

use std::collections::HashMap;
use std::sync::Mutex;

use super::auth::{TokenCache, TokenKey};
use super::listing::Lister;
use super::ratelimit::HostGates;

/// How a repository authenticates, learned from the registry's challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AuthMode {
    Anonymous,
    Basic,
    Bearer(TokenKey),
}

/// Registry base URL, repository, credential fingerprint (empty when anonymous).
pub(crate) type AuthKey = (String, String, String);

/// Entries past this are dropped wholesale: a rescan then pays one 401 to learn its mode again.
const MAX_AUTH_MODES: usize = 10_000;

#[derive(Default)]
pub(crate) struct AuthModes {
    modes: Mutex<HashMap<AuthKey, AuthMode>>,
}

impl AuthModes {
    pub fn get(&self, key: &AuthKey) -> Option<AuthMode> {
        self.modes
            .lock()
            .expect("auth modes poisoned")
            .get(key)
            .cloned()
    }

    pub fn put(&self, key: AuthKey, mode: AuthMode) {
        let mut modes = self.modes.lock().expect("auth modes poisoned");
        if modes.len() >= MAX_AUTH_MODES && !modes.contains_key(&key) {
            modes.clear();
        }
        modes.insert(key, mode);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.modes.lock().expect("auth modes poisoned").len()
    }
}

/// Registries remembered at most; past that the map starts over (detection is cheap).
const MAX_LISTERS: usize = 10_000;

/// Per registry base URL: which native listing API it has, and whether a guard disagreement
/// turned it off (until the process restarts).
#[derive(Default)]
pub(crate) struct Listers {
    detected: Mutex<HashMap<String, Lister>>,
    off: Mutex<HashMap<String, String>>,
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

    /// Why the native API of this registry is off, if it is.
    pub fn off(&self, base: &str) -> Option<String> {
        self.off
            .lock()
            .expect("listers poisoned")
            .get(base)
            .cloned()
    }

    /// Never forgotten wholesale: a registry that lied stays on the distribution API.
    pub fn turn_off(&self, base: &str, reason: String) {
        let mut m = self.off.lock().expect("listers poisoned");
        if m.len() < MAX_LISTERS || m.contains_key(base) {
            m.insert(base.to_string(), reason);
        }
    }
}

/// State shared by scans: build one per process (or per controller) and hand it to every
/// [`super::RegistryClient`] with [`super::RegistryClient::with_state`].
#[derive(Default)]
pub struct RegistryState {
    pub(crate) tokens: TokenCache,
    pub(crate) auth: AuthModes,
    pub(crate) gates: HostGates,
    pub(crate) listers: Listers,
}

impl RegistryState {
    /// `requests_per_second`: an optional ceiling on requests to any one registry host, shared
    /// by every scan using this state.
    pub fn new(requests_per_second: Option<f64>) -> Self {
        Self {
            gates: HostGates::new(requests_per_second),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_modes_are_bounded() {
        let modes = AuthModes::default();
        for i in 0..MAX_AUTH_MODES + 5 {
            modes.put(
                ("https://r".into(), format!("repo{i}"), String::new()),
                AuthMode::Basic,
            );
        }
        assert!(modes.len() <= MAX_AUTH_MODES);
        assert_eq!(
            modes.get(&(
                "https://r".into(),
                format!("repo{}", MAX_AUTH_MODES + 4),
                String::new()
            )),
            Some(AuthMode::Basic)
        );
    }
}
