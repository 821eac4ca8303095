//! How each (registry, repository, credential) authenticates, learned from its challenges, so a
//! rescan sends its cached token up front instead of collecting a 401.

use std::collections::HashMap;
use std::sync::Mutex;

use super::tokens::TokenKey;

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
