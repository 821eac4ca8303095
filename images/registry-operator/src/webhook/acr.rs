//! Azure Container Registry webhooks: one event per request in the distribution shape
//! (`action` push/delete, `target` {repository, tag, digest, mediaType}, `request` {host}).
//! https://learn.microsoft.com/azure/container-registry/container-registry-webhook-reference

use serde_json::Value;

use super::{Event, ParseError, distribution, shape};

pub fn parse(v: &Value) -> Result<Vec<Event>, ParseError> {
    if v.get("action").is_none() || v.get("target").is_none() {
        return Err(shape(
            "no \"action\" and \"target\" (not an ACR webhook event)",
        ));
    }
    Ok(distribution::event(v).into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::super::{Action, Kind, parse};

    /// The documented image push payload (push event, "Payload example: image push event").
    const PUSH: &str = r#"{
      "id": "cb8c3971-9adc-488b-xxxx-43cbb4974ff5",
      "timestamp": "2017-11-17T16:52:01.343145347Z",
      "action": "push",
      "target": {
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "size": 524,
        "digest": "sha256:80f0d5c8786bb9e621a45ece0db56d11cdc624ad20da9fe62e9d25490f331d7d",
        "length": 524,
        "repository": "hello-world",
        "tag": "v1"
      },
      "request": {
        "id": "3cbb6949-7549-4fa1-xxxx-a6d5451dffc7",
        "host": "myregistry.azurecr.io",
        "method": "PUT",
        "useragent": "docker/17.09.0-ce go/go1.8.3 git-commit/afdb6d4 kernel/4.10.0-27-generic os/linux arch/amd64 UpstreamClient(Docker-Client/17.09.0-ce \\(linux\\))"
      }
    }"#;

    #[test]
    fn push() {
        let e = parse(Kind::Acr, PUSH.as_bytes()).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].host.as_deref(), Some("myregistry.azurecr.io"));
        assert_eq!(e[0].repository, "hello-world");
        assert_eq!(e[0].tag.as_deref(), Some("v1"));
        assert_eq!(e[0].action, Action::Push);
    }

    #[test]
    fn chart_events_and_other_shapes() {
        let chart = PUSH.replace("\"action\": \"push\"", "\"action\": \"chart_push\"");
        assert_eq!(parse(Kind::Acr, chart.as_bytes()).unwrap(), []);
        assert!(parse(Kind::Acr, br#"{"events": []}"#).is_err());
    }
}
