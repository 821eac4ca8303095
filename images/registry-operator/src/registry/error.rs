//! Why a scan failed, in words a platform engineer can act on.
//!
//! Every variant maps to one condition reason; messages never contain credentials (the client
//! never puts them in URLs) nor what a body said beyond a registry's own error codes and
//! messages, short and sanitised.

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

/// What a registry said went wrong, from its error body (`{"errors":[{"code":..,"message":..}]}`,
/// the distribution spec's shape): codes and messages only, one printable line, bounded. Any
/// other body (an HTML page, another service's JSON) gives nothing: a tenant may point the
/// operator at whatever it likes, and what answered must not be echoed into a status.
pub(crate) fn body_excerpt(body: &[u8]) -> String {
    const MAX: usize = 200;
    // Error bodies are small; a larger one is not worth parsing for a message.
    const MAX_PARSED: usize = 64 * 1024;
    const MAX_ERRORS: usize = 5;

    #[derive(serde::Deserialize)]
    struct ErrorBody {
        errors: Vec<serde_json::Value>,
    }

    if body.len() > MAX_PARSED {
        return String::new();
    }
    let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) else {
        return String::new();
    };
    let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(one_line);
    let msgs: Vec<String> = parsed
        .errors
        .iter()
        .take(MAX_ERRORS)
        .filter_map(|e| {
            // Spec codes are identifiers (MANIFEST_UNKNOWN, DENIED, TOOMANYREQUESTS …).
            let code = text(e.get("code")).filter(|c| {
                c.len() <= 64
                    && !c.is_empty()
                    && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
            });
            let msg = text(e.get("message")).filter(|m| !m.is_empty());
            match (code, msg) {
                (Some(c), Some(m)) => Some(format!("{c} {m}")),
                (Some(one), None) | (None, Some(one)) => Some(one),
                (None, None) => None,
            }
        })
        .collect();
    truncate(&msgs.join("; "), MAX)
}

/// Control characters out, whitespace runs folded into one space.
fn one_line(s: &str) -> String {
    s.split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
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
    fn excerpt_is_one_bounded_line_of_printable_registry_text() {
        let message = format!("line one\n\u{1b}[31mred\u{7}{}", "x".repeat(1000));
        let body = serde_json::json!({"errors": [{"code": "DENIED", "message": message}]});
        let e = body_excerpt(body.to_string().as_bytes());
        assert!(e.starts_with("DENIED line one [31mred x"), "{e}");
        assert!(!e.chars().any(char::is_control), "{e:?}");
        assert!(e.chars().count() <= 201, "{}", e.chars().count());
    }

    /// Whatever answered that is not a registry (an internal web page, a proxy's error page, a
    /// JSON API of another service) never has its content repeated in a status.
    #[test]
    fn bodies_that_are_not_registry_errors_give_no_excerpt() {
        for body in [
            "<html><body><h1>Internal admin</h1>db-password=hunter2</body></html>".to_string(),
            "plain text from some service: internal-host-42".into(),
            r#"{"message":"internal-host-42 says hello","errors":"not a list"}"#.into(),
            r#"{"errors":[{"detail":{"internal":"internal-host-42"}}]}"#.into(),
            r#"{"errors":[{"code":{"x":"internal-host-42"},"message":7}]}"#.into(),
            r#"{"items":[1,2,3]}"#.into(),
            String::new(),
        ] {
            assert_eq!(body_excerpt(body.as_bytes()), "", "{body}");
        }
    }

    #[test]
    fn excerpt_keeps_code_and_message_only() {
        let body = br#"{"errors":[
            {"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"internal-host-42"}},
            {"code":"not a code; internal-host-42","message":"second"},
            {"code":"NAME_UNKNOWN"}
        ]}"#;
        assert_eq!(
            body_excerpt(body),
            "MANIFEST_UNKNOWN manifest unknown; second; NAME_UNKNOWN"
        );
    }
}
