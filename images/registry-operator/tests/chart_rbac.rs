//! The operator's identity from the module chart, on a real kube-apiserver: the ServiceAccount's
//! token carries the chart's permissions and no more, and the operator running with it scans,
//! writes status and Events, and exports the per-Registry metrics the module's alerts read
//! (monitoring/prometheus-rules). Every scenario of tests/controller.rs runs with the same token.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::operator::{self, MODULE_NAMESPACE, Operator, status, wait_for};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use registry_operator::api::{Registry, ScanStatus};
use testenv::controlplane;
use testenv::registry::{RegistryOptions, RegistryServer};

fn forbidden<T: std::fmt::Debug>(what: &str, r: Result<T, kube::Error>) {
    match r {
        Err(kube::Error::Api(e)) if e.code == 403 => {}
        other => panic!("{what}: want 403 Forbidden for the chart's ServiceAccount, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_serviceaccount_holds_only_what_the_chart_grants() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("rbac").await;
    let sa = operator::kube_client(operator::chart_kubeconfig(cp).await)
        .await
        .unwrap();
    let lp = ListParams::default();

    // What the operator needs.
    Api::<Registry>::all(sa.clone()).list(&lp).await.unwrap();
    Api::<Secret>::namespaced(sa.clone(), &ns)
        .list(&lp)
        .await
        .unwrap();
    Api::<Lease>::namespaced(sa.clone(), MODULE_NAMESPACE)
        .get_opt("no-such-lease")
        .await
        .unwrap();

    // What it must not do: change what tenants own, or read beyond its job.
    let registry = operator::registry(
        "x",
        "https://registry.example",
        "a/b",
        serde_json::json!({}),
    );
    forbidden(
        "create a Registry",
        Api::<Registry>::namespaced(sa.clone(), &ns)
            .create(&PostParams::default(), &registry)
            .await,
    );
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "stringData": {"username": "u", "password": "p"},
    }))
    .unwrap();
    forbidden(
        "create a Secret",
        Api::<Secret>::namespaced(sa.clone(), &ns)
            .create(&PostParams::default(), &secret)
            .await,
    );
    forbidden("list Pods", Api::<Pod>::all(sa.clone()).list(&lp).await);
    let lease: Lease = serde_json::from_value(serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"},
    }))
    .unwrap();
    forbidden(
        "create a Lease outside the module's namespace",
        Api::<Lease>::namespaced(sa.clone(), &ns)
            .create(&PostParams::default(), &lease)
            .await,
    );
}

/// The value of `metric{namespace="<ns>",name="<name>"}` in a Prometheus text exposition.
fn sample(text: &str, metric: &str, ns: &str, name: &str) -> Option<f64> {
    let labels = [format!("namespace=\"{ns}\""), format!("name=\"{name}\"")];
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .find(|l| labels.iter().all(|want| l.contains(want.as_str())))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn scrape(op: &Operator) -> String {
    reqwest::get(format!("{}/metrics", op.metrics))
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("scraping {}/metrics: {e}", op.metrics))
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_as_the_chart_serviceaccount_and_exports_what_the_alerts_read() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("alerts").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    common::seed_small(&reg, None, "team/app").await;
    let op = Operator::start(cp, &ns, &[]).await;
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    for (name, repo) in [("good", "team/app"), ("missing", "team/nothing-here")] {
        api.create(
            &PostParams::default(),
            &operator::registry(name, &reg.url, repo, serde_json::json!({})),
        )
        .await
        .unwrap();
    }
    wait_for(&api, "good", &op, "a successful scan", |r| {
        status(r).last_scan_status == Some(ScanStatus::Success)
    })
    .await;
    wait_for(&api, "missing", &op, "a failed scan", |r| {
        status(r).last_scan_status == Some(ScanStatus::Failed)
    })
    .await;

    // Status and Events were written with the ServiceAccount's token.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let reasons: Vec<String> = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|e| e.reason)
            .collect();
        if reasons.iter().any(|r| r == "ScanSucceeded")
            && reasons.iter().any(|r| r == "RepositoryNotFound")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "events {reasons:?}; operator log:\n{}",
            operator::tail(&op.logs(), 30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The series RegistryScanFailing and RegistryScanStale are computed from.
    let text = scrape(&op).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let m = |metric: &str, name: &str| sample(&text, metric, &ns, name);
    assert_eq!(
        m("registry_operator_last_scan_success", "good"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        m("registry_operator_last_scan_success", "missing"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        m("registry_operator_scan_interval_seconds", "good"),
        Some(300.0)
    );
    assert_eq!(
        m("registry_operator_scan_interval_seconds", "missing"),
        Some(300.0)
    );
    let last = m("registry_operator_last_success_timestamp_seconds", "good").unwrap();
    assert!(
        (now - 300.0..=now + 5.0).contains(&last),
        "{last} vs now {now}"
    );
    assert_eq!(
        m(
            "registry_operator_last_success_timestamp_seconds",
            "missing"
        ),
        None,
        "never succeeded: no timestamp"
    );
    assert!(
        text.lines().any(|l| l.starts_with(
            "registry_operator_scans_total{result=\"failure\",reason=\"RepositoryNotFound\"}"
        )),
        "{text}"
    );

    // A suspended Registry is not scanned, so nothing should alert on it.
    api.patch(
        "good",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"suspend": true}})),
    )
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sample(
        &scrape(&op).await,
        "registry_operator_last_scan_success",
        &ns,
        "good",
    )
    .is_some()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "series of a suspended Registry kept"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
