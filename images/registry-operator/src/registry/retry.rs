//! When to try a request again: 429 honours `Retry-After`; 5xx and connection errors back off
//! exponentially. Every wait is bounded, so a registry cannot stall a scan past its deadline.

use std::time::{Duration, SystemTime};

use rand::Rng;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request in all (first try included).
    pub max_attempts: u32,
    /// First backoff after a 5xx or connection error; doubles each time.
    pub base_delay: Duration,
    /// Upper bound of any single wait, `Retry-After` included.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with full jitter over the upper half, for attempt 1, 2, …
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }

    /// The wait a 429 asks for, capped; without a usable header, the exponential backoff.
    pub fn rate_limit_wait(&self, retry_after: Option<&str>, attempt: u32) -> Duration {
        retry_after
            .and_then(|v| parse_retry_after(v, SystemTime::now()))
            .map(|d| d.min(self.max_delay))
            .unwrap_or_else(|| self.backoff(attempt))
    }
}

/// `Retry-After` is either delta-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(42));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(42))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(5));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn waits_are_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.rate_limit_wait(Some("86400"), 1), p.max_delay);
        for attempt in 1..40 {
            assert!(p.backoff(attempt) <= p.max_delay);
        }
        let first = p.backoff(1);
        assert!(first >= p.base_delay / 2 && first <= p.base_delay);
    }
}
