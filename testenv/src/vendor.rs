//! Fixture servers for registries' native listing APIs, in front of a real distribution
//! registry that holds the images. Each answers its vendor's documented shapes (field names
//! from the vendor's reference, cited per vendor below) with the truth it reads from the
//! registry (tag list, then a HEAD per tag), and forwards everything else (`/v2/…`) to the
//! registry, so a scan's guard HEADs and manifest GETs reach the real thing.
//!
//! Vendors known by host (Docker Hub, GCR/Artifact Registry, ACR) are served over TLS with
//! certificates for their real names; a client maps those names to this server with
//! `ClientOptions::resolve`. A [`Behaviour`] makes the native API lie, refuse or change shape.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::Router;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, stream};
use serde_json::{Value, json};

use crate::certs::TestCa;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    DockerHub,
    Harbor,
    Quay,
    Gar,
    Acr,
}

impl Vendor {
    /// Host names the vendor is known by (served over TLS), or none (probed over plain HTTP).
    pub fn hosts(self) -> &'static [&'static str] {
        match self {
            Vendor::DockerHub => &["registry-1.docker.io", "hub.docker.com"],
            Vendor::Gar => &["gcr.io"],
            Vendor::Acr => &["fixture.azurecr.io"],
            Vendor::Harbor | Vendor::Quay => &[],
        }
    }

    /// The lister name the operator reports for this vendor.
    pub fn lister(self) -> &'static str {
        match self {
            Vendor::DockerHub => "dockerhub",
            Vendor::Harbor => "harbor",
            Vendor::Quay => "quay",
            Vendor::Gar => "gar",
            Vendor::Acr => "acr",
        }
    }
}

/// How the native API answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Honest,
    /// Names another digest (a real one, of another tag or a blob) for this tag.
    Lie {
        tag: String,
    },
    /// Answers this status on the listing endpoint (`429` comes with `Retry-After: 0`).
    Status(u16),
    /// Answers 200 with the data under other field names.
    ChangedShape,
    /// Answers 200 with exactly these bytes on the listing endpoint (for fuzzing the parsers).
    Raw(Vec<u8>),
    /// Honest digests, but every time field holds something that is no time (wrong types,
    /// out of range, garbage text).
    AbsurdTimes,
}

/// When the fixture says `tag` was (last) pushed, in Unix seconds: one fixed second per tag
/// name in 2026, the same for every vendor. Each vendor writes it in its own documented form
/// (and milliseconds where it has them: `pushed_millis`).
pub fn pushed_unix(tag: &str) -> i64 {
    let h = tag
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    1_767_225_600 + (h % 31_536_000) as i64
}

/// The sub-second part the fixture adds to [`pushed_unix`] (the operator keeps whole seconds).
fn pushed_millis(tag: &str) -> i64 {
    pushed_unix(tag) * 1000 + (tag.len() as i64 * 37) % 1000
}

/// RFC 3339 in UTC with `digits` fraction digits, as each vendor's samples show them.
fn rfc3339(tag: &str, digits: usize) -> String {
    let at = chrono::DateTime::from_timestamp_millis(pushed_millis(tag)).unwrap_or_default();
    let fraction = format!("{:09}", at.timestamp_subsec_nanos());
    format!(
        "{}.{}Z",
        at.format("%Y-%m-%dT%H:%M:%S"),
        &fraction[..digits]
    )
}

/// What the fixture writes into every time field under [`Behaviour::AbsurdTimes`], by turn.
fn absurd(i: usize) -> Value {
    let values = [
        json!("not a time"),
        json!(-1),
        json!(1e300),
        json!({"nested": [1, 2, 3]}),
        json!("99999-01-01T00:00:00Z"),
        json!(null),
        json!("0"),
        json!(u64::MAX),
    ];
    values[i % values.len()].clone()
}

/// A repository and its (tag, digest) pairs in tag order.
type Truth = (String, Vec<(String, String)>);

/// One request the fixture answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub host: String,
    pub method: String,
    /// Path and query.
    pub path: String,
    pub authorization: Option<String>,
    pub body: String,
}

/// The access token the Docker Hub fixture hands out.
pub const HUB_TOKEN: &str = "fixture-hub-access-token-0123456789";

struct Shared {
    vendor: Vendor,
    upstream: url::Url,
    client: reqwest::Client,
    behaviour: Mutex<Behaviour>,
    /// The truth of the repository last listed from its first page: (tag, digest) in tag order.
    truth: Mutex<Option<Truth>>,
    records: Mutex<Vec<Seen>>,
    /// Docker Hub's account: its token endpoint checks it, its tags API then wants the token.
    hub_user: Mutex<Option<(String, String)>>,
    /// Harbor's accessories, by subject digest.
    accessories: Mutex<BTreeMap<String, Vec<Value>>>,
}

/// A running fixture; stops when dropped.
pub struct VendorFixture {
    /// What a Registry's `spec.url` names: the vendor's host, or `http://127.0.0.1:PORT`.
    pub url: String,
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for VendorFixture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl VendorFixture {
    /// Starts a fixture for `vendor` in front of the plain-HTTP registry at `upstream`. Vendors
    /// known by host need `ca` to sign their certificate.
    pub async fn start(
        vendor: Vendor,
        upstream: &str,
        ca: Option<&TestCa>,
    ) -> anyhow::Result<Self> {
        crate::registry::install_crypto_provider();
        let shared = Arc::new(Shared {
            vendor,
            upstream: url::Url::parse(upstream)?,
            client: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            behaviour: Mutex::new(Behaviour::Honest),
            truth: Mutex::new(None),
            records: Mutex::new(Vec::new()),
            hub_user: Mutex::new(None),
            accessories: Mutex::default(),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let hosts = vendor.hosts();
        let (url, task) = if hosts.is_empty() {
            let task = tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            (format!("http://{addr}"), task)
        } else {
            let ca = ca.context("a vendor known by host is served over TLS: pass a CA")?;
            let leaf = ca.server_leaf(hosts);
            let key: rustls::pki_types::PrivatePkcs8KeyDer<'static> =
                rustls::pki_types::pem::PemObject::from_pem_slice(leaf.key_pem.as_bytes())?;
            let config = rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(vec![leaf.cert_der.clone().into()], key.into())?;
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
            let task = tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let acceptor = acceptor.clone();
                    let app = app.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let service = hyper_util::service::TowerToHyperService::new(app);
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                            .await;
                    });
                }
            });
            (format!("https://{}", hosts[0]), task)
        };
        Ok(VendorFixture {
            url,
            addr,
            shared,
            task,
        })
    }

    /// What `ClientOptions::resolve` needs: every vendor host → this server.
    pub fn resolve(&self) -> Vec<(String, SocketAddr)> {
        self.shared
            .vendor
            .hosts()
            .iter()
            .map(|h| (h.to_string(), self.addr))
            .collect()
    }

    pub fn set_behaviour(&self, b: Behaviour) {
        *self.shared.behaviour.lock().unwrap() = b;
    }

    /// Requests answered by the native API itself (detection probes and tokens included).
    pub fn native_requests(&self) -> usize {
        self.shared
            .records
            .lock()
            .unwrap()
            .iter()
            .filter(|r| is_native(self.shared.vendor, &r.host, &r.method, &r.path))
            .count()
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.shared.records.lock().unwrap().clone()
    }

    /// From now on Docker Hub's token endpoint wants this account, and its tags API the token.
    pub fn require_hub_user(&self, user: &str, password: &str) {
        *self.shared.hub_user.lock().unwrap() = Some((user.into(), password.into()));
    }

    pub fn reset(&self) {
        self.shared.records.lock().unwrap().clear();
    }

    /// Harbor: lists an accessory of `subject` (its `digest` and Harbor's `type`, e.g.
    /// `signature.cosign`, `harbor.sbom`, `subject.accessory`) in that artifact's
    /// `accessories[]` when asked `with_accessory=true`.
    pub fn harbor_accessory(&self, subject: &str, digest: &str, kind: &str) {
        let n = self
            .shared
            .accessories
            .lock()
            .unwrap()
            .values()
            .map(Vec::len)
            .sum::<usize>();
        // harbor api/v2.0/swagger.yaml, `Accessory`: id, artifact_id, subject_artifact_id,
        // subject_artifact_digest, subject_artifact_repo, size, digest, type, icon, creation_time.
        let accessory = json!({
            "id": n + 1,
            "artifact_id": n + 100,
            "subject_artifact_id": 1,
            "subject_artifact_digest": subject,
            "subject_artifact_repo": "fixture",
            "size": 1024,
            "digest": digest,
            "type": kind,
            "icon": "",
            "creation_time": "2026-01-01T00:00:00.000Z"
        });
        self.shared
            .accessories
            .lock()
            .unwrap()
            .entry(subject.to_string())
            .or_default()
            .push(accessory);
    }

    /// Reads the repository from the registry again (after pushes or deletes).
    pub fn refresh(&self) {
        *self.shared.truth.lock().unwrap() = None;
    }
}

fn is_native(vendor: Vendor, host: &str, method: &str, path: &str) -> bool {
    match vendor {
        Vendor::DockerHub => host == "hub.docker.com",
        Vendor::Harbor => path.starts_with("/api/v2.0/"),
        Vendor::Quay => path.starts_with("/api/v1/"),
        Vendor::Gar => {
            method == "GET" && path.split('?').next().unwrap_or("").ends_with("/tags/list")
        }
        Vendor::Acr => path.starts_with("/acr/v1/"),
    }
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .map(|h| h.split(':').next().unwrap_or(h).to_string())
        .unwrap_or_default();
    let (method, path, authorization) = crate::fault::request_line(&req);
    if is_native(shared.vendor, &host, &method, &path) {
        let body = axum::body::to_bytes(req.into_body(), 1 << 20)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        shared.records.lock().unwrap().push(Seen {
            host: host.clone(),
            method: method.clone(),
            path: path.clone(),
            authorization: authorization.clone(),
            body: body.clone(),
        });
        return match native(&shared, &method, &path, authorization.as_deref(), &body).await {
            Ok(r) => r,
            Err(e) => {
                (StatusCode::INTERNAL_SERVER_ERROR, format!("fixture: {e:#}")).into_response()
            }
        };
    }
    shared.records.lock().unwrap().push(Seen {
        host: host.clone(),
        method: method.clone(),
        path: path.clone(),
        authorization,
        body: String::new(),
    });
    if host == "hub.docker.com" {
        return StatusCode::NOT_FOUND.into_response();
    }
    match crate::fault::forward_to(&shared.client, &shared.upstream, req, &path).await {
        Ok(r) => r,
        Err(e) => (StatusCode::BAD_GATEWAY, format!("fixture: {e:#}")).into_response(),
    }
}

fn query(path: &str) -> BTreeMap<String, String> {
    url::Url::parse(&format!("http://x{path}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

fn json_reply(v: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// Answers one native API request.
async fn native(
    shared: &Shared,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &str,
) -> anyhow::Result<Response> {
    let hub_user = shared.hub_user.lock().unwrap().clone();
    let route = path.split('?').next().unwrap_or("");
    let q = query(path);
    // Detection probes answer whatever the behaviour, as the real services would.
    match (shared.vendor, route) {
        // harbor api/v2.0/swagger.yaml, GeneralInfo (the anonymous subset).
        (Vendor::Harbor, "/api/v2.0/systeminfo") => {
            return Ok(json_reply(json!({
                "auth_mode": "db_auth",
                "primary_auth_mode": false,
                "self_registration": false,
                "harbor_version": "v2.13.0-fixture"
            })));
        }
        // Red Hat Quay API reference, "discovery": the API in Swagger 2.0 format.
        (Vendor::Quay, "/api/v1/discovery") => {
            return Ok(json_reply(json!({
                "swagger": "2.0",
                "info": {"title": "Quay Frontend", "version": "v1"},
                "paths": {"/api/v1/repository/{repository}/tag/": {"get": {"operationId": "listRepoTags"}}}
            })));
        }
        // Docker Hub API reference, "Create access token": identifier + secret → access_token.
        (Vendor::DockerHub, "/v2/auth/token") if method == "POST" => {
            let sent: Value = serde_json::from_str(body).unwrap_or_default();
            let ok = hub_user.as_ref().is_none_or(|(u, p)| {
                sent["identifier"].as_str() == Some(u) && sent["secret"].as_str() == Some(p)
            });
            if !ok {
                return Ok((
                    StatusCode::UNAUTHORIZED,
                    json_reply(json!({"message": "incorrect username or password"})),
                )
                    .into_response());
            }
            return Ok(json_reply(json!({ "access_token": HUB_TOKEN })));
        }
        (Vendor::DockerHub, _)
            if hub_user.is_some() && authorization != Some(&format!("Bearer {HUB_TOKEN}")) =>
        {
            return Ok((
                StatusCode::UNAUTHORIZED,
                json_reply(json!({"message": "authentication required"})),
            )
                .into_response());
        }
        _ => {}
    }
    let behaviour = shared.behaviour.lock().unwrap().clone();
    if let Behaviour::Status(code) = behaviour {
        let status = StatusCode::from_u16(code)?;
        let mut r = (
            status,
            [("content-type", "application/json")],
            json!({"errors": [{"code": "FIXTURE", "message": format!("fixture answers {code}")}]})
                .to_string(),
        )
            .into_response();
        if code == 429 {
            r.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("0"));
        }
        return Ok(r);
    }
    let Some(repo) = repository_of(shared.vendor, route) else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    if let Behaviour::Raw(bytes) = &behaviour {
        return Ok((
            StatusCode::OK,
            [("content-type", "application/json")],
            bytes.clone(),
        )
            .into_response());
    }
    let truth = truth(shared, &repo).await?;
    let mut tags = truth;
    if let Behaviour::Lie { tag } = &behaviour {
        let other = tags
            .iter()
            .find(|(t, _)| t != tag)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| crate::push::sha256_digest(b"a digest no tag has"));
        for (t, d) in tags.iter_mut() {
            if t == tag {
                *d = if *d == other {
                    crate::push::sha256_digest(b"a digest no tag has")
                } else {
                    other.clone()
                };
            }
        }
    }
    let changed = behaviour == Behaviour::ChangedShape;
    let mut r = match shared.vendor {
        Vendor::DockerHub => docker_hub(&repo, &tags, &q, changed),
        Vendor::Harbor => {
            let accessories = shared.accessories.lock().unwrap().clone();
            harbor(&tags, &q, changed, &accessories)
        }
        Vendor::Quay => quay(&tags, &q, changed),
        Vendor::Gar => gar(&repo, &tags, changed),
        Vendor::Acr => acr(&repo, &tags, &q, changed),
    };
    if behaviour == Behaviour::AbsurdTimes {
        r = absurd_times(r).await;
    }
    Ok(r)
}

/// The same answer with every time field the operator reads replaced by [`absurd`] values.
async fn absurd_times(r: Response) -> Response {
    const FIELDS: [&str; 5] = [
        "tag_last_pushed",
        "push_time",
        "start_ts",
        "timeUploadedMs",
        "lastUpdateTime",
    ];
    fn walk(v: &mut Value, n: &mut usize) {
        match v {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if FIELDS.contains(&k.as_str()) {
                        *v = absurd(*n);
                        *n += 1;
                    } else {
                        walk(v, n);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, n)),
            _ => {}
        }
    }
    let (parts, body) = r.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 << 20).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    walk(&mut v, &mut 0);
    Response::from_parts(parts, axum::body::Body::from(v.to_string()))
}

fn repository_of(vendor: Vendor, route: &str) -> Option<String> {
    match vendor {
        Vendor::DockerHub => {
            let rest = route.strip_prefix("/v2/namespaces/")?;
            let (ns, rest) = rest.split_once("/repositories/")?;
            Some(format!("{ns}/{}", rest.strip_suffix("/tags")?))
        }
        Vendor::Harbor => {
            let rest = route.strip_prefix("/api/v2.0/projects/")?;
            let (project, rest) = rest.split_once("/repositories/")?;
            // The name arrives URL-encoded twice: %252F → %2F → /.
            let name = rest.strip_suffix("/artifacts")?.replace("%252F", "/");
            Some(format!("{project}/{name}"))
        }
        Vendor::Quay => Some(
            route
                .strip_prefix("/api/v1/repository/")?
                .strip_suffix("/tag/")?
                .to_string(),
        ),
        Vendor::Gar => Some(
            route
                .strip_prefix("/v2/")?
                .strip_suffix("/tags/list")?
                .to_string(),
        ),
        Vendor::Acr => Some(
            route
                .strip_prefix("/acr/v1/")?
                .strip_suffix("/_tags")?
                .to_string(),
        ),
    }
}

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Every tag of `repo` with its digest, read from the registry once (a tag list and a HEAD per
/// tag, which a real vendor API does not cost) and kept until [`VendorFixture::refresh`].
async fn truth(shared: &Shared, repo: &str) -> anyhow::Result<Vec<(String, String)>> {
    if let Some((r, t)) = shared.truth.lock().unwrap().clone()
        && r == repo
    {
        return Ok(t);
    }
    let mut tags: Vec<String> = Vec::new();
    let mut url = shared
        .upstream
        .join(&format!("/v2/{repo}/tags/list?n=1000"))?;
    loop {
        let r = shared.client.get(url.clone()).send().await?;
        anyhow::ensure!(r.status().is_success(), "upstream tag list: {}", r.status());
        let link = r
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(|l| {
                l.split_once('<')
                    .and_then(|(_, r)| r.split_once('>'))
                    .map(|(u, _)| u.to_string())
            });
        let page: Value = r.json().await?;
        tags.extend(
            page["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(str::to_string)),
        );
        match link {
            Some(l) => url = shared.upstream.join(&l)?,
            None => break,
        }
    }
    let client = &shared.client;
    let upstream = &shared.upstream;
    let mut truth: Vec<(String, String)> = stream::iter(tags)
        .map(|tag| async move {
            let url = upstream.join(&format!("/v2/{repo}/manifests/{tag}"))?;
            let r = client.head(url).header("accept", ACCEPT).send().await?;
            let d = r
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .context("upstream HEAD without a digest")?
                .to_string();
            anyhow::Ok((tag, d))
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    truth.sort();
    *shared.truth.lock().unwrap() = Some((repo.to_string(), truth.clone()));
    Ok(truth)
}

fn page_of<'t>(
    tags: &'t [(String, String)],
    q: &BTreeMap<String, String>,
    size_key: &str,
    max: usize,
) -> (&'t [(String, String)], usize, bool) {
    let size = q
        .get(size_key)
        .and_then(|n| n.parse().ok())
        .unwrap_or(max)
        .clamp(1, max);
    let page: usize = q
        .get("page")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
        .max(1);
    let start = ((page - 1) * size).min(tags.len());
    let end = (start + size).min(tags.len());
    (&tags[start..end], page, end < tags.len())
}

/// Docker Hub API reference, "List repository tags": `count`, `next`, `previous`, `results[]`
/// of `name`, `digest`, `images[]` (`architecture`, `os`, `digest`, `size`), `last_updated`,
/// `tag_last_pushed` and `tag_last_pulled` (RFC 3339 text with microseconds, as Hub writes).
fn docker_hub(
    repo: &str,
    tags: &[(String, String)],
    q: &BTreeMap<String, String>,
    changed: bool,
) -> Response {
    let (page, n, more) = page_of(tags, q, "page_size", 100);
    let size = page.len().max(1);
    let (ns, name) = repo.split_once('/').unwrap_or(("library", repo));
    let results: Vec<Value> = page
        .iter()
        .map(|(t, d)| json!({"name": t, "digest": d, "images": [], "last_updated": rfc3339(t, 6), "tag_status": "active", "tag_last_pushed": rfc3339(t, 6), "tag_last_pulled": "2026-12-31T00:00:00.000000Z"}))
        .collect();
    if changed {
        return json_reply(json!({"total": tags.len(), "tags": results}));
    }
    let next = more.then(|| {
        format!("https://hub.docker.com/v2/namespaces/{ns}/repositories/{name}/tags?page={}&page_size={size}", n + 1)
    });
    json_reply(json!({"count": tags.len(), "next": next, "previous": null, "results": results}))
}

/// harbor api/v2.0/swagger.yaml, `listArtifacts` → `Artifact[]`: `digest`, `tags[]` (`Tag`:
/// `name`, `push_time`, `pull_time`, `immutable`), `references[]`, `media_type`, `size`,
/// `push_time` (RFC 3339 `date-time`; the artifact's is its first tag's push); paged by
/// `page`/`page_size` with `X-Total-Count`; with `with_accessory=true`, `accessories[]`
/// (`Accessory`), left out when empty as Harbor's generated models do (`omitempty`).
fn harbor(
    tags: &[(String, String)],
    q: &BTreeMap<String, String>,
    changed: bool,
    accessories: &BTreeMap<String, Vec<Value>>,
) -> Response {
    // Artifacts are digests; the tags of one digest are listed together.
    let mut by_digest: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (t, d) in tags {
        by_digest.entry(d.as_str()).or_default().push(t.as_str());
    }
    let artifacts: Vec<(String, String)> = by_digest
        .iter()
        .map(|(d, ts)| (d.to_string(), ts.join(",")))
        .collect();
    let (page, _, _) = page_of(&artifacts, q, "page_size", 100);
    let items: Vec<Value> = page
        .iter()
        .map(|(d, ts)| {
            let names: Vec<&str> = ts.split(',').collect();
            let first = names.iter().map(|t| pushed_millis(t)).min().unwrap_or_default();
            let first = chrono::DateTime::from_timestamp_millis(first).unwrap_or_default();
            let mut a = json!({
                "digest": d,
                "media_type": "application/vnd.oci.image.manifest.v1+json",
                "push_time": first.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                "tags": names.iter().map(|t| json!({"name": t, "immutable": false, "push_time": rfc3339(t, 3), "pull_time": "0001-01-01T00:00:00.000Z"})).collect::<Vec<_>>(),
                "references": null
            });
            if q.get("with_accessory").is_some_and(|v| v == "true")
                && let Some(list) = accessories.get(d)
            {
                a["accessories"] = json!(list);
            }
            a
        })
        .collect();
    if changed {
        return json_reply(json!({"artifacts": items}));
    }
    let mut r = json_reply(Value::Array(items));
    r.headers_mut().insert(
        "x-total-count",
        axum::http::HeaderValue::from(artifacts.len()),
    );
    r
}

/// Red Hat Quay API reference, `listRepoTags`: `tags[]` (`name`, `manifest_digest`,
/// `is_manifest_list`, `start_ts` in Unix seconds, `last_modified` as RFC 2822 text), `page`,
/// `has_additional`; `limit` at most 100 (the Red Hat Quay API guide's "tag" samples).
fn quay(tags: &[(String, String)], q: &BTreeMap<String, String>, changed: bool) -> Response {
    let (page, n, more) = page_of(tags, q, "limit", 100);
    let items: Vec<Value> = page
        .iter()
        .map(|(t, d)| {
            let at = chrono::DateTime::from_timestamp(pushed_unix(t), 0).unwrap_or_default();
            json!({"name": t, "manifest_digest": d, "is_manifest_list": false, "reversion": false, "start_ts": pushed_unix(t), "last_modified": at.format("%a, %d %b %Y %H:%M:%S -0000").to_string()})
        })
        .collect();
    if changed {
        return json_reply(json!({"results": items, "page": n}));
    }
    json_reply(json!({"tags": items, "page": n, "has_additional": more}))
}

/// GCR / Artifact Registry tag list: `name`, `tags`, `child`, `manifest` (digest →
/// `imageSizeBytes`, `layerId`, `mediaType`, `tag[]`, `timeCreatedMs`, `timeUploadedMs`; the
/// times Unix milliseconds as text, GCR's form — go-containerregistry `pkg/v1/google`). A
/// digest's upload is its tags' latest push.
fn gar(repo: &str, tags: &[(String, String)], changed: bool) -> Response {
    let mut manifest: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (t, d) in tags {
        manifest.entry(d.as_str()).or_default().push(t.as_str());
    }
    let manifest: serde_json::Map<String, Value> = manifest
        .into_iter()
        .map(|(d, ts)| {
            let uploaded = ts.iter().map(|t| pushed_millis(t)).max().unwrap_or_default();
            (d.to_string(), json!({"imageSizeBytes": "0", "layerId": "", "mediaType": "application/vnd.oci.image.manifest.v1+json", "tag": ts, "timeCreatedMs": "0", "timeUploadedMs": uploaded.to_string()}))
        })
        .collect();
    let names: Vec<&str> = tags.iter().map(|(t, _)| t.as_str()).collect();
    if changed {
        return json_reply(json!({"name": repo, "tags": names, "images": manifest}));
    }
    json_reply(json!({"child": [], "manifest": manifest, "name": repo, "tags": names}))
}

/// ACR "Get Tags" (learn.microsoft.com/rest/api/containerregistry/tag/get-list): `registry`,
/// `imageName`, `tags[]` (`name`, `digest`, `createdTime`, `lastUpdateTime` — RFC 3339 with
/// seven fraction digits in its sample —, `signed`, `changeableAttributes`); `n` and `last`,
/// next page in `Link`.
fn acr(
    repo: &str,
    tags: &[(String, String)],
    q: &BTreeMap<String, String>,
    changed: bool,
) -> Response {
    let n: usize = q
        .get("n")
        .and_then(|n| n.parse().ok())
        .unwrap_or(100)
        .clamp(1, 100);
    let after = q.get("last");
    let rest: Vec<&(String, String)> = tags
        .iter()
        .filter(|(t, _)| after.is_none_or(|a| t > a))
        .collect();
    let page = &rest[..n.min(rest.len())];
    let items: Vec<Value> = page
        .iter()
        .map(|(t, d)| json!({"name": t, "digest": d, "createdTime": "2026-01-01T00:00:00.0000000Z", "lastUpdateTime": rfc3339(t, 7), "signed": false, "changeableAttributes": {"readEnabled": true}}))
        .collect();
    if changed {
        return json_reply(
            json!({"registry": "fixture.azurecr.io", "repository": repo, "items": items}),
        );
    }
    let mut r =
        json_reply(json!({"registry": "fixture.azurecr.io", "imageName": repo, "tags": items}));
    if rest.len() > n
        && let Some((last, _)) = page.last()
        && let Ok(v) = axum::http::HeaderValue::from_str(&format!(
            "</acr/v1/{repo}/_tags?last={last}&n={n}>; rel=\"next\""
        ))
    {
        r.headers_mut().insert("link", v);
    }
    r
}
