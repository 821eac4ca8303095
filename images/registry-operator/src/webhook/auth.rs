//! Who may post events: whoever knows the shared secret. Senders differ in what they can send,
//! so the secret is accepted as `Authorization: Bearer <secret>` (distribution, ACR, CloudEvents
//! senders), as the raw `Authorization` header (Harbor's "Auth Header"), as `?secret=<secret>`
//! (Docker Hub and Quay cannot set headers) or as GitHub's `X-Hub-Signature-256` HMAC-SHA256 of
//! the body. Every comparison is constant-time; an empty secret admits nobody.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a request offers as proof; fields the request lacks are `None`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Proof<'a> {
    pub authorization: Option<&'a [u8]>,
    /// The raw query string.
    pub query: Option<&'a str>,
    /// `X-Hub-Signature-256` (`sha256=<hex>`).
    pub hub_signature: Option<&'a [u8]>,
    pub body: &'a [u8],
}

/// Whether `proof` shows knowledge of `secret`.
pub fn authenticate(secret: &[u8], proof: &Proof<'_>) -> bool {
    if by_header(secret, proof) {
        return true;
    }
    proof
        .hub_signature
        .is_some_and(|signature| signed(secret, proof.body, signature))
}

/// Whether the headers or the query alone show knowledge of `secret`: what the receiver
/// checks before it reads a single body byte.
pub fn by_header(secret: &[u8], proof: &Proof<'_>) -> bool {
    if secret.is_empty() {
        return false;
    }
    if let Some(header) = proof.authorization {
        let offered = strip_bearer(header).unwrap_or(header);
        if equal(secret, trim(offered)) {
            return true;
        }
    }
    if let Some(query) = proof.query {
        // Every `secret=` pair is tried, not the first: no early exit on a decoy.
        let mut ok = false;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if k == "secret" {
                ok |= equal(secret, v.as_bytes());
            }
        }
        if ok {
            return true;
        }
    }
    false
}

/// Whether `signature` (`X-Hub-Signature-256`) is the HMAC of `body` under `secret`.
pub fn by_signature(secret: &[u8], body: &[u8], signature: &[u8]) -> bool {
    !secret.is_empty() && signed(secret, body, signature)
}

/// GitHub's `sha256=<hex of HMAC-SHA256(secret, body)>`.
fn signed(secret: &[u8], body: &[u8], header: &[u8]) -> bool {
    let Some(hex_sig) = trim(header).strip_prefix(b"sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Compares fixed-size hashes, so that neither the content nor the length of the secret leaks
/// through timing.
fn equal(secret: &[u8], offered: &[u8]) -> bool {
    let a = Sha256::digest(secret);
    let b = Sha256::digest(offered);
    a.ct_eq(&b).into()
}

fn strip_bearer(header: &[u8]) -> Option<&[u8]> {
    let header = trim(header);
    (header.len() > 7 && header[..7].eq_ignore_ascii_case(b"bearer ")).then(|| &header[7..])
}

fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

/// HMAC-SHA256 signature header value for `body`: what GitHub sends (used by tests and tools).
pub fn hub_signature(secret: &[u8], body: &[u8]) -> String {
    // ok: HMAC accepts keys of every length; `new_from_slice` cannot fail for it.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &[u8] = b"s3cr3t-value";

    fn with_auth(h: &[u8]) -> Proof<'_> {
        Proof {
            authorization: Some(h),
            ..Proof::default()
        }
    }

    #[test]
    fn bearer_and_raw_header() {
        assert!(authenticate(S, &with_auth(b"Bearer s3cr3t-value")));
        assert!(authenticate(S, &with_auth(b"bearer  s3cr3t-value ")));
        assert!(authenticate(S, &with_auth(b"s3cr3t-value")));
        assert!(!authenticate(S, &with_auth(b"Bearer s3cr3t-valuf")));
        assert!(!authenticate(S, &with_auth(b"Basic czNjcjN0LXZhbHVl")));
        assert!(!authenticate(S, &with_auth(b"")));
    }

    #[test]
    fn query_secret() {
        let ok = Proof {
            query: Some("a=1&secret=s3cr3t-value"),
            ..Proof::default()
        };
        assert!(authenticate(S, &ok));
        let encoded = Proof {
            query: Some("secret=s3cr3t%2Dvalue"),
            ..Proof::default()
        };
        assert!(authenticate(S, &encoded));
        let bad = Proof {
            query: Some("secret=nope&token=s3cr3t-value"),
            ..Proof::default()
        };
        assert!(!authenticate(S, &bad));
    }

    #[test]
    fn github_signature() {
        let body = br#"{"zen": "Design for failure."}"#;
        let sig = hub_signature(S, body);
        let proof = |sig: &'static [u8], body: &'static [u8]| Proof {
            hub_signature: Some(sig),
            body,
            ..Proof::default()
        };
        let leaked: &'static [u8] = Box::leak(sig.into_bytes().into_boxed_slice());
        assert!(authenticate(S, &proof(leaked, body)));
        assert!(!authenticate(S, &proof(leaked, br#"{"zen": "tampered"}"#)));
        assert!(!authenticate(S, &proof(b"sha256=00", body)));
        assert!(!authenticate(S, &proof(b"sha1=abcd", body)));
        // GitHub's published test vector: secret "It's a Secret to Everybody", body "Hello, World!".
        assert_eq!(
            hub_signature(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn nothing_or_an_empty_secret_admits_nobody() {
        assert!(!authenticate(S, &Proof::default()));
        assert!(!authenticate(b"", &with_auth(b"")));
        assert!(!authenticate(b"", &with_auth(b"Bearer ")));
    }
}
