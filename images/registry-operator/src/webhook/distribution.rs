//! CNCF distribution's `notifications` endpoints: an envelope `{"events": [...]}` sent as
//! `application/vnd.docker.distribution.events.v1+json` (2.x) or `…events.v2+json` (v3), each
//! event with `action`, `target` {mediaType, digest, repository, url, tag} and `request` {host}.
//! https://distribution.github.io/distribution/about/notifications/

use serde_json::Value;

use super::{Action, Event, ParseError, host_of, shape, str_at};

pub fn parse(v: &Value) -> Result<Vec<Event>, ParseError> {
    let events = v
        .get("events")
        .and_then(Value::as_array)
        .ok_or_else(|| shape("no \"events\" array (not a distribution notification envelope)"))?;
    Ok(events.iter().filter_map(event).collect())
}

/// One event of the distribution shape (ACR sends this same shape, one per request). Pushes
/// count only for manifests that carry a tag; pulls and blob events are none of our business.
pub(super) fn event(e: &Value) -> Option<Event> {
    let action = match e.get("action")?.as_str()? {
        "push" => Action::Push,
        "delete" => Action::Delete,
        _ => return None,
    };
    let target = e.get("target")?;
    let media_type = str_at(target, &["mediaType"]).unwrap_or_default();
    if !media_type.is_empty() && !is_manifest(media_type) {
        return None;
    }
    let repository = str_at(target, &["repository"])?.to_string();
    let tag = str_at(target, &["tag"]).map(str::to_string);
    if action == Action::Push && tag.as_deref().is_none_or(str::is_empty) {
        return None;
    }
    let host = str_at(e, &["request", "host"])
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .or_else(|| str_at(target, &["url"]).and_then(host_of));
    Some(Event {
        host,
        repository,
        tag,
        digest: str_at(target, &["digest"]).map(str::to_string),
        action,
    })
}

fn is_manifest(media_type: &str) -> bool {
    media_type.contains("manifest") || media_type.contains("image.index")
}

#[cfg(test)]
mod tests {
    use super::super::{Kind, parse};
    use super::*;

    /// The documented envelope (v1 media type, distribution 2.x) with a manifest push, a layer
    /// push and a pull: https://distribution.github.io/distribution/about/notifications/
    const ENVELOPE: &str = include_str!("testdata/distribution-envelope.json");

    #[test]
    fn manifest_pushes_with_a_tag_only() {
        let events = parse(Kind::Distribution, ENVELOPE.as_bytes()).unwrap();
        assert_eq!(
            events,
            [Event {
                host: Some("registrycluster.local".into()),
                repository: "library/test".into(),
                tag: Some("latest".into()),
                digest: Some(
                    "sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf"
                        .into()
                ),
                action: Action::Push,
            }]
        );
    }

    #[test]
    fn deletes_by_digest_and_url_host_fallback() {
        // v3 sends delete events for manifests (by digest) and for tags.
        let body = r#"{"events": [
          {"action": "delete", "target": {"repository": "a/b", "digest": "sha256:abababababababababababababababababababababababababababababababab"},
           "request": {"host": ""}},
          {"action": "delete", "target": {"repository": "a/b", "tag": "old",
           "url": "http://127.0.0.1:5000/v2/a/b/manifests/old"}}
        ]}"#;
        let events = parse(Kind::Distribution, body.as_bytes()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].tag, None);
        assert_eq!(events[0].action, Action::Delete);
        assert_eq!(events[1].host.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(events[1].tag.as_deref(), Some("old"));
    }

    #[test]
    fn not_an_envelope() {
        assert!(parse(Kind::Distribution, br#"{"event": {}}"#).is_err());
        assert_eq!(parse(Kind::Distribution, br#"{"events": []}"#).unwrap(), []);
    }
}
