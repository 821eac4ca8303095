//! Authentication against real registries: htpasswd Basic and the Bearer-token flow with a
//! token server that signs JWTs the registry verifies. No credential ever reaches an error.

mod common;

use std::collections::HashMap;

use registry_operator::registry::ClientOptions;
use testenv::registry::{RegistryAuth, RegistryOptions, RegistryServer};
use testenv::token::{TokenField, TokenOptions};

const USER: &str = "alice";
const PASSWORD: &str = "p4ss-w0rd-Secret!";

#[tokio::test]
async fn basic_auth_with_good_wrong_and_missing_credentials() {
    let reg = RegistryServer::start(RegistryOptions::htpasswd(USER, PASSWORD))
        .await
        .unwrap();
    let pushed = common::seed_small(&reg, Some((USER, PASSWORD)), "private/app").await;

    let report = common::scan_url(
        &reg.url,
        "private/app",
        Some((USER, PASSWORD)),
        ClientOptions::default(),
        HashMap::new(),
    )
    .await
    .unwrap();
    common::assert_matches(&report, &pushed);
    assert_eq!(report.requests.token_requests, 0);

    let err = common::scan_url(
        &reg.url,
        "private/app",
        Some((USER, "wrong-password-value")),
        ClientOptions::default(),
        HashMap::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason().as_str(), "AuthenticationFailed");
    let text = err.to_string();
    assert!(text.contains("rejected the credentials"), "{text}");
    assert!(!text.contains("wrong-password-value"), "{text}");

    let err = common::scan_url(
        &reg.url,
        "private/app",
        None,
        ClientOptions::default(),
        HashMap::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason().as_str(), "AuthenticationFailed");
    assert!(err.to_string().contains("requires credentials"), "{err}");
}

#[tokio::test]
async fn bearer_token_flow_caches_one_token_per_scan() {
    let reg = RegistryServer::start(RegistryOptions::token(USER, PASSWORD))
        .await
        .unwrap();
    let pushed = common::seed_small(&reg, Some((USER, PASSWORD)), "tokened/app").await;
    let tokens = reg.token.as_ref().expect("token server");
    tokens.reset();

    let report = common::scan_url(
        &reg.url,
        "tokened/app",
        Some((USER, PASSWORD)),
        ClientOptions::default(),
        HashMap::new(),
    )
    .await
    .unwrap();
    common::assert_matches(&report, &pushed);
    assert_eq!(
        report.requests.token_requests, 1,
        "one token serves the whole scan"
    );
    assert_eq!(tokens.requests(), 1);
    let log = tokens.request_log();
    assert_eq!(log[0].user.as_deref(), Some(USER));
    assert_eq!(log[0].scopes, ["repository:tokened/app:pull"]);

    let err = common::scan_url(
        &reg.url,
        "tokened/app",
        Some((USER, "not-the-password")),
        ClientOptions::default(),
        HashMap::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason().as_str(), "AuthenticationFailed", "{err}");
    assert!(!err.to_string().contains("not-the-password"));

    let err = common::scan_url(
        &reg.url,
        "tokened/app",
        None,
        ClientOptions::default(),
        HashMap::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason().as_str(), "AuthenticationFailed", "{err}");
}

#[tokio::test]
async fn access_token_field_and_anonymous_pull_tokens() {
    let options = TokenOptions {
        allow_anonymous_pull: true,
        field: TokenField::AccessToken,
        expires_in: None,
    };
    let reg = RegistryServer::start(RegistryOptions {
        auth: RegistryAuth::Token {
            users: vec![(USER.into(), PASSWORD.into())],
            options,
        },
        ..RegistryOptions::default()
    })
    .await
    .unwrap();
    let pushed = common::seed_small(&reg, Some((USER, PASSWORD)), "public/app").await;
    let report = common::scan_url(
        &reg.url,
        "public/app",
        None,
        ClientOptions::default(),
        HashMap::new(),
    )
    .await
    .unwrap();
    common::assert_matches(&report, &pushed);
    assert_eq!(report.requests.token_requests, 1);
    let log = reg.token.as_ref().unwrap().request_log();
    assert!(
        log.last().unwrap().user.is_none(),
        "anonymous token request carries no credentials"
    );
}
