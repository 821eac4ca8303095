//! What makes two scans the same conversation with a registry: scans of one key may share a
//! result, scans of different keys never do.

use sha2::{Digest, Sha256};

use super::ListingMode;
use crate::registry::{Credentials, Target};

/// A scan's conversation: the registry's normalised origin (scheme, host, port, path prefix)
/// and repository, who speaks (a fingerprint of the credentials; anonymous is one), how TLS is
/// judged, and how tags are listed. Holds no secret and no object's name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScanKey {
    origin: String,
    repository: String,
    credentials: Option<String>,
    insecure: bool,
    /// SHA-256 of the CA bundle.
    ca: Option<[u8; 32]>,
    listing: ListingMode,
    /// Scan options beyond these that change the conversation (e.g. whether config blobs or
    /// referrers are read), in a canonical text the caller gives.
    extras: String,
}

impl ScanKey {
    pub fn new(
        target: &Target,
        credentials: Option<&Credentials>,
        insecure: bool,
        ca: Option<&[u8]>,
        listing: ListingMode,
    ) -> Self {
        Self {
            origin: target.base_url().as_str().trim_end_matches('/').to_string(),
            repository: target.repository().to_string(),
            credentials: credentials.map(Credentials::fingerprint),
            insecure,
            ca: ca.map(|pem| Sha256::digest(pem).into()),
            listing,
            extras: String::new(),
        }
    }

    /// The same key for scans that also differ in `extras`.
    pub fn with_extras(self, extras: impl Into<String>) -> Self {
        Self {
            extras: extras.into(),
            ..self
        }
    }

    /// About what the key holds in memory.
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.origin.len()
            + self.repository.len()
            + self.credentials.as_deref().map_or(0, str::len)
            + self.extras.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(url: &str, repo: &str, creds: Option<(&str, &str)>) -> ScanKey {
        let c = creds.map(|(u, p)| Credentials::new(u, p));
        ScanKey::new(
            &Target::new(url, repo).unwrap(),
            c.as_ref(),
            false,
            None,
            ListingMode::Auto,
        )
    }

    #[test]
    fn aliases_share_and_credentials_part() {
        assert_eq!(
            key("https://docker.io", "nginx", None),
            key("https://registry-1.docker.io/v2/", "library/nginx", None)
        );
        assert_ne!(
            key("https://r.example", "app", Some(("a", "1"))),
            key("https://r.example", "app", Some(("a", "2")))
        );
        assert_ne!(
            key("https://r.example", "app", None),
            key("https://r.example", "app", Some(("a", "1")))
        );
        assert_ne!(
            key("https://r.example", "app", None),
            key("http://r.example", "app", None)
        );
        let k = key("https://r.example", "app", Some(("alice", "s3cret")));
        assert!(!format!("{k:?}").contains("s3cret"));
        assert_ne!(k.clone().with_extras("created"), k);
    }
}
