//! Objects that would have the same conversation with a registry share one scan: thirty
//! namespaces watching one repository cost one tag listing per interval, each object still
//! sees only what its own tagFilter keeps, and objects with other credentials never share.
//! Its own binary: the operator here watches every namespace of its control plane.

mod common;

use std::time::Duration;

use common::operator::{self, Operator, status, wait_for};
use kube::api::{Api, PostParams};
use registry_operator::api::{Registry, ScanStatus};
use testenv::controlplane;
use testenv::fault::FaultProxy;
use testenv::push::{Format, ImageSpec, Pusher};
use testenv::registry::{RegistryOptions, RegistryServer};

const NAMESPACES: usize = 30;
const INTERVAL: u64 = 30;
const USER: &str = "sharer";
const PASSWORD: &str = "Shared-Pass-2026";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_of_one_scan_key_share_one_conversation() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let client = cp.client().await;

    // A public repository with two tags, behind a proxy that counts what reaches it.
    let public = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pusher = Pusher::new(&public, None).unwrap();
    for (tag, seed) in [("v1.0", 1), ("v2.0", 2)] {
        let image = ImageSpec::new(Format::Docker, seed, &[1000]);
        pusher
            .push_image("shared/app", Some(tag), &image)
            .await
            .unwrap();
    }
    let proxy = FaultProxy::start(&public.url).await.unwrap();
    // A private repository that one namespace reaches with the right password, another not.
    let private = RegistryServer::start(RegistryOptions::token(USER, PASSWORD))
        .await
        .unwrap();
    common::seed_small(&private, Some((USER, PASSWORD)), "team/app").await;

    let op = Operator::start_all_namespaces(cp, &[]).await;
    let interval = serde_json::json!(INTERVAL);
    let mut watchers = Vec::new();
    for i in 0..NAMESPACES {
        let ns = cp.create_namespace(&format!("share{i}")).await;
        // Two of them keep only some tags.
        let extra = match i {
            0 => serde_json::json!({"scanInterval": interval, "tagFilter": {"include": "^v1"}}),
            1 => serde_json::json!({"scanInterval": interval, "tagFilter": {"include": "^v2"}}),
            _ => serde_json::json!({"scanInterval": interval}),
        };
        Api::<Registry>::namespaced(client.clone(), &ns)
            .create(
                &PostParams::default(),
                &operator::registry("app", &proxy.url, "shared/app", extra),
            )
            .await
            .unwrap();
        watchers.push(ns);
    }
    let (right, wrong) = (
        cp.create_namespace("share-right").await,
        cp.create_namespace("share-wrong").await,
    );
    for (ns, password) in [(&right, PASSWORD), (&wrong, "not-the-password")] {
        operator::create_secret(&client, ns, "creds", USER, password).await;
        Api::<Registry>::namespaced(client.clone(), ns)
            .create(
                &PostParams::default(),
                &operator::registry(
                    "private",
                    &private.url,
                    "team/app",
                    serde_json::json!({"credentialsSecret": {"name": "creds"}}),
                ),
            )
            .await
            .unwrap();
    }

    let scanned = |r: &Registry| status(r).last_scan_status == Some(ScanStatus::Success);
    for (i, ns) in watchers.iter().enumerate() {
        let api = Api::<Registry>::namespaced(client.clone(), ns);
        let r = wait_for(&api, "app", &op, "a shared scan's result", scanned).await;
        let tags: Vec<String> = status(&r)
            .images
            .unwrap_or_default()
            .into_iter()
            .map(|i| i.tag)
            .collect();
        let expected: &[&str] = match i {
            0 => &["v1.0"],
            1 => &["v2.0"],
            _ => &["v1.0", "v2.0"],
        };
        assert_eq!(
            tags, expected,
            "namespace {ns} sees what its own tagFilter keeps"
        );
        assert_eq!(status(&r).tag_count, Some(expected.len() as i64));
    }
    // Other credentials are another conversation: the wrong password is never covered by the
    // right one's scan (and the right one's token is not lent to it).
    let right_api = Api::<Registry>::namespaced(client.clone(), &right);
    wait_for(
        &right_api,
        "private",
        &op,
        "the right password's scan",
        scanned,
    )
    .await;
    let wrong_api = Api::<Registry>::namespaced(client.clone(), &wrong);
    let failed = |r: &Registry| status(r).last_scan_status == Some(ScanStatus::Failed);
    let r = wait_for(
        &wrong_api,
        "private",
        &op,
        "the wrong password's own scan",
        failed,
    )
    .await;
    assert!(
        !status(&r).message.unwrap_or_default().contains(PASSWORD),
        "no credential in the message"
    );

    // Steady state: over two intervals, the thirty objects make about one tag listing per
    // interval between them (without sharing: thirty per interval).
    proxy.reset();
    tokio::time::sleep(Duration::from_secs(2 * INTERVAL + INTERVAL / 2)).await;
    let listings = proxy.count("GET", "/tags/list");
    assert!(
        (1..=4).contains(&listings),
        "{listings} tag listings in 2.5 intervals for {NAMESPACES} objects of one repository\n{}",
        common::operator::tail(&op.logs(), 40)
    );
    let metrics = op.metrics().await;
    let served = common::operator::sum_metric(
        &metrics,
        "registry_operator_shared_scans_total",
        &["share=\"joined\""],
    ) + common::operator::sum_metric(
        &metrics,
        "registry_operator_shared_scans_total",
        &["share=\"reused\""],
    );
    assert!(
        served >= (NAMESPACES - 1) as f64,
        "objects served by another's scan: {served}"
    );
}
