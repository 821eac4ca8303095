//! Generic CloudEvents (structured JSON mode, spec 1.0): `specversion`, `type`, `data`. The
//! event's `data` may be flat — `{repository, tag, digest?, host?}` — or the shape of a known
//! sender (distribution/ACR `{target, request}` as Azure Event Grid forwards it, Harbor
//! `{resources, repository}`). A `type` that mentions delete is a deletion, anything else a
//! push. https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/formats/json-format.md

use serde_json::Value;

use super::{Action, Event, ParseError, distribution, harbor, shape, str_at};

pub fn parse(v: &Value) -> Result<Vec<Event>, ParseError> {
    if v.get("specversion").and_then(Value::as_str).is_none() {
        return Err(shape(
            "no \"specversion\" (not a structured-mode CloudEvent)",
        ));
    }
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| shape("no \"type\""))?
        .to_ascii_lowercase();
    let action = if kind.contains("delete") {
        Action::Delete
    } else {
        Action::Push
    };
    let Some(data) = v.get("data").filter(|d| d.is_object()) else {
        return Err(shape("no JSON \"data\" object"));
    };
    if data.get("target").is_some() {
        let mut e = data.clone();
        e["action"] = Value::String(action.as_str().into());
        return Ok(distribution::event(&e).into_iter().collect());
    }
    if data.get("resources").is_some() {
        return Ok(harbor::resources(data, action));
    }
    let Some(repository) = str_at(data, &["repository"]) else {
        return Err(shape("data names no repository"));
    };
    Ok(vec![Event {
        host: str_at(data, &["host"]).map(str::to_string),
        repository: repository.to_string(),
        tag: str_at(data, &["tag"]).map(str::to_string),
        digest: str_at(data, &["digest"]).map(str::to_string),
        action,
    }])
}

#[cfg(test)]
mod tests {
    use super::super::{Action, Kind, parse};

    #[test]
    fn flat_data() {
        let body = br#"{"specversion": "1.0", "id": "1", "source": "ci/pipeline",
                        "type": "io.example.image.pushed",
                        "data": {"host": "registry.example.com", "repository": "team/app", "tag": "v2"}}"#;
        let e = parse(Kind::CloudEvents, body).unwrap();
        assert_eq!(e[0].host.as_deref(), Some("registry.example.com"));
        assert_eq!(
            (e[0].repository.as_str(), e[0].tag.as_deref()),
            ("team/app", Some("v2"))
        );
        assert_eq!(e[0].action, Action::Push);
    }

    /// Azure Event Grid's CloudEvents schema for ACR ("Microsoft.ContainerRegistry.ImagePushed"):
    /// https://learn.microsoft.com/azure/event-grid/event-schema-container-registry
    #[test]
    fn event_grid_acr() {
        let body = br#"{"specversion": "1.0", "id": "831e1650-001e-001b-66ab-eeb76e069631",
          "source": "/subscriptions/x/resourceGroups/y/providers/Microsoft.ContainerRegistry/registries/myregistry",
          "type": "Microsoft.ContainerRegistry.ImageDeleted", "time": "2018-04-26T17:56:01Z",
          "data": {"id": "f", "timestamp": "2018-04-26T17:56:00Z", "action": "delete",
                   "target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                              "digest": "sha256:abababababababababababababababababababababababababababababababab", "repository": "testrepo"},
                   "request": {"id": "a", "host": "myregistry.azurecr.io", "method": "DELETE"}}}"#;
        let e = parse(Kind::CloudEvents, body).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].action, Action::Delete);
        assert_eq!(e[0].tag, None);
        assert_eq!(e[0].host.as_deref(), Some("myregistry.azurecr.io"));
    }

    #[test]
    fn not_cloudevents() {
        assert!(parse(Kind::CloudEvents, br#"{"type": "x", "data": {}}"#).is_err());
        assert!(
            parse(
                Kind::CloudEvents,
                br#"{"specversion": "1.0", "type": "x", "data": {"tag": "a"}}"#
            )
            .is_err()
        );
    }
}
