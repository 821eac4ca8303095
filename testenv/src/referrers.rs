//! The OCI 1.1 referrers API in front of a real registry that does not serve it (distribution
//! v3, `crane registry serve`: both answer 404). Everything is forwarded to the registry but:
//!
//! - `PUT /v2/<name>/manifests/<ref>` of a manifest with a `subject`: forwarded, then its
//!   descriptor is remembered as a referrer of `subject.digest`, and the answer carries
//!   `OCI-Subject` (distribution-spec spec.md, "Pushing Manifests with Subject": a registry
//!   that serves the API says so, and clients then push no fallback tag);
//! - `GET /v2/<name>/referrers/<digest>` (spec.md, "Listing Referrers"): an OCI image index of
//!   those descriptors (`mediaType`, `digest`, `size`, `artifactType` — the manifest's, else
//!   its config's media type — and `annotations`), `Content-Type:
//!   application/vnd.oci.image.index.v1+json`; with `?artifactType=` only that type, and
//!   `OCI-Filters-Applied: artifactType`; with a page size set, paged by `Link: <…>;
//!   rel="next"`. A digest nothing refers to gives an empty index, never a 404.
//!
//! Every request is recorded.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::fault::{forward_to, request_line};
use crate::push::sha256_digest;

const INDEX: &str = "application/vnd.oci.image.index.v1+json";

struct Shared {
    upstream: url::Url,
    client: reqwest::Client,
    /// (repository, subject digest) → descriptors of its referrers, in push order.
    referrers: Mutex<BTreeMap<(String, String), Vec<Value>>>,
    page_size: Mutex<Option<usize>>,
    records: Mutex<Vec<(String, String)>>,
}

/// A running fixture on a loopback port; stops when dropped.
pub struct ReferrersRegistry {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ReferrersRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ReferrersRegistry {
    /// Serves the referrers API in front of `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let upstream = url::Url::parse(upstream).with_context(|| format!("upstream {upstream}"))?;
        crate::registry::install_crypto_provider();
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let shared = Arc::new(Shared {
            upstream,
            client,
            referrers: Mutex::default(),
            page_size: Mutex::default(),
            records: Mutex::default(),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url: format!("http://{addr}"),
            shared,
            task,
        })
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.url.trim_start_matches("http://").to_string()
    }

    /// Lists `descriptor` as a referrer of `subject` in `repository`, whatever was pushed.
    pub fn register(&self, repository: &str, subject: &str, descriptor: Value) {
        self.shared
            .referrers
            .lock()
            .unwrap()
            .entry((repository.to_string(), subject.to_string()))
            .or_default()
            .push(descriptor);
    }

    /// From now on, referrer lists are paged `n` descriptors at a time.
    pub fn page_size(&self, n: usize) {
        *self.shared.page_size.lock().unwrap() = Some(n.max(1));
    }

    /// Requests received whose path (with query) contains `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.shared
            .records
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p)| {
                (method.is_empty() || m.eq_ignore_ascii_case(method)) && p.contains(path_contains)
            })
            .count()
    }

    /// Referrer list requests received so far.
    pub fn referrer_requests(&self) -> usize {
        self.count("GET", "/referrers/")
    }

    pub fn reset(&self) {
        self.shared.records.lock().unwrap().clear();
    }
}

/// `/v2/<name>/<kind>/<reference>` → (name, reference) for `kind` (`referrers`, `manifests`).
fn split<'p>(path: &'p str, kind: &str) -> Option<(&'p str, &'p str)> {
    let rest = path.split('?').next()?.strip_prefix("/v2/")?;
    let marker = format!("/{kind}/");
    let at = rest.rfind(&marker)?;
    Some((&rest[..at], &rest[at + marker.len()..]))
}

fn query(path: &str, key: &str) -> Option<String> {
    let q = path.split_once('?')?.1;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (method, path, _) = request_line(&req);
    shared
        .records
        .lock()
        .unwrap()
        .push((method.clone(), path.clone()));
    if method == "GET"
        && let Some((name, digest)) = split(&path, "referrers")
    {
        return list(&shared, name, digest, &path);
    }
    if method == "PUT"
        && let Some((name, _)) = split(&path, "manifests")
    {
        let name = name.to_string();
        return match put_manifest(&shared, req, &name, &path).await {
            Ok(r) => r,
            Err(e) => (StatusCode::BAD_GATEWAY, format!("{e:#}")).into_response(),
        };
    }
    match forward_to(&shared.client, &shared.upstream, req, &path).await {
        Ok(r) => r,
        Err(e) => (StatusCode::BAD_GATEWAY, format!("{e:#}")).into_response(),
    }
}

fn list(shared: &Shared, name: &str, digest: &str, path: &str) -> Response {
    let mut all = shared
        .referrers
        .lock()
        .unwrap()
        .get(&(name.to_string(), digest.to_string()))
        .cloned()
        .unwrap_or_default();
    let filter = query(path, "artifactType");
    if let Some(t) = &filter {
        all.retain(|d| d["artifactType"].as_str() == Some(t.as_str()));
    }
    let page: usize = query(path, "page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let size = shared.page_size.lock().unwrap().unwrap_or(usize::MAX);
    let start = page.saturating_mul(size).min(all.len());
    let end = start.saturating_add(size).min(all.len());
    let body = json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": all[start..end],
    });
    let mut resp = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", INDEX);
    if filter.is_some() {
        resp = resp.header("oci-filters-applied", "artifactType");
    }
    if end < all.len() {
        let mut next = format!("/v2/{name}/referrers/{digest}?page={}", page + 1);
        if let Some(t) = &filter {
            next.push_str(&format!("&artifactType={t}"));
        }
        resp = resp.header("link", format!("<{next}>; rel=\"next\""));
    }
    resp.body(Body::from(body.to_string()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn put_manifest(
    shared: &Shared,
    req: Request,
    name: &str,
    path: &str,
) -> anyhow::Result<Response> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 16 << 20).await?;
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let forwarded = Request::from_parts(parts, Body::from(bytes.clone()));
    let mut resp = forward_to(&shared.client, &shared.upstream, forwarded, path).await?;
    let manifest: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let subject = manifest["subject"]["digest"].as_str().map(str::to_string);
    if let Some(subject) = subject
        && resp.status().is_success()
    {
        let artifact_type = manifest["artifactType"]
            .as_str()
            .or(manifest["config"]["mediaType"].as_str());
        let mut d = json!({
            "mediaType": manifest["mediaType"].as_str().or(content_type.as_deref()),
            "digest": sha256_digest(&bytes),
            "size": bytes.len(),
        });
        if let Some(t) = artifact_type {
            d["artifactType"] = json!(t);
        }
        if manifest["annotations"].is_object() {
            d["annotations"] = manifest["annotations"].clone();
        }
        let mut referrers = shared.referrers.lock().unwrap();
        let list = referrers
            .entry((name.to_string(), subject.clone()))
            .or_default();
        if !list.iter().any(|e| e["digest"] == d["digest"]) {
            list.push(d);
        }
        drop(referrers);
        if let Ok(v) = subject.parse() {
            resp.headers_mut().insert("oci-subject", v);
        }
    }
    Ok(resp)
}
