//! Conformance of artifacts and referrer tags (#18), with real clients against the three
//! registries of the conformance suite (CNCF distribution v3, Debian's distribution 2.8 and
//! `crane registry serve`): `regctl artifact put --subject` (an SPDX and a CycloneDX SBOM, a
//! Notary-style signature), `helm push` of a chart, cosign-style `.sig`/`.att`/`.sbom` tags
//! written here, a buildkit-style index with attestation manifests, and a fallback index
//! naming a digest no tag points at.
//!
//! Measured (and asserted below): none of the three serves the referrers API
//! (`GET /v2/<name>/referrers/<digest>` answers 404), so `regctl artifact put --subject`
//! writes the distribution spec's fallback tag `sha256-<hex>` on all three — an OCI index
//! whose `manifests[]` are the referrers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use registry_operator::api::RegistryStatus;
use registry_operator::registry::artifact::fallback_tag;
use registry_operator::registry::manifest::OCI_MANIFEST;
use registry_operator::registry::{
    ClientOptions, Image, ReferrerKind, RegistryClient, RegistryState, ScanOptions, ScanReport,
    Target, scan,
};
use registry_operator::status;
use testenv::push::{Blob, BuiltImage, Format, ImageSpec, PushedImage, Pusher, sha256_digest};
use testenv::registry::{Implementation, RegistryOptions, RegistryServer};

const REPO: &str = "art/app";
const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const DSSE: &str = "application/vnd.dsse.envelope.v1+json";
const SPDX: &str = "application/spdx+json";
const CYCLONEDX: &str = "application/vnd.cyclonedx+json";
const NOTARY: &str = "application/vnd.cncf.notary.signature";
const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";

#[tokio::test]
async fn artifacts_distribution_v3() {
    artifacts(Implementation::DistributionV3).await;
}

#[tokio::test]
async fn artifacts_distribution_2_8() {
    artifacts(Implementation::Distribution28).await;
}

#[tokio::test]
async fn artifacts_crane_registry() {
    artifacts(Implementation::Crane).await;
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A tool of `hack/tools.sh <set>`, or `None` (skipped, said out loud) outside CI.
fn tool(set: &str, name: &str) -> Option<PathBuf> {
    match testenv::tools::tool_dir(set).map(|d| d.join(name)) {
        Ok(p) if p.is_file() => Some(p),
        other => {
            assert!(!ci(), "{name} ({set}) is needed under CI: {other:?}");
            eprintln!(
                "\n*** SKIPPED: artifacts conformance: no {name} (hack/tools.sh {set}) ***\n"
            );
            None
        }
    }
}

async fn start(imp: Implementation) -> Option<RegistryServer> {
    if let Err(e) = imp.binary() {
        assert!(
            !ci(),
            "artifacts on {} cannot run under CI: {e:#}",
            imp.name()
        );
        eprintln!("\n*** SKIPPED: artifacts on {}: {e:#} ***\n", imp.name());
        return None;
    }
    Some(
        RegistryServer::start(RegistryOptions::plain().on(imp))
            .await
            .unwrap_or_else(|e| panic!("starting {}: {e:#}", imp.name())),
    )
}

/// Runs a client; its output on failure.
fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `regctl artifact put --subject <subject>` of one file, on a plain-HTTP registry.
fn regctl_put(regctl: &Path, home: &Path, host: &str, subject: &str, artifact_type: &str) {
    let file = home.join(format!("{}.json", artifact_type.replace('/', "_")));
    std::fs::write(&file, format!(r#"{{"artifact":"{artifact_type}"}}"#)).unwrap();
    run(
        &format!("regctl artifact put {artifact_type}"),
        Command::new(regctl)
            .env("HOME", home)
            .arg("--host")
            .arg(format!("reg={host},tls=disabled"))
            .args(["artifact", "put", "--subject"])
            .arg(format!("{host}/{REPO}:{subject}"))
            .args(["--artifact-type", artifact_type])
            .arg("-f")
            .arg(&file),
    );
}

/// `helm package` + `helm push` of a small chart into `art/demo:0.1.0`.
fn helm_push(helm: &Path, home: &Path, host: &str) {
    let chart = home.join("demo");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
    )
    .unwrap();
    let helm = |args: &[&str]| {
        let mut c = Command::new(helm);
        c.env("HOME", home)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .current_dir(home)
            .args(args);
        c
    };
    run("helm package", &mut helm(&["package", "demo"]));
    run(
        "helm push",
        &mut helm(&[
            "push",
            "demo-0.1.0.tgz",
            &format!("oci://{host}/art"),
            "--plain-http",
        ]),
    );
}

/// A cosign-style legacy manifest: an image config and one layer of `layer_type` — what
/// cosign writes under `sha256-<hex>.sig`, `.att` and `.sbom`.
fn cosign_manifest(layer_type: &str, payload: &str) -> BuiltImage {
    let layer = Blob::new(payload.as_bytes().to_vec());
    let config = Blob::new(
        br#"{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec(),
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.data.len(), "digest": config.digest},
        "layers": [{
            "mediaType": layer_type,
            "size": layer.data.len(),
            "digest": layer.digest,
            "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="},
        }],
    });
    let manifest = bytes::Bytes::from(serde_json::to_vec(&manifest).unwrap());
    BuiltImage {
        digest: sha256_digest(&manifest),
        media_type: OCI_MANIFEST.to_string(),
        manifest,
        config,
        layers: vec![layer],
    }
}

/// The digests a fallback tag's index lists, read with plain HTTP (not the scanner).
async fn fallback_listing(url: &str, subject: &str) -> Vec<(String, String)> {
    let tag = fallback_tag(subject).unwrap();
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("{url}/v2/{REPO}/manifests/{tag}"))
        .header("Accept", "application/vnd.oci.image.index.v1+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["digest"].as_str().unwrap().to_string(),
                m["artifactType"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn image<'a>(report: &'a ScanReport, tag: &str) -> &'a Image {
    report
        .images
        .iter()
        .find(|i| i.tag == tag)
        .unwrap_or_else(|| panic!("no tag {tag} in {:#?}", report.images))
}

fn kinds(i: &Image) -> Vec<(String, Option<String>, ReferrerKind)> {
    let mut k: Vec<_> = i
        .referrers
        .iter()
        .map(|r| (r.digest.clone(), r.artifact_type.clone(), r.kind))
        .collect();
    k.sort();
    k
}

async fn scan_of(
    client: &RegistryClient,
    url: &str,
    repo: &str,
    known: Option<&ScanReport>,
) -> ScanReport {
    let target = Target::new(url, repo).unwrap();
    let options = ScanOptions {
        known: known.map(|r| r.facts.clone()).unwrap_or_default(),
        ..ScanOptions::default()
    };
    scan(client, &target, None, &options).await.unwrap()
}

fn status_of(report: &ScanReport, show: bool) -> RegistryStatus {
    let ctx = status::Context {
        generation: None,
        now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ),
        next_scan: None,
        max_images: 1000,
        byte_budget: status::IMAGES_BYTE_BUDGET,
        show_referrer_tags: show,
    };
    status::succeeded(&[], report, &ctx)
}

async fn artifacts(imp: Implementation) {
    let (Some(regctl), Some(helm)) = (tool("peers", "regctl"), tool("chart", "helm")) else {
        return;
    };
    let Some(reg) = start(imp).await else { return };
    let name = imp.name();
    let host = reg.url.trim_start_matches("http://").to_string();
    let home = tempfile::tempdir().unwrap();
    let pusher = Pusher::new(&reg, None).unwrap();
    let push = |tag: &'static str, seed: u64| {
        let pusher = pusher.clone();
        async move {
            pusher
                .push_image(REPO, Some(tag), &ImageSpec::new(Format::Oci, seed, &[300]))
                .await
                .unwrap()
        }
    };
    let v10: PushedImage = push("1.0", 41).await;
    let v11 = push("1.1", 42).await;
    let v20 = push("2.0", 43).await;

    // Real clients: two SBOMs on 1.0, a Notary-style signature on 1.1, a Helm chart.
    regctl_put(&regctl, home.path(), &host, "1.0", SPDX);
    regctl_put(&regctl, home.path(), &host, "1.0", CYCLONEDX);
    regctl_put(&regctl, home.path(), &host, "1.1", NOTARY);
    helm_push(&helm, home.path(), &host);

    // What the registry did with `--subject`: the fallback tag, no referrers API.
    let api = reqwest::get(format!("{}/v2/{REPO}/referrers/{}", reg.url, v10.digest))
        .await
        .unwrap()
        .status();
    eprintln!("{name}: GET /v2/{REPO}/referrers/<digest> answers {api}");
    assert_eq!(api.as_u16(), 404, "{name}: the referrers API is not served");
    let on_10 = fallback_listing(&reg.url, &v10.digest).await;
    assert_eq!(
        on_10.len(),
        2,
        "{name}: regctl wrote the fallback tag: {on_10:?}"
    );
    let on_11 = fallback_listing(&reg.url, &v11.digest).await;
    assert_eq!(on_11.len(), 1, "{name}: {on_11:?}");

    // cosign's legacy tags on 1.1, written here as cosign lays them out.
    let stem = fallback_tag(&v11.digest).unwrap();
    let mut cosign = Vec::new();
    for (suffix, layer_type, payload) in [
        ("sig", SIMPLE_SIGNING, r#"{"critical":{}}"#),
        (
            "att",
            DSSE,
            r#"{"payloadType":"application/vnd.in-toto+json"}"#,
        ),
        ("sbom", SPDX, r#"{"spdxVersion":"SPDX-2.3"}"#),
    ] {
        let built = cosign_manifest(layer_type, payload);
        pusher
            .push_built(REPO, Some(&format!("{stem}.{suffix}")), &built)
            .await
            .unwrap();
        cosign.push((built.digest, layer_type));
    }

    // A buildkit-style index: one attestation manifest per platform.
    let amd = ImageSpec::new(Format::Oci, 44, &[500]);
    let arm = ImageSpec::new(Format::Oci, 45, &[400]).platform("linux", "arm64", None);
    let (pa, pb) = (
        pusher.push_image(REPO, None, &amd).await.unwrap(),
        pusher.push_image(REPO, None, &arm).await.unwrap(),
    );
    let multi = pusher
        .push_index(
            REPO,
            Some("multi"),
            Format::Oci,
            &[(&amd, &pa), (&arm, &pb)],
            true,
        )
        .await
        .unwrap();

    // A fallback index naming a digest no tag points at: it attaches to nothing.
    let untagged = pusher
        .push_image(REPO, None, &ImageSpec::new(Format::Oci, 46, &[200]))
        .await
        .unwrap();
    // (Registries refuse an index whose manifests they lack: the stray referrer is pushed.)
    let stray_manifest = cosign_manifest(SIMPLE_SIGNING, r#"{"stray":true}"#);
    pusher
        .push_built(REPO, None, &stray_manifest)
        .await
        .unwrap();
    let stray = stray_manifest.digest.clone();
    let stray_index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": stray,
            "size": stray_manifest.manifest.len(),
            "artifactType": NOTARY,
        }],
    });
    pusher
        .push_raw_manifest(
            REPO,
            &fallback_tag(&untagged.digest).unwrap(),
            "application/vnd.oci.image.index.v1+json",
            &serde_json::to_vec(&stray_index).unwrap(),
        )
        .await
        .unwrap();

    let client = RegistryClient::new(ClientOptions::default())
        .unwrap()
        .with_state(Arc::new(RegistryState::default()));
    let r = scan_of(&client, &reg.url, REPO, None).await;
    assert!(r.failed_tags.is_empty(), "{name}: {:?}", r.failed_tags);

    // Each referrer on the right image, with the right kind.
    let mut want_10: Vec<_> = on_10
        .iter()
        .map(|(d, t)| {
            let kind = ReferrerKind::Sbom;
            (d.clone(), Some(t.clone()), kind)
        })
        .collect();
    want_10.sort();
    assert_eq!(kinds(image(&r, "1.0")), want_10, "{name}: 1.0's SBOMs");
    let mut want_11 = vec![(
        on_11[0].0.clone(),
        Some(NOTARY.to_string()),
        ReferrerKind::Signature,
    )];
    for ((digest, layer_type), kind) in cosign.iter().zip([
        ReferrerKind::Signature,
        ReferrerKind::Attestation,
        ReferrerKind::Sbom,
    ]) {
        want_11.push((digest.clone(), Some(layer_type.to_string()), kind));
    }
    want_11.sort();
    assert_eq!(kinds(image(&r, "1.1")), want_11, "{name}: 1.1's signatures");
    assert!(
        image(&r, "2.0").referrers.is_empty(),
        "{name}: 2.0 has none"
    );
    assert_eq!(image(&r, "2.0").digest, v20.digest);
    for i in &r.images {
        let everywhere = i
            .referrers
            .iter()
            .chain(i.platforms.iter().flat_map(|p| p.referrers.iter()));
        for referrer in everywhere {
            assert_ne!(referrer.digest, stray, "{name}: {} got the stray", i.tag);
        }
    }
    // Container images are no artifacts; the cosign tags are named by their layer.
    assert_eq!(image(&r, "1.0").artifact_type, None, "{name}");
    assert_eq!(
        image(&r, &format!("{stem}.sig")).artifact_type.as_deref(),
        Some(SIMPLE_SIGNING)
    );

    // buildkit's attestations: referrers of the platform they name, not platforms, no size.
    let m = image(&r, "multi");
    assert_eq!(m.platforms.len(), 2, "{name}: {:?}", m.platforms);
    assert_eq!(
        m.size,
        Some(pa.size),
        "{name}: amd64's size, no attestation"
    );
    assert!(m.referrers.is_empty(), "{name}: the index itself has none");
    for (p, att) in m.platforms.iter().zip(&multi.attestations) {
        let got: Vec<_> = p.referrers.iter().map(|r| (&r.digest, r.kind)).collect();
        assert_eq!(
            got,
            [(&att.digest, ReferrerKind::Attestation)],
            "{name}: {p:?}"
        );
    }

    // Hidden by default, counted; shown with Show, named by their artifact type.
    let hidden = status_of(&r, false);
    let listed: Vec<&str> = hidden
        .images
        .iter()
        .flatten()
        .map(|i| i.tag.as_str())
        .collect();
    assert_eq!(
        listed,
        ["1.0", "1.1", "2.0", "multi"],
        "{name}: versions only"
    );
    // 1.0, 1.1 and the stray fallback tags, and cosign's three.
    assert_eq!(hidden.referrer_tags, Some(6), "{name}");
    assert_eq!(
        hidden.tag_count,
        Some(10),
        "{name}: tagCount counts every tag"
    );
    assert_eq!(hidden.omitted_tags, Some(0), "{name}");
    let shown = status_of(&r, true);
    assert_eq!(shown.images.as_ref().map(Vec::len), Some(10), "{name}");
    assert_eq!(shown.referrer_tags, Some(6), "{name}");

    // A rescan knows every digest: no manifest GET, the same referrers.
    let again = scan_of(&client, &reg.url, REPO, Some(&r)).await;
    assert_eq!(
        again.requests.manifest_gets, 0,
        "{name}: {:?}",
        again.requests
    );
    assert_eq!(
        again.images, r.images,
        "{name}: folded again from the facts"
    );

    // helm push: the chart is named by its config type; size is config + layers.
    let chart = scan_of(&client, &reg.url, "art/demo", None).await;
    let c = image(&chart, "0.1.0");
    assert_eq!(
        c.artifact_type.as_deref(),
        Some(HELM_CONFIG),
        "{name}: {c:?}"
    );
    let pushed: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v2/art/demo/manifests/0.1.0", reg.url))
        .header("Accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let size = pushed["config"]["size"].as_i64().unwrap()
        + pushed["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["size"].as_i64().unwrap())
            .sum::<i64>();
    assert_eq!(c.size, Some(size), "{name}: config + layers");
    assert!(c.referrers.is_empty());
}
