//! Registry faults through a fault-injecting proxy in front of a real registry: 429 with
//! Retry-After, 5xx then success, garbage, a registry that hangs, a tag deleted mid-scan, one
//! tag that never answers (the scan goes on), a rate limit shared by every stream.

mod common;

use std::time::{Duration, Instant};

use registry_operator::registry::{
    ClientOptions, RegistryClient, RetryPolicy, ScanOptions, Target, scan,
};
use testenv::fault::{Fault, FaultAction, FaultProxy};
use testenv::registry::{RegistryOptions, RegistryServer};

async fn setup() -> (RegistryServer, FaultProxy, common::Pushed) {
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pushed = common::seed_small(&reg, None, "faulty/app").await;
    let proxy = FaultProxy::start(&reg.url).await.unwrap();
    (reg, proxy, pushed)
}

#[tokio::test]
async fn rate_limit_with_retry_after_is_honoured() {
    let (_reg, proxy, pushed) = setup().await;
    proxy.inject(Fault::new(
        "/tags/list",
        1,
        FaultAction::too_many_requests(1),
    ));
    let started = Instant::now();
    let report = common::scan_plain(&proxy.url, "faulty/app").await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
    common::assert_matches(&report, &pushed);
    assert_eq!(report.requests.retries, 1);
    assert_eq!(report.requests.tag_pages, 2, "the 429 and the retry");
}

#[tokio::test]
async fn persistent_rate_limit_fails_plainly() {
    let (_reg, proxy, _) = setup().await;
    proxy.inject(Fault::new(
        "/manifests/",
        1000,
        FaultAction::too_many_requests(0),
    ));
    let err = common::scan_plain(&proxy.url, "faulty/app")
        .await
        .unwrap_err();
    assert_eq!(err.reason().as_str(), "RateLimited", "{err}");
    assert!(err.to_string().contains("429"), "{err}");
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let (_reg, proxy, pushed) = setup().await;
    proxy.inject(Fault::new("/manifests/1.0", 1, FaultAction::status(500)).method("HEAD"));
    proxy.inject(Fault::new("/manifests/sha256:", 1, FaultAction::status(503)).method("GET"));
    let report = common::scan_plain(&proxy.url, "faulty/app").await.unwrap();
    common::assert_matches(&report, &pushed);
    assert_eq!(report.requests.retries, 2);

    proxy.inject(Fault::new("/tags/list", 1000, FaultAction::status(500)));
    let err = common::scan_plain(&proxy.url, "faulty/app")
        .await
        .unwrap_err();
    assert_eq!(err.reason().as_str(), "RegistryError", "{err}");
    assert!(err.to_string().contains("HTTP 500"), "{err}");
}

#[tokio::test]
async fn garbage_answers_are_invalid_responses_not_crashes() {
    let (_reg, proxy, pushed) = setup().await;
    proxy.inject(Fault::new("/tags/list", 1, FaultAction::Garbage));
    let err = common::scan_plain(&proxy.url, "faulty/app")
        .await
        .unwrap_err();
    assert_eq!(err.reason().as_str(), "RegistryError", "{err}");
    assert!(err.to_string().contains("not valid JSON"), "{err}");

    // A garbage manifest for one digest fails only the tag that points at it.
    let oci = &pushed.tags[1];
    proxy.inject(
        Fault::new(
            &format!("/manifests/{}", oci.1.digest),
            1000,
            FaultAction::Garbage,
        )
        .method("GET"),
    );
    let report = common::scan_plain(&proxy.url, "faulty/app").await.unwrap();
    let failed: Vec<&str> = report.failed_tags.iter().map(|f| f.tag.as_str()).collect();
    assert_eq!(failed, [oci.0.as_str()]);
    assert!(
        report.failed_tags[0]
            .message
            .contains("does not match its digest"),
        "{:?}",
        report.failed_tags
    );
    let image = report.images.iter().find(|i| i.tag == oci.0).unwrap();
    assert_eq!(
        (image.digest.as_str(), image.size),
        (oci.1.digest.as_str(), None),
        "the digest from HEAD stays, without facts"
    );
    assert!(image.note.is_some());
    assert!(!report.facts.contains_key(&oci.1.digest));
}

#[tokio::test]
async fn a_hanging_registry_times_out_within_the_deadline() {
    let (_reg, proxy, _) = setup().await;
    proxy.inject(Fault::new("/manifests/", 1000, FaultAction::Hang).method("HEAD"));
    let client = RegistryClient::new(ClientOptions {
        request_timeout: Duration::from_millis(500),
        retry: RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(100),
        },
        ..ClientOptions::default()
    })
    .unwrap();
    let target = Target::new(&proxy.url, "faulty/app").unwrap();
    let options = ScanOptions {
        timeout: Duration::from_secs(5),
        ..ScanOptions::default()
    };
    let started = Instant::now();
    let err = scan(&client, &target, None, &options).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "bounded by the deadline"
    );
    assert_eq!(err.reason().as_str(), "Timeout", "{err}");

    // The scan deadline bounds the whole scan even when each request is allowed longer.
    let slow = RegistryClient::new(ClientOptions::default()).unwrap();
    let options = ScanOptions {
        timeout: Duration::from_secs(2),
        ..ScanOptions::default()
    };
    let started = Instant::now();
    let err = scan(&slow, &target, None, &options).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(err.reason().as_str(), "Timeout", "{err}");
}

#[tokio::test]
async fn a_tag_deleted_between_listing_and_head_is_skipped() {
    let (_reg, proxy, pushed) = setup().await;
    proxy.inject(Fault::new("/manifests/latest", 1, FaultAction::status(404)).method("HEAD"));
    let report = common::scan_plain(&proxy.url, "faulty/app").await.unwrap();
    let tags: Vec<&str> = report.images.iter().map(|i| i.tag.as_str()).collect();
    assert_eq!(tags, ["1.0", "2.0"]);
    assert_eq!(report.vanished_tags, ["latest"]);
    assert_eq!(report.images[0].digest, pushed.tags[0].1.digest);
}

#[tokio::test]
async fn unreachable_registry_says_so() {
    let port = testenv::tools::free_port();
    let client = RegistryClient::new(ClientOptions {
        retry: RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
        },
        ..ClientOptions::default()
    })
    .unwrap();
    let target = Target::new(&format!("http://127.0.0.1:{port}"), "x").unwrap();
    let err = scan(&client, &target, None, &ScanOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.reason().as_str(), "RegistryUnreachable", "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_manifest_types_keep_their_digest_without_a_size() {
    let (_reg, proxy, pushed) = setup().await;
    // A registry that serves a manifest type we do not know.
    let body = r#"{"schemaVersion":2,"artifact":"something new"}"#;
    let digest = testenv::push::sha256_digest(body.as_bytes());
    let media_type = "application/vnd.example.unknown.v1+json";
    let headers = |len: usize| {
        vec![
            ("Content-Type".to_string(), media_type.to_string()),
            ("Docker-Content-Digest".to_string(), digest.clone()),
            ("Content-Length".to_string(), len.to_string()),
        ]
    };
    proxy.inject(
        Fault::new(
            "/manifests/latest",
            1,
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
            &format!("/manifests/{digest}"),
            1,
            FaultAction::Status {
                code: 200,
                headers: headers(body.len()),
                body: body.into(),
            },
        )
        .method("GET"),
    );
    let report = common::scan_plain(&proxy.url, "faulty/app").await.unwrap();
    let latest = report.images.iter().find(|i| i.tag == "latest").unwrap();
    assert_eq!(latest.digest, digest);
    assert_eq!(latest.size, None);
    assert_eq!(latest.media_type.as_deref(), Some(media_type));
    let other = report.images.iter().find(|i| i.tag == "1.0").unwrap();
    assert_eq!(
        other.size,
        Some(pushed.tags[0].1.size),
        "the rest of the scan is unaffected"
    );
}

#[tokio::test]
async fn one_tag_failing_forever_does_not_fail_the_scan_but_most_tags_failing_does() {
    let (_reg, proxy, pushed) = setup().await;
    proxy.inject(Fault::new("/manifests/2.0", 1000, FaultAction::status(500)).method("HEAD"));
    let report = common::scan_plain(&proxy.url, "faulty/app").await.unwrap();
    let failed: Vec<&str> = report.failed_tags.iter().map(|f| f.tag.as_str()).collect();
    assert_eq!(failed, ["2.0"]);
    assert_eq!(report.failed_tags[0].reason, "RegistryError");
    let tags: Vec<&str> = report.images.iter().map(|i| i.tag.as_str()).collect();
    assert_eq!(tags, ["1.0", "latest"], "no digest known for 2.0: left out");

    proxy.clear_faults();
    proxy.inject(Fault::new("/manifests/", 1000, FaultAction::status(403)).method("HEAD"));
    let err = common::scan_plain(&proxy.url, "faulty/app")
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with("3 of 3 tags could not be read"),
        "{err}"
    );
    assert_eq!(err.reason().as_str(), "AuthenticationFailed", "{err}");
    let _ = pushed;
}

#[tokio::test]
async fn a_rate_limit_closes_the_host_for_every_scan_and_fails_fast_past_the_deadline() {
    let (_reg, proxy, _) = setup().await;
    let state = std::sync::Arc::new(registry_operator::registry::RegistryState::default());
    let client = RegistryClient::new(ClientOptions::default())
        .unwrap()
        .with_state(state);
    let options = ScanOptions {
        timeout: Duration::from_secs(60),
        ..ScanOptions::default()
    };
    proxy.inject(Fault::new(
        "/tags/list",
        1,
        FaultAction::too_many_requests(3600),
    ));
    let started = Instant::now();
    let target = Target::new(&proxy.url, "faulty/app").unwrap();
    let err = scan(&client, &target, None, &options).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "no waiting");
    assert_eq!(err.reason().as_str(), "RateLimited", "{err}");
    assert!(err.to_string().contains("3600s"), "{err}");

    // Another repository on the same host, same client state: refused without a request.
    let other = Target::new(&proxy.url, "faulty/other").unwrap();
    let err = scan(&client, &other, None, &options).await.unwrap_err();
    assert_eq!(err.reason().as_str(), "RateLimited", "{err}");
    assert_eq!(proxy.count("", "faulty/other"), 0, "the gate held it back");
}

#[tokio::test]
async fn retry_after_on_503_is_honoured() {
    let (_reg, proxy, pushed) = setup().await;
    proxy.inject(Fault::new(
        "/tags/list",
        1,
        FaultAction::Status {
            code: 503,
            headers: vec![("Retry-After".into(), "2".into())],
            body: String::new(),
        },
    ));
    let started = Instant::now();
    let report = common::scan_plain(&proxy.url, "faulty/app").await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited as asked"
    );
    common::assert_matches(&report, &pushed);
    assert_eq!(report.requests.retries, 1);
}

#[tokio::test]
async fn an_index_reached_without_a_head_digest_is_fetched_once() {
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pusher = testenv::push::Pusher::new(&reg, None).unwrap();
    let spec = testenv::push::ImageSpec::new(testenv::push::Format::Oci, 5, &[100]);
    let image = pusher.push_image("idx/app", None, &spec).await.unwrap();
    let index = pusher
        .push_index(
            "idx/app",
            Some("multi"),
            testenv::push::Format::Oci,
            &[(&spec, &image)],
            false,
        )
        .await
        .unwrap();
    let proxy = FaultProxy::start(&reg.url).await.unwrap();
    // A registry without HEAD support.
    proxy.inject(Fault::new("/manifests/multi", 1, FaultAction::status(405)).method("HEAD"));
    let report = common::scan_plain(&proxy.url, "idx/app").await.unwrap();
    assert_eq!(report.images[0].digest, index.digest);
    assert_eq!(report.images[0].size, Some(image.size));
    assert_eq!(
        proxy.count("GET", &format!("/manifests/{}", index.digest)),
        0,
        "the GET by tag already described the index"
    );
    assert_eq!(
        report.requests.manifest_gets, 2,
        "by tag, then its one child"
    );
}

#[tokio::test]
async fn a_huge_timeout_does_not_overflow() {
    let (_reg, proxy, pushed) = setup().await;
    let client = RegistryClient::new(ClientOptions::default()).unwrap();
    let target = Target::new(&proxy.url, "faulty/app").unwrap();
    let options = ScanOptions {
        timeout: Duration::from_secs(u64::MAX),
        ..ScanOptions::default()
    };
    let report = scan(&client, &target, None, &options).await.unwrap();
    common::assert_matches(&report, &pushed);
}
