//! Conformance: the same scenarios against three registry implementations — CNCF distribution
//! v3, distribution 2.8 (Debian's `docker-registry`) and go-containerregistry's
//! `crane registry serve` — each scanned directly and behind the testenv token server and fault
//! proxy. Outside CI a missing implementation is skipped loudly; with `CI=true` it fails.
//!
//! Scenarios: Docker v2, OCI, a manifest list, an OCI index with attestations, a nested index,
//! a signed schema 1 manifest (its blob HEADs redirected to a blob host), 2,000 tags with
//! paging, repositories of one tag fewer than the scanner's page size, exactly the page size and
//! one more (distribution 2.8 ignores `n` and `last`), a tag whose manifest answers 500 forever, an index child that 404s, a token that
//! expires mid-scan, and a `Retry-After` longer than the deadline.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use registry_operator::registry::manifest::{DOCKER_MANIFEST, OCI_INDEX};
use registry_operator::registry::schema1::SCHEMA1_SIGNED;
use registry_operator::registry::{
    ClientOptions, Credentials, Image, RegistryClient, RegistryState, RetryPolicy, ScanError,
    ScanOptions, ScanReport, Target, scan,
};
use testenv::certs::TestCa;
use testenv::fault::{Fault, FaultAction, FaultProxy};
use testenv::push::{Format, ImageSpec, PushedImage, PushedIndex, Pusher};
use testenv::registry::{Implementation, RegistryOptions, RegistryServer};
use testenv::schema1::SignedManifest;
use testenv::token::{TokenOptions, TokenServer};

const REPO: &str = "conf/app";
const MANY: &str = "conf/many";
const MANY_TAGS: usize = 2000;
/// Grown from page size − 1 tags to page size + 1 between scans.
const EDGE: &str = "conf/edge";
const USER: (&str, &str) = ("alice", "conformance-pw");

#[tokio::test]
async fn conformance_distribution_v3() {
    conformance(Implementation::DistributionV3).await;
}

#[tokio::test]
async fn conformance_distribution_2_8() {
    conformance(Implementation::Distribution28).await;
}

#[tokio::test]
async fn conformance_crane_registry() {
    conformance(Implementation::Crane).await;
}

/// The registry, or `None` (skipped, said out loud) when its binary is missing outside CI.
async fn start(imp: Implementation) -> Option<RegistryServer> {
    if let Err(e) = imp.binary() {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        if ci {
            panic!("conformance on {} cannot run under CI: {e:#}", imp.name());
        }
        eprintln!("\n*** SKIPPED: conformance on {}: {e:#} ***\n", imp.name());
        return None;
    }
    Some(
        RegistryServer::start(RegistryOptions::plain().on(imp))
            .await
            .unwrap_or_else(|e| panic!("starting {}: {e:#}", imp.name())),
    )
}

/// What was pushed, to compare scans with.
struct Expect {
    docker: PushedImage,
    oci: PushedImage,
    list: PushedIndex,
    attested: PushedIndex,
    nested: String,
    broken: PushedImage,
    schema1: SignedManifest,
    /// The digest the registry reported for the schema 1 push (`None`: the registry cannot
    /// store schema 1, so the proxy serves it).
    schema1_digest: Option<String>,
}

async fn seed(reg: &RegistryServer, imp: Implementation) -> Expect {
    let pusher = Pusher::new(reg, None).unwrap();
    let push = |repo: &'static str, tag: Option<&'static str>, spec: ImageSpec| {
        let pusher = pusher.clone();
        async move { pusher.push_image(repo, tag, &spec).await.unwrap() }
    };
    let docker = push(
        REPO,
        Some("docker"),
        ImageSpec::new(Format::Docker, 11, &[1500, 700]),
    )
    .await;
    let oci = push(REPO, Some("oci"), ImageSpec::new(Format::Oci, 12, &[2500])).await;
    let broken = push(
        REPO,
        Some("broken"),
        ImageSpec::new(Format::Docker, 17, &[300]),
    )
    .await;

    let amd = ImageSpec::new(Format::Docker, 13, &[1000]);
    let arm = ImageSpec::new(Format::Docker, 14, &[900]).platform("linux", "arm64", Some("v8"));
    let (pa, pb) = (
        push(REPO, None, amd.clone()).await,
        push(REPO, None, arm.clone()).await,
    );
    let list = pusher
        .push_index(
            REPO,
            Some("list"),
            Format::Docker,
            &[(&amd, &pa), (&arm, &pb)],
            false,
        )
        .await
        .unwrap();

    let oa = ImageSpec::new(Format::Oci, 15, &[800]);
    let ob = ImageSpec::new(Format::Oci, 16, &[600]).platform("linux", "arm64", None);
    let (qa, qb) = (
        push(REPO, None, oa.clone()).await,
        push(REPO, None, ob.clone()).await,
    );
    let attested = pusher
        .push_index(
            REPO,
            Some("attested"),
            Format::Oci,
            &[(&oa, &qa), (&ob, &qb)],
            true,
        )
        .await
        .unwrap();

    let nested_body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_INDEX,
            "size": attested.manifest_len,
            "digest": attested.digest,
            "platform": {"os": "linux", "architecture": "amd64"},
        }],
    })
    .to_string();
    let nested = pusher
        .push_raw_manifest(REPO, "nested", OCI_INDEX, nested_body.as_bytes())
        .await
        .unwrap();

    let layer = |n: u8, len: usize| vec![n; len];
    let schema1 = testenv::schema1::signed(
        REPO,
        "legacy",
        &[layer(1, 1234), layer(2, 4321), layer(1, 1234)],
    );
    let schema1_digest = if imp == Implementation::DistributionV3 {
        // v3 stores no schema 1: the layers go in, the proxy serves the manifest.
        for l in &schema1.layers {
            pusher.push_blob(REPO, l.clone()).await.unwrap();
        }
        pusher.tag(REPO, "legacy", &docker.digest).await.unwrap();
        None
    } else {
        Some(pusher.push_schema1(REPO, "legacy", &schema1).await.unwrap())
    };

    let first = push(MANY, Some("t0000"), ImageSpec::new(Format::Oci, 18, &[100])).await;
    let tags: Vec<String> = (1..MANY_TAGS).map(|i| format!("t{i:04}")).collect();
    pusher.tag_many(MANY, &tags, &first.digest).await.unwrap();

    Expect {
        docker,
        oci,
        list,
        attested,
        nested,
        broken,
        schema1,
        schema1_digest,
    }
}

fn client(state: &Arc<RegistryState>) -> RegistryClient {
    RegistryClient::new(ClientOptions {
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
        },
        ..ClientOptions::default()
    })
    .unwrap()
    .with_state(state.clone())
}

async fn scan_repo(
    client: &RegistryClient,
    url: &str,
    repo: &str,
    creds: Option<&Credentials>,
    options: ScanOptions,
) -> Result<ScanReport, ScanError> {
    let target = Target::new(url, repo).unwrap();
    scan(client, &target, creds, &options).await
}

fn image<'a>(report: &'a ScanReport, tag: &str) -> &'a Image {
    report
        .images
        .iter()
        .find(|i| i.tag == tag)
        .unwrap_or_else(|| panic!("no tag {tag} in {:#?}", report.images))
}

/// Every content scenario, as one scan of `REPO` found it.
fn check_content(what: &str, r: &ScanReport, e: &Expect, schema1: bool) {
    assert!(r.failed_tags.is_empty(), "{what}: {:?}", r.failed_tags);
    assert!(r.vanished_tags.is_empty(), "{what}: {:?}", r.vanished_tags);
    for (tag, pushed) in [
        ("docker", &e.docker),
        ("oci", &e.oci),
        ("broken", &e.broken),
    ] {
        let i = image(r, tag);
        assert_eq!(
            (&i.digest, i.size),
            (&pushed.digest, Some(pushed.size)),
            "{what}: {tag}"
        );
        assert_eq!(
            i.media_type.as_deref(),
            Some(pushed.media_type.as_str()),
            "{what}: {tag}"
        );
        assert_eq!(i.note, None, "{what}: {tag}");
    }
    let platforms = |i: &Image| -> Vec<String> {
        i.platforms
            .iter()
            .map(|p| {
                format!(
                    "{}/{}/{}",
                    p.os,
                    p.architecture,
                    p.variant.clone().unwrap_or_default()
                )
            })
            .collect()
    };
    let list = image(r, "list");
    assert_eq!(list.digest, e.list.digest, "{what}: list");
    assert_eq!(
        platforms(list),
        ["linux/amd64/", "linux/arm64/v8"],
        "{what}: list"
    );
    assert_eq!(
        list.size,
        Some(e.list.children[0].size),
        "{what}: list size is amd64's"
    );
    let attested = image(r, "attested");
    assert_eq!(attested.digest, e.attested.digest, "{what}: attested");
    assert_eq!(
        platforms(attested),
        ["linux/amd64/", "linux/arm64/"],
        "{what}: attestations are not platforms"
    );
    assert_eq!(
        attested.size,
        Some(e.attested.children[0].size),
        "{what}: attested"
    );
    let nested = image(r, "nested");
    assert_eq!(nested.digest, e.nested, "{what}: nested");
    assert_eq!(
        nested.media_type.as_deref(),
        Some(OCI_INDEX),
        "{what}: nested"
    );
    assert_eq!(nested.note, None, "{what}: nested");
    if schema1 {
        let legacy = image(r, "legacy");
        let expected = e
            .schema1_digest
            .clone()
            .unwrap_or_else(|| e.schema1.digest.clone());
        assert_eq!(
            legacy.digest, expected,
            "{what}: schema 1 digest as the registry reports it"
        );
        assert_eq!(
            legacy.media_type.as_deref(),
            Some(SCHEMA1_SIGNED),
            "{what}: schema 1"
        );
        assert_eq!(
            legacy.size,
            Some(e.schema1.size),
            "{what}: schema 1 size = distinct layers"
        );
        assert_eq!(legacy.note, None, "{what}: schema 1");
    } else {
        assert_eq!(
            image(r, "legacy").media_type.as_deref(),
            Some(DOCKER_MANIFEST)
        );
    }
}

async fn check_paging(
    what: &str,
    client: &RegistryClient,
    url: &str,
    creds: Option<&Credentials>,
    imp: Implementation,
) {
    let r = scan_repo(
        client,
        url,
        MANY,
        creds,
        ScanOptions {
            page_size: 500,
            ..ScanOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(r.images.len(), MANY_TAGS, "{what}");
    assert_eq!(r.images[0].tag, "t0000");
    assert_eq!(
        r.images[MANY_TAGS - 1].tag,
        format!("t{:04}", MANY_TAGS - 1)
    );
    assert_eq!(r.requests.manifest_heads, MANY_TAGS as i64, "{what}");
    assert_eq!(r.requests.manifest_gets, 1, "{what}: one digest, one GET");
    if imp != Implementation::Distribution28 {
        // (distribution 2.8 ignores `n` and sends all tags at once.)
        assert!(
            r.requests.tag_pages >= 4,
            "{what}: paged by n=500: {:?}",
            r.requests
        );
    }
    eprintln!("{what}: {MANY_TAGS} tags in {} pages", r.requests.tag_pages);
}

/// A repository of the scanner's page size − 1, page size and page size + 1 tags, scanned
/// directly at each size and behind the proxy at the page size: every tag exactly once. (A registry that ignores
/// paging sends a full page for exactly the page size, and the same page again when asked what
/// follows its last tag.) The repository grows by one tag PUT between sizes, so the three sizes
/// cost one push of page size + 1 tags.
async fn check_page_edges(
    reg: &RegistryServer,
    name: &str,
    scans: [(&RegistryClient, &String, Option<&Credentials>); 2],
) {
    let started = Instant::now();
    let page = ScanOptions::default().page_size as usize;
    let pusher = Pusher::new(reg, None).unwrap();
    // Created first, sorting before every version tag: distribution 2.8 lists a directory,
    // newest first on tmpfs, so its page of exactly the page size ends with `latest` and starts
    // with a later name — not a sorted list starting over.
    let first = pusher
        .push_image(
            EDGE,
            Some("latest"),
            &ImageSpec::new(Format::Oci, 19, &[100]),
        )
        .await
        .unwrap();
    let version = |i: usize| format!("v1.{i}.0");
    let mut expected: Vec<String> = vec!["latest".into()];
    for size in [page - 1, page, page + 1] {
        let more: Vec<String> = (expected.len()..size).map(version).collect();
        pusher.tag_many(EDGE, &more, &first.digest).await.unwrap();
        expected.extend(more);
        expected.sort();
        // Behind the proxy only at the size that pages oddly: the rest is the same listing.
        for (client, url, creds) in scans.iter().filter(|s| s.2.is_none() || size == page) {
            let what = format!(
                "{name} {}, {size} tags at page size {page}",
                if creds.is_some() {
                    "behind token+proxy"
                } else {
                    "direct"
                }
            );
            let r = scan_repo(client, url, EDGE, *creds, ScanOptions::default())
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let mut listed: Vec<String> = r.images.iter().map(|i| i.tag.clone()).collect();
            listed.sort();
            assert_eq!(listed, expected, "{what}: every tag exactly once");
            assert_eq!(r.requests.manifest_heads, size as i64, "{what}");
            eprintln!("{what}: {} pages in {:?}", r.requests.tag_pages, r.duration);
        }
    }
    eprintln!(
        "{name}: page-size edges pushed and scanned in {:?}",
        started.elapsed()
    );
}

/// Serves the signed schema 1 manifest for `legacy` from the proxy (for registries that cannot
/// store one), by tag (HEAD) and by digest (GET).
fn serve_schema1(proxy: &FaultProxy, m: &SignedManifest) {
    let headers = |len: usize| {
        vec![
            ("Content-Type".to_string(), SCHEMA1_SIGNED.to_string()),
            ("Docker-Content-Digest".to_string(), m.digest.clone()),
            ("Content-Length".to_string(), len.to_string()),
        ]
    };
    proxy.inject(
        Fault::new(
            &format!("/v2/{REPO}/manifests/legacy"),
            1000,
            FaultAction::Status {
                code: 200,
                headers: headers(0),
                body: String::new(),
            },
        )
        .method("HEAD"),
    );
    proxy.inject(
        Fault::new(
            &format!("/v2/{REPO}/manifests/{}", m.digest),
            1000,
            FaultAction::Status {
                code: 200,
                headers: headers(m.body.len()),
                body: m.body.clone(),
            },
        )
        .method("GET"),
    );
}

async fn conformance(imp: Implementation) {
    let Some(reg) = start(imp).await else { return };
    let e = seed(&reg, imp).await;
    let name = imp.name();

    // Directly.
    let state = Arc::new(RegistryState::default());
    let direct = client(&state);
    let r = scan_repo(&direct, &reg.url, REPO, None, ScanOptions::default())
        .await
        .unwrap_or_else(|err| panic!("{name} direct: {err}"));
    check_content(
        &format!("{name} direct"),
        &r,
        &e,
        e.schema1_digest.is_some(),
    );
    check_paging(&format!("{name} direct"), &direct, &reg.url, None, imp).await;

    // Behind the token server and the fault proxy.
    let proxy = FaultProxy::start(&reg.url).await.unwrap();
    let token = TokenServer::start(
        vec![(USER.0.into(), USER.1.into())],
        TokenOptions::default(),
        &TestCa::new(),
    )
    .await
    .unwrap();
    proxy.require_bearer(&token);
    if e.schema1_digest.is_none() {
        serve_schema1(&proxy, &e.schema1);
    }
    // Blob HEADs for schema 1 sizes are redirected to a blob host (here: the registry itself,
    // another host:port, which must get no Authorization).
    let blob_host = reg.url.clone();
    for l in &e.schema1.layers {
        let d = testenv::push::sha256_digest(l);
        proxy.inject(
            Fault::new(
                &format!("/v2/{REPO}/blobs/{d}"),
                1000,
                FaultAction::Status {
                    code: 307,
                    headers: vec![(
                        "Location".into(),
                        format!("{blob_host}/v2/{REPO}/blobs/{d}"),
                    )],
                    body: String::new(),
                },
            )
            .method("HEAD"),
        );
    }
    let creds = Credentials::new(USER.0, USER.1);
    let state = Arc::new(RegistryState::default());
    let behind = client(&state);
    let what = format!("{name} behind token+proxy");
    let first = scan_repo(
        &behind,
        &proxy.url,
        REPO,
        Some(&creds),
        ScanOptions::default(),
    )
    .await
    .unwrap_or_else(|err| panic!("{what}: {err}"));
    check_content(&what, &first, &e, true);
    assert!(
        first.requests.token_requests >= 1,
        "{what}: {:?}",
        first.requests
    );
    assert_eq!(
        first.requests.blob_heads, 4,
        "{what}: one HEAD per distinct schema 1 layer, each redirected once"
    );
    assert!(
        proxy.requests().iter().any(|r| r.status == 307),
        "{what}: redirected"
    );
    check_paging(&what, &behind, &proxy.url, Some(&creds), imp).await;
    check_page_edges(
        &reg,
        name,
        [
            (&direct, &reg.url, None),
            (&behind, &proxy.url, Some(&creds)),
        ],
    )
    .await;

    // A tag whose manifest answers 500 forever, and an index child that 404s (just pushed,
    // replication lag): the scan succeeds; the broken tag keeps its digest with a note; the
    // index is listed with a note and not remembered as complete.
    let known_tags: HashMap<String, String> = first
        .images
        .iter()
        .map(|i| (i.tag.clone(), i.digest.clone()))
        .collect();
    proxy.inject(
        Fault::new(
            &format!("/v2/{REPO}/manifests/broken"),
            1000,
            FaultAction::status(500),
        )
        .method("HEAD"),
    );
    let child = &e.list.children[1].digest;
    proxy.inject(
        Fault::new(
            &format!("/v2/{REPO}/manifests/{child}"),
            1000,
            FaultAction::status(404),
        )
        .method("GET"),
    );
    let options = ScanOptions {
        known_tags: known_tags.clone(),
        ..ScanOptions::default()
    };
    let degraded = scan_repo(&behind, &proxy.url, REPO, Some(&creds), options)
        .await
        .unwrap_or_else(|err| panic!("{what}: one bad tag must not fail the scan: {err}"));
    let failed: Vec<&str> = degraded
        .failed_tags
        .iter()
        .map(|f| f.tag.as_str())
        .collect();
    assert_eq!(failed, ["broken"], "{what}");
    assert!(
        degraded.failed_tags[0].message.contains("500"),
        "{what}: {:?}",
        degraded.failed_tags
    );
    let broken = image(&degraded, "broken");
    assert_eq!(
        broken.digest, e.broken.digest,
        "{what}: the known digest stays"
    );
    assert!(broken.note.is_some(), "{what}");
    let list = image(&degraded, "list");
    assert_eq!(list.digest, e.list.digest);
    assert!(
        list.note
            .as_deref()
            .is_some_and(|n| n.contains("not found")),
        "{what}: {list:?}"
    );
    assert!(
        !degraded.facts.contains_key(&e.list.digest),
        "{what}: partial index facts are not remembered"
    );
    proxy.clear_faults();
    if e.schema1_digest.is_none() {
        serve_schema1(&proxy, &e.schema1);
    }
    let before = proxy.count("GET", &format!("/manifests/{}", e.list.digest));
    let healed = scan_repo(
        &behind,
        &proxy.url,
        REPO,
        Some(&creds),
        ScanOptions {
            known: degraded.facts.clone(),
            ..ScanOptions::default()
        },
    )
    .await
    .unwrap_or_else(|err| panic!("{what}: {err}"));
    assert_eq!(
        proxy.count("GET", &format!("/manifests/{}", e.list.digest)) - before,
        1,
        "{what}: the index is read again"
    );
    assert_eq!(image(&healed, "list").note, None, "{what}");
    assert_eq!(image(&healed, "list").size, Some(e.list.children[0].size));
    assert!(healed.failed_tags.is_empty());

    // A token that expires mid-scan: a fresh token is used, nothing fails.
    token.set_options(TokenOptions {
        expires_in: Some(2),
        ..TokenOptions::default()
    });
    token.reset();
    proxy.inject(
        Fault::new(
            &format!("/v2/{REPO}/manifests/"),
            4,
            FaultAction::Delay(Duration::from_millis(1200)),
        )
        .method("HEAD"),
    );
    let short = client(&Arc::new(RegistryState::default()));
    let started = Instant::now();
    let r = scan_repo(
        &short,
        &proxy.url,
        REPO,
        Some(&creds),
        ScanOptions {
            concurrency: 1,
            ..ScanOptions::default()
        },
    )
    .await
    .unwrap_or_else(|err| panic!("{what}: token expiring mid-scan: {err}"));
    assert!(
        started.elapsed() > Duration::from_secs(3),
        "the scan outlived its first token"
    );
    assert!(r.failed_tags.is_empty(), "{what}: {:?}", r.failed_tags);
    assert!(r.requests.token_requests >= 2, "{what}: {:?}", r.requests);
    token.set_options(TokenOptions::default());

    // Retry-After longer than the time left: fail at once with RateLimited, saying how long.
    proxy.inject(Fault::new(
        "/tags/list",
        1,
        FaultAction::too_many_requests(3600),
    ));
    let started = Instant::now();
    let err = scan_repo(
        &behind,
        &proxy.url,
        REPO,
        Some(&creds),
        ScanOptions {
            timeout: Duration::from_secs(60),
            ..ScanOptions::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{what}: failed fast"
    );
    assert_eq!(err.reason().as_str(), "RateLimited", "{what}: {err}");
    assert!(err.to_string().contains("3600"), "{what}: {err}");
}
