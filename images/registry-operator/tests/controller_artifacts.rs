//! In the controller: referrer tags (cosign's `.sig`, the fallback tag `sha256-<hex>`) are
//! folded into the image they name and not listed (`spec.referrerTags` defaults to `Hide`),
//! counted in `status.referrerTags`; a rescan reads no manifest again and keeps the
//! referrers; `referrerTags: Show` lists the tags too.

mod common;

use common::operator::{self, Operator, status, wait_for};
use kube::api::{Api, Patch, PatchParams, PostParams};
use registry_operator::api::{Registry, ScanStatus};
use registry_operator::registry::ReferrerKind;
use registry_operator::registry::artifact::fallback_tag;
use testenv::controlplane;
use testenv::fault::FaultProxy;
use testenv::push::{Blob, BuiltImage, Format, ImageSpec, Pusher, sha256_digest};
use testenv::registry::{RegistryOptions, RegistryServer};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const SPDX: &str = "application/spdx+json";

/// One layer of `layer_type` over `config_type` (and `artifactType`, if any).
fn manifest(config_type: &str, artifact_type: Option<&str>, layer_type: &str) -> BuiltImage {
    let config = Blob::new(b"{}".to_vec());
    let layer = Blob::new(format!("{{\"{layer_type}\":1}}").into_bytes());
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config_type, "size": config.data.len(), "digest": config.digest},
        "layers": [{"mediaType": layer_type, "size": layer.data.len(), "digest": layer.digest}],
    });
    if let Some(t) = artifact_type {
        m["artifactType"] = serde_json::json!(t);
    }
    let manifest = bytes::Bytes::from(serde_json::to_vec(&m).unwrap());
    BuiltImage {
        digest: sha256_digest(&manifest),
        media_type: OCI_MANIFEST.into(),
        manifest,
        config,
        layers: vec![layer],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrer_tags_are_folded_hidden_by_default_and_cost_nothing_on_a_rescan() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("artifacts").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let repo = "team/signed";
    let pusher = Pusher::new(&reg, None).unwrap();
    let app = pusher
        .push_image(repo, Some("1.0"), &ImageSpec::new(Format::Oci, 61, &[700]))
        .await
        .unwrap();
    let stem = fallback_tag(&app.digest).unwrap();
    let sig = manifest(
        "application/vnd.oci.image.config.v1+json",
        None,
        SIMPLE_SIGNING,
    );
    pusher
        .push_built(repo, Some(&format!("{stem}.sig")), &sig)
        .await
        .unwrap();
    let sbom = manifest("application/vnd.oci.empty.v1+json", Some(SPDX), SPDX);
    pusher.push_built(repo, None, &sbom).await.unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sbom.digest, "size": sbom.manifest.len(), "artifactType": SPDX}],
    });
    pusher
        .push_raw_manifest(repo, &stem, OCI_INDEX, &serde_json::to_vec(&index).unwrap())
        .await
        .unwrap();

    let proxy = FaultProxy::start(&reg.url).await.unwrap();
    let op = Operator::start(cp, &ns, &[]).await;
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &operator::registry("signed", &proxy.url, repo, serde_json::json!({})),
    )
    .await
    .unwrap();
    let scanned = |generation: i64| {
        move |r: &Registry| {
            status(r).last_scan_status == Some(ScanStatus::Success)
                && status(r).observed_generation == Some(generation)
        }
    };
    let check = |r: &Registry, listed: &[&str]| {
        let s = status(r);
        let images = s.images.clone().unwrap_or_default();
        let tags: Vec<&str> = images.iter().map(|i| i.tag.as_str()).collect();
        assert_eq!(tags, listed);
        assert_eq!((s.tag_count, s.referrer_tags), (Some(3), Some(2)));
        let one = images.iter().find(|i| i.tag == "1.0").unwrap();
        let mut got: Vec<(String, Option<String>, ReferrerKind)> = one
            .referrers
            .iter()
            .map(|r| (r.digest.clone(), r.artifact_type.clone(), r.kind))
            .collect();
        got.sort();
        let mut want = vec![
            (
                sig.digest.clone(),
                Some(SIMPLE_SIGNING.to_string()),
                ReferrerKind::Signature,
            ),
            (
                sbom.digest.clone(),
                Some(SPDX.to_string()),
                ReferrerKind::Sbom,
            ),
        ];
        want.sort();
        assert_eq!(got, want);
    };
    let r = wait_for(&api, "signed", &op, "first scan", scanned(1)).await;
    check(&r, &["1.0"]);

    // A rescan (new spec, same repository): every digest is known, nothing is read again.
    proxy.reset();
    let bump = |spec: serde_json::Value| Patch::Merge(serde_json::json!({ "spec": spec }));
    api.patch(
        "signed",
        &PatchParams::default(),
        &bump(serde_json::json!({"scanInterval": 301})),
    )
    .await
    .unwrap();
    let r = wait_for(&api, "signed", &op, "rescan", scanned(2)).await;
    check(&r, &["1.0"]);
    let gets: Vec<String> = proxy
        .requests()
        .iter()
        .filter(|q| q.method == "GET" && q.path.contains("/manifests/"))
        .map(|q| q.path.clone())
        .collect();
    assert!(gets.is_empty(), "no manifest read again: {gets:?}");

    // Show: the referrer tags are listed too.
    api.patch(
        "signed",
        &PatchParams::default(),
        &bump(serde_json::json!({"referrerTags": "Show"})),
    )
    .await
    .unwrap();
    let r = wait_for(&api, "signed", &op, "rescan with Show", scanned(3)).await;
    let sig_tag = format!("{stem}.sig");
    check(&r, &["1.0", stem.as_str(), sig_tag.as_str()]);
}
