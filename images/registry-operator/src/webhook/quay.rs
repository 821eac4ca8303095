//! Quay repository notifications, "Push to Repository" (`repo_push`): `repository`,
//! `docker_url` (`host/namespace/repo`) and `updated_tags`, a list of tag names (older Quay
//! sent an object tag → image id; both are read). Quay cannot send a header: `?secret=`.
//! https://docs.redhat.com/en/documentation/red_hat_quay/3/html/use_red_hat_quay/repository-events

use serde_json::Value;

use super::{Action, Event, ParseError, host_of, shape, str_at};

pub fn parse(v: &Value) -> Result<Vec<Event>, ParseError> {
    let repository = str_at(v, &["repository"])
        .ok_or_else(|| shape("no \"repository\" (not a Quay notification)"))?;
    let host = str_at(v, &["docker_url"]).and_then(host_of);
    let tags: Vec<String> = match v.get("updated_tags") {
        Some(Value::Array(tags)) => tags
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::Object(tags)) => tags.keys().cloned().collect(),
        // Build events and other notifications carry no updated_tags.
        _ => Vec::new(),
    };
    Ok(tags
        .into_iter()
        .map(|tag| Event {
            host: host.clone(),
            repository: repository.to_string(),
            tag: Some(tag),
            digest: None,
            action: Action::Push,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::{Kind, parse};

    /// The documented "Repository Push" example.
    const PUSH: &str = include_str!("testdata/quay-push.json");

    #[test]
    fn updated_tags() {
        let e = parse(Kind::Quay, PUSH.as_bytes()).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].host.as_deref(), Some("quay.io"));
        assert_eq!(e[0].repository, "dgangaia/test");
        assert_eq!(e[0].tag.as_deref(), Some("latest"));
    }

    #[test]
    fn older_object_form_and_build_events() {
        let old = br#"{"repository": "devtable/ubuntu", "docker_url": "quay.io/devtable/ubuntu",
                       "updated_tags": {"latest": "b750fe79269d", "1.0": "b750fe79269d"}}"#;
        assert_eq!(parse(Kind::Quay, old).unwrap().len(), 2);
        let build =
            br#"{"repository": "dgangaia/test", "build_id": "296ec063", "docker_tags": ["x"]}"#;
        assert_eq!(parse(Kind::Quay, build).unwrap(), []);
        assert!(parse(Kind::Quay, br#"{"updated_tags": ["x"]}"#).is_err());
    }
}
