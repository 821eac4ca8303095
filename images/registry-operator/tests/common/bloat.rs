//! A "registry" that tries to make the operator hold memory: every request to repository
//! `flood` is answered 401 with a bearer challenge for a scope never seen before, and its
//! token endpoint grants tokens of `token_bytes`; repository `bloat` has one tag whose
//! manifest declares a `mediaType` of 4,000,000 characters (just under the 4 MiB manifest
//! limit). Everything else is 404.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

pub const HUGE_MEDIA_TYPE: usize = 4_000_000;

struct Shared {
    url: String,
    token_bytes: usize,
    scopes: AtomicUsize,
    manifest: Vec<u8>,
    digest: String,
}

pub struct Bloat {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Bloat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Bloat {
    pub async fn start(token_bytes: usize) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}},"layers":[]}}"#,
            "a".repeat(HUGE_MEDIA_TYPE)
        )
        .into_bytes();
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&manifest)));
        let shared = Arc::new(Shared {
            url: url.clone(),
            token_bytes,
            scopes: AtomicUsize::new(0),
            manifest,
            digest,
        });
        let app = Router::new().fallback(answer).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, shared, task }
    }

    /// Scopes the registry has challenged for so far.
    pub fn scopes(&self) -> usize {
        self.shared.scopes.load(Ordering::Relaxed)
    }
}

async fn answer(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if path == "/token" {
        let token = "t".repeat(s.token_bytes);
        return (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "token": token, "expires_in": 3600 }).to_string(),
        )
            .into_response();
    }
    if path.starts_with("/v2/flood/") {
        let n = s.scopes.fetch_add(1, Ordering::Relaxed);
        let challenge = format!(
            r#"Bearer realm="{}/token",service="flood",scope="repository:flood{n}:pull""#,
            s.url
        );
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, challenge)],
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        )
            .into_response();
    }
    match path.as_str() {
        "/v2/bloat/tags/list" => (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"name":"bloat","tags":["v1"]}"#,
        )
            .into_response(),
        p if p == "/v2/bloat/manifests/v1" || p == format!("/v2/bloat/manifests/{}", s.digest) => {
            let headers = [
                (
                    header::CONTENT_TYPE,
                    "application/vnd.oci.image.manifest.v1+json".to_string(),
                ),
                (
                    header::HeaderName::from_static("docker-content-digest"),
                    s.digest.clone(),
                ),
            ];
            if req.method() == Method::HEAD {
                (
                    headers,
                    [(header::CONTENT_LENGTH, s.manifest.len().to_string())],
                )
                    .into_response()
            } else {
                (headers, s.manifest.clone()).into_response()
            }
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}
