//! Why a scan failed, in words a platform engineer can act on.
//!
//! Every variant maps to one condition reason; messages never contain credentials (the client
//! never puts them in URLs, and registry bodies are not echoed beyond a short, sanitised excerpt).

use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ScanError {
    #[error("invalid registry settings: {0}")]
    InvalidConfig(String),

    #[error("authentication failed for {registry}: {detail}")]
    Unauthorized { registry: String, detail: String },

    #[error(
        "repository {repository} not found on {registry} (check the repository path; private repositories may also need credentials)"
    )]
    RepositoryNotFound {
        registry: String,
        repository: String,
    },

    #[error("TLS error talking to {registry}: {detail}")]
    Tls { registry: String, detail: String },

    #[error("{registry} is unreachable: {detail}")]
    Unreachable { registry: String, detail: String },

    #[error("{what} timed out after {}s", after.as_secs_f64())]
    Timeout { what: String, after: Duration },

    #[error(
        "repository {repository} on {registry}: repository not found or not accessible with these credentials"
    )]
    NotAccessible {
        registry: String,
        repository: String,
    },

    #[error("rate limited by {registry} (HTTP 429){}; the next scan retries (add credentials to raise the limit)", rate_limit_detail(*.attempts, *.retry_after, *.time_left))]
    RateLimited {
        registry: String,
        attempts: u32,
        /// The wait the registry asked for, when it was longer than the scan had left.
        retry_after: Option<Duration>,
        time_left: Option<Duration>,
    },

    #[error("{failed} of {total} tags could not be read (first: tag {tag}: {first})")]
    TooManyTagFailures {
        failed: usize,
        total: usize,
        tag: String,
        first: Box<ScanError>,
    },

    #[error("{registry} answered {method} {path} with HTTP {status}{}", excerpt_suffix(.excerpt))]
    Status {
        registry: String,
        method: String,
        path: String,
        status: u16,
        excerpt: String,
    },

    #[error("{registry} sent an invalid response to {what}: {detail}")]
    InvalidResponse {
        registry: String,
        what: String,
        detail: String,
    },

    #[error(
        "repository {repository} on {registry} has more than {limit} tags, the operator's limit per scan; narrow spec.tagFilter, or ask the platform team to raise maxTags"
    )]
    TooManyTags {
        registry: String,
        repository: String,
        limit: usize,
    },

    #[error(
        "the tag list of {repository} on {registry} runs to more than {limit} pages, the operator's limit per scan"
    )]
    TooManyTagPages {
        registry: String,
        repository: String,
        limit: usize,
    },

    #[error(
        "{registry} answered {what} with more than {limit} bytes, the operator's limit for one response"
    )]
    ResponseTooLarge {
        registry: String,
        what: String,
        limit: usize,
    },

    /// No request went to `host`: the message is the same whatever lies behind it.
    #[error(
        "refused by the operator's egress policy: {host} is not an allowed destination{via}; ask the platform team if it should be"
    )]
    EgressDenied {
        registry: String,
        host: String,
        /// Empty, or how the scan got there (" (token realm announced by …)").
        via: String,
    },

    #[error(
        "{registry} announced a token realm on plain http ({realm_host}) although it is served over https; credentials are not sent over http"
    )]
    InsecureTokenRealm {
        registry: String,
        realm_host: String,
    },

    /// A bug met this object's input: the work was stopped and contained, the process goes on.
    #[error(
        "the operator hit an internal error ({phase}) on this object and stopped its {phase}; the next one retries (please report it with the operator's logs)"
    )]
    Internal { phase: &'static str },
}

fn rate_limit_detail(
    attempts: u32,
    retry_after: Option<Duration>,
    time_left: Option<Duration>,
) -> String {
    match (retry_after, time_left) {
        (Some(wait), Some(left)) => format!(
            ": it asked to wait {}s (Retry-After), longer than the {}s left of the scan",
            wait.as_secs(),
            left.as_secs()
        ),
        (Some(wait), None) => format!(": it asked to wait {}s (Retry-After)", wait.as_secs()),
        _ => format!(" after {attempts} attempts"),
    }
}

fn excerpt_suffix(excerpt: &str) -> String {
    if excerpt.is_empty() {
        String::new()
    } else {
        format!(": {excerpt}")
    }
}

/// A machine-readable cause, used as the `Ready` condition's reason and as a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    InvalidSpec,
    AuthenticationFailed,
    RepositoryNotFound,
    TlsError,
    RegistryUnreachable,
    Timeout,
    RateLimited,
    RegistryError,
    TooManyTags,
    ResponseTooLarge,
    EgressDenied,
    InsecureTokenRealm,
    InternalError,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidSpec => "InvalidSpec",
            Self::AuthenticationFailed => "AuthenticationFailed",
            Self::RepositoryNotFound => "RepositoryNotFound",
            Self::TlsError => "TLSError",
            Self::RegistryUnreachable => "RegistryUnreachable",
            Self::Timeout => "Timeout",
            Self::RateLimited => "RateLimited",
            Self::RegistryError => "RegistryError",
            Self::TooManyTags => "TooManyTags",
            Self::ResponseTooLarge => "ResponseTooLarge",
            Self::EgressDenied => "EgressDenied",
            Self::InsecureTokenRealm => "InsecureTokenRealm",
            Self::InternalError => "InternalError",
        }
    }
}

impl ScanError {
    pub fn reason(&self) -> FailureReason {
        match self {
            Self::InvalidConfig(_) => FailureReason::InvalidSpec,
            Self::Unauthorized { .. } => FailureReason::AuthenticationFailed,
            Self::RepositoryNotFound { .. } | Self::NotAccessible { .. } => {
                FailureReason::RepositoryNotFound
            }
            Self::TooManyTagFailures { first, .. } => first.reason(),
            Self::Tls { .. } => FailureReason::TlsError,
            Self::Unreachable { .. } => FailureReason::RegistryUnreachable,
            Self::Timeout { .. } => FailureReason::Timeout,
            Self::RateLimited { .. } => FailureReason::RateLimited,
            Self::Status { .. } | Self::InvalidResponse { .. } => FailureReason::RegistryError,
            Self::TooManyTags { .. } | Self::TooManyTagPages { .. } => FailureReason::TooManyTags,
            Self::ResponseTooLarge { .. } => FailureReason::ResponseTooLarge,
            Self::EgressDenied { .. } => FailureReason::EgressDenied,
            Self::InsecureTokenRealm { .. } => FailureReason::InsecureTokenRealm,
            Self::Internal { .. } => FailureReason::InternalError,
        }
    }
}

impl ScanError {
    /// True for failures that concern the registry as a whole (its TLS, its rate limit, the
    /// settings): one tag failing this way means the others will too, so the scan stops.
    pub fn is_scan_wide(&self) -> bool {
        matches!(
            self,
            Self::InvalidConfig(_)
                | Self::Tls { .. }
                | Self::RateLimited { .. }
                // A redirect or realm that breaks the policy is the registry's doing, not one
                // tag's: the whole scan says so.
                | Self::EgressDenied { .. }
                | Self::InsecureTokenRealm { .. }
        )
    }
}

/// A short, single-line, printable excerpt of a registry's error body.
pub(crate) fn body_excerpt(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(body);
    // Registries answer errors as {"errors":[{"code":..,"message":..}]}; prefer that message.
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        && let Some(errors) = v.get("errors").and_then(|e| e.as_array())
    {
        let msgs: Vec<String> = errors
            .iter()
            .filter_map(|e| {
                let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
                let msg = e.get("message").and_then(|m| m.as_str()).unwrap_or("");
                (!code.is_empty() || !msg.is_empty())
                    .then(|| format!("{code} {msg}").trim().to_string())
            })
            .collect();
        if !msgs.is_empty() {
            return truncate(&msgs.join("; "), MAX);
        }
    }
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate(
        flat.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .as_str(),
        MAX,
    )
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_prefers_registry_error_messages() {
        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#;
        assert_eq!(body_excerpt(body), "UNAUTHORIZED authentication required");
    }

    #[test]
    fn rate_limits_say_how_long_the_registry_asked_for() {
        let e = ScanError::RateLimited {
            registry: "r".into(),
            attempts: 1,
            retry_after: Some(Duration::from_secs(3600)),
            time_left: Some(Duration::from_secs(299)),
        };
        let text = e.to_string();
        assert!(
            text.contains("HTTP 429") && text.contains("3600s"),
            "{text}"
        );
        assert_eq!(e.reason(), FailureReason::RateLimited);
        assert!(e.is_scan_wide());
    }

    #[test]
    fn excerpt_is_one_bounded_line() {
        let body = format!("<html>\n<body>{}</body>\n</html>", "x".repeat(1000));
        let e = body_excerpt(body.as_bytes());
        assert!(!e.contains('\n'));
        assert!(e.chars().count() <= 201);
    }
}
