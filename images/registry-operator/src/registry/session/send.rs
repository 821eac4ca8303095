//! The request loop: redirects followed by hand (credentials never travel to another host),
//! a 401 answered once by authenticating, 429s and `Retry-After` waited out at the host's
//! gate, transient failures retried with backoff — all within the scan's deadline.

use std::time::SystemTime;

use reqwest::header::{LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use url::Url;

use super::Session;
use crate::registry::auth::parse_challenge;
use crate::registry::error::ScanError;
use crate::registry::transport::{
    ExchangeError, MAX_GATE_CLOSE, NetFailure, Reply, Request, RequestKind, parse_retry_after,
    same_origin,
};

const MAX_REDIRECTS: usize = 5;

/// What a request asks for and carries besides its URL.
pub(super) struct Payload<'p> {
    pub accept: Option<&'p str>,
    /// A JSON body (only Docker Hub's token POST has one).
    pub body: Option<bytes::Bytes>,
}

pub(super) enum Failure {
    Transient(ScanError),
    Fatal(ScanError),
}

impl Session<'_> {
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
        let policy = &self.transport.options.retry;
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
                    self.counters.retried();
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
                    self.counters.retried();
                    self.pause(policy.backoff(attempt)).await?;
                }
                _ => return Ok(reply),
            }
        }
    }

    /// After a 429 (or a 503 with `Retry-After`): closes the host's gate for the wait the
    /// registry asked for. Fails at once when that wait is past the scan's deadline, or when
    /// the attempts are spent.
    pub(super) fn back_off(
        &self,
        method: &Method,
        url: &Url,
        reply: &Reply,
        attempt: u32,
    ) -> Result<(), ScanError> {
        let policy = &self.transport.options.retry;
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
        self.transport
            .gates
            .close(self.tenant, url, wait.min(MAX_GATE_CLOSE));
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
        self.counters.retried();
        Ok(())
    }

    /// Also false for an https→http downgrade of the registry's own host.
    pub(super) fn on_same_host(&self, url: &Url) -> bool {
        same_origin(self.target.base_url(), url)
    }

    /// One exchange, its failures judged: connection-level problems are transient (worth a
    /// retry) except TLS failures, which will not fix themselves.
    pub(super) async fn exchange(
        &self,
        kind: RequestKind,
        method: &Method,
        url: &Url,
        payload: Payload<'_>,
        authorization: Option<&str>,
        limit: usize,
    ) -> Result<Reply, Failure> {
        let request = Request {
            kind,
            method,
            url,
            accept: payload.accept,
            authorization,
            body: payload.body,
            limit,
            deadline: self.deadline,
            counters: &self.counters,
            tenant: self.tenant,
        };
        self.transport
            .exchange(request)
            .await
            .map_err(|e| self.failure(kind, method, url, e))
    }

    fn failure(&self, kind: RequestKind, method: &Method, url: &Url, e: ExchangeError) -> Failure {
        match e {
            ExchangeError::Egress(denied) => Failure::Fatal(self.refused(kind, url, denied)),
            ExchangeError::Deadline => Failure::Fatal(self.scan_timed_out()),
            ExchangeError::Gate {
                closed_for,
                time_left,
            } => Failure::Fatal(if closed_for.is_zero() {
                self.scan_timed_out()
            } else {
                ScanError::RateLimited {
                    registry: self.registry(),
                    attempts: 1,
                    retry_after: Some(closed_for),
                    time_left: Some(time_left),
                }
            }),
            ExchangeError::BadAuthorization => Failure::Fatal(ScanError::InvalidConfig(
                "credentials contain characters not allowed in an HTTP header".into(),
            )),
            ExchangeError::TooLarge { limit } => Failure::Fatal(ScanError::ResponseTooLarge {
                registry: self.registry(),
                what: format!("{method} {}", url.path()),
                limit,
            }),
            // Worth another attempt: the registry may just have lost the connection.
            ExchangeError::Stalled { idle } => Failure::Transient(ScanError::Timeout {
                what: format!(
                    "the body of {method} {} from {} (no byte came; the idle timeout)",
                    url.path(),
                    self.registry()
                ),
                after: idle,
            }),
            ExchangeError::Net {
                failure,
                detail,
                elapsed,
            } => {
                let detail = self.scrub(detail);
                match failure {
                    NetFailure::Timeout => Failure::Transient(ScanError::Timeout {
                        what: format!("request to {}{}", self.registry(), url.path()),
                        after: elapsed,
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
    }
}
