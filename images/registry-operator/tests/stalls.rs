//! A tenant's registry that stalls its bodies, or sends bodies that cost CPU, against the
//! scan core: other tenants' scans still finish, a stalled body is dropped after the idle
//! timeout, and the runtime's workers never stop for long.
//!
//! The fixture is a small registry of its own (axum, on its own thread and runtime, so that
//! serving never counts against the runtime under test):
//! - `stall`: a tag list with `Content-Length: 4 MiB`, then not a byte;
//! - `ok`: one tag of a small image;
//! - `bomb`: one tag of a 4 MiB signed schema 1 manifest with ~50,000 signatures that agree,
//!   each naming the first MiB of the body as its payload;
//! - `index`: one tag of a 4 MiB OCI index, almost all of it attestation entries.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use registry_operator::registry::{
    BodyBudget, ClientOptions, ListingMode, RegistryClient, RegistryState, RetryPolicy,
    ScanOptions, Target, scan,
};
use sha2::{Digest, Sha256};

const STALLED_BYTES: usize = 4 << 20;
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

struct Manifest {
    body: bytes::Bytes,
    media_type: &'static str,
    digest: String,
}

struct Fixture {
    /// Stalled bodies whose headers went out.
    stalled: AtomicUsize,
    /// Manifests by repository; blobs and children by digest.
    manifests: Vec<(&'static str, Manifest)>,
    by_digest: Vec<Manifest>,
}

fn sha256(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

fn small_image() -> Manifest {
    let zero = format!("sha256:{}", "0".repeat(64));
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":10,"digest":"{zero}"}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":20,"digest":"{zero}"}}]}}"#
    );
    Manifest {
        digest: sha256(&[body.as_bytes()]),
        body: body.into(),
        media_type: OCI_MANIFEST,
    }
}

/// Signatures that all agree, so the digest is that of the first MiB plus `}`: what a
/// registry following libtrust reports. Checking each one by copying that MiB took seconds.
fn signature_bomb() -> Manifest {
    const HEAD: usize = 1 << 20;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let protected = e.encode(format!(
        r#"{{"formatLength":{HEAD},"formatTail":"{}"}}"#,
        e.encode("}")
    ));
    let sig =
        format!(r#"{{"header":{{"alg":"ES256"}},"signature":"c2ln","protected":"{protected}"}}"#);
    let start = r#"{"schemaVersion":1,"name":"bomb","tag":"1","fsLayers":[],"history":[{"v1Compatibility":""#;
    let pad = HEAD - start.len() - 3;
    let head = format!("{start}{}\"}}]", "x".repeat(pad));
    assert_eq!(head.len(), HEAD);
    let count = (STALLED_BYTES - HEAD) / (sig.len() + 1);
    let body = format!(
        "{head},\"signatures\":[{}]}}",
        vec![sig.as_str(); count].join(",")
    );
    Manifest {
        digest: sha256(&[head.as_bytes(), b"}"]),
        body: body.into(),
        media_type: SCHEMA1_SIGNED,
    }
}

/// One real platform and ~4 MiB of attestation entries, which are not platforms.
fn big_index(child: &Manifest) -> Manifest {
    let attestation = format!(
        r#"{{"mediaType":"{OCI_MANIFEST}","size":10,"digest":"{}","platform":{{"os":"unknown","architecture":"unknown"}},"annotations":{{"vnd.docker.reference.type":"attestation-manifest"}}}}"#,
        child.digest
    );
    let count = (STALLED_BYTES - 1024) / (attestation.len() + 1);
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","size":{},"digest":"{}","platform":{{"os":"linux","architecture":"amd64"}}}},{}]}}"#,
        child.body.len(),
        child.digest,
        vec![attestation.as_str(); count].join(",")
    );
    Manifest {
        digest: sha256(&[body.as_bytes()]),
        body: body.into(),
        media_type: OCI_INDEX,
    }
}

fn manifest_reply(m: &Manifest, head: bool) -> Response {
    let body = if head {
        Body::empty()
    } else {
        Body::from(m.body.clone())
    };
    Response::builder()
        .header(header::CONTENT_TYPE, m.media_type)
        .header(header::CONTENT_LENGTH, m.body.len())
        .header("docker-content-digest", &m.digest)
        .body(body)
        .unwrap()
}

async fn answer(State(f): State<Arc<Fixture>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let head = req.method() == Method::HEAD;
    let Some(rest) = path.strip_prefix("/v2/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some((repo, what)) = rest.split_once('/') else {
        return StatusCode::OK.into_response();
    };
    if what == "tags/list" {
        if repo == "stall" {
            f.stalled.fetch_add(1, Ordering::SeqCst);
            let never = futures::stream::pending::<Result<bytes::Bytes, Infallible>>();
            let mut r = Body::from_stream(never).into_response();
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(STALLED_BYTES));
            return r;
        }
        return (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"tags":["1"]}"#,
        )
            .into_response();
    }
    let Some(reference) = what.strip_prefix("manifests/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let found = f
        .manifests
        .iter()
        .find(|(r, m)| *r == repo && (reference == "1" || reference == m.digest))
        .map(|(_, m)| m)
        .or_else(|| f.by_digest.iter().find(|m| m.digest == reference));
    match found {
        Some(m) => manifest_reply(m, head),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Starts the fixture on a thread of its own; returns its URL.
fn start_fixture() -> (String, Arc<Fixture>) {
    let child = small_image();
    let index = big_index(&child);
    let fixture = Arc::new(Fixture {
        stalled: AtomicUsize::new(0),
        manifests: vec![
            ("ok", small_image()),
            ("bomb", signature_bomb()),
            ("index", index),
        ],
        by_digest: vec![child],
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().fallback(answer).with_state(fixture.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let _ = axum::serve(listener, app).await;
        });
    });
    (url, fixture)
}

fn options(tenant: &str, timeout: Duration) -> ScanOptions {
    ScanOptions {
        tenant: tenant.to_string(),
        timeout,
        listing: ListingMode::Distribution,
        ..ScanOptions::default()
    }
}

/// Tenant a's registry answers every tag list with a 4 MiB `Content-Length` and then nothing,
/// on many scans at once; tenant b's scan, sharing the body budget and the state, still ends
/// at once (before the fair share, a's stalled bodies held the whole budget and b's GETs
/// waited until b's scan timed out).
#[tokio::test]
async fn one_tenants_stalled_bodies_do_not_starve_another() {
    let (url, fixture) = start_fixture();
    const BUDGET: usize = 16 << 20;
    let budget = Arc::new(BodyBudget::new(BUDGET));
    let state = Arc::new(RegistryState::default());
    let client = RegistryClient::new(ClientOptions {
        body_budget: Some(budget.clone()),
        // Nothing is dropped while the test runs: only the budget's fairness is at work.
        request_timeout: Duration::from_secs(120),
        body_idle_timeout: Duration::from_secs(120),
        ..ClientOptions::default()
    })
    .unwrap()
    .with_state(state);

    let stall = Target::new(&url, "stall").unwrap();
    let a_options = options("a", Duration::from_secs(120));
    let stalled: Vec<_> = (0..8)
        .map(|_| {
            let (client, stall, a_options) = (client.clone(), stall.clone(), a_options.clone());
            tokio::spawn(async move { scan(&client, &stall, None, &a_options).await })
        })
        .collect();
    // a holds at least half the budget in stalled bodies (all of it, before the fix).
    let deadline = Instant::now() + Duration::from_secs(60);
    while fixture.stalled.load(Ordering::SeqCst) < 8 || budget.available() > BUDGET / 2 {
        assert!(Instant::now() < deadline, "tenant a's scans never stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let ok = Target::new(&url, "ok").unwrap();
    let started = Instant::now();
    let report = scan(&client, &ok, None, &options("b", Duration::from_secs(10))).await;
    let report = report
        .unwrap_or_else(|e| panic!("tenant b's scan failed after {:?}: {e}", started.elapsed()));
    assert_eq!(report.images.len(), 1);
    assert_eq!(report.images[0].size, Some(30));
    for s in stalled {
        s.abort();
    }
}

/// A body that stops is dropped after the idle timeout (and retried), not after the request
/// timeout: before, the scan waited the whole 30 s attempt.
#[tokio::test]
async fn a_stalled_body_is_dropped_after_the_idle_timeout() {
    let (url, fixture) = start_fixture();
    let client = RegistryClient::new(ClientOptions {
        request_timeout: Duration::from_secs(30),
        body_idle_timeout: Duration::from_secs(1),
        retry: RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
        },
        ..ClientOptions::default()
    })
    .unwrap();
    let stall = Target::new(&url, "stall").unwrap();
    let started = Instant::now();
    let err = scan(
        &client,
        &stall,
        None,
        &options("a", Duration::from_secs(120)),
    )
    .await
    .unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "took {took:?}: {err}");
    assert_eq!(err.reason().as_str(), "Timeout", "{err}");
    let message = err.to_string();
    assert!(message.contains("no byte came"), "{message}");
    assert!(message.contains("/v2/stall/tags/list"), "{message}");
    assert_eq!(
        fixture.stalled.load(Ordering::SeqCst),
        2,
        "retried once, per the policy"
    );
}

/// While a 4 MiB signature-bomb schema 1 manifest and a 4 MiB index are scanned, a task on
/// the same (single-threaded) runtime keeps ticking: parsing and hashing run off the worker.
/// Before, the worker stopped for seconds (the bomb: a copy of 1 MiB per signature).
#[test]
fn large_bodies_never_stop_the_runtime() {
    let (url, _fixture) = start_fixture();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (worst, bomb, index) = runtime.block_on(async {
        let client = RegistryClient::new(ClientOptions::default()).unwrap();
        let worst = Arc::new(std::sync::Mutex::new(Duration::ZERO));
        let ticker = tokio::spawn({
            let worst = worst.clone();
            async move {
                loop {
                    let before = Instant::now();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let late = before.elapsed().saturating_sub(Duration::from_millis(5));
                    let mut w = worst.lock().unwrap();
                    *w = (*w).max(late);
                }
            }
        });
        let bomb = Target::new(&url, "bomb").unwrap();
        let index = Target::new(&url, "index").unwrap();
        let o = options("a", Duration::from_secs(600));
        let (bomb, index) = tokio::join!(
            scan(&client, &bomb, None, &o),
            scan(&client, &index, None, &o)
        );
        ticker.abort();
        let worst = *worst.lock().unwrap();
        (worst, bomb, index)
    });
    eprintln!("longest stop of the runtime: {worst:?}");
    // Generous for an unoptimised build on two busy cores; before the fix it was seconds.
    assert!(
        worst < Duration::from_millis(250),
        "the runtime stopped for {worst:?}"
    );
    // The bomb's signatures are not checked past 16: its tag cannot be read.
    let bomb = bomb.unwrap_err().to_string();
    assert!(bomb.contains("signatures"), "{bomb}");
    let index = index.unwrap();
    assert_eq!(
        index.images[0].platforms.len(),
        1,
        "attestations are not platforms"
    );
    assert_eq!(index.images[0].size, Some(30));
}
