//! One scan's conversation with a registry: authentication (anonymous, Basic, Bearer token),
//! retries, redirects, deadlines, body limits and request counts.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use url::Url;

use super::auth::{Challenge, Credentials, TokenKey, TokenResponse, parse_challenge};
use super::budget::Reservation;
use super::client::{RegistryClient, RequestKind};
use super::egress::{EgressDenied, denial_in, same_origin};
use super::error::body_excerpt;
use super::{ScanError, Target};

/// A response whose body has been read (within a size limit).
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
    /// The body's share of the memory budget, held as long as the body.
    _budget: Option<Reservation>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How the session authenticates, learned from the registry's first challenge.
#[derive(Clone)]
enum AuthMode {
    Anonymous,
    Basic,
    Bearer(TokenKey),
}

/// Request counts of one scan.
#[derive(Default, Debug)]
pub(crate) struct Counters {
    pub tag_pages: AtomicU64,
    pub manifest_heads: AtomicU64,
    pub manifest_gets: AtomicU64,
    pub token_requests: AtomicU64,
    pub retries: AtomicU64,
}

const MAX_REDIRECTS: usize = 5;
const TOKEN_BODY_LIMIT: usize = 1 << 20;

pub(crate) struct Session<'a> {
    client: &'a RegistryClient,
    pub target: &'a Target,
    credentials: Option<&'a Credentials>,
    auth: Mutex<AuthMode>,
    /// Concurrent requests that find no valid token wait for one fetch instead of each fetching.
    token_fetch: tokio::sync::Mutex<()>,
    deadline: Instant,
    scan_timeout: Duration,
    pub counters: Counters,
}

impl<'a> Session<'a> {
    pub fn new(
        client: &'a RegistryClient,
        target: &'a Target,
        credentials: Option<&'a Credentials>,
        scan_timeout: Duration,
    ) -> Self {
        Self {
            client,
            target,
            credentials,
            auth: Mutex::new(AuthMode::Anonymous),
            token_fetch: tokio::sync::Mutex::new(()),
            deadline: Instant::now() + scan_timeout,
            scan_timeout,
            counters: Counters::default(),
        }
    }

    fn registry(&self) -> String {
        self.target.registry()
    }

    fn remaining(&self) -> Result<Duration, ScanError> {
        self.deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| self.scan_timed_out())
    }

    fn scan_timed_out(&self) -> ScanError {
        ScanError::Timeout {
            what: format!("scan of {}/{}", self.registry(), self.target.repository()),
            after: self.scan_timeout,
        }
    }

    fn count(&self, kind: RequestKind) {
        let c = match kind {
            RequestKind::TagList => &self.counters.tag_pages,
            RequestKind::ManifestHead => &self.counters.manifest_heads,
            RequestKind::ManifestGet => &self.counters.manifest_gets,
            RequestKind::Token => &self.counters.token_requests,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn observe(&self, kind: RequestKind, method: &Method, status: Option<u16>) {
        self.count(kind);
        if let Some(o) = &self.client.observer {
            o.observe(kind, method.as_str(), status);
        }
    }

    /// Sleeps `wait`, or fails with a timeout if the scan deadline comes first.
    async fn pause(&self, wait: Duration) -> Result<(), ScanError> {
        if wait >= self.remaining()? {
            return Err(self.scan_timed_out());
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Sends one registry API request with authentication, retries and a body limit.
    /// Returns any final status (including 404) for the caller to judge; 401/403 after a fresh
    /// token, exhausted 429s and 5xx become errors here.
    pub async fn send(
        &self,
        kind: RequestKind,
        method: Method,
        url: Url,
        accept: Option<&str>,
        body_limit: usize,
    ) -> Result<Reply, ScanError> {
        let policy = &self.client.options.retry;
        let mut attempt = 0u32;
        let mut reauthenticated = false;
        let mut url = url;
        let mut redirects = 0usize;
        loop {
            attempt += 1;
            let auth = self.authorization(&url).await?;
            let result = self
                .exchange(kind, &method, &url, accept, auth.as_deref(), body_limit)
                .await;
            let reply = match result {
                Ok(reply) => reply,
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Transient(e)) => {
                    if attempt >= policy.max_attempts {
                        return Err(e);
                    }
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    self.pause(policy.backoff(attempt)).await?;
                    continue;
                }
            };
            match reply.status {
                s if s.is_redirection() => {
                    let location = reply.header(LOCATION.as_str()).ok_or_else(|| {
                        self.invalid(&method, &url, format!("HTTP {s} without a Location header"))
                    })?;
                    let next = url
                        .join(location)
                        .map_err(|e| self.invalid(&method, &url, format!("bad redirect: {e}")))?;
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        return Err(self.invalid(&method, &url, "too many redirects".into()));
                    }
                    url = next;
                    attempt -= 1;
                }
                StatusCode::UNAUTHORIZED if !reauthenticated && self.on_same_host(&url) => {
                    reauthenticated = true;
                    let challenge = reply
                        .header(WWW_AUTHENTICATE.as_str())
                        .and_then(parse_challenge);
                    self.prepare_auth(challenge, &reply).await?;
                    attempt -= 1;
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    return Err(self.denied(&reply));
                }
                StatusCode::TOO_MANY_REQUESTS => {
                    if attempt >= policy.max_attempts {
                        return Err(ScanError::RateLimited {
                            registry: self.registry(),
                            attempts: attempt,
                        });
                    }
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    let wait = policy.rate_limit_wait(reply.header(RETRY_AFTER.as_str()), attempt);
                    tracing::debug!(registry = %self.registry(), ?wait, "rate limited; waiting");
                    self.pause(wait).await?;
                }
                s if s.is_server_error() => {
                    if attempt >= policy.max_attempts {
                        return Err(self.status_error(&method, &url, &reply));
                    }
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    self.pause(policy.backoff(attempt)).await?;
                }
                _ => return Ok(reply),
            }
        }
    }

    pub fn status_error(&self, method: &Method, url: &Url, reply: &Reply) -> ScanError {
        ScanError::Status {
            registry: self.registry(),
            method: method.to_string(),
            path: url.path().to_string(),
            status: reply.status.as_u16(),
            excerpt: self.scrub(body_excerpt(&reply.body)),
        }
    }

    pub fn invalid(&self, method: &Method, url: &Url, detail: String) -> ScanError {
        ScanError::InvalidResponse {
            registry: self.registry(),
            what: format!("{method} {}", url.path()),
            detail: self.scrub(detail),
        }
    }

    /// Never let a password reach a message, whatever a registry echoes back.
    fn scrub(&self, text: String) -> String {
        match self.credentials {
            Some(c) if c.leaks_into(&text) => {
                "(registry response withheld: it echoed the credentials)".into()
            }
            _ => text,
        }
    }

    /// Also false for an https→http downgrade of the registry's own host.
    fn on_same_host(&self, url: &Url) -> bool {
        same_origin(self.target.base_url(), url)
    }

    /// The same words whatever the policy refused, so that nothing about the network leaks.
    fn refused(&self, kind: RequestKind, url: &Url, denied: EgressDenied) -> ScanError {
        let via = if kind == RequestKind::Token {
            format!(" (token realm announced by {})", self.registry())
        } else if !same_origin(self.target.base_url(), url) {
            format!(" (redirect from {})", self.registry())
        } else {
            String::new()
        };
        ScanError::EgressDenied {
            registry: self.registry(),
            host: denied.host,
            via,
        }
    }

    fn denied(&self, reply: &Reply) -> ScanError {
        let excerpt = self.scrub(body_excerpt(&reply.body));
        let status = match excerpt.as_str() {
            "" => format!("HTTP {}", reply.status.as_u16()),
            e => format!("HTTP {}: {e}", reply.status.as_u16()),
        };
        let repository = self.target.repository();
        let detail = match (self.credentials, reply.status) {
            // Registries (Docker Hub among them) also answer 401 for repositories that do not exist.
            (None, _) => format!(
                "the registry requires credentials for {repository} ({status}); set credentialsSecret, or check that the repository exists"
            ),
            (Some(c), StatusCode::FORBIDDEN) => {
                format!(
                    "user {:?} may not pull {repository} ({status})",
                    c.username()
                )
            }
            (Some(c), _) => format!(
                "the registry rejected the credentials of user {:?} for {repository} ({status}); check the username and password",
                c.username()
            ),
        };
        ScanError::Unauthorized {
            registry: self.registry(),
            detail,
        }
    }

    /// The `Authorization` header for a request, fetching a bearer token when one is due.
    async fn authorization(&self, url: &Url) -> Result<Option<String>, ScanError> {
        if !self.on_same_host(url) {
            return Ok(None);
        }
        let mode = self.auth.lock().expect("auth mode poisoned").clone();
        match mode {
            AuthMode::Anonymous => Ok(None),
            AuthMode::Basic => Ok(self.credentials.map(Credentials::basic_header)),
            AuthMode::Bearer(key) => {
                if let Some(t) = self.client.tokens.get(&key) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let _one_fetch = self.token_fetch.lock().await;
                let token = match self.client.tokens.get(&key) {
                    Some(t) => t,
                    None => self.fetch_token(&key).await?,
                };
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// Reacts to a 401: switch to Basic, or to a (fresh) bearer token for the challenge.
    async fn prepare_auth(
        &self,
        challenge: Option<Challenge>,
        reply: &Reply,
    ) -> Result<(), ScanError> {
        match challenge {
            Some(Challenge::Basic) if self.credentials.is_some() => {
                *self.auth.lock().expect("auth mode poisoned") = AuthMode::Basic;
                Ok(())
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
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
                // A 401 despite a cached token means it was revoked or expired early.
                let _one_fetch = self.token_fetch.lock().await;
                self.client.tokens.forget(&key);
                self.fetch_token(&key).await?;
                *self.auth.lock().expect("auth mode poisoned") = AuthMode::Bearer(key);
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
        let policy = &self.client.options.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let auth = self.credentials.map(Credentials::basic_header);
            let result = self
                .exchange(
                    RequestKind::Token,
                    &Method::GET,
                    &url,
                    Some("application/json"),
                    auth.as_deref(),
                    TOKEN_BODY_LIMIT,
                )
                .await;
            let reply = match result {
                Ok(r)
                    if (r.status.is_server_error()
                        || r.status == StatusCode::TOO_MANY_REQUESTS)
                        && attempt < policy.max_attempts =>
                {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    let wait = policy.rate_limit_wait(r.header(RETRY_AFTER.as_str()), attempt);
                    self.pause(wait).await?;
                    continue;
                }
                Ok(r) => r,
                Err(Failure::Transient(_)) if attempt < policy.max_attempts => {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    self.pause(policy.backoff(attempt)).await?;
                    continue;
                }
                Err(Failure::Transient(e) | Failure::Fatal(e)) => return Err(e),
            };
            return match reply.status {
                s if s.is_success() => {
                    let parsed: TokenResponse =
                        serde_json::from_slice(&reply.body).map_err(|e| {
                            self.invalid(
                                &Method::GET,
                                &url,
                                format!("token response is not JSON: {e}"),
                            )
                        })?;
                    let (token, lifetime) = parsed.into_token().ok_or_else(|| {
                        self.invalid(&Method::GET, &url, "token response has no token".into())
                    })?;
                    self.client.tokens.put(key.clone(), token.clone(), lifetime);
                    Ok(token)
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(self.denied(&reply)),
                StatusCode::TOO_MANY_REQUESTS => Err(ScanError::RateLimited {
                    registry: self.registry(),
                    attempts: attempt,
                }),
                _ => Err(self.status_error(&Method::GET, &url, &reply)),
            };
        }
    }

    /// One HTTP exchange, body read within `limit`. Connection-level problems are transient
    /// (worth a retry) except TLS failures, which will not fix themselves.
    async fn exchange(
        &self,
        kind: RequestKind,
        method: &Method,
        url: &Url,
        accept: Option<&str>,
        authorization: Option<&str>,
        limit: usize,
    ) -> Result<Reply, Failure> {
        if let Some(policy) = &self.client.options.egress {
            policy
                .check_url(url)
                .map_err(|d| Failure::Fatal(self.refused(kind, url, d)))?;
        }
        let per_request = self
            .client
            .options
            .request_timeout
            .min(self.remaining().map_err(Failure::Fatal)?);
        let mut req = self
            .client
            .http
            .request(method.clone(), url.clone())
            .timeout(per_request);
        if let Some(a) = accept {
            req = req.header(ACCEPT, a);
        }
        if let Some(a) = authorization {
            let mut value = reqwest::header::HeaderValue::from_str(a).map_err(|_| {
                Failure::Fatal(ScanError::InvalidConfig(
                    "credentials contain characters not allowed in an HTTP header".into(),
                ))
            })?;
            value.set_sensitive(true);
            req = req.header(AUTHORIZATION, value);
        }
        let started = Instant::now();
        let response = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                self.observe(kind, method, None);
                return Err(self.classify(e, started, kind, url));
            }
        };
        let status = response.status();
        self.observe(kind, method, Some(status.as_u16()));
        let headers = response.headers().clone();
        let mut reservation = None;
        let body = if *method == Method::HEAD {
            bytes::Bytes::new()
        } else {
            if let Some(budget) = &self.client.options.body_budget {
                let expected = response.content_length().map_or(limit, |n| n as usize);
                let room = budget.reserve(expected.min(limit));
                let wait = self.remaining().map_err(Failure::Fatal)?;
                reservation = Some(
                    tokio::time::timeout(wait, room)
                        .await
                        .map_err(|_| Failure::Fatal(self.scan_timed_out()))?,
                );
            }
            read_limited(response, limit).await.map_err(|e| match e {
                ReadError::TooLarge => Failure::Fatal(ScanError::ResponseTooLarge {
                    registry: self.registry(),
                    what: format!("{method} {}", url.path()),
                    limit,
                }),
                ReadError::Http(e) => self.classify(e, started, kind, url),
            })?
        };
        Ok(Reply {
            status,
            headers,
            body,
            _budget: reservation,
        })
    }

    fn classify(
        &self,
        e: reqwest::Error,
        started: Instant,
        kind: RequestKind,
        url: &Url,
    ) -> Failure {
        if let Some(denied) = denial_in(&e) {
            return Failure::Fatal(self.refused(kind, url, denied.clone()));
        }
        let detail = self.scrub(error_chain(&e));
        if e.is_timeout() {
            return Failure::Transient(ScanError::Timeout {
                what: format!("request to {}{}", self.registry(), url.path()),
                after: started.elapsed(),
            });
        }
        let lower = detail.to_ascii_lowercase();
        if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
            let hint = if lower.contains("http/1")
                || lower.contains("invalid content type")
                || lower.contains("corrupt")
            {
                " (is the registry plain http? use an http:// URL)"
            } else {
                " (trust its CA with a CA bundle, or set insecureSkipVerify)"
            };
            return Failure::Fatal(ScanError::Tls {
                registry: self.registry(),
                detail: format!("{detail}{hint}"),
            });
        }
        Failure::Transient(ScanError::Unreachable {
            registry: self.registry(),
            detail,
        })
    }
}

enum Failure {
    Transient(ScanError),
    Fatal(ScanError),
}

enum ReadError {
    TooLarge,
    Http(reqwest::Error),
}

async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<bytes::Bytes, ReadError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Http)? {
        if buf.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// reqwest's Display hides the cause ("error sending request"); users need the root cause.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}
