//! Property tests for the webhook payload parsers: on any input, for every sender kind, no
//! panic, at most `MAX_EVENTS` events, and every field of every event passed validation (what
//! the receiver acts on or writes into annotations).

use proptest::prelude::*;
use registry_operator::webhook::validate::{self, MAX_EVENTS};
use registry_operator::webhook::{Kind, parse};

/// Strings a hostile sender would try in a field: valid ones, near misses, injections.
fn field() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        prop::sample::select(vec![
            "latest",
            "v1.0",
            "team/app",
            "registry.example.com",
            "127.0.0.1:5000",
            "sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf",
            "SHA256:AAAA",
            "sha256:evil\"}",
            "../../etc/passwd",
            "a//b",
            "",
            "push",
            "delete",
            "application/vnd.oci.image.manifest.v1+json",
        ])
        .prop_map(|s| serde_json::Value::String(s.to_string())),
        "[ -~]{0,40}".prop_map(serde_json::Value::String),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        Just(serde_json::Value::Null),
    ]
}

/// Each sender's documented payload (src/webhook/testdata), with its kind.
const DOCUMENTED: [(Kind, &str); 8] = [
    (
        Kind::Distribution,
        include_str!("../src/webhook/testdata/distribution-envelope.json"),
    ),
    (
        Kind::Harbor,
        include_str!("../src/webhook/testdata/harbor-default.json"),
    ),
    (
        Kind::Harbor,
        include_str!("../src/webhook/testdata/harbor-cloudevents.json"),
    ),
    (
        Kind::DockerHub,
        include_str!("../src/webhook/testdata/dockerhub-push.json"),
    ),
    (
        Kind::Quay,
        include_str!("../src/webhook/testdata/quay-push.json"),
    ),
    (
        Kind::Ghcr,
        include_str!("../src/webhook/testdata/ghcr-package-published.json"),
    ),
    (
        Kind::Acr,
        include_str!("../src/webhook/testdata/acr-push.json"),
    ),
    (
        Kind::CloudEvents,
        r#"{"specversion": "1.0", "type": "io.example.image.deleted",
        "data": {"host": "registry.example.com", "repository": "team/app", "tag": "v2", "digest": "sha256:0"}}"#,
    ),
];

/// A documented payload with some of its strings replaced: the shape parsers accept, with
/// hostile values where the real ones were.
fn mutated() -> impl Strategy<Value = (Kind, serde_json::Value)> {
    (
        0..DOCUMENTED.len(),
        prop::collection::vec(prop::option::weighted(0.3, field()), 64),
    )
        .prop_map(|(i, replacements)| {
            let (kind, text) = DOCUMENTED[i];
            let mut value: serde_json::Value = serde_json::from_str(text).unwrap();
            let mut next = replacements.into_iter().cycle();
            replace_strings(&mut value, &mut next);
            (kind, value)
        })
}

fn replace_strings(
    v: &mut serde_json::Value,
    next: &mut impl Iterator<Item = Option<serde_json::Value>>,
) {
    match v {
        serde_json::Value::String(_) => {
            if let Some(Some(r)) = next.next() {
                *v = r;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|i| replace_strings(i, next)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|i| replace_strings(i, next)),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn payloads_never_panic_and_every_event_is_valid((kind, value) in mutated(), bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let body = serde_json::to_vec(&value).unwrap();
        for any_kind in Kind::ALL {
            let _ = parse(any_kind, &bytes);
            let _ = parse(any_kind, &body);
        }
        if let Ok(events) = parse(kind, &body) {
            prop_assert!(events.len() <= MAX_EVENTS);
            for e in events {
                prop_assert!(validate::repository(&e.repository), "{e:?}");
                prop_assert!(e.host.as_deref().is_none_or(validate::host), "{e:?}");
                prop_assert!(e.tag.as_deref().is_none_or(validate::tag), "{e:?}");
                prop_assert!(e.digest.as_deref().is_none_or(validate::digest), "{e:?}");
            }
        }
    }
}

#[test]
fn events_beyond_the_bound_are_left_out() {
    let events: Vec<serde_json::Value> = (0..1000)
        .map(|i| {
            serde_json::json!({"action": "push",
                "target": {"repository": "team/app", "tag": format!("t{i}")},
                "request": {"host": "registry.example.com"}})
        })
        .collect();
    let body = serde_json::json!({ "events": events }).to_string();
    assert_eq!(
        parse(Kind::Distribution, body.as_bytes()).unwrap().len(),
        MAX_EVENTS
    );
}
