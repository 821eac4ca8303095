//! Property tests for the parsers that read what a registry sends: `WWW-Authenticate`, `Link`,
//! manifests (schema 2, OCI, indexes, schema 1). On any input: no panic, and the output is
//! bounded by the input (no allocation a registry could inflate).

use proptest::prelude::*;
use registry_operator::registry::manifest::{
    digest_of, image_size, index_entries, kind_of, media_type_of, registry_digest, verify,
};
use registry_operator::registry::schema1::{blob_sums, digested_bytes, signed_payload};
use registry_operator::registry::{Challenge, next_link, parse_challenge, valid_tag};

/// Strings shaped like challenges: schemes, known and unknown parameters, quotes, escapes.
fn challenge_like() -> impl Strategy<Value = String> {
    let param = (
        prop::sample::select(vec!["realm", "service", "scope", "error", "x", "", "REALM"]),
        prop::sample::select(vec!["=", "= ", "==", ""]),
        "[a-z:/.,\"\\\\ =]{0,24}",
        prop::bool::ANY,
    )
        .prop_map(|(k, eq, v, quoted)| {
            if quoted {
                format!("{k}{eq}\"{v}\"")
            } else {
                format!("{k}{eq}{v}")
            }
        });
    (
        prop::sample::select(vec!["Bearer", "Basic", "bearer", "Negotiate", ""]),
        prop::collection::vec(param, 0..12),
        prop::sample::select(vec![",", ", ", " ", ",,"]),
    )
        .prop_map(|(scheme, params, sep)| format!("{scheme} {}", params.join(sep)))
}

fn link_like() -> impl Strategy<Value = String> {
    let one = (
        "[a-z/?=&.:0-9<>]{0,30}",
        prop::sample::select(vec![
            "rel=next",
            "rel=\"next\"",
            "rel=\"prev next\"",
            "rel=prev",
            "",
            ";",
        ]),
    )
        .prop_map(|(target, rel)| format!("<{target}>; {rel}"));
    prop::collection::vec(one, 0..6).prop_map(|v| v.join(", "))
}

fn json_manifest_like() -> impl Strategy<Value = Vec<u8>> {
    let descriptor =
        ("[a-z./+]{0,20}", 0u64..u64::MAX, "[a-f0-9:]{0,70}").prop_map(|(mt, size, d)| {
            format!(r#"{{"mediaType":"{mt}","size":{size},"digest":"sha256:{d}"}}"#)
        });
    (
        prop::sample::select(vec![1u32, 2, 3]),
        prop::collection::vec(descriptor, 0..8),
        prop::sample::select(vec!["layers", "manifests", "fsLayers"]),
    )
        .prop_map(|(v, ds, key)| {
            format!(
                r#"{{"schemaVersion":{v},"config":{{"mediaType":"x","size":1,"digest":"sha256:00"}},"{key}":[{}]}}"#,
                ds.join(",")
            )
            .into_bytes()
        })
}

fn check_manifest(body: &[u8]) {
    let mt = media_type_of(
        body,
        Some("application/vnd.oci.image.manifest.v1+json; charset=x"),
    );
    let _ = kind_of(&mt);
    assert!(mt.len() <= body.len() + 64);
    let _ = image_size(body);
    if let Ok(entries) = index_entries(body) {
        assert!(entries.len() <= body.len());
    }
    if let Ok(blobs) = blob_sums(body) {
        assert!(blobs.iter().map(String::len).sum::<usize>() <= body.len());
    }
    if let Some(p) = signed_payload(body) {
        assert!(p.len() <= 2 * body.len());
    }
    assert!(digested_bytes(body).len() <= 2 * body.len());
    let d = registry_digest(body);
    assert!(verify(body, &d) || signed_payload(body).is_some());
    assert!(digest_of(body, "md5").is_none());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn challenges_never_panic_and_stay_bounded(s in "\\PC{0,300}") {
        if let Some(Challenge::Bearer { realm, service, scope, error }) = parse_challenge(&s) {
            let total = realm.len() + service.map_or(0, |x| x.len()) + scope.map_or(0, |x| x.len()) + error.map_or(0, |x| x.len());
            prop_assert!(total <= s.len());
        }
    }

    #[test]
    fn challenge_shaped_inputs_parse_within_bounds(s in challenge_like()) {
        if let Some(Challenge::Bearer { realm, service, scope, error }) = parse_challenge(&s) {
            let total = realm.len() + service.map_or(0, |x| x.len()) + scope.map_or(0, |x| x.len()) + error.map_or(0, |x| x.len());
            prop_assert!(total <= s.len());
        }
    }

    #[test]
    fn links_never_panic_and_stay_bounded(s in "\\PC{0,300}") {
        if let Some(t) = next_link(&s) {
            prop_assert!(t.len() <= s.len());
        }
    }

    #[test]
    fn link_shaped_inputs_find_a_substring(s in link_like()) {
        if let Some(t) = next_link(&s) {
            prop_assert!(s.contains(&t));
        }
    }

    #[test]
    fn manifests_never_panic_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        check_manifest(&body);
    }

    #[test]
    fn manifest_shaped_json_never_panics(body in json_manifest_like()) {
        check_manifest(&body);
    }

    #[test]
    fn tag_validation_never_panics(s in "\\PC{0,200}") {
        if valid_tag(&s) {
            prop_assert!(s.len() <= 128 && !s.contains('/') && !s.starts_with('.'));
        }
    }
}

#[test]
fn a_huge_challenge_is_parsed_without_blowing_up() {
    // Many parameters: the parser keeps a bounded number of them.
    let header = format!(
        "Bearer realm=\"https://a/token\",{}",
        (0..100_000)
            .map(|i| format!("p{i}=v"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let c = parse_challenge(&header);
    assert!(matches!(c, Some(Challenge::Bearer { .. })));
}
