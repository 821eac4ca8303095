//! Registry webhooks, cluster-free: authenticating a request and turning each vendor's payload
//! into the same [`Event`]s. The controller's receiver (controller/webhook.rs) matches events to
//! Registry objects and refreshes the tags they name.

mod acr;
pub mod auth;
mod cloudevents;
mod distribution;
mod dockerhub;
mod ghcr;
mod harbor;
mod quay;
pub mod validate;

use serde_json::Value;

/// Bodies larger than this are refused (413) before parsing.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The sender kinds, as named in the path `POST /webhook/{kind}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Distribution,
    Harbor,
    DockerHub,
    Quay,
    Ghcr,
    Acr,
    CloudEvents,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Distribution,
        Kind::Harbor,
        Kind::DockerHub,
        Kind::Quay,
        Kind::Ghcr,
        Kind::Acr,
        Kind::CloudEvents,
    ];

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Distribution => "distribution",
            Kind::Harbor => "harbor",
            Kind::DockerHub => "dockerhub",
            Kind::Quay => "quay",
            Kind::Ghcr => "ghcr",
            Kind::Acr => "acr",
            Kind::CloudEvents => "cloudevents",
        }
    }

    /// The registry host every event of this kind is about, when the payload cannot say.
    fn implied_host(self) -> Option<&'static str> {
        match self {
            Kind::DockerHub => Some(DOCKER_HUB),
            Kind::Ghcr => Some("ghcr.io"),
            _ => None,
        }
    }
}

/// Docker Hub's API host: what `Target` turns every Docker Hub alias into.
const DOCKER_HUB: &str = "registry-1.docker.io";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Push,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

/// One tag (or one manifest, for a delete by digest) that changed in one repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// `host[:port]`, lower case, when the payload (or the kind) names the registry.
    pub host: Option<String>,
    pub repository: String,
    /// `None` only for a manifest deleted by digest: every tag that pointed at it is affected.
    pub tag: Option<String>,
    pub digest: Option<String>,
    pub action: Action,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("body is not JSON: {0}")]
    Json(String),
    #[error("{0}")]
    Shape(String),
}

/// The events a payload carries; events it does not care about (pulls, blob pushes, other
/// event types) are left out, so an empty list is a valid answer.
pub fn parse(kind: Kind, body: &[u8]) -> Result<Vec<Event>, ParseError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    if !value.is_object() {
        return Err(ParseError::Shape("payload is not a JSON object".into()));
    }
    let events = match kind {
        Kind::Distribution => distribution::parse(&value)?,
        Kind::Harbor => harbor::parse(&value)?,
        Kind::DockerHub => dockerhub::parse(&value)?,
        Kind::Quay => quay::parse(&value)?,
        Kind::Ghcr => ghcr::parse(&value)?,
        Kind::Acr => acr::parse(&value)?,
        Kind::CloudEvents => cloudevents::parse(&value)?,
    };
    Ok(events
        .into_iter()
        .filter_map(|mut e| {
            e.host = e
                .host
                .or_else(|| kind.implied_host().map(str::to_string))
                .map(|h| normalize_host(&h));
            if e.host.as_deref().is_some_and(|h| !validate::host(h)) {
                return None;
            }
            e.repository = e.repository.trim_matches('/').to_string();
            if e.host.as_deref() == Some(DOCKER_HUB) && !e.repository.contains('/') {
                e.repository = format!("library/{}", e.repository);
            }
            if !validate::repository(&e.repository) {
                return None;
            }
            e.tag = e.tag.filter(|t| validate::tag(t));
            e.digest = e.digest.filter(|d| validate::digest(d));
            let usable = e.tag.is_some() || (e.action == Action::Delete && e.digest.is_some());
            usable.then_some(e)
        })
        .take(validate::MAX_EVENTS)
        .collect())
}

/// `host[:port]` as `Target::registry` spells it: lower case, no default port, Docker Hub's
/// aliases folded into its API host.
pub fn normalize_host(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    let host = host
        .strip_suffix(":443")
        .or_else(|| host.strip_suffix(":80"))
        .unwrap_or(&host);
    match host {
        "docker.io" | "index.docker.io" | "registry.hub.docker.com" | "hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        h => h.to_string(),
    }
}

/// The `host[:port]` of a URL, or of a `host/path` reference without a scheme.
fn host_of(url_or_ref: &str) -> Option<String> {
    if url_or_ref.contains("://") {
        let u = url::Url::parse(url_or_ref).ok()?;
        let host = u.host_str()?;
        return Some(match u.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        });
    }
    let first = url_or_ref.split('/').next()?;
    // Only a first component that looks like a host (a dot, a port, or localhost) is one.
    (first.contains('.') || first.contains(':') || first == "localhost").then(|| first.to_string())
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn shape(msg: &str) -> ParseError {
    ParseError::Shape(msg.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_normalized_like_targets() {
        assert_eq!(
            normalize_host("Registry.Example.com:443"),
            "registry.example.com"
        );
        assert_eq!(normalize_host("index.docker.io"), DOCKER_HUB);
        assert_eq!(normalize_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(
            host_of("https://r.example.com:5000/v2/a/b"),
            Some("r.example.com:5000".into())
        );
        assert_eq!(host_of("quay.io/ns/repo"), Some("quay.io".into()));
        assert_eq!(host_of("library/nginx"), None);
    }

    #[test]
    fn garbage_is_a_parse_error_not_a_panic() {
        for kind in Kind::ALL {
            assert!(parse(kind, b"not json").is_err(), "{kind:?}");
            assert!(parse(kind, b"[1,2]").is_err(), "{kind:?}");
            assert!(parse(kind, b"\"s\"").is_err(), "{kind:?}");
        }
    }

    #[test]
    fn kinds_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(Kind::parse("gitlab"), None);
    }
}
