//! Shared helpers for the integration tests: real registries from `testenv`, and scans
//! through the library exactly as the CLI and the controller run them.
#![allow(dead_code)]

use std::collections::HashMap;

use registry_operator::registry::{
    ClientOptions, Credentials, Image, ManifestFacts, RegistryClient, ScanError, ScanOptions,
    ScanReport, Target, scan,
};
use testenv::push::{Format, ImageSpec, PushedImage, Pusher};
use testenv::registry::RegistryServer;

pub async fn scan_url(
    url: &str,
    repository: &str,
    credentials: Option<(&str, &str)>,
    client: ClientOptions,
    known: HashMap<String, ManifestFacts>,
) -> Result<ScanReport, ScanError> {
    let client = RegistryClient::new(client)?;
    let target = Target::new(url, repository)?;
    let creds = credentials.map(|(u, p)| Credentials::new(u, p));
    let options = ScanOptions {
        known,
        ..ScanOptions::default()
    };
    scan(&client, &target, creds.as_ref(), &options).await
}

pub async fn scan_plain(url: &str, repository: &str) -> Result<ScanReport, ScanError> {
    scan_url(
        url,
        repository,
        None,
        ClientOptions::default(),
        HashMap::new(),
    )
    .await
}

/// What a test pushed, to compare with what a scan found.
pub struct Pushed {
    pub tags: Vec<(String, PushedImage)>,
}

/// A small repository: two tags of a Docker image sharing a digest, one OCI image.
pub async fn seed_small(reg: &RegistryServer, creds: Option<(&str, &str)>, repo: &str) -> Pushed {
    let pusher = Pusher::new(reg, creds).expect("pusher");
    let docker = pusher
        .push_image(
            repo,
            Some("1.0"),
            &ImageSpec::new(Format::Docker, 1, &[1000, 2000]),
        )
        .await
        .expect("push docker image");
    pusher
        .tag(repo, "latest", &docker.digest)
        .await
        .expect("tag latest");
    let oci = pusher
        .push_image(repo, Some("2.0"), &ImageSpec::new(Format::Oci, 2, &[3000]))
        .await
        .expect("push oci image");
    Pushed {
        tags: vec![
            ("1.0".into(), docker.clone()),
            ("2.0".into(), oci),
            ("latest".into(), docker),
        ],
    }
}

pub fn assert_matches(report: &ScanReport, pushed: &Pushed) {
    assert_images(&report.images, pushed);
}

/// Tags, digests and sizes found are exactly those pushed, in order.
pub fn assert_images(images: &[Image], pushed: &Pushed) {
    let found: Vec<(&str, &str, Option<i64>)> = images
        .iter()
        .map(|i| (i.tag.as_str(), i.digest.as_str(), i.size))
        .collect();
    let expected: Vec<(&str, &str, Option<i64>)> = pushed
        .tags
        .iter()
        .map(|(t, p)| (t.as_str(), p.digest.as_str(), Some(p.size)))
        .collect();
    assert_eq!(found, expected);
}

pub mod bloat;
pub mod hostile;
pub mod operator;

/// A plain distribution registry holding `repository:tag`, a one-layer Docker image made from
/// `seed`, and a pusher for more.
pub async fn plain_registry_with(
    repository: &str,
    tag: &str,
    seed: u64,
) -> (RegistryServer, Pusher) {
    let reg = RegistryServer::start(testenv::registry::RegistryOptions::plain())
        .await
        .unwrap();
    let pusher = Pusher::new(&reg, None).unwrap();
    pusher
        .push_image(
            repository,
            Some(tag),
            &ImageSpec::new(Format::Docker, seed, &[1000]),
        )
        .await
        .unwrap();
    (reg, pusher)
}

/// Pushes a one-layer OCI image under `tag` whose manifest carries the
/// `org.opencontainers.image.created` annotation `created`; returns its digest.
pub async fn push_created(
    pusher: &Pusher,
    repository: &str,
    tag: &str,
    seed: u64,
    created: &str,
) -> String {
    let mut built = ImageSpec::new(Format::Oci, seed, &[500]).build();
    let mut manifest: serde_json::Value = serde_json::from_slice(&built.manifest).unwrap();
    manifest["annotations"] = serde_json::json!({"org.opencontainers.image.created": created});
    built.manifest = serde_json::to_vec(&manifest).unwrap().into();
    built.digest = testenv::push::sha256_digest(&built.manifest);
    pusher
        .push_built(repository, Some(tag), &built)
        .await
        .unwrap();
    built.digest
}
