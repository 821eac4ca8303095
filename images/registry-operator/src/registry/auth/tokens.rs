//! Bearer tokens: the token endpoint's answer and the cache that outlives a scan.

use std::time::{Duration, Instant};

use crate::registry::cache::BoundedCache;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TokenKey {
    pub realm: String,
    pub service: String,
    pub scope: String,
    /// Credential fingerprint, or empty for anonymous tokens.
    pub credential: String,
}

/// Bearer tokens by realm + service + scope + credential, so one tenant's token is never
/// handed to a scan that runs with other (or no) credentials. Bounded in bytes, with a share
/// per tenant (see [`BoundedCache`]): a registry that answers every request with a new scope
/// and a big token fills only the share of the tenant scanning it.
pub(crate) struct TokenCache {
    tokens: BoundedCache<TokenKey, (String, Instant)>,
}

/// Tokens are refreshed this long before they expire (or after half their life, for short-lived
/// ones), so a request never carries a stale one.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// All cached tokens, and one tenant's part: 2,048 tokens of 2 KiB (a typical JWT) per tenant.
const TOKEN_CACHE_BYTES: usize = 32 << 20;
const TOKEN_CACHE_SHARE: usize = 4 << 20;
/// Longer tokens are refused (the session then fails the scan): real ones are a few KiB.
pub(crate) const MAX_TOKEN_BYTES: usize = 64 << 10;

impl Default for TokenCache {
    fn default() -> Self {
        Self {
            tokens: BoundedCache::new(TOKEN_CACHE_BYTES, TOKEN_CACHE_SHARE),
        }
    }
}

/// When a token obtained now with `lifetime` should no longer be sent.
fn usable_until(now: Instant, lifetime: Duration) -> Option<Instant> {
    now.checked_add(lifetime.saturating_sub(EXPIRY_MARGIN.min(lifetime / 2)))
}

impl TokenKey {
    fn bytes(&self) -> usize {
        self.realm.len() + self.service.len() + self.scope.len() + self.credential.len()
    }
}

impl TokenCache {
    pub fn get(&self, key: &TokenKey) -> Option<String> {
        self.tokens
            .with(key, |(t, until)| {
                (Instant::now() < *until).then(|| t.clone())
            })
            .flatten()
    }

    /// Keeps `token` for `tenant` (charged to its share).
    pub fn put(&self, tenant: &str, key: TokenKey, token: String, lifetime: Duration) {
        let Some(until) = usable_until(Instant::now(), lifetime) else {
            return;
        };
        let bytes = key.bytes() + token.len();
        self.tokens.put(tenant, key, (token, until), bytes);
    }

    /// Forgets `token` for `key`, and only that token: a concurrent request may already have
    /// replaced a rejected token with a fresh one.
    pub fn forget(&self, key: &TokenKey, token: &str) {
        self.tokens.remove_if(key, |(t, _)| t == token);
    }

    pub fn bytes(&self) -> usize {
        self.tokens.bytes()
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
    /// `None` when there is no token, or one longer than [`MAX_TOKEN_BYTES`].
    pub fn into_token(self) -> Option<(String, Duration)> {
        let token = self
            .token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))
            .filter(|t| t.len() <= MAX_TOKEN_BYTES)?;
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
        cache.put("tenant", key.clone(), "t1".into(), Duration::from_secs(6));
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
        let big = serde_json::json!({ "token": "x".repeat(MAX_TOKEN_BYTES + 1) }).to_string();
        let t: TokenResponse = serde_json::from_str(&big).unwrap();
        assert_eq!(t.into_token(), None, "a token over 64 KiB is refused");
    }

    #[test]
    fn a_tenant_flooding_fresh_scopes_keeps_within_its_share() {
        let cache = TokenCache::default();
        let key = |scope: String| TokenKey {
            realm: "https://auth.example/token".into(),
            service: "registry".into(),
            scope,
            credential: String::new(),
        };
        let lifetime = Duration::from_secs(300);
        cache.put(
            "victim",
            key("repository:v:pull".into()),
            "v".repeat(2048),
            lifetime,
        );
        let token = "x".repeat(MAX_TOKEN_BYTES);
        for i in 0..1_000 {
            cache.put(
                "attacker",
                key(format!("repository:a{i}:pull")),
                token.clone(),
                lifetime,
            );
        }
        assert!(
            cache.bytes() <= TOKEN_CACHE_SHARE + 4096,
            "{}",
            cache.bytes()
        );
        assert!(cache.get(&key("repository:v:pull".into())).is_some());
    }
}
