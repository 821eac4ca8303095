//! The `Authorization` each request carries, and the token flow of the distribution token
//! spec: a 401's challenge names a realm, the realm gives a token for a scope, the token is
//! cached by (realm, service, scope, credential) for every later scan.

use std::time::Duration;

use reqwest::header::RETRY_AFTER;
use reqwest::{Method, StatusCode};
use url::Url;

use super::Session;
use super::send::{Failure, Payload};
use crate::registry::auth::{
    AuthMode, Challenge, Credentials, MAX_TOKEN_BYTES, TokenKey, TokenResponse,
};
use crate::registry::error::ScanError;
use crate::registry::transport::{Reply, RequestKind, offload};

/// A token endpoint's answer: room for `token` and `access_token` of up to 64 KiB each (longer
/// tokens are refused) and whatever else it carries.
const TOKEN_BODY_LIMIT: usize = 256 << 10;

/// The `Authorization` a request carried: a bearer token is remembered so that a 401 forgets
/// exactly the token that was rejected.
pub(super) type Sent = Option<(TokenKey, String)>;

impl Session<'_> {
    /// The `Authorization` header for a request, fetching a bearer token when one is due.
    pub(super) async fn authorization(
        &self,
        url: &Url,
    ) -> Result<(Option<String>, Sent), ScanError> {
        if !self.on_same_host(url) {
            return Ok((None, None));
        }
        let mode = self.auth.lock().clone();
        match mode {
            AuthMode::Anonymous => Ok((None, None)),
            AuthMode::Basic => Ok((self.credentials.map(Credentials::basic_header), None)),
            AuthMode::Bearer(key) => {
                let tokens = &self.auth_state.tokens;
                let token = match tokens.get(&key) {
                    Some(t) => t,
                    None => {
                        let _one_fetch = self.token_fetch.lock().await;
                        match tokens.get(&key) {
                            Some(t) => t,
                            None => self.fetch_token(&key).await?,
                        }
                    }
                };
                self.remember_token(&token);
                Ok((Some(format!("Bearer {token}")), Some((key, token))))
            }
        }
    }

    /// Sends the credentials as Basic from the first request (APIs that answer 401 without a
    /// challenge, such as Harbor's).
    pub fn assume_basic(&self) {
        if self.credentials.is_some() {
            *self.auth.lock() = AuthMode::Basic;
        }
    }

    /// Uses a bearer token obtained outside the challenge flow (Docker Hub's `/v2/auth/token`)
    /// for this session's host; false when the cached one is missing or expired.
    pub fn cached_bearer(&self, key: &TokenKey) -> bool {
        if self.auth_state.tokens.get(key).is_some() {
            *self.auth.lock() = AuthMode::Bearer(key.clone());
            true
        } else {
            false
        }
    }

    pub fn use_bearer(&self, key: TokenKey, token: String, lifetime: Duration) {
        self.remember_token(&token);
        if token.len() <= MAX_TOKEN_BYTES {
            self.auth_state
                .tokens
                .put(self.tenant, key.clone(), token, lifetime);
        }
        *self.auth.lock() = AuthMode::Bearer(key);
    }

    fn set_mode(&self, mode: AuthMode) {
        *self.auth.lock() = mode.clone();
        self.auth_state
            .modes
            .put(self.tenant, self.auth_key.clone(), mode);
    }

    /// Reacts to a 401: switch to Basic, or to a bearer token for the challenge. A cached
    /// token is forgotten only when it is the one this request sent and had refused.
    pub(super) async fn prepare_auth(
        &self,
        challenge: Option<Challenge>,
        sent: Sent,
        reply: &Reply,
    ) -> Result<(), ScanError> {
        match challenge {
            Some(Challenge::Basic) if self.credentials.is_some() => {
                self.set_mode(AuthMode::Basic);
                Ok(())
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
                error,
            }) => {
                let key = TokenKey {
                    realm,
                    service: service.unwrap_or_default(),
                    scope: scope
                        .unwrap_or_else(|| format!("repository:{}:pull", self.target.repository())),
                    credential: self
                        .credentials
                        .map(Credentials::fingerprint)
                        .unwrap_or_default(),
                };
                let rejected = sent.filter(|(k, _)| *k == key).map(|(_, t)| t);
                if rejected.is_some() && error.as_deref() == Some("insufficient_scope") {
                    // A fresh token for the same scope would be refused the same way.
                    return Err(self.denied(reply));
                }
                let _one_fetch = self.token_fetch.lock().await;
                let tokens = &self.auth_state.tokens;
                if let Some(token) = &rejected {
                    // Revoked or expired early.
                    tokens.forget(&key, token);
                }
                if tokens.get(&key).is_none() {
                    self.fetch_token(&key).await?;
                }
                self.set_mode(AuthMode::Bearer(key));
                Ok(())
            }
            _ => Err(self.denied(reply)),
        }
    }

    async fn fetch_token(&self, key: &TokenKey) -> Result<String, ScanError> {
        let mut url = Url::parse(&key.realm).map_err(|e| ScanError::InvalidResponse {
            registry: self.registry(),
            what: "authentication challenge".into(),
            detail: format!("token realm {:?} is not a URL: {e}", key.realm),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ScanError::InvalidResponse {
                registry: self.registry(),
                what: "authentication challenge".into(),
                detail: format!("token realm {:?} is not http(s)", key.realm),
            });
        }
        if self.credentials.is_some()
            && self.target.base_url().scheme() == "https"
            && url.scheme() == "http"
        {
            return Err(ScanError::InsecureTokenRealm {
                registry: self.registry(),
                realm_host: url.host_str().unwrap_or_default().to_string(),
            });
        }
        {
            let mut q = url.query_pairs_mut();
            if !key.service.is_empty() {
                q.append_pair("service", &key.service);
            }
            for scope in key.scope.split(' ').filter(|s| !s.is_empty()) {
                q.append_pair("scope", scope);
            }
        }
        let policy = &self.transport.options.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let auth = self.credentials.map(Credentials::basic_header);
            let result = self
                .exchange(
                    RequestKind::Token,
                    &Method::GET,
                    &url,
                    Payload {
                        accept: Some("application/json"),
                        body: None,
                    },
                    auth.as_deref(),
                    TOKEN_BODY_LIMIT,
                )
                .await;
            let reply = match result {
                Ok(r)
                    if r.status == StatusCode::TOO_MANY_REQUESTS
                        || (r.status == StatusCode::SERVICE_UNAVAILABLE
                            && r.header(RETRY_AFTER.as_str()).is_some()) =>
                {
                    self.back_off(&Method::GET, &url, &r, attempt)?;
                    continue;
                }
                Ok(r) if r.status.is_server_error() && attempt < policy.max_attempts => {
                    self.counters.retried();
                    self.pause(policy.backoff(attempt)).await?;
                    continue;
                }
                Ok(r) => r,
                Err(Failure::Transient(_)) if attempt < policy.max_attempts => {
                    self.counters.retried();
                    self.pause(policy.backoff(attempt)).await?;
                    continue;
                }
                Err(Failure::Transient(e) | Failure::Fatal(e)) => return Err(e),
            };
            return match reply.status {
                s if s.is_success() => {
                    let body = reply.body.clone();
                    let parsed: TokenResponse = offload(self.tenant, body.len(), move || {
                        serde_json::from_slice(&body).map_err(|e| e.to_string())
                    })
                    .await
                    .map_err(|e| {
                        self.invalid(
                            &Method::GET,
                            &url,
                            format!("token response is not JSON: {e}"),
                        )
                    })?;
                    let (token, lifetime) = parsed.into_token().ok_or_else(|| {
                        self.invalid(
                            &Method::GET,
                            &url,
                            "token response has no token, or one longer than 64 KiB".into(),
                        )
                    })?;
                    self.remember_token(&token);
                    self.auth_state
                        .tokens
                        .put(self.tenant, key.clone(), token.clone(), lifetime);
                    Ok(token)
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(self.denied(&reply)),
                _ => Err(self.status_error(&Method::GET, &url, &reply)),
            };
        }
    }
}
