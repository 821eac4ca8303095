//! One scan's conversation with a registry: authentication (anonymous, Basic, Bearer token),
//! retries, redirects, deadlines, body limits and request counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use url::Url;

use super::auth::{Challenge, Credentials, TokenKey, TokenResponse, parse_challenge};
use super::budget::Reservation;
use super::classify::{NetFailure, classify, error_chain};
use super::client::{RegistryClient, RequestKind};
use super::egress::{EgressDenied, denial_in, same_origin};
use super::error::body_excerpt;
use super::retry::parse_retry_after;
use super::state::{AuthKey, AuthMode};
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

/// Request counts of one scan.
#[derive(Default, Debug)]
pub(crate) struct Counters {
    pub tag_pages: AtomicU64,
    pub manifest_heads: AtomicU64,
    pub manifest_gets: AtomicU64,
    pub token_requests: AtomicU64,
    pub blob_heads: AtomicU64,
    pub native_requests: AtomicU64,
    pub retries: AtomicU64,
}

impl Counters {
    /// What was counted so far, as a scan reports it.
    pub fn counts(&self) -> super::RequestCounts {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as i64;
        super::RequestCounts {
            tag_pages: load(&self.tag_pages),
            manifest_heads: load(&self.manifest_heads),
            manifest_gets: load(&self.manifest_gets),
            token_requests: load(&self.token_requests),
            blob_heads: load(&self.blob_heads),
            retries: load(&self.retries),
            native_requests: load(&self.native_requests),
            lister: None,
        }
    }
}

const MAX_REDIRECTS: usize = 5;
const TOKEN_BODY_LIMIT: usize = 1 << 20;
/// Tokens remembered per session for scrubbing messages; a scan rarely sees more than two.
const MAX_SCRUBBED_TOKENS: usize = 16;
const MAX_GATE_CLOSE: Duration = Duration::from_secs(3600);
const WITHHELD: &str = "(registry response withheld: it echoed the credentials)";

/// The `Authorization` a request carried: a bearer token is remembered so that a 401 forgets
/// exactly the token that was rejected.
type Sent = Option<(TokenKey, String)>;

pub(crate) struct Session<'a> {
    client: &'a RegistryClient,
    pub target: &'a Target,
    credentials: Option<&'a Credentials>,
    auth_key: AuthKey,
    auth: Mutex<AuthMode>,
    /// Concurrent requests that find no valid token wait for one fetch instead of each fetching.
    token_fetch: tokio::sync::Mutex<()>,
    /// `None` when the timeout is too large to reach (no deadline then).
    deadline: Option<Instant>,
    scan_timeout: Duration,
    /// Tokens this session sent or received, withheld from any message.
    tokens_seen: Mutex<Vec<String>>,
    pub counters: Arc<Counters>,
}

impl<'a> Session<'a> {
    pub fn new(
        client: &'a RegistryClient,
        target: &'a Target,
        credentials: Option<&'a Credentials>,
        scan_timeout: Duration,
    ) -> Self {
        Self::scoped(client, target, credentials, scan_timeout, "")
    }

    fn scoped(
        client: &'a RegistryClient,
        target: &'a Target,
        credentials: Option<&'a Credentials>,
        scan_timeout: Duration,
        scope: &str,
    ) -> Self {
        let repository = match scope {
            "" => target.repository().to_string(),
            s => format!("{}#{s}", target.repository()),
        };
        let auth_key = (
            target.base_url().to_string(),
            repository,
            credentials
                .map(Credentials::fingerprint)
                .unwrap_or_default(),
        );
        // What an earlier scan learned: send its token up front instead of collecting a 401.
        let mode = client
            .state
            .auth
            .get(&auth_key)
            .unwrap_or(AuthMode::Anonymous);
        Self {
            client,
            target,
            credentials,
            auth_key,
            auth: Mutex::new(mode),
            token_fetch: tokio::sync::Mutex::new(()),
            deadline: Instant::now().checked_add(scan_timeout),
            scan_timeout,
            tokens_seen: Mutex::default(),
            counters: Arc::default(),
        }
    }

    /// A session for another API of the same scan (a vendor's listing API, on this host or
    /// its documented API host): same deadline and request counts, but its learned auth mode
    /// is kept apart under `scope`, since such an API may authenticate differently (Basic on
    /// Harbor's, a `metadata_read` token on ACR's).
    pub fn sibling<'b>(
        &self,
        target: &'b Target,
        credentials: Option<&'b Credentials>,
        scope: &str,
    ) -> Session<'b>
    where
        'a: 'b,
    {
        let mut s = Session::scoped(self.client, target, credentials, self.scan_timeout, scope);
        s.deadline = self.deadline;
        s.counters = self.counters.clone();
        s
    }

    fn registry(&self) -> String {
        self.target.registry()
    }

    pub fn remaining(&self) -> Result<Duration, ScanError> {
        let Some(deadline) = self.deadline else {
            return Ok(Duration::MAX);
        };
        deadline
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
            RequestKind::BlobHead => &self.counters.blob_heads,
            RequestKind::NativeList => &self.counters.native_requests,
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
        self.send_body(kind, method, url, accept, body_limit, None)
            .await
    }

    /// [`Session::send`] with a JSON request body (Docker Hub's token endpoint is a POST).
    pub async fn send_body(
        &self,
        kind: RequestKind,
        method: Method,
        url: Url,
        accept: Option<&str>,
        body_limit: usize,
        body: Option<bytes::Bytes>,
    ) -> Result<Reply, ScanError> {
        let policy = &self.client.options.retry;
        let mut attempt = 0u32;
        let mut reauthenticated = false;
        let mut url = url;
        let mut redirects = 0usize;
        loop {
            attempt += 1;
            let (auth, sent) = self.authorization(&url).await?;
            let result = self
                .exchange(
                    kind,
                    &method,
                    &url,
                    Payload {
                        accept,
                        body: body.clone(),
                    },
                    auth.as_deref(),
                    body_limit,
                )
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
                    self.prepare_auth(challenge, sent, &reply).await?;
                    attempt -= 1;
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    return Err(self.denied(&reply));
                }
                StatusCode::TOO_MANY_REQUESTS => {
                    // The next attempt waits at the host's gate, with every other stream.
                    self.back_off(&method, &url, &reply, attempt)?;
                }
                StatusCode::SERVICE_UNAVAILABLE if reply.header(RETRY_AFTER.as_str()).is_some() => {
                    self.back_off(&method, &url, &reply, attempt)?;
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

    /// After a 429 (or a 503 with `Retry-After`): closes the host's gate for the wait the
    /// registry asked for. Fails at once when that wait is past the scan's deadline, or when
    /// the attempts are spent.
    fn back_off(
        &self,
        method: &Method,
        url: &Url,
        reply: &Reply,
        attempt: u32,
    ) -> Result<(), ScanError> {
        let policy = &self.client.options.retry;
        let limited = reply.status == StatusCode::TOO_MANY_REQUESTS;
        if attempt >= policy.max_attempts {
            return Err(if limited {
                ScanError::RateLimited {
                    registry: self.registry(),
                    attempts: attempt,
                    retry_after: None,
                    time_left: None,
                }
            } else {
                self.status_error(method, url, reply)
            });
        }
        let asked = reply
            .header(RETRY_AFTER.as_str())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let wait = asked.unwrap_or_else(|| policy.backoff(attempt));
        // Every scan of this host waits, this one included; a far-off time is capped so that a
        // registry cannot shut itself out of scans for good.
        self.client.state.gates.close(url, wait.min(MAX_GATE_CLOSE));
        let left = self.remaining()?;
        if wait >= left {
            return Err(if limited {
                ScanError::RateLimited {
                    registry: self.registry(),
                    attempts: attempt,
                    retry_after: Some(wait),
                    time_left: Some(left),
                }
            } else {
                self.status_error(method, url, reply)
            });
        }
        tracing::debug!(registry = %self.registry(), ?wait, status = reply.status.as_u16(), "registry asked to wait; its gate is closed");
        self.counters.retries.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub fn status_error(&self, method: &Method, url: &Url, reply: &Reply) -> ScanError {
        ScanError::Status {
            registry: self.registry(),
            method: method.to_string(),
            path: url.path().to_string(),
            status: reply.status.as_u16(),
            excerpt: self.excerpt(&reply.body),
        }
    }

    pub fn invalid(&self, method: &Method, url: &Url, detail: String) -> ScanError {
        ScanError::InvalidResponse {
            registry: self.registry(),
            what: format!("{method} {}", url.path()),
            detail: self.scrub(detail),
        }
    }

    /// True when `text` holds the password (in any encoding) or a token of this session.
    fn leaks(&self, text: &str) -> bool {
        self.credentials.is_some_and(|c| c.leaks_into(text))
            || self
                .tokens_seen
                .lock()
                .expect("tokens poisoned")
                .iter()
                .any(|t| text.contains(t.as_str()))
    }

    /// Never let a secret reach a message, whatever a registry echoes back.
    fn scrub(&self, text: String) -> String {
        if self.leaks(&text) {
            WITHHELD.into()
        } else {
            text
        }
    }

    /// A short excerpt of a registry's body; judged on the whole body, since an excerpt may
    /// cut a secret short and still show most of it.
    fn excerpt(&self, body: &[u8]) -> String {
        if self.leaks(&String::from_utf8_lossy(body)) {
            WITHHELD.into()
        } else {
            self.scrub(body_excerpt(body))
        }
    }

    fn remember_token(&self, token: &str) {
        // Very short strings would scrub innocent text; such tokens are not secrets anyway.
        if token.len() < 8 {
            return;
        }
        let mut seen = self.tokens_seen.lock().expect("tokens poisoned");
        if !seen.iter().any(|t| t == token) {
            if seen.len() >= MAX_SCRUBBED_TOKENS {
                seen.remove(0);
            }
            seen.push(token.to_string());
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
        let challenge = reply
            .header(WWW_AUTHENTICATE.as_str())
            .and_then(parse_challenge);
        // Docker Hub (and others) grant a token for a repository that does not exist or that
        // the credentials may not read, then refuse it for lack of scope.
        if challenge.as_ref().and_then(Challenge::error) == Some("insufficient_scope") {
            return ScanError::NotAccessible {
                registry: self.registry(),
                repository: self.target.repository().to_string(),
            };
        }
        let excerpt = self.excerpt(&reply.body);
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
    async fn authorization(&self, url: &Url) -> Result<(Option<String>, Sent), ScanError> {
        if !self.on_same_host(url) {
            return Ok((None, None));
        }
        let mode = self.auth.lock().expect("auth mode poisoned").clone();
        match mode {
            AuthMode::Anonymous => Ok((None, None)),
            AuthMode::Basic => Ok((self.credentials.map(Credentials::basic_header), None)),
            AuthMode::Bearer(key) => {
                let token = match self.client.state.tokens.get(&key) {
                    Some(t) => t,
                    None => {
                        let _one_fetch = self.token_fetch.lock().await;
                        match self.client.state.tokens.get(&key) {
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
            *self.auth.lock().expect("auth mode poisoned") = AuthMode::Basic;
        }
    }

    /// Uses a bearer token obtained outside the challenge flow (Docker Hub's `/v2/auth/token`)
    /// for this session's host; `None` when the cached one is missing or expired.
    pub fn cached_bearer(&self, key: &TokenKey) -> bool {
        if self.client.state.tokens.get(key).is_some() {
            *self.auth.lock().expect("auth mode poisoned") = AuthMode::Bearer(key.clone());
            true
        } else {
            false
        }
    }

    pub fn use_bearer(&self, key: TokenKey, token: String, lifetime: Duration) {
        self.remember_token(&token);
        self.client.state.tokens.put(key.clone(), token, lifetime);
        *self.auth.lock().expect("auth mode poisoned") = AuthMode::Bearer(key);
    }

    pub fn credentials(&self) -> Option<&'a Credentials> {
        self.credentials
    }

    pub fn client(&self) -> &'a RegistryClient {
        self.client
    }

    fn set_mode(&self, mode: AuthMode) {
        *self.auth.lock().expect("auth mode poisoned") = mode.clone();
        self.client.state.auth.put(self.auth_key.clone(), mode);
    }

    /// Reacts to a 401: switch to Basic, or to a bearer token for the challenge. A cached
    /// token is forgotten only when it is the one this request sent and had refused.
    async fn prepare_auth(
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
                if let Some(token) = &rejected {
                    // Revoked or expired early.
                    self.client.state.tokens.forget(&key, token);
                }
                if self.client.state.tokens.get(&key).is_none() {
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
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    self.pause(policy.backoff(attempt)).await?;
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
                    self.remember_token(&token);
                    self.client
                        .state
                        .tokens
                        .put(key.clone(), token.clone(), lifetime);
                    Ok(token)
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(self.denied(&reply)),
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
        payload: Payload<'_>,
        authorization: Option<&str>,
        limit: usize,
    ) -> Result<Reply, Failure> {
        if let Some(policy) = &self.client.options.egress {
            policy
                .check_url(url)
                .map_err(|d| Failure::Fatal(self.refused(kind, url, d)))?;
        }
        self.admit(url).await.map_err(Failure::Fatal)?;
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
        if let Some(a) = payload.accept {
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
        if let Some(body) = payload.body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
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
        if let Some(wait) = exhausted_for(&headers, SystemTime::now()) {
            // The quota is spent: every scan of this host waits for its reset, instead of
            // collecting 429s.
            tracing::debug!(registry = %self.registry(), ?wait, "X-RateLimit-Remaining is 0; the host's gate is closed until the reset");
            self.client.state.gates.close(url, wait.min(MAX_GATE_CLOSE));
        }
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

    /// Waits at the host's gate (a registry's `Retry-After`, the rate ceiling). A wait past the
    /// deadline fails now rather than at the deadline.
    async fn admit(&self, url: &Url) -> Result<(), ScanError> {
        let admission = self.client.state.gates.admit(url);
        if admission.wait.is_zero() {
            return Ok(());
        }
        let left = self.remaining()?;
        if admission.wait >= left {
            return Err(if admission.closed_for.is_zero() {
                self.scan_timed_out()
            } else {
                ScanError::RateLimited {
                    registry: self.registry(),
                    attempts: 1,
                    retry_after: Some(admission.closed_for),
                    time_left: Some(left),
                }
            });
        }
        tokio::time::sleep(admission.wait).await;
        Ok(())
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
        let kind = classify(&e);
        let detail = self.scrub(error_chain(&e.without_url()));
        match kind {
            NetFailure::Timeout => Failure::Transient(ScanError::Timeout {
                what: format!("request to {}{}", self.registry(), url.path()),
                after: started.elapsed(),
            }),
            NetFailure::Tls { hint } => Failure::Fatal(ScanError::Tls {
                registry: self.registry(),
                detail: format!("{detail}{hint}"),
            }),
            NetFailure::Unreachable => Failure::Transient(ScanError::Unreachable {
                registry: self.registry(),
                detail,
            }),
        }
    }
}

/// What a request asks for and carries besides its URL.
struct Payload<'p> {
    accept: Option<&'p str>,
    /// A JSON body (only Docker Hub's token POST has one).
    body: Option<bytes::Bytes>,
}

/// How long to wait when a response says its rate-limit quota is spent
/// (`X-RateLimit-Remaining: 0`, as Docker Hub's and Quay's APIs send): until
/// `X-RateLimit-Reset`, a Unix time (Docker Hub, GitHub) or, when small, seconds from now.
fn exhausted_for(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    if value("x-ratelimit-remaining")? > 0.0 {
        return None;
    }
    let reset = value("x-ratelimit-reset").filter(|r| r.is_finite() && *r >= 0.0)?;
    // Ten years of seconds: anything larger is a timestamp.
    if reset > 315_360_000.0 {
        let at = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs_f64(reset))?;
        at.duration_since(now).ok().filter(|d| !d.is_zero())
    } else {
        Some(Duration::from_secs_f64(reset)).filter(|d| !d.is_zero())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_spent_quota_waits_for_its_reset() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |h: &[(&'static str, &str)]| exhausted_for(&headers(h), now);
        assert_eq!(
            at(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1800000030")
            ]),
            Some(Duration::from_secs(30)),
            "a Unix time"
        );
        assert_eq!(
            at(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "12")]),
            Some(Duration::from_secs(12)),
            "seconds from now"
        );
        assert_eq!(
            at(&[("x-ratelimit-remaining", "5"), ("x-ratelimit-reset", "12")]),
            None
        );
        assert_eq!(
            at(&[("x-ratelimit-remaining", "0")]),
            None,
            "no reset, no guess"
        );
        assert_eq!(
            at(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1700000000")
            ]),
            None,
            "a reset in the past"
        );
        assert_eq!(at(&[("x-ratelimit-remaining", "x")]), None);
    }
}
