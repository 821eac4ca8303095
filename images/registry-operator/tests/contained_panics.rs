//! A panic inside one object's scan stays with that object: it fails with `InternalError`,
//! `registry_operator_panics_total` counts it, the process and the other namespaces' objects go
//! on, and the object's next scan works (no lock is left poisoned). The panic is the test
//! build's (`fault-injection` feature): a scan of `fault-injection/panic` panics once, inside
//! the shared auth-mode cache's lock.

mod common;

use common::operator::{self, Operator, reason, status, wait_for};
use kube::api::{Api, Patch, PatchParams, PostParams};
use registry_operator::api::{Registry, ScanStatus};
use testenv::controlplane;
use testenv::registry::{RegistryOptions, RegistryServer};

fn ok(r: &Registry) -> bool {
    status(r).last_scan_status == Some(ScanStatus::Success)
        && status(r).observed_generation == r.metadata.generation
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_one_scan_fails_only_that_object() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let first = cp.create_namespace("panic-a").await;
    let second = cp.create_namespace("panic-b").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    common::seed_small(&reg, None, "fault-injection/panic").await;
    let pushed = common::seed_small(&reg, None, "team/app").await;
    let op = Operator::start_all_namespaces(cp, &[]).await;

    let a: Api<Registry> = Api::namespaced(client.clone(), &first);
    a.create(
        &PostParams::default(),
        &operator::registry(
            "boom",
            &reg.url,
            "fault-injection/panic",
            serde_json::json!({}),
        ),
    )
    .await
    .unwrap();
    let r = wait_for(&a, "boom", &op, "the panicking scan to fail", |r| {
        status(r).last_scan_status == Some(ScanStatus::Failed)
    })
    .await;
    assert_eq!(reason(&r), "InternalError", "{:#?}", r.status);
    assert!(
        status(&r)
            .message
            .unwrap_or_default()
            .contains("internal error"),
        "{:#?}",
        r.status
    );
    assert_eq!(
        op.metric("registry_operator_panics_total", &["phase=\"scan\""])
            .await,
        1.0,
        "{}",
        op.metrics().await
    );

    // Another namespace's object scans as if nothing happened.
    let b: Api<Registry> = Api::namespaced(client.clone(), &second);
    b.create(
        &PostParams::default(),
        &operator::registry("fine", &reg.url, "team/app", serde_json::json!({})),
    )
    .await
    .unwrap();
    let r = wait_for(&b, "fine", &op, "the other namespace's scan", ok).await;
    common::assert_images(status(&r).images.as_deref().unwrap_or_default(), &pushed);

    // The first object's next scan goes through the very lock the panic held.
    a.patch(
        "boom",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"scanInterval": 600}})),
    )
    .await
    .unwrap();
    let r = wait_for(&a, "boom", &op, "the rescan after the panic", |r| {
        ok(r) && r.metadata.generation == Some(2)
    })
    .await;
    assert_eq!(status(&r).tag_count, Some(3));
    assert_eq!(
        op.metric("registry_operator_panics_total", &[]).await,
        1.0,
        "one panic in all"
    );
    // The caches' sizes are exported, the snapshots' among them.
    assert!(
        op.metric("registry_operator_cache_bytes", &["cache=\"snapshots\""])
            .await
            > 0.0,
        "{}",
        op.metrics().await
    );
}
