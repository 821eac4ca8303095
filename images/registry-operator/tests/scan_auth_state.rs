//! Auth state that outlives a scan: the cached token goes up front (no 401, no token request
//! on a rescan), only a token that was sent and refused is forgotten, `insufficient_scope`
//! means "not found or not accessible", and nothing a registry echoes leaks a secret.

mod common;

use std::sync::Arc;

use base64::Engine;
use registry_operator::registry::{
    ClientOptions, Credentials, RegistryClient, RegistryState, ScanOptions, Target, scan,
};
use testenv::fault::{Fault, FaultAction, FaultProxy};
use testenv::registry::{RegistryOptions, RegistryServer};

const USER: &str = "carol";
const PASSWORD: &str = "Token-Pass-31337";

async fn setup() -> (RegistryServer, FaultProxy, common::Pushed) {
    let reg = RegistryServer::start(RegistryOptions::token(USER, PASSWORD))
        .await
        .unwrap();
    let pushed = common::seed_small(&reg, Some((USER, PASSWORD)), "state/app").await;
    let proxy = FaultProxy::start(&reg.url).await.unwrap();
    (reg, proxy, pushed)
}

fn shared_client() -> RegistryClient {
    RegistryClient::new(ClientOptions::default())
        .unwrap()
        .with_state(Arc::new(RegistryState::default()))
}

#[tokio::test]
async fn a_rescan_sends_the_cached_token_up_front() {
    let (reg, proxy, pushed) = setup().await;
    let token = reg.token.as_ref().unwrap();
    let client = shared_client();
    let target = Target::new(&proxy.url, "state/app").unwrap();
    let creds = Credentials::new(USER, PASSWORD);
    let first = scan(&client, &target, Some(&creds), &ScanOptions::default())
        .await
        .unwrap();
    common::assert_matches(&first, &pushed);
    assert_eq!(first.requests.token_requests, 1);

    proxy.reset();
    token.reset();
    let known = first.facts.clone();
    let again = scan(
        &client,
        &target,
        Some(&creds),
        &ScanOptions {
            known,
            ..ScanOptions::default()
        },
    )
    .await
    .unwrap();
    common::assert_matches(&again, &pushed);
    assert_eq!(again.requests.token_requests, 0);
    assert_eq!(token.requests(), 0);
    assert!(
        proxy.requests().iter().all(|r| r.status == 200),
        "no 401: {:#?}",
        proxy.requests()
    );
    assert_eq!(
        proxy.requests().len() as i64,
        again.requests.tag_pages + again.requests.manifest_heads
    );

    // Other credentials never get that token.
    let other = Credentials::new(USER, "another-password");
    let err = scan(&client, &target, Some(&other), &ScanOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.reason().as_str(), "AuthenticationFailed", "{err}");
}

#[tokio::test]
async fn a_revoked_token_is_replaced_once() {
    let (reg, proxy, pushed) = setup().await;
    let token = reg.token.as_ref().unwrap();
    let client = shared_client();
    let target = Target::new(&proxy.url, "state/app").unwrap();
    let creds = Credentials::new(USER, PASSWORD);
    scan(&client, &target, Some(&creds), &ScanOptions::default())
        .await
        .unwrap();
    token.reset();
    // The registry refuses the cached token once (revoked early).
    proxy.inject(Fault::new(
        "/tags/list",
        1,
        refusal(token, "invalid_token", String::new()),
    ));
    let report = scan(&client, &target, Some(&creds), &ScanOptions::default())
        .await
        .unwrap();
    common::assert_matches(&report, &pushed);
    assert_eq!(report.requests.token_requests, 1, "one fresh token");
}

#[tokio::test]
async fn insufficient_scope_means_not_found_or_not_accessible() {
    let (reg, proxy, _) = setup().await;
    let token = reg.token.as_ref().unwrap();
    let client = shared_client();
    let target = Target::new(&proxy.url, "state/app").unwrap();
    let creds = Credentials::new(USER, PASSWORD);
    scan(&client, &target, Some(&creds), &ScanOptions::default())
        .await
        .unwrap();
    proxy.inject(Fault::new(
        "/tags/list",
        1000,
        refusal(
            token,
            "insufficient_scope",
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"insufficient scope"}]}"#.into(),
        ),
    ));
    let err = scan(&client, &target, Some(&creds), &ScanOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.reason().as_str(), "RepositoryNotFound", "{err}");
    assert!(
        err.to_string()
            .contains("repository not found or not accessible with these credentials"),
        "{err}"
    );
}

#[tokio::test]
async fn echoed_basic_forms_and_bearer_tokens_are_withheld() {
    let (_reg, proxy, _) = setup().await;
    let client = shared_client();
    let target = Target::new(&proxy.url, "state/app").unwrap();
    let creds = Credentials::new(USER, PASSWORD);
    scan(&client, &target, Some(&creds), &ScanOptions::default())
        .await
        .unwrap();
    let sent = proxy
        .requests()
        .iter()
        .find_map(|r| r.authorization.clone())
        .expect("a bearer token was sent");
    let bearer = sent.trim_start_matches("Bearer ").to_string();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    for echoed in [bearer.clone(), basic.clone()] {
        proxy.reset();
        proxy.inject(Fault::new(
            "/tags/list",
            1000,
            FaultAction::Status {
                code: 400,
                headers: vec![],
                body: format!("bad request from {echoed}"),
            },
        ));
        let err = scan(&client, &target, Some(&creds), &ScanOptions::default())
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(!text.contains(&echoed), "{text}");
        assert!(text.contains("withheld"), "{text}");
    }
}

/// The registry's 401 for a token it will not take: a Bearer challenge with `error`.
fn refusal(token: &testenv::token::TokenServer, error: &str, body: String) -> FaultAction {
    FaultAction::Status {
        code: 401,
        headers: vec![(
            "WWW-Authenticate".into(),
            format!(
                r#"Bearer realm="{}",service="{}",scope="repository:state/app:pull",error="{error}""#,
                token.realm, token.service
            ),
        )],
        body,
    }
}
