//! One HTTP exchange with a registry: egress check, the host's gate, a per-request timeout
//! within the caller's deadline, the tenant's share of the body budget, a body size limit and
//! an idle timeout on the body. What the
//! failures mean for a scan (retry or not, which message) is the session's to decide.

use std::time::{Duration, Instant, SystemTime};

use reqwest::Method;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use url::Url;

use super::budget::Reservation;
use super::classify::{NetFailure, classify, error_chain};
use super::client::{RequestKind, Transport};
use super::counters::Counters;
use super::egress::{EgressDenied, denial_in};

/// A ceiling on how long one registry may close its host's gate: a far-off time would shut
/// it out of scans for good.
pub(crate) const MAX_GATE_CLOSE: Duration = Duration::from_secs(3600);

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

/// What one request asks for and carries.
pub(crate) struct Request<'r> {
    pub kind: RequestKind,
    pub method: &'r Method,
    pub url: &'r Url,
    pub accept: Option<&'r str>,
    pub authorization: Option<&'r str>,
    /// A JSON body (only Docker Hub's token POST has one).
    pub body: Option<bytes::Bytes>,
    /// Largest body accepted.
    pub limit: usize,
    /// The caller's deadline; `None` for none.
    pub deadline: Option<Instant>,
    pub counters: &'r Counters,
    /// Whose share of shared resources (the body budget, the host gates) this request uses.
    pub tenant: &'r str,
}

impl Request<'_> {
    fn remaining(&self) -> Result<Duration, ExchangeError> {
        let Some(deadline) = self.deadline else {
            return Ok(Duration::MAX);
        };
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(ExchangeError::Deadline)
    }
}

/// Why an exchange gave no reply.
#[derive(Debug)]
pub(crate) enum ExchangeError {
    /// The egress policy refused the URL (or the address its name resolved to).
    Egress(EgressDenied),
    /// The host's gate stays closed past the deadline; `closed_for` is the part a registry
    /// asked for (zero when only the rate ceiling holds it).
    Gate {
        closed_for: Duration,
        time_left: Duration,
    },
    /// The deadline passed.
    Deadline,
    /// The `Authorization` value is not a valid header value.
    BadAuthorization,
    /// The body is larger than the request's limit.
    TooLarge { limit: usize },
    /// The body stopped: no byte came for `idle`.
    Stalled { idle: Duration },
    /// No (complete) response: `detail` is the error chain, for the caller to scrub.
    Net {
        failure: NetFailure,
        detail: String,
        elapsed: Duration,
    },
}

impl Transport {
    pub(crate) async fn exchange(&self, req: Request<'_>) -> Result<Reply, ExchangeError> {
        if let Some(policy) = &self.options.egress {
            policy.check_url(req.url).map_err(ExchangeError::Egress)?;
        }
        self.admit(&req).await?;
        let per_request = self.options.request_timeout.min(req.remaining()?);
        let mut builder = self
            .http
            .request(req.method.clone(), req.url.clone())
            .timeout(per_request);
        if let Some(a) = req.accept {
            builder = builder.header(ACCEPT, a);
        }
        if let Some(a) = req.authorization {
            let mut value =
                HeaderValue::from_str(a).map_err(|_| ExchangeError::BadAuthorization)?;
            value.set_sensitive(true);
            builder = builder.header(AUTHORIZATION, value);
        }
        if let Some(body) = req.body.clone() {
            builder = builder.header(CONTENT_TYPE, "application/json").body(body);
        }
        let started = Instant::now();
        let sent = builder.send().await;
        req.counters.count(req.kind);
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                self.observe(req.kind, req.method, None);
                return Err(net_error(e, started));
            }
        };
        let status = response.status();
        self.observe(req.kind, req.method, Some(status.as_u16()));
        let headers = response.headers().clone();
        if let Some(wait) = exhausted_for(&headers, SystemTime::now()) {
            // The quota is spent: every scan of this host waits for its reset, instead of
            // collecting 429s.
            tracing::debug!(
                host = req.url.host_str().unwrap_or_default(),
                ?wait,
                "X-RateLimit-Remaining is 0; the host's gate is closed until the reset"
            );
            self.gates
                .close(req.tenant, req.url, wait.min(MAX_GATE_CLOSE));
        }
        let mut reservation = None;
        let body = if *req.method == Method::HEAD {
            bytes::Bytes::new()
        } else {
            if let Some(budget) = &self.options.body_budget {
                let expected = response
                    .content_length()
                    .and_then(|n| usize::try_from(n).ok())
                    .map_or(req.limit, |n| n.min(req.limit));
                let room = budget.reserve(req.tenant, expected);
                reservation = Some(
                    tokio::time::timeout(req.remaining()?, room)
                        .await
                        .map_err(|_| ExchangeError::Deadline)?,
                );
            }
            let idle = self.options.body_idle_timeout;
            read_limited(response, req.limit, idle)
                .await
                .map_err(|e| match e {
                    ReadError::TooLarge => ExchangeError::TooLarge { limit: req.limit },
                    ReadError::Stalled => ExchangeError::Stalled { idle },
                    ReadError::Http(e) => net_error(e, started),
                })?
        };
        Ok(Reply {
            status,
            headers,
            body,
            _budget: reservation,
        })
    }

    /// Sees every HTTP exchange (status `None` when no response arrived).
    fn observe(&self, kind: RequestKind, method: &Method, status: Option<u16>) {
        if let Some(o) = &self.observer {
            o.observe(kind, method.as_str(), status);
        }
    }

    /// Waits at the host's gate (a registry's `Retry-After`, the rate ceiling). A wait past
    /// the deadline fails now rather than at the deadline.
    async fn admit(&self, req: &Request<'_>) -> Result<(), ExchangeError> {
        let admission = self.gates.admit(req.tenant, req.url);
        if admission.wait.is_zero() {
            return Ok(());
        }
        let left = req.remaining()?;
        if admission.wait >= left {
            return Err(ExchangeError::Gate {
                closed_for: admission.closed_for,
                time_left: left,
            });
        }
        tokio::time::sleep(admission.wait).await;
        Ok(())
    }
}

fn net_error(e: reqwest::Error, started: Instant) -> ExchangeError {
    if let Some(denied) = denial_in(&e) {
        return ExchangeError::Egress(denied.clone());
    }
    ExchangeError::Net {
        failure: classify(&e),
        detail: error_chain(&e.without_url()),
        elapsed: started.elapsed(),
    }
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
        // `try_`: a reset past `Duration::MAX` (`1e300`) is no answer, not a panic.
        let at = SystemTime::UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(reset).ok()?)?;
        at.duration_since(now).ok().filter(|d| !d.is_zero())
    } else {
        Duration::try_from_secs_f64(reset)
            .ok()
            .filter(|d| !d.is_zero())
    }
}

enum ReadError {
    TooLarge,
    Stalled,
    Http(reqwest::Error),
}

/// Reads the body within `limit` bytes; a pause of `idle` between two chunks ends it (the
/// request timeout alone would let a stalled body hold its budget for the whole attempt).
async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
    idle: Duration,
) -> Result<bytes::Bytes, ReadError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut buf = bytes::BytesMut::new();
    loop {
        let chunk = tokio::time::timeout(idle, response.chunk())
            .await
            .map_err(|_| ReadError::Stalled)?
            .map_err(ReadError::Http)?;
        let Some(chunk) = chunk else { break };
        if buf.len().saturating_add(chunk.len()) > limit {
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
        for absurd in [
            "1e300",
            "1.8e19",
            "18446744073709551616",
            "inf",
            "-1",
            "NaN",
        ] {
            let _ = at(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", absurd),
            ]);
        }
        assert_eq!(at(&[("x-ratelimit-remaining", "x")]), None);
    }
}
