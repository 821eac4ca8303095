//! Referrers by request: the OCI 1.1 referrers API (through testenv's fixture, which serves
//! distribution-spec "Listing Referrers" in front of a real distribution v3), Harbor's
//! accessories, and registries without the API — which referrers land on which image, and
//! what rescans cost.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use registry_operator::registry::{
    ClientOptions, Image, ReferrerKind, RegistryClient, RegistryState, ScanOptions, ScanReport,
    Target, Timestamp, scan,
};
use serde_json::json;
use testenv::fault::FaultProxy;
use testenv::push::{Format, ImageSpec, Pusher, sha256_digest};
use testenv::referrers::ReferrersRegistry;
use testenv::registry::{Implementation, RegistryOptions, RegistryServer};
use testenv::vendor::{Vendor, VendorFixture};

const REPO: &str = "team/app";
const HOUR: Duration = Duration::from_secs(3600);
const NOTARY: &str = "application/vnd.cncf.notary.signature";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

struct Setup {
    _reg: RegistryServer,
    fixture: ReferrersRegistry,
    pusher: Pusher,
    client: RegistryClient,
    target: Target,
    /// Tag → digest.
    digests: HashMap<String, String>,
}

fn client() -> RegistryClient {
    RegistryClient::new(ClientOptions::default())
        .unwrap()
        .with_state(Arc::new(RegistryState::default()))
}

async fn setup() -> Setup {
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let fixture = ReferrersRegistry::start(&reg.url).await.unwrap();
    let pusher = Pusher::for_url(&fixture.url, None, None).unwrap();
    let mut digests = HashMap::new();
    for (i, tag) in ["1.0", "1.1"].into_iter().enumerate() {
        let p = pusher
            .push_image(
                REPO,
                Some(tag),
                &ImageSpec::new(Format::Oci, 70 + i as u64, &[300]),
            )
            .await
            .unwrap();
        digests.insert(tag.to_string(), p.digest);
    }
    // Another tag of 1.0's digest: referrers belong to digests, so it has them too.
    pusher.tag(REPO, "stable", &digests["1.0"]).await.unwrap();
    Setup {
        _reg: reg,
        target: Target::new(&fixture.url, REPO).unwrap(),
        fixture,
        pusher,
        client: client(),
        digests,
    }
}

/// A Notary Project signature as notation pushes it (OCI 1.1 image manifest, empty config,
/// the JWS envelope as its layer, `subject` the signed manifest); returns its digest.
async fn push_notary_signature(pusher: &Pusher, subject: &str, seed: &str) -> String {
    let config = pusher.push_blob(REPO, b"{}".to_vec()).await.unwrap();
    let envelope = format!("{{\"payload\":\"{seed}\"}}");
    let layer = pusher.push_blob(REPO, envelope.clone()).await.unwrap();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": NOTARY,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/jose+json", "digest": layer, "size": envelope.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
        "annotations": {"io.cncf.notary.x509chain.thumbprint#S256": "[]"}
    })
    .to_string();
    let digest = sha256_digest(manifest.as_bytes());
    pusher
        .push_raw_manifest(REPO, &digest, OCI_MANIFEST, manifest.as_bytes())
        .await
        .unwrap();
    digest
}

/// `regctl artifact put --subject`: an SPDX SBOM of `tag`, pushed by the real client.
fn regctl_put_sbom(fixture: &ReferrersRegistry, tag: &str) {
    let regctl = testenv::tools::tool_dir("peers").unwrap().join("regctl");
    let dir = tempfile::tempdir().unwrap();
    let sbom = dir.path().join("sbom.spdx.json");
    std::fs::write(&sbom, r#"{"spdxVersion":"SPDX-2.3","name":"app"}"#).unwrap();
    let host = fixture.host();
    let out = Command::new(regctl)
        .env("HOME", dir.path())
        .args([
            "artifact",
            "put",
            "--host",
            &format!("reg={host},tls=disabled"),
            "--artifact-type",
            "application/spdx+json",
            "--file-media-type",
            "application/spdx+json",
            "--file",
        ])
        .arg(&sbom)
        .args(["--subject", &format!("{host}/{REPO}:{tag}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "regctl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn options(previous: Option<&ScanReport>) -> ScanOptions {
    let mut o = ScanOptions {
        referrers_interval: Some(HOUR),
        ..ScanOptions::default()
    };
    if let Some(p) = previous {
        o.known = p.facts.clone();
        o.known_tags = p
            .images
            .iter()
            .map(|i| (i.tag.clone(), i.digest.clone()))
            .collect();
        o.referrers_checked_at = p.referrers_checked_at;
    }
    o
}

fn image<'r>(r: &'r ScanReport, tag: &str) -> &'r Image {
    r.images.iter().find(|i| i.tag == tag).unwrap()
}

fn kinds(i: &Image) -> Vec<(ReferrerKind, Option<&str>)> {
    i.referrers
        .iter()
        .map(|r| (r.kind, r.artifact_type.as_deref()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_referrers_land_on_their_image_with_their_kind() {
    let s = setup().await;
    let signature = push_notary_signature(&s.pusher, &s.digests["1.0"], "one").await;
    regctl_put_sbom(&s.fixture, "1.0");
    // A referrer of a digest no tag points at: it belongs to no listed image.
    let untagged = s
        .pusher
        .push_image(REPO, None, &ImageSpec::new(Format::Oci, 99, &[10]))
        .await
        .unwrap();
    push_notary_signature(&s.pusher, &untagged.digest, "untagged").await;

    let r = scan(&s.client, &s.target, None, &options(None))
        .await
        .unwrap();
    for tag in ["1.0", "stable"] {
        let i = image(&r, tag);
        assert_eq!(
            kinds(i),
            [
                (ReferrerKind::Signature, Some(NOTARY)),
                (ReferrerKind::Sbom, Some("application/spdx+json")),
            ],
            "{tag}: {i:#?}"
        );
        assert!(i.referrers.iter().any(|x| x.digest == signature));
    }
    assert!(image(&r, "1.1").referrers.is_empty(), "{:#?}", r.images);
    // The fixture serves the API (and says so with `OCI-Subject`): regctl pushed no
    // fallback tag.
    assert_eq!(r.images.len(), 3, "{:#?}", r.images);
    // The referrers are facts of the digest: a rescan keeps them without asking.
    assert_eq!(
        r.facts[&s.digests["1.0"]].referrers,
        image(&r, "1.0").referrers
    );
    // One request per distinct digest (1.0 and stable share one).
    assert_eq!(r.requests.referrer_requests, 2, "{:?}", r.requests);
    assert_eq!(s.fixture.referrer_requests(), 2);
    assert!(r.referrers_checked_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_referrer_lists_are_followed() {
    let s = setup().await;
    s.fixture.page_size(1);
    for seed in ["a", "b", "c"] {
        push_notary_signature(&s.pusher, &s.digests["1.1"], seed).await;
    }
    let r = scan(&s.client, &s.target, None, &options(None))
        .await
        .unwrap();
    assert_eq!(image(&r, "1.1").referrers.len(), 3, "{:#?}", r.images);
    // 1.0's list is one empty page; 1.1's three pages.
    assert_eq!(r.requests.referrer_requests, 4, "{:?}", r.requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rescans_read_referrers_of_new_digests_and_of_known_ones_only_when_due() {
    let s = setup().await;
    push_notary_signature(&s.pusher, &s.digests["1.0"], "one").await;
    let first = scan(&s.client, &s.target, None, &options(None))
        .await
        .unwrap();
    let checked = first.referrers_checked_at.unwrap();

    // Within the interval: tag pages and one HEAD per tag, no referrer request at all.
    s.fixture.reset();
    let again = scan(&s.client, &s.target, None, &options(Some(&first)))
        .await
        .unwrap();
    assert_eq!(again.requests.referrer_requests, 0, "{:?}", again.requests);
    assert_eq!(s.fixture.referrer_requests(), 0);
    assert_eq!(
        again.requests.manifest_gets + again.requests.referrer_requests,
        0
    );
    assert_eq!(
        image(&again, "1.0").referrers,
        image(&first, "1.0").referrers
    );
    assert_eq!(again.referrers_checked_at, Some(checked));

    // A new digest is read once, at once; a signature added to a known one waits.
    let new = s
        .pusher
        .push_image(REPO, Some("1.2"), &ImageSpec::new(Format::Oci, 80, &[300]))
        .await
        .unwrap();
    push_notary_signature(&s.pusher, &new.digest, "new").await;
    push_notary_signature(&s.pusher, &s.digests["1.1"], "later").await;
    s.fixture.reset();
    let third = scan(&s.client, &s.target, None, &options(Some(&again)))
        .await
        .unwrap();
    assert_eq!(third.requests.referrer_requests, 1, "{:?}", third.requests);
    assert_eq!(
        s.fixture
            .count("GET", &format!("/referrers/{}", new.digest)),
        1
    );
    assert_eq!(image(&third, "1.2").referrers.len(), 1);
    assert!(image(&third, "1.1").referrers.is_empty(), "not due yet");

    // Past the interval: one request per digest, and the late signature is seen.
    let mut due = options(Some(&third));
    due.referrers_checked_at = Timestamp::from_unix(checked.unix() - 2 * 3600);
    s.fixture.reset();
    let fourth = scan(&s.client, &s.target, None, &due).await.unwrap();
    assert_eq!(
        fourth.requests.referrer_requests, 3,
        "{:?}",
        fourth.requests
    );
    assert_eq!(
        image(&fourth, "1.1").referrers.len(),
        1,
        "{:#?}",
        fourth.images
    );
    assert!(fourth.referrers_checked_at.unwrap().unix() >= checked.unix());
}

/// distribution v3 and 2.8 answer `404 page not found`, crane a 404 `METHOD_UNKNOWN`: the
/// first digest's request tells, the others are not asked, and rescans ask none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_without_the_api_is_asked_once() {
    for imp in Implementation::ALL {
        let reg = RegistryServer::start(RegistryOptions::plain().on(imp))
            .await
            .unwrap();
        common::seed_small(&reg, None, REPO).await;
        let proxy = FaultProxy::start(&reg.url).await.unwrap();
        let target = Target::new(&proxy.url, REPO).unwrap();
        let client = client();
        let first = scan(&client, &target, None, &options(None)).await.unwrap();
        assert_eq!(
            first.requests.referrer_requests,
            1,
            "{}: {:?}",
            imp.name(),
            first.requests
        );
        assert_eq!(proxy.count("GET", "/referrers/"), 1, "{}", imp.name());
        assert!(first.images.iter().all(|i| i.referrers.is_empty()));

        proxy.reset();
        // Due again (never checked), and still no request: the registry is remembered.
        let again = scan(&client, &target, None, &options(None)).await.unwrap();
        assert_eq!(again.requests.referrer_requests, 0, "{}", imp.name());
        assert_eq!(proxy.count("GET", "/referrers/"), 0, "{}", imp.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harbor_accessories_stand_in_for_referrer_requests() {
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pushed = common::seed_small(&reg, None, REPO).await;
    let harbor = VendorFixture::start(Vendor::Harbor, &reg.url, None)
        .await
        .unwrap();
    let signed = pushed.tags[0].1.digest.clone();
    let cosign = sha256_digest(b"cosign signature");
    let sbom = sha256_digest(b"harbor sbom");
    harbor.harbor_accessory(&signed, &cosign, "signature.cosign");
    harbor.harbor_accessory(&signed, &sbom, "harbor.sbom");
    let client = client();
    let target = Target::new(&harbor.url, REPO).unwrap();
    let r = scan(&client, &target, None, &options(None)).await.unwrap();
    assert_eq!(r.requests.lister.as_deref(), Some("harbor"));
    let tag = &pushed.tags[0].0;
    let i = image(&r, tag);
    assert_eq!(
        kinds(i),
        [
            (ReferrerKind::Signature, None),
            (
                ReferrerKind::Sbom,
                Some("application/vnd.goharbor.harbor.sbom.v1")
            ),
        ],
        "{i:#?}"
    );
    for other in r.images.iter().filter(|i| i.digest != signed) {
        assert!(other.referrers.is_empty(), "{other:#?}");
    }
    assert_eq!(r.requests.referrer_requests, 0, "{:?}", r.requests);
    assert!(
        harbor
            .requests()
            .iter()
            .any(|q| q.path.contains("with_accessory=true")),
        "accessories asked for"
    );
}

/// `registry-operator scan --output json`: a process per scan, so every rescan is a restart
/// that knows only what `--previous` (the status) says.
fn cli_scan(url: &str, previous: Option<&std::path::Path>) -> serde_json::Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_registry-operator"));
    cmd.args([
        "scan",
        "--url",
        url,
        "--repository",
        REPO,
        "--output",
        "json",
    ]);
    if let Some(p) = previous {
        cmd.arg("--previous").arg(p);
    }
    let out = cmd
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_within_the_interval_reads_no_referrer_and_one_after_it() {
    let s = setup().await;
    push_notary_signature(&s.pusher, &s.digests["1.0"], "one").await;
    let dir = tempfile::tempdir().unwrap();
    let previous = dir.path().join("previous.json");

    let first = cli_scan(&s.fixture.url, None);
    assert_eq!(first["signed"], "2/3", "1.0 and stable: {first:#}");
    assert_eq!(first["lastScanRequests"]["referrerRequests"], 2);
    let checked = first["referrersCheckedAt"].as_str().unwrap().to_string();
    std::fs::write(&previous, first.to_string()).unwrap();

    s.fixture.reset();
    let again = cli_scan(&s.fixture.url, Some(&previous));
    assert_eq!(
        again["lastScanRequests"]["referrerRequests"], 0,
        "{again:#}"
    );
    assert_eq!(again["lastScanRequests"]["manifestGets"], 0);
    assert_eq!(s.fixture.referrer_requests(), 0);
    assert_eq!(again["signed"], "2/3", "the status remembers the referrers");
    assert_eq!(again["referrersCheckedAt"], checked.as_str());

    // Two hours later (as the status says): one request per digest.
    let mut old = again.clone();
    let at = Timestamp::parse(&checked).unwrap();
    old["referrersCheckedAt"] = json!(Timestamp::from_unix(at.unix() - 7200).unwrap().to_string());
    std::fs::write(&previous, old.to_string()).unwrap();
    s.fixture.reset();
    let due = cli_scan(&s.fixture.url, Some(&previous));
    assert_eq!(due["lastScanRequests"]["referrerRequests"], 2, "{due:#}");
    assert_eq!(s.fixture.referrer_requests(), 2);
    assert_ne!(due["referrersCheckedAt"], old["referrersCheckedAt"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_refresh_reads_the_referrers_of_new_digests_only() {
    let s = setup().await;
    let first = scan(&s.client, &s.target, None, &options(None))
        .await
        .unwrap();
    let new = s
        .pusher
        .push_image(REPO, Some("1.2"), &ImageSpec::new(Format::Oci, 81, &[300]))
        .await
        .unwrap();
    push_notary_signature(&s.pusher, &new.digest, "pushed").await;
    s.fixture.reset();
    // Known 1.0 is not due (the scan just checked it); 1.2 is new.
    let tags = ["1.0".to_string(), "1.2".to_string()];
    let r = registry_operator::registry::refresh(
        &s.client,
        &s.target,
        None,
        &tags,
        &options(Some(&first)),
    )
    .await
    .unwrap();
    assert_eq!(r.requests.referrer_requests, 1, "{:?}", r.requests);
    assert_eq!(
        s.fixture
            .count("GET", &format!("/referrers/{}", new.digest)),
        1
    );
    let i = r.images.iter().find(|i| i.tag == "1.2").unwrap();
    assert_eq!(kinds(i), [(ReferrerKind::Signature, Some(NOTARY))]);
    assert_eq!(r.facts[&new.digest].referrers, i.referrers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_or_malformed_answers_are_ignored_and_asked_again() {
    use testenv::fault::{Fault, FaultAction};
    let s = setup().await;
    push_notary_signature(&s.pusher, &s.digests["1.0"], "one").await;
    push_notary_signature(&s.pusher, &s.digests["1.1"], "two").await;
    let proxy = FaultProxy::start(&s.fixture.url).await.unwrap();
    let huge = format!(
        r#"{{"manifests":[{}]}}"#,
        vec![format!(r#"{{"digest":"{}"}}"#, s.digests["1.0"]); 40_000].join(",")
    );
    assert!(huge.len() > 2 << 20);
    proxy.inject(Fault::new(
        &format!("/referrers/{}", s.digests["1.0"]),
        1,
        FaultAction::Status {
            code: 200,
            headers: vec![(
                "Content-Type".into(),
                "application/vnd.oci.image.index.v1+json".into(),
            )],
            body: huge,
        },
    ));
    proxy.inject(Fault::new(
        &format!("/referrers/{}", s.digests["1.1"]),
        1,
        FaultAction::Garbage,
    ));
    let target = Target::new(&proxy.url, REPO).unwrap();
    let first = scan(&s.client, &target, None, &options(None))
        .await
        .unwrap();
    assert!(
        first.images.iter().all(|i| i.referrers.is_empty()),
        "{:#?}",
        first.images
    );
    assert!(first.failed_tags.is_empty(), "referrers never fail a tag");
    // Not taken for a registry without the API: the next full check asks again.
    let again = scan(&s.client, &target, None, &options(None))
        .await
        .unwrap();
    assert_eq!(again.requests.referrer_requests, 2, "{:?}", again.requests);
    assert!(image(&again, "1.0").referrers.len() == 1 && image(&again, "1.1").referrers.len() == 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_on_referrers_fails_no_scan_and_they_are_read_next_time() {
    use testenv::fault::{Fault, FaultAction};
    let s = setup().await;
    push_notary_signature(&s.pusher, &s.digests["1.0"], "one").await;
    let proxy = FaultProxy::start(&s.fixture.url).await.unwrap();
    // Longer than the scan may wait: the registry as a whole is in the way (RateLimited).
    proxy.inject(Fault::new(
        "/referrers/",
        100,
        FaultAction::too_many_requests(3600),
    ));
    let target = Target::new(&proxy.url, REPO).unwrap();
    let first = scan(&s.client, &target, None, &options(None))
        .await
        .unwrap();
    assert_eq!(first.images.len(), 3);
    assert!(first.images.iter().all(|i| i.referrers.is_empty()));
    assert_eq!(
        first.referrers_checked_at, None,
        "the full read did not finish"
    );

    // Later (the host's gate, closed for the hour the registry asked, is another process's).
    proxy.clear_faults();
    let again = scan(&client(), &target, None, &options(Some(&first)))
        .await
        .unwrap();
    assert_eq!(
        image(&again, "1.0").referrers.len(),
        1,
        "{:#?}",
        again.images
    );
    assert!(again.referrers_checked_at.is_some());
}
