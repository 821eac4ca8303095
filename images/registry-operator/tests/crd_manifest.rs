//! `crds/registry.yaml` is generated from the Rust types by `make manifests`; this fails when the
//! checked-in copy is stale.

#[test]
fn checked_in_crd_matches_the_rust_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../crds/registry.yaml");
    let checked_in = std::fs::read_to_string(path).expect("reading crds/registry.yaml");
    let generated = registry_operator::cli::crd_yaml().unwrap();
    assert!(
        checked_in == generated,
        "crds/registry.yaml is stale: run `make manifests` and commit the result"
    );
}
