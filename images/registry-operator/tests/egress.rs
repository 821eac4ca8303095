//! The egress policy of the scan core against a real registry: loopback, link-local and
//! metadata destinations are refused whether named in the URL, reached through a redirect or
//! announced as a token realm, and no request reaches them; credentials never travel to an
//! http token realm of an https registry.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use registry_operator::registry::{ClientOptions, EgressPolicy, ProxySettings, ScanError};
use testenv::fault::{Fault, FaultAction, FaultProxy};
use testenv::registry::{RegistryOptions, RegistryServer};

const USER: &str = "alice";
const PASSWORD: &str = "p4ss-w0rd-Secret!";

/// A TCP listener that counts the connections it accepts.
pub struct Listener {
    pub port: u16,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    pub async fn bind(ip: &str) -> Self {
        let l = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = l.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                drop(conn);
            }
        });
        Self {
            port,
            accepted,
            task,
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn with_policy(allow: &[&str]) -> ClientOptions {
    let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
    ClientOptions {
        egress: Some(Arc::new(EgressPolicy::new(&allow, &[]).unwrap())),
        ..ClientOptions::default()
    }
}

async fn scan(url: &str, repository: &str, options: ClientOptions) -> Result<(), ScanError> {
    common::scan_url(url, repository, None, options, HashMap::new())
        .await
        .map(drop)
}

/// Refused, with the one message that tells nothing about what lies behind the address.
fn assert_refused(result: Result<(), ScanError>, host: &str) -> String {
    let err = result.expect_err("the policy must refuse");
    assert_eq!(err.reason().as_str(), "EgressDenied", "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "refused by the operator's egress policy: {host} is not an allowed destination"
        )),
        "{text}"
    );
    for detail in ["refused", "os error", "dns", "timed out", "HTTP"] {
        assert!(
            !text.replace("refused by the operator", "").contains(detail),
            "{detail:?} leaks in {text}"
        );
    }
    text
}

#[tokio::test]
async fn urls_to_loopback_and_metadata_are_refused_before_any_request() {
    let one = Listener::bind("127.0.0.1").await;
    let two = Listener::bind("127.0.0.2").await;

    // IP literals: checked before reqwest would connect without asking the resolver.
    let url = format!("http://127.0.0.1:{}", one.port);
    assert_refused(scan(&url, "app", with_policy(&[])).await, "127.0.0.1");
    let url = format!("http://[::ffff:127.0.0.1]:{}", one.port);
    assert_refused(scan(&url, "app", with_policy(&[])).await, "[::ffff:7f00:1]");
    // A name resolving into loopback: the resolver drops every address.
    let url = format!("http://localhost:{}", one.port);
    assert_refused(scan(&url, "app", with_policy(&[])).await, "localhost");
    // Opening 127.0.0.1 leaves the rest of the loopback range closed.
    let url = format!("http://127.0.0.2:{}", two.port);
    assert_refused(
        scan(&url, "app", with_policy(&["127.0.0.1/32"])).await,
        "127.0.0.2",
    );
    assert_refused(
        scan("http://169.254.169.254", "latest", with_policy(&[])).await,
        "169.254.169.254",
    );
    assert_eq!(one.accepted() + two.accepted(), 0, "no connection was made");

    // Without a policy (the one-shot CLI) the same URL is tried: the listener sees it.
    let url = format!("http://127.0.0.1:{}", one.port);
    let err = scan(&url, "app", ClientOptions::default())
        .await
        .unwrap_err();
    assert_ne!(err.reason().as_str(), "EgressDenied", "{err}");
    assert!(one.accepted() > 0);
}

#[tokio::test]
async fn redirects_and_token_realms_to_closed_destinations_are_not_followed() {
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pushed = common::seed_small(&reg, None, "team/app").await;
    let proxy = FaultProxy::start(&reg.url).await.unwrap();
    let closed = Listener::bind("127.0.0.2").await;
    let allow = || with_policy(&["127.0.0.1/32"]);
    let registry = proxy.url.trim_start_matches("http://").to_string();

    // The open registry works under the policy.
    let report = common::scan_url(&proxy.url, "team/app", None, allow(), HashMap::new())
        .await
        .unwrap();
    common::assert_matches(&report, &pushed);

    let redirect = |to: String| FaultAction::Status {
        code: 307,
        headers: vec![("Location".into(), to)],
        body: String::new(),
    };
    proxy.inject(Fault::new(
        "/tags/list",
        1,
        redirect(format!(
            "http://127.0.0.2:{}/v2/team/app/tags/list",
            closed.port
        )),
    ));
    let text = assert_refused(scan(&proxy.url, "team/app", allow()).await, "127.0.0.2");
    assert!(
        text.contains(&format!("(redirect from {registry})")),
        "{text}"
    );

    proxy.inject(
        Fault::new(
            "/manifests/",
            1,
            redirect("http://169.254.169.254/latest/meta-data/".into()),
        )
        .method("HEAD"),
    );
    assert_refused(
        scan(&proxy.url, "team/app", allow()).await,
        "169.254.169.254",
    );

    proxy.inject(Fault::new(
        "/tags/list",
        1,
        FaultAction::Status {
            code: 401,
            headers: vec![(
                "WWW-Authenticate".into(),
                format!(
                    r#"Bearer realm="http://127.0.0.2:{}/token",service="x""#,
                    closed.port
                ),
            )],
            body: String::new(),
        },
    ));
    let text = assert_refused(scan(&proxy.url, "team/app", allow()).await, "127.0.0.2");
    assert!(
        text.contains(&format!("(token realm announced by {registry})")),
        "{text}"
    );
    assert_eq!(
        closed.accepted(),
        0,
        "no request reached the closed address"
    );
}

#[tokio::test]
async fn credentials_never_go_to_an_http_realm_of_an_https_registry() {
    // distribution with token auth over TLS; its token server listens on plain http.
    let reg = RegistryServer::start(RegistryOptions::token(USER, PASSWORD).with_tls())
        .await
        .unwrap();
    common::seed_small(&reg, Some((USER, PASSWORD)), "private/app").await;
    let token = reg.token.as_ref().unwrap();
    assert!(reg.url.starts_with("https://") && token.realm.starts_with("http://"));
    let before = token.requests();

    let options = ClientOptions {
        ca_pem: reg.ca_pem.clone().map(String::into_bytes),
        ..ClientOptions::default()
    };
    let err = common::scan_url(
        &reg.url,
        "private/app",
        Some((USER, PASSWORD)),
        options,
        HashMap::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason().as_str(), "InsecureTokenRealm", "{err}");
    assert!(
        err.to_string()
            .contains("credentials are not sent over http"),
        "{err}"
    );
    assert_eq!(token.requests(), before, "the token server saw no request");
}

/// Through a proxy the operator cannot see what a name resolves to (the proxy resolves it), but
/// what it can judge it still judges before anything is sent: IP-address URLs (loopback, the
/// cluster's networks) and host-name rules. Nothing refused reaches the proxy.
#[tokio::test]
async fn a_proxy_does_not_open_address_urls_or_names_the_policy_closes() {
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pushed = common::seed_small(&reg, None, "px/app").await;
    let recording = FaultProxy::start(&reg.url).await.unwrap();
    let proxy = ProxySettings::new(Some(&recording.url), None, &[]).unwrap();
    assert!(proxy.is_some());
    let through = |allow: &[&str], deny: &[&str]| {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let policy = EgressPolicy::new(&v(allow), &v(deny))
            .unwrap()
            .close_by_default(&["10.111.0.0/16".into()])
            .unwrap();
        ClientOptions {
            egress: Some(Arc::new(policy)),
            proxy: proxy.clone(),
            ..ClientOptions::default()
        }
    };

    assert_refused(
        scan(&reg.url, "px/app", through(&[], &[])).await,
        "127.0.0.1",
    );
    assert_refused(
        scan("http://10.111.0.5:5000", "px/app", through(&[], &[])).await,
        "10.111.0.5",
    );
    assert_refused(
        scan(
            "http://registry.blocked.example",
            "px/app",
            through(&[], &["*.blocked.example"]),
        )
        .await,
        "registry.blocked.example",
    );
    assert_eq!(
        recording.requests(),
        vec![],
        "a refused scan reached the proxy"
    );

    // Allowed: the scan goes through the proxy.
    let report = common::scan_url(
        &reg.url,
        "px/app",
        None,
        through(&["127.0.0.1/32"], &[]),
        HashMap::new(),
    )
    .await
    .unwrap();
    common::assert_matches(&report, &pushed);
    assert!(recording.count("GET", "/v2/px/app/tags/list") >= 1);
}
