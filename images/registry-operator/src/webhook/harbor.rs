//! Harbor webhooks, in both payload formats Harbor offers: "Default" (`type` PUSH_ARTIFACT /
//! DELETE_ARTIFACT, `event_data`) and "CloudEvents" (`type` harbor.artifact.pushed / .deleted,
//! `data`). Either way every entry of `resources` is one tag, with its `resource_url`
//! (`host/project/repo:tag`) naming the registry.
//! https://goharbor.io/docs/latest/working-with-projects/project-configuration/configure-webhooks/

use serde_json::Value;

use super::{Action, Event, ParseError, host_of, shape, str_at};

pub fn parse(v: &Value) -> Result<Vec<Event>, ParseError> {
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| shape("no \"type\" (not a Harbor webhook)"))?;
    let (action, data) = match kind {
        "PUSH_ARTIFACT" => (Action::Push, v.get("event_data")),
        "DELETE_ARTIFACT" => (Action::Delete, v.get("event_data")),
        "harbor.artifact.pushed" => (Action::Push, v.get("data")),
        "harbor.artifact.deleted" => (Action::Delete, v.get("data")),
        _ => return Ok(Vec::new()),
    };
    let data = data.ok_or_else(|| shape("no event data"))?;
    Ok(resources(data, action))
}

/// The `resources` of Harbor's event data (also what a generic CloudEvent may carry).
pub(super) fn resources(data: &Value, action: Action) -> Vec<Event> {
    let Some(repository) = str_at(data, &["repository", "repo_full_name"]) else {
        return Vec::new();
    };
    let Some(list) = data.get("resources").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|r| Event {
            host: str_at(r, &["resource_url"]).and_then(host_of),
            repository: repository.to_string(),
            tag: str_at(r, &["tag"]).map(str::to_string),
            digest: str_at(r, &["digest"]).map(str::to_string),
            action,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{Kind, parse};
    use super::*;

    /// "Default" format, push artifact, as in Harbor's webhook documentation.
    const DEFAULT: &str = include_str!("testdata/harbor-default.json");

    /// "CloudEvents" format of the same push.
    const CLOUDEVENTS: &str = include_str!("testdata/harbor-cloudevents.json");

    #[test]
    fn every_resource_is_a_tag() {
        let e = parse(Kind::Harbor, DEFAULT.as_bytes()).unwrap();
        // The first resource is the digest itself in the tag field: not a tag.
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].tag.as_deref(), Some("3.17"));
        assert_eq!(e[0].host.as_deref(), Some("harbor.example.com"));
        assert_eq!(e[0].repository, "harbor/alpine");
    }

    #[test]
    fn cloudevents_format() {
        let e = parse(Kind::Harbor, CLOUDEVENTS.as_bytes()).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].action, Action::Push);
        assert_eq!(e[0].host.as_deref(), Some("harbor.example.com"));
    }

    #[test]
    fn other_types_are_ignored() {
        let pull = DEFAULT.replace("PUSH_ARTIFACT", "PULL_ARTIFACT");
        assert_eq!(parse(Kind::Harbor, pull.as_bytes()).unwrap(), []);
        let delete = DEFAULT.replace("PUSH_ARTIFACT", "DELETE_ARTIFACT");
        assert!(
            parse(Kind::Harbor, delete.as_bytes())
                .unwrap()
                .iter()
                .all(|e| e.action == Action::Delete)
        );
        assert!(parse(Kind::Harbor, br#"{"event_data": {}}"#).is_err());
    }
}
