//! Secrets the operator has no business with do not cost it memory: it watches Secrets'
//! metadata only. A test binary of its own, because the operator here watches every
//! namespace of its (own) control plane.

mod common;

use std::time::Duration;

use common::operator::{self, Operator, status};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use registry_operator::api::{Registry, ScanStatus};
use testenv::controlplane;
use testenv::registry::{RegistryOptions, RegistryServer};

const SECRETS: usize = 2000;
const SECRET_BYTES: usize = 50 * 1024;
const NAMESPACES: usize = 10;
/// The Secrets total 100 MiB; the operator may differ by this much between runs.
const TOLERANCE_KIB: u64 = 20 * 1024;

fn ok(r: &Registry) -> bool {
    status(r).last_scan_status == Some(ScanStatus::Success)
        && status(r).observed_generation == r.metadata.generation
}

/// `VmHWM` (peak resident set) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Starts an operator over every namespace, waits until its caches are synced (readyz) and a
/// rescan of `name` went through, and returns its peak RSS.
async fn run_once(
    cp: &controlplane::ControlPlane,
    api: &Api<Registry>,
    name: &str,
    generation: i64,
) -> u64 {
    let mut op = Operator::start_all_namespaces(cp, &[]).await;
    let ready = format!("{}/readyz", op.health);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        if reqwest::get(&ready)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", op.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"scanInterval": 300 + generation}})),
    )
    .await
    .unwrap();
    operator::wait_for(api, name, &op, "a rescan", |r| {
        ok(r) && r.metadata.generation == Some(generation)
    })
    .await;
    let peak = peak_rss_kib(op.child.id().unwrap());
    op.terminate().await;
    peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_unrelated_secrets_do_not_grow_the_operator() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("mem").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    common::seed_small(&reg, None, "mem/app").await;
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &operator::registry("app", &reg.url, "mem/app", serde_json::json!({})),
    )
    .await
    .unwrap();

    let before = run_once(cp, &api, "app", 2).await;

    // 2,000 Secrets of 50 KiB (100 MiB) in other namespaces.
    let mut namespaces = Vec::new();
    for _ in 0..NAMESPACES {
        namespaces.push(cp.create_namespace("bulk").await);
    }
    let payload = "x".repeat(SECRET_BYTES);
    futures::stream::iter(0..SECRETS)
        .for_each_concurrent(8, |i| {
            let api: Api<Secret> = Api::namespaced(client.clone(), &namespaces[i % NAMESPACES]);
            let secret: Secret = serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": format!("bulk-{i}")},
                "stringData": {"blob": payload},
            }))
            .unwrap();
            async move {
                api.create(&PostParams::default(), &secret).await.unwrap();
            }
        })
        .await;

    let after = run_once(cp, &api, "app", 3).await;
    eprintln!("peak RSS without the Secrets: {before} KiB, with them: {after} KiB");
    assert!(
        after <= before + TOLERANCE_KIB,
        "peak RSS grew from {before} KiB to {after} KiB with {SECRETS} unrelated Secrets of {SECRET_BYTES} bytes"
    );
}
