//! A deliberately hostile "registry" for the limit tests, doing what no real registry does:
//! 200,000 tags paged by `n` and `Link` (repository `huge`), one tag-list page of 50 MiB
//! streamed without a length (repository `fat`), or the same three tags on every page with a
//! `Link` to a page never asked for before (repository `loop`). Everything else is 404.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

pub const HUGE_TAGS: usize = 200_000;
pub const FAT_BYTES: u64 = 50 << 20;

#[derive(Default)]
pub struct Counters {
    /// Pages of `huge` served.
    pub huge_pages: AtomicUsize,
    /// Bytes of the `fat` page handed to the connection (the client stops reading early).
    pub fat_bytes: AtomicU64,
    /// Pages of `loop` served.
    pub loop_pages: AtomicUsize,
    /// Registry API (`/v2/`) requests for anything but a tag list.
    pub other: AtomicUsize,
}

pub struct Hostile {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hostile {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let counters = Arc::new(Counters::default());
        let app = Router::new().fallback(answer).with_state(counters.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            counters,
            task,
        }
    }
}

async fn answer(State(counters): State<Arc<Counters>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    match path.as_str() {
        "/v2/huge/tags/list" => huge_page(&counters, &query),
        "/v2/fat/tags/list" => fat_page(counters),
        "/v2/loop/tags/list" => loop_page(&counters),
        p => {
            // Registry API requests only: a scan's probes for a native listing API
            // (`/api/v2.0/systeminfo`, `/api/v1/discovery`) are not manifest requests.
            if p.starts_with("/v2/") {
                counters.other.fetch_add(1, Ordering::Relaxed);
            }
            StatusCode::NOT_FOUND.into_response()
        }
    }
}

fn tag(i: usize) -> String {
    format!("t{i:06}")
}

fn huge_page(counters: &Counters, query: &str) -> Response {
    counters.huge_pages.fetch_add(1, Ordering::Relaxed);
    let param = |k: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.to_string())
    };
    let n = param("n")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(1000)
        .clamp(1, 10_000);
    let start = param("last")
        .and_then(|l| l.trim_start_matches('t').parse::<usize>().ok())
        .map_or(0, |i| i + 1);
    let end = (start + n).min(HUGE_TAGS);
    let tags: Vec<String> = (start..end).map(tag).collect();
    let body = serde_json::json!({"name": "huge", "tags": tags}).to_string();
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if end < HUGE_TAGS {
        let link = format!(
            "</v2/huge/tags/list?n={n}&last={}>; rel=\"next\"",
            tag(end - 1)
        );
        resp.headers_mut()
            .insert(header::LINK, link.parse().unwrap());
    }
    resp
}

pub const LOOP_TAGS: [&str; 3] = ["a", "b", "c"];

fn loop_page(counters: &Counters) -> Response {
    let page = counters.loop_pages.fetch_add(1, Ordering::Relaxed);
    let body = serde_json::json!({"name": "loop", "tags": LOOP_TAGS}).to_string();
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    let link = format!("</v2/loop/tags/list?page={}>; rel=\"next\"", page + 1);
    resp.headers_mut()
        .insert(header::LINK, link.parse().unwrap());
    resp
}

fn fat_page(counters: Arc<Counters>) -> Response {
    const CHUNK: usize = 64 << 10;
    let head = br#"{"name":"fat","tags":[""#.to_vec();
    let stream = futures::stream::unfold(0u64, move |sent| {
        let counters = counters.clone();
        let head = head.clone();
        async move {
            if sent >= FAT_BYTES {
                return None;
            }
            let chunk = if sent == 0 { head } else { vec![b'x'; CHUNK] };
            counters
                .fat_bytes
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            let next = sent + chunk.len() as u64;
            Some((Ok::<_, std::io::Error>(chunk), next))
        }
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}
