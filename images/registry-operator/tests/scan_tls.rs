//! HTTPS registries with a self-signed CA: trusted through a CA bundle, or through
//! insecureSkipVerify; otherwise a plain TLS error.

mod common;

use std::collections::HashMap;

use registry_operator::registry::ClientOptions;
use testenv::registry::{RegistryOptions, RegistryServer};

#[tokio::test]
async fn self_signed_registry_needs_its_ca_or_skip_verify() {
    let reg = RegistryServer::start(RegistryOptions::plain().with_tls())
        .await
        .unwrap();
    assert!(reg.url.starts_with("https://"));
    let ca = reg.ca_pem.clone().expect("tls registry has a CA");
    let pushed = common::seed_small(&reg, None, "secure/app").await;

    let with_ca = ClientOptions {
        ca_pem: Some(ca.into_bytes()),
        ..ClientOptions::default()
    };
    let report = common::scan_url(&reg.url, "secure/app", None, with_ca, HashMap::new())
        .await
        .unwrap();
    common::assert_matches(&report, &pushed);

    let skip = ClientOptions {
        insecure_skip_verify: true,
        ..ClientOptions::default()
    };
    let report = common::scan_url(&reg.url, "secure/app", None, skip, HashMap::new())
        .await
        .unwrap();
    common::assert_matches(&report, &pushed);

    let err = common::scan_plain(&reg.url, "secure/app")
        .await
        .unwrap_err();
    assert_eq!(err.reason().as_str(), "TLSError", "{err}");
    assert!(
        err.to_string().contains("insecureSkipVerify"),
        "the message says what to do: {err}"
    );
    assert_eq!(
        common::scan_plain(&reg.url, "secure/app")
            .await
            .unwrap_err()
            .reason()
            .as_str(),
        "TLSError"
    );
}

#[tokio::test]
async fn a_broken_ca_bundle_is_a_config_error() {
    let bad = ClientOptions {
        ca_pem: Some(b"not a certificate".to_vec()),
        ..ClientOptions::default()
    };
    let err = common::scan_url("https://127.0.0.1:1", "x", None, bad, HashMap::new())
        .await
        .unwrap_err();
    assert_eq!(err.reason().as_str(), "InvalidSpec", "{err}");
}
