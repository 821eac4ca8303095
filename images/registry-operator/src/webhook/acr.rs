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
    const PUSH: &str = include_str!("testdata/acr-push.json");

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
