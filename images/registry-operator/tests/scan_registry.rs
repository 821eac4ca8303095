//! The scan core against a real CNCF distribution registry: exact digests and sizes for Docker,
//! OCI and multi-arch images, paging, request budgets, and rescans that make no manifest GET.

mod common;

use std::collections::HashMap;

use registry_operator::registry::{
    ClientOptions, Platform, Referrer, ReferrerKind, RegistryClient, ScanOptions, Target, manifest,
    scan,
};
use testenv::push::{Format, ImageSpec, Pusher};
use testenv::registry::{RegistryOptions, RegistryServer};

#[tokio::test]
async fn docker_oci_and_multi_arch_images_with_exact_digests_and_sizes() {
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pusher = Pusher::new(&reg, None).unwrap();
    let repo = "team/app";
    let docker = pusher
        .push_image(
            repo,
            Some("1.9"),
            &ImageSpec::new(Format::Docker, 10, &[1500, 700]),
        )
        .await
        .unwrap();
    let oci = pusher
        .push_image(
            repo,
            Some("1.10"),
            &ImageSpec::new(Format::Oci, 11, &[4096]),
        )
        .await
        .unwrap();
    pusher.tag(repo, "stable", &oci.digest).await.unwrap();

    let amd = ImageSpec::new(Format::Oci, 20, &[5000, 10]);
    let arm = ImageSpec::new(Format::Oci, 21, &[6000]).platform("linux", "arm64", Some("v8"));
    let amd_p = pusher.push_image(repo, None, &amd).await.unwrap();
    let arm_p = pusher.push_image(repo, None, &arm).await.unwrap();
    let index = pusher
        .push_index(
            repo,
            Some("2.0"),
            Format::Oci,
            &[(&arm, &arm_p), (&amd, &amd_p)],
            true,
        )
        .await
        .unwrap();

    let d_amd = ImageSpec::new(Format::Docker, 30, &[100]);
    let d_arm = ImageSpec::new(Format::Docker, 31, &[200]).platform("linux", "arm", Some("v7"));
    let d_amd_p = pusher.push_image(repo, None, &d_amd).await.unwrap();
    let d_arm_p = pusher.push_image(repo, None, &d_arm).await.unwrap();
    let list = pusher
        .push_index(
            repo,
            Some("2.1-list"),
            Format::Docker,
            &[(&d_amd, &d_amd_p), (&d_arm, &d_arm_p)],
            false,
        )
        .await
        .unwrap();

    let report = common::scan_plain(&reg.url, repo).await.unwrap();
    let tags: Vec<&str> = report.images.iter().map(|i| i.tag.as_str()).collect();
    assert_eq!(
        tags,
        ["1.9", "1.10", "2.0", "2.1-list", "stable"],
        "version order"
    );

    let by_tag: HashMap<&str, _> = report.images.iter().map(|i| (i.tag.as_str(), i)).collect();
    assert_eq!(by_tag["1.9"].digest, docker.digest);
    assert_eq!(by_tag["1.9"].size, Some(docker.size));
    assert_eq!(
        by_tag["1.9"].media_type.as_deref(),
        Some(manifest::DOCKER_MANIFEST)
    );
    assert_eq!(by_tag["1.10"].digest, oci.digest);
    assert_eq!(by_tag["1.10"].size, Some(oci.size));
    assert_eq!(
        by_tag["1.10"].media_type.as_deref(),
        Some(manifest::OCI_MANIFEST)
    );
    assert_eq!(by_tag["stable"].digest, oci.digest);

    let multi = by_tag["2.0"];
    assert_eq!(multi.digest, index.digest);
    assert_eq!(multi.media_type.as_deref(), Some(manifest::OCI_INDEX));
    assert_eq!(
        multi.size,
        Some(amd_p.size),
        "a multi-arch tag reports linux/amd64's size"
    );
    let platform = |arch: &str,
                    variant: Option<&str>,
                    p: &testenv::push::PushedImage,
                    attestation: &testenv::push::PushedImage| Platform {
        os: "linux".into(),
        architecture: arch.into(),
        variant: variant.map(Into::into),
        digest: p.digest.clone(),
        size: Some(p.size),
        referrers: vec![Referrer {
            digest: attestation.digest.clone(),
            artifact_type: None,
            kind: ReferrerKind::Attestation,
        }],
    };
    assert_eq!(
        multi.platforms,
        [
            platform("arm64", Some("v8"), &arm_p, &index.attestations[0]),
            platform("amd64", None, &amd_p, &index.attestations[1])
        ],
        "attestation manifests are not platforms, but attestations of the platform they name"
    );

    let list_img = by_tag["2.1-list"];
    assert_eq!(list_img.digest, list.digest);
    assert_eq!(
        list_img.media_type.as_deref(),
        Some(manifest::DOCKER_MANIFEST_LIST)
    );
    assert_eq!(list_img.size, Some(d_amd_p.size));
    assert_eq!(list_img.platforms.len(), 2);
    assert_eq!(list_img.platforms[1].variant.as_deref(), Some("v7"));

    // Budget: tag list + one HEAD per tag + one GET per distinct digest + one per index child.
    let distinct_top = 4; // docker, oci (shared by 1.10 and stable), index, list
    let children = 4;
    assert_eq!(report.requests.tag_pages, 1);
    assert_eq!(report.requests.manifest_heads, 5);
    assert_eq!(report.requests.manifest_gets, distinct_top + children);
    assert_eq!(report.requests.retries, 0);

    // Rescan with what the first scan learned: no manifest GET at all.
    let again = common::scan_url(
        &reg.url,
        repo,
        None,
        ClientOptions::default(),
        report.facts.clone(),
    )
    .await
    .unwrap();
    assert_eq!(again.images, report.images);
    assert_eq!(again.requests.manifest_gets, 0);
    assert_eq!(again.requests.manifest_heads, 5);
    assert_eq!(again.requests.tag_pages, 1);
}

#[tokio::test]
async fn paged_tag_lists_are_followed_to_the_end() {
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pusher = Pusher::new(&reg, None).unwrap();
    let repo = "paged";
    let img = pusher
        .push_image(repo, Some("0"), &ImageSpec::new(Format::Oci, 5, &[10]))
        .await
        .unwrap();
    let tags: Vec<String> = (1..250).map(|i| format!("1.{i}")).collect();
    pusher.tag_many(repo, &tags, &img.digest).await.unwrap();

    let client = RegistryClient::new(ClientOptions::default()).unwrap();
    let target = Target::new(&reg.url, repo).unwrap();
    let options = ScanOptions {
        page_size: 100,
        ..ScanOptions::default()
    };
    let report = scan(&client, &target, None, &options).await.unwrap();
    assert_eq!(report.images.len(), 250);
    assert_eq!(
        report.requests.tag_pages, 3,
        "250 tags at n=100 are three pages"
    );
    assert_eq!(report.requests.manifest_gets, 1, "one digest, one GET");
    assert_eq!(report.images[0].tag, "0");
    assert_eq!(report.images[9].tag, "1.9");
    assert_eq!(report.images[10].tag, "1.10");
    assert_eq!(report.images.last().unwrap().tag, "1.249");
    assert!(
        report
            .images
            .iter()
            .all(|i| i.digest == img.digest && i.size == Some(img.size))
    );
}

#[tokio::test]
async fn empty_and_missing_repositories() {
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pusher = Pusher::new(&reg, None).unwrap();
    let img = pusher
        .push_image("emptied", Some("x"), &ImageSpec::new(Format::Oci, 1, &[1]))
        .await
        .unwrap();
    pusher
        .delete_manifest("emptied", &img.digest)
        .await
        .unwrap();
    let report = common::scan_plain(&reg.url, "emptied").await.unwrap();
    assert!(
        report.images.is_empty(),
        "a repository whose tags are gone has no images"
    );

    let err = common::scan_plain(&reg.url, "does/not-exist")
        .await
        .unwrap_err();
    assert_eq!(err.reason().as_str(), "RepositoryNotFound", "{err}");
    assert!(err.to_string().contains("does/not-exist"), "{err}");
}
