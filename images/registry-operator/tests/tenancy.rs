//! Hostile or careless tenants on a real kube-apiserver with the real operator: Registries
//! aimed at cloud metadata, the operator's loopback, redirects into either, an http token
//! realm for an https registry; repositories of 200,000 tags or a 50 MiB tag page. Each fails
//! alone with a clear reason; no request reaches a closed address; memory stays bounded; the
//! other Registries keep being scanned.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::hostile::Hostile;
use common::operator::{self, Operator, reason, status, wait_for};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use registry_operator::api::{Registry, ScanStatus};
use testenv::controlplane;
use testenv::fault::{Fault, FaultAction, FaultProxy};
use testenv::registry::{RegistryOptions, RegistryServer};

const USER: &str = "deployer";
const PASSWORD: &str = "Good-Pass-4711";

fn ok(r: &Registry) -> bool {
    status(r).last_scan_status == Some(ScanStatus::Success)
        && status(r).observed_generation == r.metadata.generation
}

fn failed_with(want: &'static str) -> impl Fn(&Registry) -> bool {
    move |r| {
        status(r).last_scan_status == Some(ScanStatus::Failed)
            && status(r).observed_generation == r.metadata.generation
            && reason(r) == want
    }
}

/// Counts the TCP connections a closed address receives.
async fn listen(ip: &str) -> (u16, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    (port, seen)
}

async fn create(api: &Api<Registry>, name: &str, url: &str, repo: &str, extra: serde_json::Value) {
    api.create(
        &PostParams::default(),
        &operator::registry(name, url, repo, extra),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_egress_policy_refuses_metadata_loopback_redirects_and_http_realms() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("egress").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pushed = common::seed_small(&reg, None, "team/app").await;
    let proxy = FaultProxy::start(&reg.url).await.unwrap();
    let secure = RegistryServer::start(RegistryOptions::token(USER, PASSWORD).with_tls())
        .await
        .unwrap();
    common::seed_small(&secure, Some((USER, PASSWORD)), "private/app").await;
    let token = secure.token.as_ref().unwrap();
    let token_requests = token.requests();
    let (closed_port, closed_seen) = listen("127.0.0.2").await;

    // The operator opens 127.0.0.1 only (tests/common/operator.rs).
    let op = Operator::start(cp, &ns, &[]).await;
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    operator::create_secret(&client, &ns, "creds", USER, PASSWORD).await;
    let ca: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ca"},
        "stringData": {"ca.crt": secure.ca_pem.clone().unwrap()},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &ca)
        .await
        .unwrap();

    proxy.inject(Fault::new(
        "/v2/redirected/tags/list",
        usize::MAX,
        FaultAction::Status {
            code: 302,
            headers: vec![(
                "Location".into(),
                format!("http://127.0.0.2:{closed_port}/v2/app/tags/list"),
            )],
            body: String::new(),
        },
    ));
    create(&api, "open", &reg.url, "team/app", serde_json::json!({})).await;
    create(
        &api,
        "metadata",
        "http://169.254.169.254",
        "latest/meta-data",
        serde_json::json!({}),
    )
    .await;
    let loopback = format!("http://127.0.0.2:{closed_port}");
    create(&api, "loopback", &loopback, "app", serde_json::json!({})).await;
    create(
        &api,
        "redirect",
        &proxy.url,
        "redirected",
        serde_json::json!({}),
    )
    .await;
    create(
        &api,
        "realm",
        &secure.url,
        "private/app",
        serde_json::json!({"credentialsSecret": {"name": "creds"}, "caSecret": {"name": "ca"}}),
    )
    .await;

    let r = wait_for(&api, "open", &op, "the open registry", ok).await;
    common::assert_images(status(&r).images.as_deref().unwrap_or_default(), &pushed);
    for (name, host) in [
        ("metadata", "169.254.169.254"),
        ("loopback", "127.0.0.2"),
        ("redirect", "127.0.0.2"),
    ] {
        let r = wait_for(&api, name, &op, "EgressDenied", failed_with("EgressDenied")).await;
        let message = status(&r).message.unwrap_or_default();
        assert!(
            message.starts_with(&format!(
                "refused by the operator's egress policy: {host} is not an allowed destination"
            )),
            "{name}: {message}"
        );
        // Same words whatever is (or is not) behind the address.
        for detail in ["os error", "connect", "timed out", "HTTP"] {
            assert!(!message.contains(detail), "{name}: {message}");
        }
    }
    let r = wait_for(
        &api,
        "realm",
        &op,
        "InsecureTokenRealm",
        failed_with("InsecureTokenRealm"),
    )
    .await;
    assert!(
        status(&r)
            .message
            .unwrap_or_default()
            .contains("credentials are not sent over http"),
        "{:?}",
        status(&r).message
    );
    assert_eq!(
        closed_seen.load(Ordering::SeqCst),
        0,
        "nothing reached 127.0.0.2"
    );
    assert_eq!(
        token.requests(),
        token_requests,
        "the http realm saw no request"
    );
    assert!(!op.logs().contains(PASSWORD));
}

/// Peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM in /proc/PID/status")
        * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_repositories_fail_alone_with_bounded_memory() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("limits").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pushed = common::seed_small(&reg, None, "team/app").await;
    let proxy = FaultProxy::start(&reg.url).await.unwrap();
    let hostile = Hostile::start().await;
    let op = Operator::start(cp, &ns, &[]).await;
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);

    create(&api, "good", &reg.url, "team/app", serde_json::json!({})).await;
    // Scanned fine once, then its tag list grows to 200,000 tags.
    create(&api, "grown", &proxy.url, "team/app", serde_json::json!({})).await;
    wait_for(&api, "grown", &op, "first scan", ok).await;
    let tags: Vec<String> = (0..200_000).map(|i| format!("t{i:06}")).collect();
    proxy.inject(Fault::new(
        "/tags/list",
        usize::MAX,
        FaultAction::Status {
            code: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::json!({"name": "team/app", "tags": tags}).to_string(),
        },
    ));
    drop(tags);
    rescan(&api, "grown").await;
    for i in 0..3 {
        create(
            &api,
            &format!("huge-{i}"),
            &hostile.url,
            "huge",
            serde_json::json!({}),
        )
        .await;
        create(
            &api,
            &format!("fat-{i}"),
            &hostile.url,
            "fat",
            serde_json::json!({}),
        )
        .await;
    }

    let r = wait_for(
        &api,
        "grown",
        &op,
        "TooManyTags",
        failed_with("TooManyTags"),
    )
    .await;
    let s = status(&r);
    assert!(
        s.message
            .as_deref()
            .unwrap_or_default()
            .contains("more than 20000 tags"),
        "{:?}",
        s.message
    );
    common::assert_images(s.images.as_deref().unwrap_or_default(), &pushed);
    assert!(
        s.last_successful_scan_time.is_some(),
        "the last good scan stays"
    );
    for i in 0..3 {
        wait_for(
            &api,
            &format!("huge-{i}"),
            &op,
            "TooManyTags",
            failed_with("TooManyTags"),
        )
        .await;
        let r = wait_for(
            &api,
            &format!("fat-{i}"),
            &op,
            "ResponseTooLarge",
            failed_with("ResponseTooLarge"),
        )
        .await;
        assert!(
            status(&r)
                .message
                .unwrap_or_default()
                .contains("more than 4194304 bytes"),
            "{:?}",
            status(&r).message
        );
    }
    // Each huge scan stopped at the limit instead of listing all 200,000 tags.
    assert!(hostile.counters.huge_pages.load(Ordering::Relaxed) <= 3 * 21);
    assert_eq!(
        hostile.counters.other.load(Ordering::Relaxed),
        0,
        "no manifest request"
    );

    // The others keep being scanned.
    wait_for(&api, "good", &op, "the good registry", ok).await;
    rescan(&api, "good").await;
    wait_for(&api, "good", &op, "the good registry again", |r| {
        ok(r) && r.metadata.generation == Some(2)
    })
    .await;

    // Seven hostile scans held at most a page and 20,000 tags each: the operator stayed small
    // (measured: ~57 MiB; with the former 32 MiB page limit, ~123 MiB).
    let peak = peak_rss(op.child.id().unwrap());
    assert!(peak < 96 << 20, "operator peak RSS {} MiB", peak >> 20);
}

/// Bumps the generation, which makes the operator scan again now.
async fn rescan(api: &Api<Registry>, name: &str) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"scanInterval": 301}})),
    )
    .await
    .unwrap();
}

/// The module closes the cluster's Pod and Service networks (`--egress-cluster-networks`), and
/// whatever answers a scan, `status.message` repeats only a registry's own error codes and
/// messages: a tenant aiming a Registry at an internal web page learns nothing of its content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_networks_are_closed_and_status_never_repeats_foreign_bodies() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("cluster-egress").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pushed = common::seed_small(&reg, None, "team/app").await;
    let page = FaultProxy::start(&reg.url).await.unwrap();
    page.inject(Fault::new(
        "/v2/internal/tags/list",
        usize::MAX,
        FaultAction::Status {
            code: 403,
            headers: vec![("Content-Type".into(), "text/html".into())],
            body: "<html><title>Jenkins</title>build-secret=hunter2 on ci-7.internal</html>".into(),
        },
    ));
    page.inject(Fault::new(
        "/v2/registry/tags/list",
        usize::MAX,
        FaultAction::Status {
            code: 400,
            headers: vec![],
            body: r#"{"errors":[{"code":"NAME_INVALID","message":"invalid repository name","detail":"ci-7.internal"}]}"#.into(),
        },
    ));
    let op = Operator::start(
        cp,
        &ns,
        &["--egress-cluster-networks", "10.111.0.0/16,10.222.0.0/16"],
    )
    .await;
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    create(&api, "open", &reg.url, "team/app", serde_json::json!({})).await;
    create(
        &api,
        "pod",
        "http://10.111.0.5:5000",
        "app",
        serde_json::json!({}),
    )
    .await;
    create(
        &api,
        "service",
        "http://10.222.0.1",
        "app",
        serde_json::json!({}),
    )
    .await;
    create(&api, "page", &page.url, "internal", serde_json::json!({})).await;
    create(
        &api,
        "registry",
        &page.url,
        "registry",
        serde_json::json!({}),
    )
    .await;

    let r = wait_for(&api, "open", &op, "the open registry", ok).await;
    common::assert_images(status(&r).images.as_deref().unwrap_or_default(), &pushed);
    for (name, host) in [("pod", "10.111.0.5"), ("service", "10.222.0.1")] {
        let r = wait_for(&api, name, &op, "EgressDenied", failed_with("EgressDenied")).await;
        let message = status(&r).message.unwrap_or_default();
        assert!(
            message.starts_with(&format!(
                "refused by the operator's egress policy: {host} is not an allowed destination"
            )),
            "{name}: {message}"
        );
    }
    let failed = |r: &Registry| {
        status(r).last_scan_status == Some(ScanStatus::Failed)
            && status(r).observed_generation == r.metadata.generation
    };
    let r = wait_for(&api, "page", &op, "a failed scan", failed).await;
    let message = status(&r).message.unwrap_or_default();
    assert!(message.contains("HTTP 403"), "{message}");
    for leaked in ["Jenkins", "hunter2", "ci-7.internal", "<html"] {
        assert!(!message.contains(leaked), "{leaked:?} in {message}");
    }
    let r = wait_for(&api, "registry", &op, "a failed scan", failed).await;
    let message = status(&r).message.unwrap_or_default();
    assert!(
        message.contains("HTTP 400: NAME_INVALID invalid repository name"),
        "{message}"
    );
    assert!(!message.contains("ci-7.internal"), "{message}");
}
