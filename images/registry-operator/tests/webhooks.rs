//! Registry webhooks end to end: a real CNCF distribution registry (v3 and Debian's 2.8) with
//! its own `notifications` endpoint pointed at the operator's receiver. A push makes the
//! registry post an event; the operator reads only the pushed tag (one HEAD, one manifest GET,
//! counted in the registry's access log) and adds it to the Registry's status. Wrong or missing
//! secrets are refused with 401 and counted.

mod common;

use std::time::{Duration, Instant};

use common::operator::{self, Operator, status, wait_for};
use kube::api::{Api, PostParams};
use registry_operator::api::{Registry, ScanStatus};
use testenv::controlplane;
use testenv::push::{Format, ImageSpec, Pusher};
use testenv::registry::{Implementation, RegistryOptions, RegistryServer};

const SECRET: &str = "webhook-shared-secret-2026";
const REPO: &str = "hooks/app";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_v3_notifications_refresh_only_the_pushed_tag() {
    end_to_end(Implementation::DistributionV3, "hooks-v3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_2_8_notifications_refresh_only_the_pushed_tag() {
    end_to_end(Implementation::Distribution28, "hooks-28").await;
}

async fn end_to_end(imp: Implementation, prefix: &str) {
    if let Err(e) = imp.binary() {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(!ci, "{} is needed under CI: {e:#}", imp.name());
        eprintln!("\n*** SKIPPED: webhooks on {}: {e:#} ***\n", imp.name());
        return;
    }
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace(prefix).await;
    let client = cp.client().await;

    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let port = testenv::tools::free_port();
    let hook = format!("http://127.0.0.1:{port}/webhook/distribution");
    let op = Operator::start(
        cp,
        &ns,
        &[
            "--webhook-addr",
            &format!("127.0.0.1:{port}"),
            "--webhook-secret-file",
            secret_file.to_str().unwrap(),
            "--min-scan-interval",
            "900",
        ],
    )
    .await;
    let reg = RegistryServer::start(
        RegistryOptions::plain()
            .on(imp)
            .notifying(&hook, &format!("Bearer {SECRET}")),
    )
    .await
    .unwrap();
    let pusher = Pusher::new(&reg, None).unwrap();
    let first = pusher
        .push_image(
            REPO,
            Some("1.0"),
            &ImageSpec::new(Format::Docker, 11, &[1000]),
        )
        .await
        .unwrap();

    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &operator::registry("app", &reg.url, REPO, serde_json::json!({})),
    )
    .await
    .unwrap();
    let scanned = |r: &Registry| status(r).last_scan_status == Some(ScanStatus::Success);
    let r = wait_for(&api, "app", &op, "first scan", scanned).await;
    let images = status(&r).images.unwrap_or_default();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].digest, first.digest);
    let scan_time = status(&r).last_scan_time.clone();
    // --min-scan-interval lengthens the object's 300 s to 900 s.
    let next = status(&r).next_scan_time.unwrap().0;
    let after = next.duration_since(scan_time.clone().unwrap().0);
    assert!(
        (899..=1000).contains(&after.as_secs()),
        "next scan {}s after the last",
        after.as_secs()
    );
    let lists_before = operator_requests(&reg, "GET", &format!("/v2/{REPO}/tags/list"));

    // Push a new tag: the registry's event, not a scan, brings it into the status.
    let pushed_at = Instant::now();
    let second = pusher
        .push_image(REPO, Some("2.0"), &ImageSpec::new(Format::Oci, 12, &[2000]))
        .await
        .unwrap();
    let has_new = |r: &Registry| {
        status(r)
            .images
            .unwrap_or_default()
            .iter()
            .any(|i| i.tag == "2.0")
    };
    let r = wait_for(&api, "app", &op, "the pushed tag in the status", has_new).await;
    let latency = pushed_at.elapsed();
    // A generous bound for a loaded 2-core machine; the benchmark measures the real latency.
    assert!(latency < Duration::from_secs(10), "took {latency:?}");
    let s = status(&r);
    let new = s
        .images
        .as_ref()
        .unwrap()
        .iter()
        .find(|i| i.tag == "2.0")
        .unwrap();
    assert_eq!(new.digest, second.digest);
    assert_eq!(
        new.size,
        Some(second.size),
        "the manifest was read for its size"
    );
    assert_eq!(s.tag_count, Some(2));
    assert!(s.last_event_time.is_some(), "lastEventTime is set");
    assert_eq!(s.last_scan_time, scan_time, "no full scan ran");

    // Exactly one HEAD of the tag and one GET of its new manifest; no tag list.
    let head = format!("/v2/{REPO}/manifests/2.0");
    let get = format!("/v2/{REPO}/manifests/{}", second.digest);
    let deadline = Instant::now() + Duration::from_secs(10);
    while operator_requests(&reg, "GET", &get) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await; // the access log lags the reply
    }
    assert_eq!(
        operator_requests(&reg, "HEAD", &head),
        1,
        "{}",
        reg.log_tail(30)
    );
    assert_eq!(
        operator_requests(&reg, "GET", &get),
        1,
        "{}",
        reg.log_tail(30)
    );
    assert_eq!(
        operator_requests(&reg, "GET", &format!("/v2/{REPO}/tags/list")),
        lists_before,
        "no tag list was read"
    );
    let events = wait_event(&client, &ns, "TagsAdded").await;
    assert!(events.contains("2.0"), "{events}");

    // Wrong, missing and right secrets, straight at the receiver.
    let http = reqwest::Client::new();
    let body = serde_json::json!({"events": []}).to_string();
    let post = |auth: Option<&str>| {
        let mut req = http.post(&hook).body(body.clone());
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        req.send()
    };
    assert_eq!(post(None).await.unwrap().status(), 401);
    assert_eq!(
        post(Some("Bearer not-the-secret")).await.unwrap().status(),
        401
    );
    assert_eq!(
        post(Some(&format!("Bearer {SECRET}")))
            .await
            .unwrap()
            .status(),
        202
    );
    let garbage = http
        .post(&hook)
        .header("Authorization", format!("Bearer {SECRET}"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
    // The receiver answers 413 from Content-Length and closes without reading the body, so a
    // client still sending it may see a broken pipe: announce 2 MiB, send none, read the answer.
    assert_eq!(announce_big_body(port, SECRET).await, 413);
    let m = op.metrics().await;
    let unauthorized = operator::sum_metric(
        &m,
        "registry_operator_webhook_requests_total",
        &["kind=\"distribution\"", "outcome=\"unauthorized\""],
    );
    assert_eq!(unauthorized, 2.0, "{m}");
    let accepted = operator::sum_metric(
        &m,
        "registry_operator_webhook_requests_total",
        &["kind=\"distribution\"", "outcome=\"accepted\""],
    );
    assert!(accepted >= 1.0, "{m}");

    // Deleting the manifest: the registry's delete event names the digest (2.8) or the tag
    // (v3); either way the operator re-reads the tags that pointed at it and removes them.
    pusher.delete_manifest(REPO, &second.digest).await.unwrap();
    let gone = |r: &Registry| {
        !status(r)
            .images
            .unwrap_or_default()
            .iter()
            .any(|i| i.tag == "2.0")
    };
    let r = wait_for(
        &api,
        "app",
        &op,
        "the deleted tag gone from the status",
        gone,
    )
    .await;
    assert_eq!(status(&r).tag_count, Some(1));
    assert_eq!(status(&r).last_scan_time, scan_time, "still no full scan");
    let removed = wait_event(&client, &ns, "TagsRemoved").await;
    assert!(removed.contains("2.0"), "{removed}");
    assert!(
        !op.logs().contains(SECRET),
        "the secret never appears in a log line"
    );
}

/// Requests the operator (by its User-Agent) made, from the registry's access log.
fn operator_requests(reg: &RegistryServer, method: &str, path: &str) -> usize {
    let log = std::fs::read_to_string(reg.log_path()).unwrap_or_default();
    let wanted = format!("\"{method} {path} ");
    log.lines()
        .filter(|l| l.contains(&wanted) && l.contains("registry-operator/"))
        .count()
}

/// The notes of the Events with this reason in `ns`, joined (waits for at least one).
async fn wait_event(client: &kube::Client, ns: &str, reason: &str) -> String {
    use k8s_openapi::api::events::v1::Event;
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let notes: Vec<String> = api
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .filter_map(|e| e.note)
            .collect();
        if !notes.is_empty() || Instant::now() > deadline {
            return notes.join("\n");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A replica that does not hold the object's shard (here: the standby) answers the event and
/// hands it to the leader through the object's annotation; the leader refreshes the tag and
/// removes the annotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_hands_events_over_to_the_shard_owner() {
    use k8s_openapi::api::coordination::v1::Lease;
    use registry_operator::webhook::auth::hub_signature;

    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("hooks-handover").await;
    let client = cp.client().await;
    let (reg, pusher) = common::plain_registry_with(REPO, "1.0", 21).await;

    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let file = secret_file.to_str().unwrap().to_string();
    let (port_a, port_b) = (testenv::tools::free_port(), testenv::tools::free_port());
    let start = |identity: &'static str, port: u16| {
        let file = file.clone();
        let ns = ns.clone();
        async move {
            let addr = format!("127.0.0.1:{port}");
            Operator::start_admin(
                cp,
                &ns,
                &[
                    "--identity",
                    identity,
                    "--webhook-addr",
                    &addr,
                    "--webhook-secret-file",
                    &file,
                ],
            )
            .await
        }
    };
    let a = start("replica-a", port_a).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let holder = leases
            .get_opt("registry-operator")
            .await
            .unwrap()
            .and_then(|l| l.spec?.holder_identity);
        if holder.as_deref() == Some("replica-a") {
            break;
        }
        assert!(Instant::now() < deadline, "replica-a never led");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let b = start("replica-b", port_b).await;

    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &operator::registry("app", &reg.url, REPO, serde_json::json!({})),
    )
    .await
    .unwrap();
    let scanned = |r: &Registry| status(r).last_scan_status == Some(ScanStatus::Success);
    wait_for(&api, "app", &a, "first scan", scanned).await;

    let second = pusher
        .push_image(REPO, Some("2.0"), &ImageSpec::new(Format::Oci, 22, &[2000]))
        .await
        .unwrap();
    // The standby's index must know the object before the event: it follows the same watch.
    let body = serde_json::json!({"events": [{
        "action": "push",
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "repository": REPO, "tag": "2.0", "digest": second.digest},
        "request": {"host": reg.host(), "method": "PUT"},
    }]})
    .to_string();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // GitHub-style HMAC this time: any accepted proof will do.
        let answer = http
            .post(format!("http://127.0.0.1:{port_b}/webhook/distribution"))
            .header(
                "X-Hub-Signature-256",
                hub_signature(SECRET.as_bytes(), body.as_bytes()),
            )
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202);
        if b.metric(
            "registry_operator_webhook_requests_total",
            &["outcome=\"handed_over\""],
        )
        .await
            >= 1.0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the standby never matched the object:\n{}",
            b.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let has_new = |r: &Registry| {
        let listed = status(r)
            .images
            .unwrap_or_default()
            .iter()
            .any(|i| i.tag == "2.0" && i.digest == second.digest);
        let pending = r
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("registry.kubecontroller.io/webhook-pending"));
        listed && !pending
    };
    let r = wait_for(
        &api,
        "app",
        &a,
        "the handed-over tag, annotation removed",
        has_new,
    )
    .await;
    assert!(status(&r).last_event_time.is_some());
    assert_eq!(
        a.metric(
            "registry_operator_webhook_refreshes_total",
            &["result=\"updated\""]
        )
        .await,
        1.0,
        "the leader refreshed once"
    );
    assert_eq!(
        b.metric("registry_operator_webhook_refreshes_total", &[])
            .await,
        0.0,
        "the standby never touched the registry"
    );
}

/// Every sender kind through the real receiver, each with the proof its vendor can send: the
/// documented payloads (src/webhook/testdata, each cited in its parser's tests) are accepted
/// with the right secret (and parsed into events: `no_match`, since no Registry scans those
/// repositories), refused with a wrong one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_answers_to_the_proof_its_sender_can_send() {
    use registry_operator::webhook::auth::hub_signature;

    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("hooks-kinds").await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let port = testenv::tools::free_port();
    let op = Operator::start(
        cp,
        &ns,
        &[
            "--webhook-addr",
            &format!("127.0.0.1:{port}"),
            "--webhook-secret-file",
            secret_file.to_str().unwrap(),
        ],
    )
    .await;
    let cloudevent = r#"{"specversion": "1.0", "id": "1", "source": "ci", "type": "io.example.image.pushed",
                         "data": {"host": "registry.example.com", "repository": "team/app", "tag": "v2"}}"#;
    /// How a sender proves it knows the secret.
    #[derive(Clone, Copy)]
    enum Proof {
        Bearer,
        RawHeader,
        Query,
        Hmac,
    }
    let cases: [(&str, &str, Proof); 8] = [
        (
            "distribution",
            include_str!("../src/webhook/testdata/distribution-envelope.json"),
            Proof::Bearer,
        ),
        (
            "harbor",
            include_str!("../src/webhook/testdata/harbor-default.json"),
            Proof::RawHeader,
        ),
        (
            "harbor",
            include_str!("../src/webhook/testdata/harbor-cloudevents.json"),
            Proof::RawHeader,
        ),
        (
            "dockerhub",
            include_str!("../src/webhook/testdata/dockerhub-push.json"),
            Proof::Query,
        ),
        (
            "quay",
            include_str!("../src/webhook/testdata/quay-push.json"),
            Proof::Query,
        ),
        (
            "ghcr",
            include_str!("../src/webhook/testdata/ghcr-package-published.json"),
            Proof::Hmac,
        ),
        (
            "acr",
            include_str!("../src/webhook/testdata/acr-push.json"),
            Proof::Bearer,
        ),
        ("cloudevents", cloudevent, Proof::Bearer),
    ];
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // The receiver is up once the operator is: wait for it.
    // (A GET: 405 from the router, not a request the receiver counts.)
    while http
        .get(format!("http://127.0.0.1:{port}/webhook/distribution"))
        .send()
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the receiver never answered:\n{}",
            op.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (kind, body, proof) in cases {
        for secret in [SECRET, "a-wrong-secret"] {
            let mut url = format!("http://127.0.0.1:{port}/webhook/{kind}");
            let mut req = http.post(&url);
            match proof {
                Proof::Bearer => req = req.bearer_auth(secret),
                Proof::RawHeader => req = req.header("Authorization", secret),
                Proof::Query => {
                    url.push_str(&format!("?secret={secret}"));
                    req = http.post(&url);
                }
                Proof::Hmac => {
                    req = req.header(
                        "X-Hub-Signature-256",
                        hub_signature(secret.as_bytes(), body.as_bytes()),
                    )
                }
            }
            let status = req.body(body.to_string()).send().await.unwrap().status();
            let want = if secret == SECRET { 202 } else { 401 };
            assert_eq!(
                status,
                want,
                "{kind} with {} secret",
                if want == 202 { "the right" } else { "a wrong" }
            );
        }
    }
    // A GitHub signature over another body is refused.
    let signed = hub_signature(SECRET.as_bytes(), b"{}");
    let tampered = http
        .post(format!("http://127.0.0.1:{port}/webhook/ghcr"))
        .header("X-Hub-Signature-256", signed)
        .body(include_str!(
            "../src/webhook/testdata/ghcr-package-published.json"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), 401);
    let unknown = http
        .post(format!("http://127.0.0.1:{port}/webhook/gitlab"))
        .bearer_auth(SECRET)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let m = op.metrics().await;
    for kind in [
        "distribution",
        "harbor",
        "dockerhub",
        "quay",
        "ghcr",
        "acr",
        "cloudevents",
    ] {
        let count = |outcome: &str| {
            operator::sum_metric(
                &m,
                "registry_operator_webhook_requests_total",
                &[
                    &format!("kind=\"{kind}\""),
                    &format!("outcome=\"{outcome}\""),
                ],
            )
        };
        let (matched, refused) = if kind == "harbor" {
            (2.0, 2.0)
        } else {
            (1.0, 1.0)
        };
        assert_eq!(
            count("no_match"),
            matched,
            "{kind}: parsed into events\n{m}"
        );
        let refused = if kind == "ghcr" {
            refused + 1.0
        } else {
            refused
        };
        assert_eq!(count("unauthorized"), refused, "{kind}\n{m}");
    }
}

/// Status of a POST that announces a 2 MiB body and sends none of it.
async fn announce_big_body(port: u16, secret: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = format!(
        "POST /webhook/distribution HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {secret}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        2 * 1024 * 1024
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut buf))
            .await
            .expect("an answer before the body")
            .unwrap();
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&answer);
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
