//! Per-tenant webhook secrets: a tenant names a Secret of its own namespace in
//! `spec.webhook.secretRef`, and its senders post to `/webhook/namespaces/<ns>/<kind>` with that
//! Secret's `token`. Such a request refreshes only the objects of that namespace that name the
//! Secret, never another namespace's object of the same repository; the cluster-wide secret
//! keeps working on `/webhook/<kind>`. The operator watches every namespace, so this binary
//! holds this one test.

mod common;

use std::time::Duration;

use common::operator::{self, Operator, status, wait_for};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use registry_operator::api::{Registry, ScanStatus};
use testenv::controlplane;
use testenv::push::{Format, ImageSpec};

const CLUSTER_SECRET: &str = "cluster-wide-secret-2026";
const TOKEN_A: &str = "tenant-a-token-2026";
const TOKEN_B: &str = "tenant-b-token-2026";
const REPO: &str = "shared/app";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_secret_refreshes_its_own_namespace_only() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let client = cp.client().await;
    let (ns_a, ns_b) = (
        cp.create_namespace("tenant-a").await,
        cp.create_namespace("tenant-b").await,
    );
    for (ns, token) in [(&ns_a, TOKEN_A), (&ns_b, TOKEN_B)] {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hooks"},
            "stringData": {"token": token},
        }))
        .unwrap();
        Api::<Secret>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }
    let (reg, pusher) = common::plain_registry_with(REPO, "1.0", 41).await;

    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, CLUSTER_SECRET).unwrap();
    let port = testenv::tools::free_port();
    let op = Operator::start_all_namespaces(
        cp,
        &[
            "--webhook-addr",
            &format!("127.0.0.1:{port}"),
            "--webhook-secret-file",
            secret_file.to_str().unwrap(),
            "--min-scan-interval",
            "900",
        ],
    )
    .await;
    let spec = serde_json::json!({"webhook": {"secretRef": {"name": "hooks"}}});
    let (api_a, api_b): (Api<Registry>, Api<Registry>) = (
        Api::namespaced(client.clone(), &ns_a),
        Api::namespaced(client.clone(), &ns_b),
    );
    for api in [&api_a, &api_b] {
        api.create(
            &PostParams::default(),
            &operator::registry("app", &reg.url, REPO, spec.clone()),
        )
        .await
        .unwrap();
    }
    let scanned = |r: &Registry| status(r).last_scan_status == Some(ScanStatus::Success);
    wait_for(&api_a, "app", &op, "first scan in a", scanned).await;
    let before_b = wait_for(&api_b, "app", &op, "first scan in b", scanned).await;

    let second = pusher
        .push_image(REPO, Some("2.0"), &ImageSpec::new(Format::Oci, 42, &[2000]))
        .await
        .unwrap();
    let body = serde_json::json!({"events": [{
        "action": "push",
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "repository": REPO, "tag": "2.0", "digest": second.digest},
        "request": {"host": reg.host(), "method": "PUT"},
    }]})
    .to_string();
    let http = reqwest::Client::new();
    let post = |path: String, token: &'static str| {
        http.post(format!("http://127.0.0.1:{port}{path}"))
            .bearer_auth(token)
            .body(body.clone())
            .send()
    };
    let tenant_path = |ns: &str| format!("/webhook/namespaces/{ns}/distribution");

    // Tenant a's token is no proof on b's path, nor on the cluster-wide path.
    assert_eq!(
        post(tenant_path(&ns_b), TOKEN_A).await.unwrap().status(),
        401
    );
    assert_eq!(
        post("/webhook/distribution".into(), TOKEN_A)
            .await
            .unwrap()
            .status(),
        401
    );
    // The cluster-wide secret is no proof on a tenant's path.
    assert_eq!(
        post(tenant_path(&ns_a), CLUSTER_SECRET)
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        post(tenant_path(&ns_a), TOKEN_A).await.unwrap().status(),
        202
    );
    let has_new = |r: &Registry| {
        status(r)
            .images
            .unwrap_or_default()
            .iter()
            .any(|i| i.tag == "2.0" && i.digest == second.digest)
    };
    wait_for(&api_a, "app", &op, "the pushed tag in a", has_new).await;
    // b's object of the same repository was left alone: one refresh, a's.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = api_b.get("app").await.unwrap();
    assert!(!has_new(&b), "tenant a's secret refreshed b's object");
    assert_eq!(
        status(&b).last_event_time,
        status(&before_b).last_event_time
    );
    assert_eq!(
        op.metric("registry_operator_webhook_refreshes_total", &[])
            .await,
        1.0
    );

    // The cluster-wide secret on the admins' path still reaches every namespace.
    assert_eq!(
        post("/webhook/distribution".into(), CLUSTER_SECRET)
            .await
            .unwrap()
            .status(),
        202
    );
    wait_for(&api_b, "app", &op, "the pushed tag in b", has_new).await;
    for secret in [CLUSTER_SECRET, TOKEN_A, TOKEN_B] {
        assert!(
            !op.logs().contains(secret),
            "a secret appeared in a log line"
        );
    }
}
