//! The webhook receiver against hostile senders, over raw TCP where the attack lives below
//! HTTP clients: a sender that proves nothing is answered before its body is read; slow
//! senders are dropped; connections beyond the limit are closed; HMAC senders share a small
//! budget of unauthenticated bytes; answers do not tell whether anyone watches a repository;
//! a payload's bad digest never reaches another object's annotation; and the hand-over
//! annotation, which a tenant can write on its own objects, waits for admission and the floor.

mod common;

use std::time::{Duration, Instant};

use common::operator::{self, Operator, status, wait_for};
use kube::api::{Api, Patch, PatchParams, PostParams};
use registry_operator::api::{Registry, ScanStatus};
use testenv::controlplane;
use testenv::fault::{Fault, FaultAction, FaultProxy};
use testenv::push::{Format, ImageSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "hardening-shared-secret-2026";
const REPO: &str = "hooks/app";
const PENDING: &str = "registry.kubecontroller.io/webhook-pending";
/// Far longer than any timeout of the receiver: what "never answered" means here.
const PATIENCE: Duration = Duration::from_secs(60);

struct Receiver {
    op: Operator,
    port: u16,
    _dir: tempfile::TempDir,
}

async fn receiver(cp: &controlplane::ControlPlane, ns: &str, extra: &[&str]) -> Receiver {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let port = testenv::tools::free_port();
    let mut args = vec![
        "--webhook-addr".to_string(),
        format!("127.0.0.1:{port}"),
        "--webhook-secret-file".to_string(),
        secret_file.to_str().unwrap().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let op = Operator::start_admin(cp, ns, &args).await;
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the receiver never listened:\n{}",
            op.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Receiver {
        op,
        port,
        _dir: dir,
    }
}

impl Receiver {
    async fn connect(&self) -> TcpStream {
        TcpStream::connect(("127.0.0.1", self.port)).await.unwrap()
    }

    fn url(&self, kind: &str) -> String {
        format!("http://127.0.0.1:{}/webhook/{kind}", self.port)
    }
}

/// Request headers for `POST /webhook/distribution` announcing `length` body bytes.
fn head(length: usize, extra: &str) -> String {
    format!(
        "POST /webhook/distribution HTTP/1.1\r\nHost: operator\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n{extra}\r\n"
    )
}

/// What the server sent until it closed the connection or `PATIENCE` ran out (`None`).
async fn read_to_close(stream: &mut TcpStream) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status line's code of the first response on `stream`, read before any body byte was
/// sent; `None` when nothing came within `PATIENCE`.
async fn status_before_body(stream: &mut TcpStream) -> Option<u16> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + PATIENCE;
    while !out.windows(2).any(|w| w == b"\r\n") {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
    String::from_utf8_lossy(&out)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_that_prove_nothing_are_answered_before_their_body() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("hard-early").await;
    let r = receiver(cp, &ns, &[]).await;

    // No proof at all: 401 while the 512 KiB body is still unsent.
    let mut s = r.connect().await;
    s.write_all(head(512 * 1024, "").as_bytes()).await.unwrap();
    s.write_all(b"{\"events\": [").await.unwrap();
    assert_eq!(status_before_body(&mut s).await, Some(401), "no proof");
    assert!(
        read_to_close(&mut s).await.is_some(),
        "the refused sender's connection stayed open for the rest of its body"
    );

    // A wrong bearer secret: the same.
    let mut s = r.connect().await;
    s.write_all(head(512 * 1024, "Authorization: Bearer wrong\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(status_before_body(&mut s).await, Some(401), "wrong secret");

    // An HMAC sender whose proof needs the body may not announce more than the small
    // unauthenticated cap: 413 from the Content-Length alone.
    let mut s = r.connect().await;
    s.write_all(head(200 * 1024, "X-Hub-Signature-256: sha256=00\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(status_before_body(&mut s).await, Some(413), "HMAC over cap");

    // The right secret, but a Content-Length over the 1 MiB limit.
    let mut s = r.connect().await;
    s.write_all(
        head(
            64 * 1024 * 1024,
            &format!("Authorization: Bearer {SECRET}\r\n"),
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(status_before_body(&mut s).await, Some(413), "over 1 MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_senders_are_dropped() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("hard-slow").await;
    let r = receiver(cp, &ns, &[]).await;

    // Headers that never end: the connection is closed (the header read timeout).
    let mut s = r.connect().await;
    s.write_all(b"POST /webhook/distribution HTTP/1.1\r\nHost: operator\r\n")
        .await
        .unwrap();
    assert!(
        read_to_close(&mut s).await.is_some(),
        "a sender that never finished its headers kept its connection"
    );

    // A connection that sends nothing at all: closed the same way.
    let mut s = r.connect().await;
    assert!(
        read_to_close(&mut s).await.is_some(),
        "an idle connection was kept"
    );

    // An authenticated sender whose body stalls: answered and closed (the body read timeout).
    let mut s = r.connect().await;
    s.write_all(head(1000, &format!("Authorization: Bearer {SECRET}\r\n")).as_bytes())
        .await
        .unwrap();
    s.write_all(b"{\"events\": [").await.unwrap();
    let answer = read_to_close(&mut s).await;
    assert!(
        answer.is_some(),
        "a sender whose body stalled kept its connection"
    );
    let answer = answer.unwrap_or_default();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("hard-conns").await;
    let r = receiver(cp, &ns, &[]).await;
    let body = r#"{"events": []}"#;
    let request = format!(
        "{}{body}",
        head(body.len(), &format!("Authorization: Bearer {SECRET}\r\n"))
    );

    // The default limit is 256 connections; each of these holds one, sending nothing.
    let mut held = Vec::new();
    for _ in 0..256 {
        held.push(r.connect().await);
    }
    // Let the receiver accept them all before the next one arrives.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut over = r.connect().await;
    // The write may fail if the receiver closed the connection already.
    let _ = over.write_all(request.as_bytes()).await;
    let answer = read_to_close(&mut over).await;
    assert_eq!(
        answer.as_deref(),
        Some(""),
        "the connection over the limit was served"
    );

    // Freed connections make room again.
    drop(held);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut s = r.connect().await;
        let _ = s.write_all(request.as_bytes()).await;
        if status_before_body(&mut s).await == Some(202) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the limit never freed up:\n{}",
            r.op.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refused =
        r.op.metric(
            "registry_operator_webhook_requests_total",
            &["outcome=\"too_many_connections\""],
        )
        .await;
    assert!(refused >= 1.0, "{}", r.op.metrics().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_senders_share_a_small_budget_of_unauthenticated_bytes() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("hard-budget").await;
    let r = receiver(cp, &ns, &[]).await;
    // 16 senders announce 64 KiB each and send nothing: the whole 1 MiB budget is held.
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut s = r.connect().await;
        s.write_all(head(64 * 1024, "X-Hub-Signature-256: sha256=00\r\n").as_bytes())
            .await
            .unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut s = r.connect().await;
    s.write_all(head(1024, "X-Hub-Signature-256: sha256=00\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        status_before_body(&mut s).await,
        Some(503),
        "a sender over the shared budget waited for its body"
    );
    // A sender with a header proof does not need the budget.
    let answer = reqwest::Client::new()
        .post(r.url("distribution"))
        .bearer_auth(SECRET)
        .body(r#"{"events": []}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_do_not_tell_whether_a_repository_is_watched() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("hard-oracle").await;
    let client = cp.client().await;
    let api: Api<Registry> = Api::namespaced(client, &ns);
    api.create(
        &PostParams::default(),
        &operator::registry(
            "watched",
            "https://registry.example.com",
            "team/watched",
            serde_json::json!({"suspend": true}),
        ),
    )
    .await
    .unwrap();
    let r = receiver(cp, &ns, &[]).await;
    let http = reqwest::Client::new();
    let post = |repository: &'static str| {
        let body = serde_json::json!({"events": [{
            "action": "push",
            "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "repository": repository, "tag": "v1"},
            "request": {"host": "registry.example.com"},
        }]})
        .to_string();
        http.post(r.url("distribution"))
            .bearer_auth(SECRET)
            .body(body)
            .send()
    };
    // The index follows the watch: wait until the receiver matches the watched object.
    let deadline = Instant::now() + PATIENCE;
    let watched = loop {
        let answer = post("team/watched").await.unwrap();
        let status = answer.status();
        let body = answer.text().await.unwrap();
        let matched =
            r.op.metric(
                "registry_operator_webhook_requests_total",
                &["outcome=\"accepted\""],
            )
            .await;
        if matched >= 1.0 {
            break (status, body);
        }
        assert!(Instant::now() < deadline, "never matched:\n{}", r.op.logs());
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let unwatched = post("team/nobody-watches").await.unwrap();
    let unwatched = (unwatched.status(), unwatched.text().await.unwrap());
    assert_eq!(watched, unwatched);
}

/// A replica that never holds the shard (another identity holds its Lease) hands every event
/// over: what it writes into the annotation is what a payload could smuggle into another
/// tenant's object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_digests_in_a_payload_are_never_written_to_an_annotation() {
    use k8s_openapi::api::coordination::v1::Lease;
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("hard-digest").await;
    let client = cp.client().await;
    let now = k8s_openapi::jiff::Timestamp::now();
    let lease: Lease = serde_json::from_value(serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "registry-operator"},
        "spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": 3600,
                 "acquireTime": now.to_string(), "renewTime": now.to_string()},
    }))
    .unwrap();
    Api::<Lease>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &lease)
        .await
        .unwrap();
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &operator::registry(
            "victim",
            "https://registry.example.com",
            REPO,
            serde_json::json!({}),
        ),
    )
    .await
    .unwrap();
    let r = receiver(cp, &ns, &[]).await;
    let bad = [
        "sha256:evil\"},\"x\":{\"",
        "sha256:0123456789abcdef0123456789abcdef",
        "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ];
    let mut events: Vec<serde_json::Value> = bad
        .iter()
        .map(|d| {
            serde_json::json!({"action": "delete",
                "target": {"repository": REPO, "digest": d},
                "request": {"host": "registry.example.com"}})
        })
        .collect();
    // One good event, so that the hand-over happens at all.
    events.push(serde_json::json!({"action": "push",
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "repository": REPO, "tag": "good"},
        "request": {"host": "registry.example.com"}}));
    let body = serde_json::json!({ "events": events }).to_string();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + PATIENCE;
    let value = loop {
        let answer = http
            .post(r.url("distribution"))
            .bearer_auth(SECRET)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202);
        let obj = api.get("victim").await.unwrap();
        if let Some(v) = obj
            .metadata
            .annotations
            .and_then(|a| a.get(PENDING).cloned())
        {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "never handed over:\n{}",
            r.op.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(value.contains("good"), "{value}");
    for d in bad {
        assert!(!value.contains(&d[7..20]), "{d} was written: {value}");
    }
}

/// The hand-over annotation is on a tenant's own object, so the tenant can write it: what it
/// starts must wait for a scan slot like any scan, and come no more often than the floor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_written_pending_annotation_waits_for_admission_and_the_floor() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("hard-pending").await;
    let client = cp.client().await;
    let (reg, pusher) = common::plain_registry_with(REPO, "1.0", 31).await;
    pusher
        .push_image(
            "hooks/slow",
            Some("1.0"),
            &ImageSpec::new(Format::Docker, 32, &[1000]),
        )
        .await
        .unwrap();
    let r = receiver(
        cp,
        &ns,
        &[
            "--min-scan-interval",
            "900",
            "--max-concurrent-scans",
            "1",
            "--scan-timeout",
            "20",
        ],
    )
    .await;
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &operator::registry("app", &reg.url, REPO, serde_json::json!({})),
    )
    .await
    .unwrap();
    let scanned = |r: &Registry| status(r).last_scan_status == Some(ScanStatus::Success);
    wait_for(&api, "app", &r.op, "first scan", scanned).await;

    // Another object's scan hangs and holds the only scan slot.
    let slow = FaultProxy::start(&reg.url).await.unwrap();
    slow.inject(Fault::new("/tags/list", usize::MAX, FaultAction::Hang));
    api.create(
        &PostParams::default(),
        &operator::registry("slow", &slow.url, "hooks/slow", serde_json::json!({})),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while slow.arrived("GET", "/tags/list") == 0 {
        assert!(Instant::now() < deadline, "the slow scan never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let refreshes = || {
        r.op.metric("registry_operator_webhook_refreshes_total", &[])
    };
    let write_pending = async |tag: &str| {
        let value = serde_json::json!({"tags": [tag]}).to_string();
        let patch = serde_json::json!({"metadata": {"annotations": {PENDING: value}}});
        api.patch("app", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        // The operator takes the annotation in and removes it.
        let taken = |r: &Registry| {
            r.metadata
                .annotations
                .as_ref()
                .is_none_or(|a| !a.contains_key(PENDING))
        };
        wait_for(&api, "app", &r.op, "the annotation taken in", taken).await;
    };
    write_pending("1.0").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        refreshes().await,
        0.0,
        "the refresh ran while the only scan slot was taken"
    );
    // Once the slow scan gives up, the refresh runs.
    slow.clear_faults();
    let deadline = Instant::now() + PATIENCE;
    while refreshes().await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the refresh never ran:\n{}",
            r.op.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // More writes within the floor (here the 900 s minimum scan interval) start nothing now.
    for tag in ["1.0", "2.0", "3.0"] {
        write_pending(tag).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        refreshes().await,
        1.0,
        "a tenant's annotation refreshed more often than the floor"
    );
}
