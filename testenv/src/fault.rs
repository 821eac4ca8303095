//! A fault-injecting HTTP reverse proxy in front of a plain-HTTP upstream (the real registry).
//!
//! Every request is forwarded faithfully — method, path and query, headers (including `Host`,
//! `Authorization`, `Accept`), body — and the upstream's status, headers (`Link`,
//! `Docker-Content-Digest`, `WWW-Authenticate`, `Content-Length` …) and body come back
//! (the body streamed). Because `Host` is kept, the registry builds its absolute URLs
//! (`Location` of blob uploads) with the proxy's address, so clients stay behind the proxy.
//!
//! Injected [`Fault`]s answer instead of the upstream: the first fault that matches and still
//! has `times > 0` is used (and its `times` decremented). Every request is recorded.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use tokio::sync::watch;

/// What a matching fault does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer this status, headers and body (e.g. 429 with `Retry-After`).
    Status {
        code: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Wait, then forward to the upstream.
    Delay(Duration),
    /// Never answer (the connection stays open until the client gives up or the proxy drops).
    Hang,
    /// `200 OK`, `Content-Type: application/json`, with a body that is not JSON.
    Garbage,
}

impl FaultAction {
    /// `429 Too Many Requests` with `Retry-After: <secs>`.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        FaultAction::Status {
            code: 429,
            headers: vec![("Retry-After".into(), retry_after_secs.to_string())],
            body: r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"rate limited"}]}"#.into(),
        }
    }

    /// A bare status with a registry-style error body.
    pub fn status(code: u16) -> Self {
        FaultAction::Status {
            code,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: format!(r#"{{"errors":[{{"code":"UNKNOWN","message":"injected {code}"}}]}}"#),
        }
    }
}

/// A rule: requests with this method (any if `None`) whose path+query contains `path_contains`
/// get `action`, `times` times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub method: Option<String>,
    pub path_contains: String,
    pub times: usize,
    pub action: FaultAction,
}

impl Fault {
    /// A fault for any method.
    pub fn new(path_contains: &str, times: usize, action: FaultAction) -> Self {
        Fault {
            method: None,
            path_contains: path_contains.into(),
            times,
            action,
        }
    }

    /// Restrict to one method.
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_string());
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.times > 0
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && path.contains(&self.path_contains)
    }
}

/// One request the proxy answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// Path with query, as received.
    pub path: String,
    /// Status answered to the client (0 for [`FaultAction::Hang`], 502 if the upstream failed).
    pub status: u16,
    /// Whether an injected fault answered (or delayed) it.
    pub injected: bool,
    /// The request's `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// Says whether a bearer token is valid (see [`crate::token::TokenServer::validator`]).
pub type TokenCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Token auth the proxy enforces on `/v2/<name>/…` for an upstream without auth of its own.
#[derive(Clone)]
struct BearerGate {
    realm: String,
    service: String,
    check: TokenCheck,
}

struct Shared {
    upstream: url::Url,
    gate: Mutex<Option<BearerGate>>,
    client: reqwest::Client,
    faults: Mutex<Vec<Fault>>,
    records: Mutex<Vec<Recorded>>,
    /// Method and path of every request as it arrives (before it is answered).
    arrivals: Mutex<Vec<(String, String)>>,
    shutdown: watch::Receiver<bool>,
}

/// A running proxy on a loopback port; stops when dropped.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("url", &self.url)
            .field("upstream", &self.shared.upstream.as_str())
            .finish_non_exhaustive()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.task.abort();
    }
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl FaultProxy {
    /// Start a proxy for `upstream` (`http://host:port`) on a free loopback port.
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let upstream = url::Url::parse(upstream).with_context(|| format!("upstream {upstream}"))?;
        crate::registry::install_crypto_provider();
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64)
            .build()?;
        let (tx, rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            upstream,
            gate: Mutex::new(None),
            client,
            faults: Mutex::new(Vec::new()),
            records: Mutex::new(Vec::new()),
            arrivals: Mutex::new(Vec::new()),
            shutdown: rx,
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the proxy")?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FaultProxy {
            url: format!("http://{addr}"),
            shared,
            shutdown: tx,
            task,
        })
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.url.trim_start_matches("http://").to_string()
    }

    /// Add a fault (after the ones already there).
    pub fn inject(&self, fault: Fault) {
        self.shared.faults.lock().unwrap().push(fault);
    }

    /// Remove all faults.
    pub fn clear_faults(&self) {
        self.shared.faults.lock().unwrap().clear();
    }

    /// The requests answered so far (in answer order).
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.records.lock().unwrap().clone()
    }

    /// How many recorded requests have this method (any if empty) and a path+query containing
    /// `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.shared
            .records
            .lock()
            .unwrap()
            .iter()
            .filter(|r| method.is_empty() || r.method.eq_ignore_ascii_case(method))
            .filter(|r| r.path.contains(path_contains))
            .count()
    }

    /// From now on, requests to a repository (`/v2/<name>/…`) need a bearer token that
    /// `token` minted and that has not expired; others get 401 with a `Bearer` challenge for
    /// `token`'s realm (and `error="invalid_token"` when a token was sent). Faults still come
    /// first.
    pub fn require_bearer(&self, token: &crate::token::TokenServer) {
        *self.shared.gate.lock().unwrap() = Some(BearerGate {
            realm: token.realm.clone(),
            service: token.service.clone(),
            check: token.validator(),
        });
    }

    /// Like [`FaultProxy::count`], but counting requests as they arrive: a delayed or hanging
    /// request is counted while it is still in flight.
    pub fn arrived(&self, method: &str, path_contains: &str) -> usize {
        self.shared
            .arrivals
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p)| {
                (method.is_empty() || m.eq_ignore_ascii_case(method)) && p.contains(path_contains)
            })
            .count()
    }

    /// Forget recorded requests and remove all faults.
    pub fn reset(&self) {
        self.shared.records.lock().unwrap().clear();
        self.shared.arrivals.lock().unwrap().clear();
        self.clear_faults();
    }
}

/// A request's method, path with query, and Authorization header, as the recorders keep them.
pub(crate) fn request_line(req: &Request) -> (String, String, Option<String>) {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (method, path, authorization)
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (method, path, authorization) = request_line(&req);
    shared
        .arrivals
        .lock()
        .unwrap()
        .push((method.clone(), path.clone()));
    let action = {
        let mut faults = shared.faults.lock().unwrap();
        faults
            .iter_mut()
            .find(|f| f.matches(&method, &path))
            .map(|f| {
                f.times -= 1;
                f.action.clone()
            })
    };
    let record = |status: u16, injected: bool| {
        shared.records.lock().unwrap().push(Recorded {
            method: method.clone(),
            path: path.clone(),
            status,
            injected,
            authorization: authorization.clone(),
        });
    };
    let injected = action.is_some();
    match action {
        Some(FaultAction::Status {
            code,
            headers,
            body,
        }) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = (status, body).into_response();
            for (k, v) in headers {
                if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
                    resp.headers_mut().insert(k, v);
                }
            }
            record(code, true);
            return resp;
        }
        Some(FaultAction::Garbage) => {
            record(200, true);
            return (
                StatusCode::OK,
                [("content-type", "application/json")],
                "<html><body>this is not JSON {{{",
            )
                .into_response();
        }
        Some(FaultAction::Hang) => {
            record(0, true);
            let mut rx = shared.shutdown.clone();
            let _ = rx.wait_for(|stop| *stop).await;
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        Some(FaultAction::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let gate = shared.gate.lock().unwrap().clone();
    if let Some(gate) = gate
        && let Some(challenge) = challenge_for(&gate, &path, authorization.as_deref())
    {
        record(401, false);
        return (
            StatusCode::UNAUTHORIZED,
            [
                ("www-authenticate", challenge.as_str()),
                ("content-type", "application/json"),
            ],
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        )
            .into_response();
    }
    match forward(&shared, req, &path).await {
        Ok(resp) => {
            record(resp.status().as_u16(), injected);
            resp
        }
        Err(e) => {
            record(502, injected);
            (
                StatusCode::BAD_GATEWAY,
                format!("fault proxy: upstream failed: {e:#}"),
            )
                .into_response()
        }
    }
}

/// The `WWW-Authenticate` to answer, or `None` when the request may pass.
fn challenge_for(gate: &BearerGate, path: &str, authorization: Option<&str>) -> Option<String> {
    let rest = path.split('?').next()?.strip_prefix("/v2/")?;
    let name = ["/tags/", "/manifests/", "/blobs/"]
        .iter()
        .find_map(|m| rest.find(m).map(|i| &rest[..i]))?;
    let sent = authorization
        .and_then(|a| a.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    if sent.is_some_and(|t| (gate.check)(t)) {
        return None;
    }
    let error = if sent.is_some() {
        r#","error="invalid_token""#
    } else {
        ""
    };
    Some(format!(
        r#"Bearer realm="{}",service="{}",scope="repository:{name}:pull"{error}"#,
        gate.realm, gate.service
    ))
}

async fn forward(shared: &Shared, req: Request, path: &str) -> anyhow::Result<Response> {
    forward_to(&shared.client, &shared.upstream, req, path).await
}

/// Sends `req` to `upstream` + `path` as it came, and streams the answer back.
pub(crate) async fn forward_to(
    client: &reqwest::Client,
    upstream: &url::Url,
    req: Request,
    path: &str,
) -> anyhow::Result<Response> {
    let url = upstream.join(path).context("joining the upstream URL")?;
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .context("reading the request body")?;
    let mut headers = HeaderMap::new();
    for (k, v) in parts.headers.iter() {
        if !HOP_BY_HOP.contains(&k.as_str()) {
            headers.append(k.clone(), v.clone());
        }
    }
    let mut out = client.request(parts.method.clone(), url).headers(headers);
    if !body.is_empty() || parts.headers.contains_key("content-length") {
        out = out.body(body);
    }
    let resp = out.send().await?;
    let mut builder = Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        if !HOP_BY_HOP.contains(&k.as_str()) {
            builder = builder.header(k, v);
        }
    }
    let stream = resp.bytes_stream().map_err(std::io::Error::other);
    Ok(builder.body(Body::from_stream(stream))?)
}

/// A TCP proxy that can cut the connection: put it between a client and a TLS server (the
/// kube-apiserver) to simulate a network partition. [`CutProxy::cut`] drops every open
/// connection and makes new ones hang (accepted, never answered), as a black hole does;
/// [`CutProxy::restore`] forwards new connections again.
pub struct CutProxy {
    /// `127.0.0.1:PORT`.
    pub addr: std::net::SocketAddr,
    cut: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CutProxy {
    /// Forwards connections on a free loopback port to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let upstream = upstream.to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the cut proxy")?;
        let addr = listener.local_addr()?;
        // Even: forwarding; odd: cut. Every change also ends the connections opened before it.
        let (tx, rx) = watch::channel(0u64);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut rx = rx.clone();
                let epoch = *rx.borrow_and_update();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if epoch % 2 == 1 {
                        // Black hole: hold the connection, answer nothing.
                        let _ = rx.changed().await;
                        return;
                    }
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = rx.changed() => {}
                    }
                });
            }
        });
        Ok(Self {
            addr,
            cut: tx,
            task,
        })
    }

    /// Drops the open connections; new ones hang until [`CutProxy::restore`].
    pub fn cut(&self) {
        self.cut.send_modify(|e| {
            if *e % 2 == 0 {
                *e += 1;
            }
        });
    }

    /// Forwards new connections again (those held while cut are closed).
    pub fn restore(&self) {
        self.cut.send_modify(|e| {
            if *e % 2 == 1 {
                *e += 1;
            }
        });
    }
}
