//! Registry credentials: the one place the password is held, and the checks that keep it
//! out of every message.

use std::fmt;

use base64::Engine;
use sha2::{Digest, Sha256};

/// Username and password for one scan. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    /// For Docker Hub's token endpoint, which takes the credentials as JSON.
    pub(crate) fn password(&self) -> &str {
        &self.password
    }

    pub(crate) fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    /// Identifies the credential in cache keys without holding the secret itself.
    pub(crate) fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.username.as_bytes());
        h.update([0]);
        h.update(self.password.as_bytes());
        hex::encode(&h.finalize()[..16])
    }

    /// True when `text` contains the password in any form a registry might echo (plain, the
    /// base64 of a Basic header, percent-encoded), so callers can scrub anything shown to users.
    pub(crate) fn leaks_into(&self, text: &str) -> bool {
        if self.password.is_empty() {
            return false;
        }
        let basic = self.basic_header();
        let encoded = basic.trim_start_matches("Basic ");
        let escaped: String =
            url::form_urlencoded::byte_serialize(self.password.as_bytes()).collect();
        text.contains(&self.password) || text.contains(encoded) || text.contains(&escaped)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaks_cover_basic_and_escaped_forms() {
        let c = Credentials::new("alice", "p@ss word");
        let basic = c.basic_header();
        assert!(c.leaks_into(&format!("echo: {}", basic.trim_start_matches("Basic "))));
        assert!(c.leaks_into("password=p%40ss+word"));
        assert!(c.leaks_into("p@ss word"));
        assert!(!c.leaks_into("nothing here"));
    }

    #[test]
    fn debug_redacts_password() {
        let c = Credentials::new("alice", "s3cr3t");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert_ne!(
            c.fingerprint(),
            Credentials::new("alice", "other").fingerprint()
        );
    }
}
