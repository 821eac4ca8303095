//! Registry credentials, `WWW-Authenticate` challenges and the bearer-token cache.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// What a registry asked for in `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
        /// RFC 6750 `error=`: `invalid_token` (expired or revoked) or `insufficient_scope`.
        error: Option<String>,
    },
}

impl Challenge {
    /// The `error=` a bearer challenge carries, if any.
    pub fn error(&self) -> Option<&str> {
        match self {
            Challenge::Bearer { error, .. } => error.as_deref(),
            Challenge::Basic => None,
        }
    }
}

/// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`. Quoted values may
/// contain commas (`scope="repository:a:pull,push"`); unknown parameters are ignored.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
            error: params.get("error").cloned(),
        }),
        _ => None,
    }
}

/// A header is at most a few KiB (reqwest caps header sizes); parameters past this many are
/// ignored so no input makes the map grow without bound.
const MAX_PARAMS: usize = 32;

fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    while out.len() < MAX_PARAMS {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect::<String>();
            value = value.trim().to_string();
        }
        out.insert(key, value);
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TokenKey {
    pub realm: String,
    pub service: String,
    pub scope: String,
    /// Credential fingerprint, or empty for anonymous tokens.
    pub credential: String,
}

/// Bearer tokens by realm + service + scope + credential, so one tenant's token is never
/// handed to a scan that runs with other (or no) credentials.
#[derive(Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<TokenKey, (String, Instant)>>,
}

/// Tokens are refreshed this long before they expire (or after half their life, for short-lived
/// ones), so a request never carries a stale one.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
const MAX_CACHED_TOKENS: usize = 10_000;

/// When a token obtained now with `lifetime` should no longer be sent.
fn usable_until(now: Instant, lifetime: Duration) -> Option<Instant> {
    now.checked_add(lifetime.saturating_sub(EXPIRY_MARGIN.min(lifetime / 2)))
}

impl TokenCache {
    pub fn get(&self, key: &TokenKey) -> Option<String> {
        let tokens = self.tokens.lock().expect("token cache poisoned");
        tokens
            .get(key)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(t, _)| t.clone())
    }

    pub fn put(&self, key: TokenKey, token: String, lifetime: Duration) {
        let now = Instant::now();
        let Some(until) = usable_until(now, lifetime) else {
            return;
        };
        let mut tokens = self.tokens.lock().expect("token cache poisoned");
        if tokens.len() >= MAX_CACHED_TOKENS {
            tokens.retain(|_, (_, until)| *until > now);
            if tokens.len() >= MAX_CACHED_TOKENS {
                tokens.clear();
            }
        }
        tokens.insert(key, (token, until));
    }

    /// Forgets `token` for `key`, and only that token: a concurrent request may already have
    /// replaced a rejected token with a fresh one.
    pub fn forget(&self, key: &TokenKey, token: &str) {
        let mut tokens = self.tokens.lock().expect("token cache poisoned");
        if tokens.get(key).is_some_and(|(t, _)| t == token) {
            tokens.remove(key);
        }
    }
}

/// The token endpoint's answer: `token` or `access_token`, `expires_in` seconds (default 60
/// per the distribution token spec).
#[derive(serde::Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenResponse {
    pub fn into_token(self) -> Option<(String, Duration)> {
        let token = self
            .token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))?;
        let lifetime = Duration::from_secs(self.expires_in.unwrap_or(60).max(1));
        Some((token, lifetime))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_commas_in_scope() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull,push".into()),
                error: None,
            })
        );
    }

    #[test]
    fn basic_and_unknown_challenges() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("basic"), Some(Challenge::Basic));
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(
            parse_challenge("Bearer service=x"),
            None,
            "realm is required"
        );
    }

    #[test]
    fn unquoted_params_and_case() {
        let c = parse_challenge("BEARER Realm=http://127.0.0.1:1/token, Service=reg").unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "http://127.0.0.1:1/token".into(),
                service: Some("reg".into()),
                scope: None,
                error: None,
            }
        );
    }

    #[test]
    fn challenge_errors_are_parsed() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:x/y:pull",error="insufficient_scope""#,
        )
        .unwrap();
        assert_eq!(c.error(), Some("insufficient_scope"));
    }

    #[test]
    fn short_lived_tokens_are_used_for_half_their_life() {
        let now = Instant::now();
        assert_eq!(
            usable_until(now, Duration::from_secs(4)),
            Some(now + Duration::from_secs(2))
        );
        assert_eq!(
            usable_until(now, Duration::from_secs(300)),
            Some(now + Duration::from_secs(290))
        );
        let cache = TokenCache::default();
        let key = TokenKey {
            realm: "r".into(),
            service: "s".into(),
            scope: "repository:a:pull".into(),
            credential: String::new(),
        };
        cache.put(key.clone(), "t1".into(), Duration::from_secs(6));
        assert_eq!(
            cache.get(&key).as_deref(),
            Some("t1"),
            "a 6 s token is reused"
        );
        cache.forget(&key, "other");
        assert_eq!(
            cache.get(&key).as_deref(),
            Some("t1"),
            "only the rejected token goes"
        );
        cache.forget(&key, "t1");
        assert_eq!(cache.get(&key), None);
    }

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

    #[test]
    fn token_response_accepts_either_field() {
        let t: TokenResponse =
            serde_json::from_str(r#"{"access_token":"a","expires_in":300}"#).unwrap();
        assert_eq!(t.into_token(), Some(("a".into(), Duration::from_secs(300))));
        let t: TokenResponse = serde_json::from_str(r#"{"token":"b"}"#).unwrap();
        assert_eq!(t.into_token(), Some(("b".into(), Duration::from_secs(60))));
        let t: TokenResponse = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert_eq!(t.into_token(), None);
    }
}
