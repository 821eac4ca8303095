//! Per-scan bounds: a repository with more tags than the limit, or a tag-list page larger than
//! the limit, fails its scan with a reason of its own, before anything beyond the limit is
//! held (no manifest request, no page read past its limit).

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::Ordering;

use common::hostile::{FAT_BYTES, HUGE_TAGS, Hostile, LOOP_TAGS};
use registry_operator::registry::{
    ClientOptions, DEFAULT_MAX_TAGS, RegistryClient, ScanLimits, ScanOptions, Target, scan,
};
use testenv::fault::{Fault, FaultAction, FaultProxy};
use testenv::registry::{RegistryOptions, RegistryServer};

async fn scan_with(
    url: &str,
    repository: &str,
    limits: ScanLimits,
) -> registry_operator::registry::ScanError {
    let client = RegistryClient::new(ClientOptions::default()).unwrap();
    let target = Target::new(url, repository).unwrap();
    let options = ScanOptions {
        limits,
        ..ScanOptions::default()
    };
    scan(&client, &target, None, &options).await.unwrap_err()
}

#[tokio::test]
async fn two_hundred_thousand_tags_stop_at_the_limit() {
    let hostile = Hostile::start().await;
    let err = scan_with(&hostile.url, "huge", ScanLimits::default()).await;
    assert_eq!(err.reason().as_str(), "TooManyTags", "{err}");
    assert!(
        err.to_string()
            .contains(&format!("more than {DEFAULT_MAX_TAGS} tags")),
        "{err}"
    );
    let pages = hostile.counters.huge_pages.load(Ordering::Relaxed);
    assert_eq!(
        pages,
        DEFAULT_MAX_TAGS / 1000 + 1,
        "listing stopped past the limit"
    );
    assert!(pages < HUGE_TAGS / 1000);
    assert_eq!(
        hostile.counters.other.load(Ordering::Relaxed),
        0,
        "no manifest request"
    );

    // A page limit ends a listing that pages on and on.
    let limits = ScanLimits {
        max_tags: usize::MAX,
        max_pages: 5,
        ..ScanLimits::default()
    };
    let err = scan_with(&hostile.url, "huge", limits).await;
    assert_eq!(err.reason().as_str(), "TooManyTags", "{err}");
    assert!(err.to_string().contains("more than 5 pages"), "{err}");
}

#[tokio::test]
async fn pages_that_only_repeat_listed_tags_end_the_listing() {
    let hostile = Hostile::start().await;
    let client = RegistryClient::new(ClientOptions::default()).unwrap();
    let target = Target::new(&hostile.url, "loop").unwrap();
    let r = scan(&client, &target, None, &ScanOptions::default())
        .await
        .unwrap();
    assert_eq!(
        hostile.counters.loop_pages.load(Ordering::Relaxed),
        2,
        "the first repeat ends it"
    );
    // The registry has no manifests: each listed tag is HEADed once, and gone.
    assert_eq!(r.vanished_tags, LOOP_TAGS, "each tag once");
    assert_eq!(r.requests.manifest_heads, LOOP_TAGS.len() as i64);
}

#[tokio::test]
async fn a_fifty_mib_page_is_not_read_past_the_limit() {
    let hostile = Hostile::start().await;
    let err = scan_with(&hostile.url, "fat", ScanLimits::default()).await;
    assert_eq!(err.reason().as_str(), "ResponseTooLarge", "{err}");
    assert!(err.to_string().contains("more than 4194304 bytes"), "{err}");
    // Whatever the socket buffers took, the client stopped reading long before the end.
    let sent = hostile.counters.fat_bytes.load(Ordering::Relaxed);
    assert!(sent < FAT_BYTES, "{sent} bytes sent");
}

#[tokio::test]
async fn a_real_registry_with_a_huge_tag_list_keeps_its_page_size_limit() {
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    common::seed_small(&reg, None, "team/app").await;
    let proxy = FaultProxy::start(&reg.url).await.unwrap();
    // One page with 200,000 tags (3.4 MB: within the page limit, over the tag limit).
    let tags: Vec<String> = (0..HUGE_TAGS).map(|i| format!("t{i:06}")).collect();
    let body = serde_json::json!({"name": "team/app", "tags": tags}).to_string();
    proxy.inject(Fault::new(
        "/tags/list",
        1,
        FaultAction::Status {
            code: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.clone(),
        },
    ));
    let err = scan_with(&proxy.url, "team/app", ScanLimits::default()).await;
    assert_eq!(err.reason().as_str(), "TooManyTags", "{err}");
    assert_eq!(proxy.count("HEAD", "/manifests/"), 0);

    // The same page with a smaller byte limit: refused by its length, not read.
    proxy.inject(Fault::new(
        "/tags/list",
        1,
        FaultAction::Status {
            code: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body,
        },
    ));
    let limits = ScanLimits {
        max_page_bytes: 1 << 20,
        ..ScanLimits::default()
    };
    let err = scan_with(&proxy.url, "team/app", limits).await;
    assert_eq!(err.reason().as_str(), "ResponseTooLarge", "{err}");

    // Within the limits the real registry scans as ever.
    let report = common::scan_url(
        &proxy.url,
        "team/app",
        None,
        ClientOptions::default(),
        HashMap::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.images.len(), 3);
}

#[tokio::test]
async fn the_scan_cli_takes_max_tags() {
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    common::seed_small(&reg, None, "team/app").await;
    let run = |max: &str| {
        Command::new(env!("CARGO_BIN_EXE_registry-operator"))
            .args(["--log-level", "warn", "scan", "--url", &reg.url])
            .args(["--repository", "team/app", "--max-tags", max])
            .output()
            .unwrap()
    };
    let out = run("2");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("has more than 2 tags"), "{stderr}");
    assert!(run("3").status.success());
    assert!(run("0").status.success(), "0 lifts the limit");
}
