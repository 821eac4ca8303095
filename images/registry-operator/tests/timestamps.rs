//! `createdAt` from the image config (`--created`, `spec.timestamps: Created`): one config
//! blob GET per new digest — for an index, its representative platform's config — counted at
//! a proxy in front of a real registry; none on a rescan, none after an operator restart;
//! a config that cannot be read now is noted and read on a later scan, one that gives no
//! time is remembered as such.

mod common;

use std::collections::HashMap;

use common::operator::{self, Operator, status, wait_for};
use kube::api::{Api, Patch, PatchParams, PostParams};
use registry_operator::api::{Registry, ScanStatus};
use registry_operator::registry::{
    ClientOptions, CreatedSource, Image, RegistryClient, ScanOptions, ScanReport, Target, scan,
};
use testenv::controlplane;
use testenv::fault::{Fault, FaultAction, FaultProxy};
use testenv::push::{Format, ImageSpec, Pusher};
use testenv::registry::{RegistryOptions, RegistryServer};

const REPO: &str = "team/app";
/// What every testenv image config says in `created`.
const CONFIG_CREATED: &str = "2024-01-01T00:00:00Z";

/// The small repository (two image digests) plus a two-platform index `multi` whose
/// children have no tag: three digests, three configs to read (the index's: linux/amd64's).
async fn seed(reg: &RegistryServer) -> usize {
    common::seed_small(reg, None, REPO).await;
    let pusher = Pusher::new(reg, None).unwrap();
    let arm = ImageSpec::new(Format::Oci, 70, &[500]).platform("linux", "arm64", Some("v8"));
    let amd = ImageSpec::new(Format::Oci, 71, &[600]);
    let arm_image = pusher.push_image(REPO, None, &arm).await.unwrap();
    let amd_image = pusher.push_image(REPO, None, &amd).await.unwrap();
    pusher
        .push_index(
            REPO,
            Some("multi"),
            Format::Oci,
            &[(&arm, &arm_image), (&amd, &amd_image)],
            false,
        )
        .await
        .unwrap();
    3
}

async fn scan_through(
    proxy: &FaultProxy,
    previous: Option<&ScanReport>,
    created: bool,
) -> ScanReport {
    let client = RegistryClient::new(ClientOptions::default()).unwrap();
    let target = Target::new(&proxy.url, REPO).unwrap();
    let mut options = ScanOptions {
        created_from_config: created,
        ..ScanOptions::default()
    };
    if let Some(p) = previous {
        options.known = p.facts.clone();
        options.known_tags = p
            .images
            .iter()
            .map(|i| (i.tag.clone(), i.digest.clone()))
            .collect::<HashMap<_, _>>();
    }
    scan(&client, &target, None, &options).await.unwrap()
}

fn created(images: &[Image]) -> Vec<(String, Option<String>, Option<CreatedSource>)> {
    images
        .iter()
        .map(|i| {
            (
                i.tag.clone(),
                i.created_at.map(|t| t.to_string()),
                i.timestamp_source.as_ref().and_then(|s| s.created_at),
            )
        })
        .collect()
}

fn all_from_config(tags: &[&str]) -> Vec<(String, Option<String>, Option<CreatedSource>)> {
    tags.iter()
        .map(|t| {
            (
                t.to_string(),
                Some(CONFIG_CREATED.to_string()),
                Some(CreatedSource::Config),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_costs_one_config_get_per_new_digest_and_none_on_a_rescan() {
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let digests = seed(&reg).await;
    let proxy = FaultProxy::start(&reg.url).await.unwrap();

    // Without `Created` no config is read and no createdAt is made up.
    let free = scan_through(&proxy, None, false).await;
    assert_eq!(proxy.count("GET", "/blobs/"), 0);
    assert_eq!(free.requests.blob_gets, 0);
    assert!(free.images.iter().all(|i| i.created_at.is_none()));

    proxy.reset();
    let first = scan_through(&proxy, None, true).await;
    assert_eq!(
        proxy.count("GET", "/blobs/"),
        digests,
        "one config GET per distinct digest: {:#?}",
        proxy.requests()
    );
    assert_eq!(first.requests.blob_gets, digests as i64);
    assert_eq!(
        created(&first.images),
        all_from_config(&["1.0", "2.0", "latest", "multi"])
    );
    assert!(first.images.iter().all(|i| i.note.is_none()));

    proxy.reset();
    let again = scan_through(&proxy, Some(&first), true).await;
    assert_eq!(proxy.count("GET", "/blobs/"), 0, "{:#?}", proxy.requests());
    assert_eq!(proxy.count("GET", "/manifests/"), 0);
    assert_eq!(again.requests.blob_gets, 0);
    assert_eq!(created(&again.images), created(&first.images));

    // Facts from before `Created` was asked for get their configs read once.
    proxy.reset();
    let turned_on = scan_through(&proxy, Some(&free), true).await;
    assert_eq!(proxy.count("GET", "/blobs/"), digests);
    assert_eq!(created(&turned_on.images), created(&first.images));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_cannot_be_read_is_noted_and_read_on_a_later_scan() {
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let digests = seed(&reg).await;
    let proxy = FaultProxy::start(&reg.url).await.unwrap();
    proxy.inject(Fault::new("/blobs/", 100_000, FaultAction::status(500)).method("GET"));

    let failed = scan_through(&proxy, None, true).await;
    assert!(failed.failed_tags.is_empty(), "no tag fails for its config");
    assert_eq!(failed.images.len(), 4);
    for image in &failed.images {
        assert!(
            image
                .note
                .as_deref()
                .is_some_and(|n| n.contains("image config could not be read")),
            "{image:?}"
        );
        assert_eq!(image.created_at, None);
        assert!(image.size.is_some(), "the rest of the facts stand");
    }
    assert!(failed.facts.is_empty(), "nothing partial is remembered");

    proxy.clear_faults();
    proxy.reset();
    let later = scan_through(&proxy, Some(&failed), true).await;
    assert_eq!(proxy.count("GET", "/blobs/"), digests);
    assert_eq!(
        created(&later.images),
        all_from_config(&["1.0", "2.0", "latest", "multi"])
    );
    assert!(later.images.iter().all(|i| i.note.is_none()));

    proxy.reset();
    scan_through(&proxy, Some(&later), true).await;
    assert_eq!(proxy.count("GET", "/blobs/"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_with_no_time_or_too_large_are_remembered_and_not_read_again() {
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pusher = Pusher::new(&reg, None).unwrap();
    let layer = pusher.push_blob(REPO, vec![7u8; 100]).await.unwrap();
    let manifest = |config: &str, size: usize| {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": 100}]
        })
        .to_string()
    };
    let timeless =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config = pusher.push_blob(REPO, timeless.to_vec()).await.unwrap();
    pusher
        .push_raw_manifest(
            REPO,
            "timeless",
            "application/vnd.oci.image.manifest.v1+json",
            manifest(&config, timeless.len()).as_bytes(),
        )
        .await
        .unwrap();
    let padding = "x".repeat(3 << 19);
    let huge = format!(r#"{{"created":"{CONFIG_CREATED}","os":"linux","padding":"{padding}"}}"#);
    let config = pusher
        .push_blob(REPO, huge.clone().into_bytes())
        .await
        .unwrap();
    pusher
        .push_raw_manifest(
            REPO,
            "huge",
            "application/vnd.oci.image.manifest.v1+json",
            manifest(&config, huge.len()).as_bytes(),
        )
        .await
        .unwrap();
    // The same config under a manifest that claims it is small: read up to the limit, refused.
    pusher
        .push_raw_manifest(
            REPO,
            "liar",
            "application/vnd.oci.image.manifest.v1+json",
            manifest(&config, 200).as_bytes(),
        )
        .await
        .unwrap();
    let proxy = FaultProxy::start(&reg.url).await.unwrap();

    let first = scan_through(&proxy, None, true).await;
    assert_eq!(
        proxy.count("GET", "/blobs/"),
        2,
        "the 1.5 MiB config declared as such is not fetched: {:#?}",
        proxy.requests()
    );
    assert_eq!(
        created(&first.images),
        [
            ("huge".to_string(), None, Some(CreatedSource::Config)),
            ("liar".to_string(), None, Some(CreatedSource::Config)),
            ("timeless".to_string(), None, Some(CreatedSource::Config)),
        ]
    );
    assert!(first.images.iter().all(|i| i.note.is_none()));

    proxy.reset();
    let again = scan_through(&proxy, Some(&first), true).await;
    assert_eq!(
        proxy.count("GET", "/blobs/"),
        0,
        "the answer was remembered"
    );
    assert_eq!(proxy.count("GET", "/manifests/"), 0);
    assert_eq!(created(&again.images), created(&first.images));
}

fn run_scan(args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_registry-operator"));
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("scan").args(args).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_created_reads_each_config_once_and_previous_reads_none() {
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let digests = seed(&reg).await;
    let proxy = FaultProxy::start(&reg.url).await.unwrap();
    let args = [
        "--url",
        &proxy.url,
        "--repository",
        REPO,
        "--created",
        "--output",
        "json",
    ];
    let out = run_scan(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for image in first["images"].as_array().unwrap() {
        assert_eq!(image["createdAt"], CONFIG_CREATED, "{image}");
        assert_eq!(image["timestampSource"]["createdAt"], "Config", "{image}");
    }
    assert_eq!(
        proxy.count("GET", "/blobs/"),
        digests,
        "{:#?}",
        proxy.requests()
    );
    assert_eq!(first["lastScanRequests"]["blobGets"], digests);

    let previous = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(previous.path(), &out.stdout).unwrap();
    proxy.reset();
    let mut again_args = args.to_vec();
    again_args.extend(["--previous", previous.path().to_str().unwrap()]);
    let again = run_scan(&again_args);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let second: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(second["images"], first["images"]);
    assert_eq!(proxy.count("GET", "/blobs/"), 0, "{:#?}", proxy.requests());
    assert_eq!(second["lastScanRequests"]["blobGets"], 0);
}

/// `spec.timestamps: Created` on a real apiserver: the first scan reads each digest's config
/// once, a rescan and a restarted operator's rescan read none, and the status says where each
/// createdAt came from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_reads_each_config_once_across_rescans_and_restarts() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("created").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let digests = seed(&reg).await;
    let proxy = FaultProxy::start(&reg.url).await.unwrap();
    let mut op = Operator::start(cp, &ns, &[]).await;
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &operator::registry(
            "app",
            &proxy.url,
            REPO,
            serde_json::json!({"timestamps": "Created"}),
        ),
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
    let images = status(&r).images.unwrap_or_default();
    assert_eq!(
        created(&images),
        all_from_config(&["1.0", "2.0", "latest", "multi"])
    );
    assert_eq!(
        proxy.count("GET", "/blobs/"),
        digests,
        "{:#?}",
        proxy.requests()
    );
    assert_eq!(
        status(&r).last_scan_requests.map(|c| c.blob_gets),
        Some(digests as i64)
    );

    let bump =
        |interval: i64| Patch::Merge(serde_json::json!({"spec": {"scanInterval": interval}}));
    proxy.reset();
    api.patch("app", &PatchParams::default(), &bump(301))
        .await
        .unwrap();
    let r = wait_for(&api, "app", &op, "rescan", scanned(2)).await;
    assert_eq!(proxy.count("GET", "/blobs/"), 0, "{:#?}", proxy.requests());
    assert_eq!(
        created(&status(&r).images.unwrap_or_default()),
        created(&images)
    );

    op.terminate().await;
    proxy.reset();
    let op = Operator::start(cp, &ns, &[]).await;
    api.patch("app", &PatchParams::default(), &bump(302))
        .await
        .unwrap();
    let r = wait_for(&api, "app", &op, "rescan after a restart", scanned(3)).await;
    assert_eq!(
        proxy.count("GET", "/blobs/"),
        0,
        "the status remembered every answer: {:#?}",
        proxy.requests()
    );
    assert_eq!(proxy.count("GET", "/manifests/"), 0);
    assert_eq!(
        created(&status(&r).images.unwrap_or_default()),
        created(&images)
    );
}
