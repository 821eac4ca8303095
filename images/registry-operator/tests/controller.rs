//! The operator on a real kube-apiserver + etcd, scanning a real registry: status, conditions,
//! Secrets, validation, events, leader election, deletion mid-scan. The operator runs as the
//! module chart's ServiceAccount (common::operator::chart_kubeconfig), so every scenario here also
//! proves that the chart grants what it needs.

mod common;

use std::time::Duration;

use common::operator::{self, Operator, reason, status, wait_for};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use registry_operator::api::{Registry, ScanStatus};
use testenv::controlplane;
use testenv::fault::{Fault, FaultAction, FaultProxy};
use testenv::registry::{RegistryOptions, RegistryServer};

const USER: &str = "deployer";
const GOOD: &str = "Good-Pass-4711";
const BAD: &str = "Bad-Pass-0815";

fn ok(r: &Registry) -> bool {
    status(r).last_scan_status == Some(ScanStatus::Success)
        && status(r).observed_generation == r.metadata.generation
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_on_create_and_follows_spec_changes() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("scan").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pushed = common::seed_small(&reg, None, "team/app").await;
    let other = common::seed_small(&reg, None, "team/other").await;
    let op = Operator::start(cp, &ns, &[]).await;

    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &operator::registry("app", &reg.url, "team/app", serde_json::json!({})),
    )
    .await
    .unwrap();
    let r = wait_for(&api, "app", &op, "first scan", ok).await;
    let s = status(&r);
    common::assert_images(s.images.as_deref().unwrap_or_default(), &pushed);
    assert_eq!(s.tag_count, Some(3));
    assert_eq!(reason(&r), "ScanSucceeded");
    assert_eq!(s.conditions[0].status, "True");
    assert!(s.last_scan_time.is_some() && s.next_scan_time.is_some());

    // kubectl shows the seed's columns.
    let out = std::process::Command::new(cp.kubectl())
        .args([
            "--kubeconfig",
            cp.kubeconfig_path().to_str().unwrap(),
            "get",
            "registries",
            "-n",
            &ns,
        ])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "URL", "REPOSITORY", "STATUS", "AGE"],
        "{table}"
    );
    assert!(
        table.contains("Success") && table.contains("team/app"),
        "{table}"
    );

    // A spec change rescans, and observedGeneration follows.
    api.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"repository": "team/other"}})),
    )
    .await
    .unwrap();
    let r = wait_for(&api, "app", &op, "rescan after spec change", |r| {
        ok(r) && r.metadata.generation == Some(2)
    })
    .await;
    let digests: Vec<String> = status(&r)
        .images
        .iter()
        .flatten()
        .map(|i| i.digest.clone())
        .collect();
    let want: Vec<String> = other.tags.iter().map(|(_, p)| p.digest.clone()).collect();
    assert_eq!(digests, want);
    assert_eq!(status(&r).observed_generation, Some(2));

    // Steady state: a spec change that keeps the same repository makes no manifest GET.
    api.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"scanInterval": 600}})),
    )
    .await
    .unwrap();
    let r = wait_for(&api, "app", &op, "rescan with known digests", |r| {
        ok(r) && r.metadata.generation == Some(3)
    })
    .await;
    let requests = status(&r).last_scan_requests.unwrap();
    assert_eq!(requests.manifest_gets, 0, "{requests:?}");
    assert_eq!(requests.manifest_heads, 3);

    // Metrics are served (health too).
    let health = reqwest::get(format!("{}/readyz", op.health)).await.unwrap();
    assert!(health.status().is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_secrets_fail_plainly_and_recover_without_touching_the_registry() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("auth").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::htpasswd(USER, GOOD))
        .await
        .unwrap();
    let pushed = common::seed_small(&reg, Some((USER, GOOD)), "private/app").await;
    let op = Operator::start(cp, &ns, &[]).await;
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);

    // Secret missing: SecretNotFound.
    api.create(
        &PostParams::default(),
        &operator::registry(
            "private",
            &reg.url,
            "private/app",
            serde_json::json!({"credentialsSecret": {"name": "creds"}}),
        ),
    )
    .await
    .unwrap();
    let r = wait_for(&api, "private", &op, "SecretNotFound", |r| {
        reason(r) == "SecretNotFound"
    })
    .await;
    assert_eq!(status(&r).last_scan_status, Some(ScanStatus::Failed));
    assert!(status(&r).message.unwrap().contains("\"creds\" not found"));

    // Wrong password: AuthenticationFailed, nothing leaks.
    operator::create_secret(&client, &ns, "creds", USER, BAD).await;
    let r = wait_for(&api, "private", &op, "AuthenticationFailed", |r| {
        reason(r) == "AuthenticationFailed"
    })
    .await;
    let s = status(&r);
    assert_eq!(s.last_scan_status, Some(ScanStatus::Failed));
    assert_eq!(s.conditions[0].status, "False");
    assert!(
        s.message
            .as_deref()
            .unwrap()
            .contains("rejected the credentials"),
        "{:?}",
        s.message
    );
    assert!(!serde_json::to_string(&r).unwrap().contains(BAD));

    // Fix the Secret only: the Registry is rescanned without being touched.
    let fixed = serde_json::json!({"stringData": {"password": GOOD}});
    secrets
        .patch("creds", &PatchParams::default(), &Patch::Merge(fixed))
        .await
        .unwrap();
    let r = wait_for(&api, "private", &op, "success after fixing the Secret", ok).await;
    assert_eq!(
        r.metadata.generation,
        Some(1),
        "the Registry itself was not changed"
    );
    assert_eq!(
        status(&r).images.as_ref().map(Vec::len),
        Some(pushed.tags.len())
    );

    // Break it again: Failed, but the last good images stay.
    let broken = serde_json::json!({"stringData": {"password": BAD}});
    secrets
        .patch("creds", &PatchParams::default(), &Patch::Merge(broken))
        .await
        .unwrap();
    let r = wait_for(&api, "private", &op, "failure keeping images", |r| {
        status(r).last_scan_status == Some(ScanStatus::Failed)
    })
    .await;
    assert_eq!(
        status(&r).images.as_ref().map(Vec::len),
        Some(pushed.tags.len()),
        "last good data kept"
    );
    assert!(status(&r).last_successful_scan_time.is_some());

    // Events say what happened; no event, status or log line carries a password.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let list = events.list(&ListParams::default()).await.unwrap();
    let reasons: Vec<String> = list.items.iter().filter_map(|e| e.reason.clone()).collect();
    assert!(
        reasons.iter().any(|r| r == "AuthenticationFailed"),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r == "SecretNotFound"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "ScanSucceeded"), "{reasons:?}");
    let all_events = serde_json::to_string(&list.items).unwrap();
    let logs = op.logs();
    for secret in [GOOD, BAD] {
        assert!(!all_events.contains(secret), "password in events");
        assert!(!logs.contains(secret), "password in operator log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_report_added_changed_and_removed_tags() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("events").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pushed = common::seed_small(&reg, None, "ev/app").await;
    let op = Operator::start(cp, &ns, &[]).await;
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &operator::registry("ev", &reg.url, "ev/app", serde_json::json!({})),
    )
    .await
    .unwrap();
    wait_for(&api, "ev", &op, "first scan", ok).await;

    let pusher = testenv::push::Pusher::new(&reg, None).unwrap();
    let oci = &pushed.tags[1].1;
    pusher.tag("ev/app", "3.0", &oci.digest).await.unwrap(); // added
    pusher.tag("ev/app", "latest", &oci.digest).await.unwrap(); // digest changed
    pusher
        .delete_manifest("ev/app", &pushed.tags[0].1.digest)
        .await
        .unwrap(); // 1.0 removed (and old latest)
    pusher.tag("ev/app", "latest", &oci.digest).await.unwrap();
    // A spec change asks for a rescan now.
    api.patch(
        "ev",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"scanInterval": 301}})),
    )
    .await
    .unwrap();
    let r = wait_for(&api, "ev", &op, "rescan", |r| {
        ok(r) && r.metadata.generation == Some(2)
    })
    .await;
    let tags: Vec<String> = status(&r)
        .images
        .iter()
        .flatten()
        .map(|i| i.tag.clone())
        .collect();
    assert_eq!(tags, ["2.0", "3.0", "latest"]);

    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let notes: Vec<(String, String)> = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|e| {
                (
                    e.reason.clone().unwrap_or_default(),
                    e.note.clone().unwrap_or_default(),
                )
            })
            .collect();
        let has = |reason: &str, note: &str| notes.iter().any(|(r, n)| r == reason && n == note);
        if has("TagsAdded", "1 tag added: 3.0")
            && has("TagsRemoved", "1 tag removed: 1.0")
            && has("DigestsChanged", "1 tag changed digest: latest")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "events: {notes:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_rejects_invalid_specs_with_readable_messages() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("invalid").await;
    let api: Api<Registry> = Api::namespaced(cp.client().await, &ns);
    let cases = [
        (
            "ftp://registry.example.com",
            "library/nginx",
            serde_json::json!({}),
            "url must be an http:// or https:// URL",
        ),
        (
            "registry.example.com",
            "library/nginx",
            serde_json::json!({}),
            "url must be an http:// or https:// URL",
        ),
        (
            "https://registry.example.com",
            "Library/Nginx",
            serde_json::json!({}),
            "repository must be a lowercase repository path",
        ),
        (
            "https://registry.example.com",
            "a//b",
            serde_json::json!({}),
            "repository must be a lowercase repository path",
        ),
        (
            "https://registry.example.com",
            "library/nginx",
            serde_json::json!({"scanInterval": 5}),
            "should be greater than or equal to 30",
        ),
    ];
    for (i, (url, repo, extra, message)) in cases.into_iter().enumerate() {
        let err = api
            .create(
                &PostParams::default(),
                &operator::registry(&format!("bad-{i}"), url, repo, extra),
            )
            .await
            .expect_err("the API server must reject this spec");
        let text = err.to_string();
        assert!(text.contains(message), "case {i}: {text}");
    }
    let good = operator::registry(
        "good",
        "https://registry-1.docker.io",
        "library/nginx",
        serde_json::json!({}),
    );
    let created = api.create(&PostParams::default(), &good).await.unwrap();
    assert_eq!(created.spec.scan_interval, 300);
}

/// What the operator would refuse anyway is refused where it is written: a password in the URL
/// would otherwise stay in the object for every reader of `kubectl get registries`, and a
/// malformed Secret name would only surface later as `SecretNotFound`. The messages are fixed
/// text, so the refused password is not echoed back either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_urls_and_invalid_secret_names_are_refused_at_admission() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("admission").await;
    let api: Api<Registry> = Api::namespaced(cp.client().await, &ns);
    const PASSWORD: &str = "Adm1ssion-Secret-pw";
    let no_credentials = "url must not contain credentials";
    let secret_name = "name must be a Secret name";
    let cases = [
        (
            format!("https://alice:{PASSWORD}@registry.example.com"),
            serde_json::json!({}),
            no_credentials,
        ),
        (
            format!("http://alice:{PASSWORD}@registry.example.com:5000/v2"),
            serde_json::json!({}),
            no_credentials,
        ),
        (
            format!("https://{PASSWORD}@registry.example.com"),
            serde_json::json!({}),
            no_credentials,
        ),
        // Malformed besides: still only the static message, never the value.
        (
            format!("alice:{PASSWORD}@registry.example.com"),
            serde_json::json!({}),
            no_credentials,
        ),
        (
            format!("https://alice:{PASSWORD}@registry.example.com/v2?x=1 y"),
            serde_json::json!({}),
            no_credentials,
        ),
        (
            format!(
                "https://alice:{PASSWORD}@registry.example.com/{}",
                "a".repeat(2100)
            ),
            serde_json::json!({}),
            "may not be more than 2048",
        ),
        (
            "https://registry.example.com".into(),
            serde_json::json!({"credentialsSecret": {"name": "Bad_Name!"}}),
            secret_name,
        ),
        (
            "https://registry.example.com".into(),
            serde_json::json!({"credentialsSecret": {"name": "-pull-secret"}}),
            secret_name,
        ),
        (
            "https://registry.example.com".into(),
            serde_json::json!({"caSecret": {"name": "ca..bundle"}}),
            secret_name,
        ),
        (
            "https://registry.example.com".into(),
            serde_json::json!({"caSecret": {"name": "ca", "key": "ca/crt"}}),
            "key must be a Secret key",
        ),
    ];
    for (i, (url, extra, message)) in cases.into_iter().enumerate() {
        let err = api
            .create(
                &PostParams::default(),
                &operator::registry(&format!("bad-{i}"), &url, "library/nginx", extra),
            )
            .await
            .expect_err("the API server must refuse this spec");
        let text = err.to_string();
        assert!(text.contains(message), "case {i}: {text}");
        assert!(
            !text.contains(PASSWORD),
            "case {i} echoes the password: {text}"
        );
    }
    // Valid names and URLs still pass, including an '@' in the path and dotted Secret names.
    for (i, (url, extra)) in [
        ("https://registry.example.com", serde_json::json!({})),
        (
            "https://registry.example.com/mirror@2",
            serde_json::json!({"credentialsSecret": {"name": "pull.secret-1"}}),
        ),
        (
            "http://10.0.0.5:5000",
            serde_json::json!({"caSecret": {"name": "ca", "key": "ca_bundle.pem"}}),
        ),
        (
            "https://registry.example.com",
            serde_json::json!({"caSecret": {"name": "ca"}}),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        api.create(
            &PostParams::default(),
            &operator::registry(&format!("good-{i}"), url, "library/nginx", extra),
        )
        .await
        .unwrap_or_else(|e| panic!("good case {i} refused: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_leader_and_failover() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("leader").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    common::seed_small(&reg, None, "ha/app").await;
    // The lease lives where the chart's Role allows it: the module's namespace (POD_NAMESPACE),
    // under a name of this test's own.
    let lease = format!("registry-operator-{ns}");
    let args = |id: &'static str| {
        [
            "--leader-elect",
            "--leader-election-lease-name",
            lease.as_str(),
            "--identity",
            id,
        ]
    };
    let mut a = Operator::start(cp, &ns, &args("replica-a")).await;
    let mut b = Operator::start(cp, &ns, &args("replica-b")).await;

    let leases: Api<Lease> = Api::namespaced(client.clone(), operator::MODULE_NAMESPACE);
    let holder = || async {
        leases
            .get_opt(&lease)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let first = loop {
        if let Some(h) = holder().await {
            break h;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nobody took the lease"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &operator::registry("one", &reg.url, "ha/app", serde_json::json!({})),
    )
    .await
    .unwrap();
    let (leader, standby) = if first == "replica-a" {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    wait_for(&api, "one", leader, "scan by the leader", ok).await;
    assert!(
        !standby.logs().contains("scan succeeded"),
        "the standby must not scan"
    );

    leader.terminate().await;
    api.create(
        &PostParams::default(),
        &operator::registry("two", &reg.url, "ha/app", serde_json::json!({})),
    )
    .await
    .unwrap();
    wait_for(&api, "two", standby, "scan by the new leader", ok).await;
    assert_ne!(holder().await.unwrap(), first);
    assert!(standby.logs().contains("acquired the leader lease"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_deleted_mid_scan_crashes_nothing() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("delete").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    common::seed_small(&reg, None, "slow/app").await;
    let proxy = FaultProxy::start(&reg.url).await.unwrap();
    proxy.inject(Fault::new(
        "/tags/list",
        1,
        FaultAction::Delay(Duration::from_secs(3)),
    ));
    let mut op = Operator::start(cp, &ns, &[]).await;
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &operator::registry("doomed", &proxy.url, "slow/app", serde_json::json!({})),
    )
    .await
    .unwrap();
    // Wait until the scan is in flight, then delete the object under it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while proxy.count("GET", "/tags/list") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "scan never started: {}",
            op.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    api.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        op.child.try_wait().unwrap().is_none(),
        "operator exited: {}",
        op.logs()
    );

    api.create(
        &PostParams::default(),
        &operator::registry("after", &proxy.url, "slow/app", serde_json::json!({})),
    )
    .await
    .unwrap();
    wait_for(&api, "after", &op, "scan after the deletion", ok).await;
    op.terminate().await;
    let exit = op.child.try_wait().unwrap().expect("stopped on SIGTERM");
    assert!(
        exit.success(),
        "graceful shutdown exits 0: {}",
        operator::tail(&op.logs(), 20)
    );
}
