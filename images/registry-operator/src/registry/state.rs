//! What outlives one scan: how each (registry, repository, credential) authenticates, its
//! bearer tokens, and one rate-limit gate per registry host. The CLI keeps it for one scan; the
//! controller shares one across every scan so a rescan sends its cached token up front.

use std::collections::HashMap;
use std::sync::Mutex;

use super::auth::{TokenCache, TokenKey};
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

/// State shared by scans: build one per process (or per controller) and hand it to every
/// [`super::RegistryClient`] with [`super::RegistryClient::with_state`].
#[derive(Default)]
pub struct RegistryState {
    pub(crate) tokens: TokenCache,
    pub(crate) auth: AuthModes,
    pub(crate) gates: HostGates,
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
