//! Referrers in the controller: `status.signed` (the SIGNED column) and the signed-images
//! metric from the referrers API, and the referrers' check time kept in the status, so a
//! restarted operator asks for no referrer before `spec.referrersInterval` has passed.

mod common;

use common::operator::{self, Operator, status, wait_for};
use kube::api::{Api, Patch, PatchParams, PostParams};
use registry_operator::api::{Registry, ScanStatus};
use serde_json::json;
use testenv::controlplane;
use testenv::push::{Format, ImageSpec, Pusher, sha256_digest};
use testenv::referrers::ReferrersRegistry;
use testenv::registry::{RegistryOptions, RegistryServer};

const REPO: &str = "team/app";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_images_are_counted_and_a_restart_reads_no_referrer_within_the_interval() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("referrers").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let fixture = ReferrersRegistry::start(&reg.url).await.unwrap();
    let pusher = Pusher::for_url(&fixture.url, None, None).unwrap();
    let mut signed = String::new();
    for (i, tag) in ["1.0", "1.1"].into_iter().enumerate() {
        let p = pusher
            .push_image(
                REPO,
                Some(tag),
                &ImageSpec::new(Format::Oci, 50 + i as u64, &[200]),
            )
            .await
            .unwrap();
        if tag == "1.0" {
            signed = p.digest;
        }
    }
    // A cosign signature as an OCI 1.1 referrer (cosign's artifact type for `.sig`).
    let config = pusher.push_blob(REPO, b"{}".to_vec()).await.unwrap();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": config, "size": 2}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": signed, "size": 1}
    })
    .to_string();
    let digest = sha256_digest(manifest.as_bytes());
    pusher
        .push_raw_manifest(
            REPO,
            &digest,
            "application/vnd.oci.image.manifest.v1+json",
            manifest.as_bytes(),
        )
        .await
        .unwrap();

    let mut op = Operator::start(cp, &ns, &[]).await;
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &operator::registry("app", &fixture.url, REPO, json!({})),
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
    let s = status(&r);
    assert_eq!(s.signed.as_deref(), Some("1/2"), "{s:#?}");
    let checked = s.referrers_checked_at.clone().expect("referrersCheckedAt");
    assert_eq!(s.last_scan_requests.unwrap().referrer_requests, 2);
    assert_eq!(
        op.metric("registry_operator_signed_images", &["name=\"app\""])
            .await,
        1.0
    );

    // A restart within the interval: the status says when the referrers were read.
    op.terminate().await;
    fixture.reset();
    let op = Operator::start(cp, &ns, &[]).await;
    api.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"scanInterval": 301}})),
    )
    .await
    .unwrap();
    let r = wait_for(&api, "app", &op, "rescan after a restart", scanned(2)).await;
    let s = status(&r);
    assert_eq!(fixture.referrer_requests(), 0, "{s:#?}");
    assert_eq!(s.last_scan_requests.unwrap().referrer_requests, 0);
    assert_eq!(s.signed.as_deref(), Some("1/2"));
    assert_eq!(s.referrers_checked_at, Some(checked));
}
