//! In the controller, `spec.listing` reaches the scan: a Harbor (its fixture, in front of a real
//! registry) is listed through its artifacts API and says so in `lastScanRequests.lister` and the
//! `NativeListing` condition; `Distribution` turns that off; a lying API falls back with a
//! condition that says why, and the images stay right. A lie about one repository turns native
//! listing off for that repository only, and no other object is told its tag names.

mod common;

use common::operator::{self, Operator, status, wait_for};
use kube::api::{Api, Patch, PatchParams, PostParams};
use registry_operator::api::{Registry, ScanStatus};
use registry_operator::status::{
    NATIVE_LISTING, REASON_NATIVE_LISTING_FELL_BACK, REASON_NATIVE_LISTING_OFF,
    REASON_NATIVE_LISTING_USED,
};
use testenv::controlplane;
use testenv::push::{Format, ImageSpec, Pusher};
use testenv::registry::{RegistryOptions, RegistryServer};
use testenv::vendor::{Behaviour, Vendor, VendorFixture, pushed_unix};

fn native_reason(r: &Registry) -> Option<String> {
    status(r)
        .conditions
        .iter()
        .find(|c| c.type_ == NATIVE_LISTING)
        .map(|c| c.reason.clone())
}

fn native_message(r: &Registry) -> String {
    status(r)
        .conditions
        .iter()
        .find(|c| c.type_ == NATIVE_LISTING)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Each image's push time and the API that gave it, as the status holds them.
fn push_times(r: &Registry) -> Vec<(String, Option<i64>, Option<String>)> {
    status(r)
        .images
        .unwrap_or_default()
        .into_iter()
        .map(|i| {
            (
                i.tag,
                i.pushed_at.map(|t| t.unix()),
                i.timestamp_source.and_then(|s| s.pushed_at),
            )
        })
        .collect()
}

fn lister(r: &Registry) -> Option<String> {
    status(r).last_scan_requests.and_then(|q| q.lister)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_listing_reaches_the_scan_and_the_guard_shows_in_a_condition() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("listing").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pushed = common::seed_small(&reg, None, "team/app").await;
    let harbor = VendorFixture::start(Vendor::Harbor, &reg.url, None)
        .await
        .unwrap();
    let op = Operator::start(cp, &ns, &[]).await;
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &operator::registry("app", &harbor.url, "team/app", serde_json::json!({})),
    )
    .await
    .unwrap();
    let ok = |r: &Registry| status(r).last_scan_status == Some(ScanStatus::Success);
    let r = wait_for(&api, "app", &op, "native scan", ok).await;
    common::assert_images(status(&r).images.as_deref().unwrap_or_default(), &pushed);
    assert_eq!(lister(&r).as_deref(), Some("harbor"));
    assert_eq!(
        native_reason(&r).as_deref(),
        Some(REASON_NATIVE_LISTING_USED)
    );
    // Harbor's `push_time` of each tag reaches the status, with where it came from.
    let tags: Vec<String> = pushed.tags.iter().map(|(t, _)| t.clone()).collect();
    assert_eq!(
        push_times(&r),
        tags.iter()
            .map(|t| (t.clone(), Some(pushed_unix(t)), Some("harbor".to_string())))
            .collect::<Vec<_>>()
    );

    let generation = |r: &Registry| r.metadata.generation;
    let set_listing = |value: &'static str| {
        let api = api.clone();
        async move {
            api.patch(
                "app",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"listing": value}})),
            )
            .await
            .unwrap()
        }
    };
    let patched = set_listing("Distribution").await;
    let want = generation(&patched);
    let r = wait_for(&api, "app", &op, "distribution scan", |r| {
        ok(r) && status(r).observed_generation == want
    })
    .await;
    common::assert_images(status(&r).images.as_deref().unwrap_or_default(), &pushed);
    assert_eq!(lister(&r).as_deref(), Some("distribution"));
    assert_eq!(native_reason(&r), None, "no native API was asked");
    assert_eq!(
        push_times(&r),
        tags.iter()
            .map(|t| (t.clone(), None, None))
            .collect::<Vec<_>>(),
        "the registry API has no push times, and the old ones do not linger"
    );

    // The API lies about a tag the status knows: the guard HEADs it, the scan falls back.
    harbor.set_behaviour(Behaviour::Lie { tag: "2.0".into() });
    let patched = set_listing("Auto").await;
    let want = generation(&patched);
    let r = wait_for(&api, "app", &op, "guarded scan", |r| {
        ok(r) && status(r).observed_generation == want
    })
    .await;
    common::assert_images(status(&r).images.as_deref().unwrap_or_default(), &pushed);
    assert_eq!(lister(&r).as_deref(), Some("distribution"));
    assert_eq!(
        native_reason(&r).as_deref(),
        Some(REASON_NATIVE_LISTING_FELL_BACK)
    );
    let message = native_message(&r);
    assert!(message.contains("tag 2.0 points at"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lie_about_one_repository_is_kept_from_other_repositories_and_objects() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("listing-apart").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pushed = common::seed_small(&reg, None, "team/app").await;
    let pusher = Pusher::new(&reg, None).unwrap();
    for (i, tag) in ["5.0", "5.1"].into_iter().enumerate() {
        pusher
            .push_image(
                "team/other",
                Some(tag),
                &ImageSpec::new(Format::Oci, 70 + i as u64, &[100]),
            )
            .await
            .unwrap();
    }
    let harbor = VendorFixture::start(Vendor::Harbor, &reg.url, None)
        .await
        .unwrap();
    // The API lies about team/app's 2.0 from the start: the first scan HEADs every tag.
    harbor.set_behaviour(Behaviour::Lie { tag: "2.0".into() });
    let op = Operator::start(cp, &ns, &[]).await;
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    let ok = |r: &Registry| status(r).last_scan_status == Some(ScanStatus::Success);
    let create = |name: &'static str, repository: &'static str, extra: serde_json::Value| {
        let api = api.clone();
        let url = harbor.url.clone();
        async move {
            api.create(
                &PostParams::default(),
                &operator::registry(name, &url, repository, extra),
            )
            .await
            .unwrap()
        }
    };

    create("liar", "team/app", serde_json::json!({})).await;
    let r = wait_for(&api, "liar", &op, "the lie caught", ok).await;
    common::assert_images(status(&r).images.as_deref().unwrap_or_default(), &pushed);
    assert_eq!(
        native_reason(&r).as_deref(),
        Some(REASON_NATIVE_LISTING_FELL_BACK)
    );
    assert!(
        native_message(&r).contains("tag 2.0 points at"),
        "{}",
        native_message(&r)
    );

    // Another repository of the same Harbor: still native, nothing of the lie in it.
    create("other", "team/other", serde_json::json!({})).await;
    let r = wait_for(&api, "other", &op, "the other repository", ok).await;
    assert_eq!(lister(&r).as_deref(), Some("harbor"), "{:?}", r.status);
    assert_eq!(
        native_reason(&r).as_deref(),
        Some(REASON_NATIVE_LISTING_USED)
    );
    assert!(
        !native_message(&r).contains("2.0"),
        "{}",
        native_message(&r)
    );

    // Another object of the lying repository, whose listing leaves 2.0 out: off, and told no
    // tag name.
    create(
        "filtered",
        "team/app",
        serde_json::json!({"tagFilter": {"exclude": "^2\\.0$"}}),
    )
    .await;
    let r = wait_for(&api, "filtered", &op, "the same repository, filtered", ok).await;
    assert_eq!(lister(&r).as_deref(), Some("distribution"));
    assert_eq!(
        native_reason(&r).as_deref(),
        Some(REASON_NATIVE_LISTING_OFF)
    );
    let message = native_message(&r);
    assert!(!message.contains("2.0"), "{message}");
    assert!(!message.contains("sha256:"), "{message}");
    let tags: Vec<String> = status(&r)
        .images
        .unwrap_or_default()
        .iter()
        .map(|i| i.tag.clone())
        .collect();
    assert_eq!(tags, ["1.0", "latest"]);
}
