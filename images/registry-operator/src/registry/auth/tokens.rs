//! Bearer tokens: the token endpoint's answer and the cache that outlives a scan.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
