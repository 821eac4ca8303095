//! In the controller, a rescan of an unchanged repository within the cached token's lifetime
//! costs the tag pages and one HEAD per tag: no 401, no token request, no manifest GET. And a
//! tag that cannot be read degrades the object without failing it.

mod common;

use std::time::Duration;

use common::operator::{self, Operator, status, wait_for};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use registry_operator::api::{Registry, ScanStatus};
use testenv::controlplane;
use testenv::fault::{Fault, FaultAction, FaultProxy};
use testenv::registry::{RegistryOptions, RegistryServer};

const USER: &str = "rescanner";
const PASSWORD: &str = "Rescan-Pass-2026";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescan_within_the_token_lifetime_costs_tag_pages_and_one_head_per_tag() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("rescan").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::token(USER, PASSWORD))
        .await
        .unwrap();
    let pushed = common::seed_small(&reg, Some((USER, PASSWORD)), "team/app").await;
    // Every request the operator makes passes the proxy, where it is counted.
    let proxy = FaultProxy::start(&reg.url).await.unwrap();
    let token = reg.token.as_ref().expect("token auth");
    operator::create_secret(&client, &ns, "creds", USER, PASSWORD).await;
    let op = Operator::start(cp, &ns, &[]).await;
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &operator::registry(
            "app",
            &proxy.url,
            "team/app",
            serde_json::json!({"credentialsSecret": {"name": "creds"}}),
        ),
    )
    .await
    .unwrap();
    let ok = |r: &Registry| status(r).last_scan_status == Some(ScanStatus::Success);
    let r = wait_for(&api, "app", &op, "first scan", ok).await;
    common::assert_images(status(&r).images.as_deref().unwrap_or_default(), &pushed);
    let first = status(&r).last_scan_time.clone();
    assert!(token.requests() >= 1, "the first scan fetched a token");
    assert!(
        proxy.requests().iter().any(|q| q.status == 401),
        "the first scan learned the challenge"
    );

    // Touch the Secret (same credentials): the operator rescans now.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    proxy.reset();
    token.reset();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .patch(
            "creds",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"touched": "yes"}}})),
        )
        .await
        .unwrap();
    let r = wait_for(&api, "app", &op, "rescan", |r| {
        ok(r) && status(r).last_scan_time != first
    })
    .await;

    let requests = proxy.requests();
    let tags = pushed.tags.len();
    let heads = requests
        .iter()
        .filter(|q| q.method == "HEAD" && q.path.contains("/manifests/"))
        .count();
    let pages = requests
        .iter()
        .filter(|q| q.method == "GET" && q.path.contains("/tags/list"))
        .count();
    assert_eq!(heads, tags, "one HEAD per tag: {requests:#?}");
    assert_eq!(pages, 1, "{requests:#?}");
    assert_eq!(requests.len(), heads + pages, "nothing else: {requests:#?}");
    assert!(
        requests.iter().all(|q| q.status == 200),
        "no 401: {requests:#?}"
    );
    assert!(
        requests.iter().all(|q| q
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Bearer "))),
        "the cached token went up front"
    );
    assert_eq!(token.requests(), 0, "no token request");
    let counts = status(&r).last_scan_requests.unwrap();
    assert_eq!(
        (
            counts.token_requests,
            counts.manifest_gets,
            counts.manifest_heads
        ),
        (0, 0, tags as i64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_that_cannot_be_read_degrades_the_object_but_keeps_it_ready() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("degraded").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    common::seed_small(&reg, None, "team/app").await;
    let proxy = FaultProxy::start(&reg.url).await.unwrap();
    proxy.inject(Fault::new("/manifests/2.0", 100_000, FaultAction::status(500)).method("HEAD"));
    let op = Operator::start(cp, &ns, &[]).await;
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &operator::registry("app", &proxy.url, "team/app", serde_json::json!({})),
    )
    .await
    .unwrap();
    let r = wait_for(&api, "app", &op, "a degraded success", |r| {
        status(r).last_scan_status == Some(ScanStatus::Success)
    })
    .await;
    let s = status(&r);
    assert_eq!(s.failed_tags, Some(1));
    assert!(
        s.message
            .as_deref()
            .unwrap()
            .contains("1 tag could not be read (first: 2.0"),
        "{:?}",
        s.message
    );
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "True");
    let degraded = s.conditions.iter().find(|c| c.type_ == "Degraded").unwrap();
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "TagsUnreadable")
    );
    let tags: Vec<&str> = s.images.iter().flatten().map(|i| i.tag.as_str()).collect();
    assert_eq!(tags, ["1.0", "latest"]);

    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = events.list(&ListParams::default()).await.unwrap();
        if list.items.iter().any(|e| {
            e.reason.as_deref() == Some("TagsUnreadable")
                && e.type_.as_deref() == Some("Warning")
                && e.note.as_deref().is_some_and(|n| n.contains("2.0"))
        }) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no TagsUnreadable event: {:#?}",
            list.items
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A rescan that finds what the status already lists patches its times and counters only,
/// never the images again; a restarted operator (whose watch cache holds no images) reads the
/// last scan back from the status, so its first rescan needs no manifest GET and announces
/// only the tag that is really new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rescans_write_no_unchanged_images_and_survive_a_restart() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("restart").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let mut pushed = common::seed_small(&reg, None, "team/app").await;
    let proxy = FaultProxy::start(&reg.url).await.unwrap();
    let mut op = Operator::start(cp, &ns, &[]).await;
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &operator::registry("app", &proxy.url, "team/app", serde_json::json!({})),
    )
    .await
    .unwrap();
    let scanned = |generation: i64| {
        move |r: &Registry| {
            status(r).last_scan_status == Some(ScanStatus::Success)
                && status(r).observed_generation == Some(generation)
        }
    };
    let r = wait_for(&api, "app", &op, "first scan", scanned(1)).await;
    common::assert_images(status(&r).images.as_deref().unwrap_or_default(), &pushed);
    let images_bytes = serde_json::to_vec(&status(&r).images).unwrap().len() as f64;
    let bytes = "registry_operator_status_write_bytes_total";
    let first = op.metric(bytes, &[]).await;
    assert!(first > images_bytes, "the first write carried the images");

    // A new spec (same repository) is scanned at once.
    let bump =
        |interval: i64| Patch::Merge(serde_json::json!({"spec": {"scanInterval": interval}}));
    api.patch("app", &PatchParams::default(), &bump(301))
        .await
        .unwrap();
    let r = wait_for(&api, "app", &op, "rescan", scanned(2)).await;
    common::assert_images(status(&r).images.as_deref().unwrap_or_default(), &pushed);
    let second = op.metric(bytes, &[]).await - first;
    assert!(
        second > 0.0 && second + images_bytes <= first + 64.0,
        "the rescan's patch left the unchanged images out: first write {first} B, rescan {second} B, images {images_bytes} B"
    );

    op.terminate().await;
    let pusher = testenv::push::Pusher::new(&reg, None).unwrap();
    let new = pusher
        .push_image(
            "team/app",
            Some("3.0"),
            &testenv::push::ImageSpec::new(testenv::push::Format::Oci, 3, &[4000]),
        )
        .await
        .unwrap();
    let new_digest = new.digest.clone();
    pushed.tags.insert(2, ("3.0".into(), new)); // version order: before `latest`
    proxy.reset();
    let op = Operator::start(cp, &ns, &[]).await;
    api.patch("app", &PatchParams::default(), &bump(302))
        .await
        .unwrap();
    let r = wait_for(&api, "app", &op, "rescan after a restart", scanned(3)).await;
    common::assert_images(status(&r).images.as_deref().unwrap_or_default(), &pushed);
    let gets: Vec<String> = proxy
        .requests()
        .iter()
        .filter(|q| q.method == "GET" && q.path.contains("/manifests/"))
        .map(|q| q.path.clone())
        .collect();
    assert!(
        gets.len() == 1 && (gets[0].ends_with("/manifests/3.0") || gets[0].ends_with(&new_digest)),
        "only the new tag's manifest was read: {gets:?}"
    );

    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = events.list(&ListParams::default()).await.unwrap();
        let added: Vec<String> = list
            .items
            .iter()
            .filter(|e| e.reason.as_deref() == Some("TagsAdded"))
            .filter_map(|e| e.note.clone())
            .collect();
        if !added.is_empty() {
            assert_eq!(added.len(), 1, "{added:?}");
            assert!(
                added[0].contains("3.0") && !added[0].contains("1.0"),
                "only the new tag is announced: {added:?}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no TagsAdded event: {:#?}",
            list.items
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
