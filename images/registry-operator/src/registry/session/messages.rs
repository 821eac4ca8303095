//! Errors built from a registry's replies. Whatever a registry echoes back, no message carries
//! the password (in any encoding) or a token this session sent or received.

use reqwest::header::WWW_AUTHENTICATE;
use reqwest::{Method, StatusCode};
use url::Url;

use super::Session;
use crate::registry::auth::{Challenge, parse_challenge};
use crate::registry::error::{ScanError, body_excerpt, truncate};
use crate::registry::transport::{EgressDenied, Reply, RequestKind, same_origin};

/// Tokens remembered per session for scrubbing messages; a scan rarely sees more than two.
const MAX_SCRUBBED_TOKENS: usize = 16;
/// Characters of a parser's message kept in an error.
const MAX_DETAIL: usize = 300;
const WITHHELD: &str = "(registry response withheld: it echoed the credentials)";

impl Session<'_> {
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
            // Parser messages quote what they met: a registry's megabytes stop here.
            detail: truncate(&self.scrub(detail), MAX_DETAIL),
        }
    }

    /// True when `text` holds the password (in any encoding) or a token of this session.
    fn leaks(&self, text: &str) -> bool {
        self.credentials.is_some_and(|c| c.leaks_into(text))
            || self
                .tokens_seen
                .lock()
                .iter()
                .any(|t| text.contains(t.as_str()))
    }

    /// Never let a secret reach a message, whatever a registry echoes back.
    pub(super) fn scrub(&self, text: String) -> String {
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

    pub(super) fn remember_token(&self, token: &str) {
        // Very short strings would scrub innocent text; such tokens are not secrets anyway.
        if token.len() < 8 {
            return;
        }
        let mut seen = self.tokens_seen.lock();
        if !seen.iter().any(|t| t == token) {
            if seen.len() >= MAX_SCRUBBED_TOKENS {
                seen.remove(0);
            }
            seen.push(token.to_string());
        }
    }

    /// The same words whatever the policy refused, so that nothing about the network leaks.
    pub(super) fn refused(&self, kind: RequestKind, url: &Url, denied: EgressDenied) -> ScanError {
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

    pub(super) fn denied(&self, reply: &Reply) -> ScanError {
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
}
