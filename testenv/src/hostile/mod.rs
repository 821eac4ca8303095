//! A hostile "registry": one mode per attack a tenant can aim at the operator by pointing a
//! Registry at a server it controls (issue 16). Everything here is deliberately wrong in ways
//! no real registry is: absurd numbers in headers and JSON, strings of megabytes in every
//! field, a fresh 1 MiB token per request, schema 1 manifests with tens of thousands of
//! signatures, bodies that stall or trickle, tag lists that ignore paging. The HTTP is written
//! by hand on the socket ([`http`]), so that `Content-Length` can lie.
//!
//! [`senders`] is the other side of the operator: clients that hold its webhook port.

mod headers;
pub mod http;
pub mod limits;
mod numbers;
mod paging;
mod repo;
pub mod senders;
mod signatures;
mod stall;
mod strings;
mod tokens;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

pub use numbers::{NumberHeader, absurd_values};
pub use signatures::bomb as schema1_bomb;
pub use strings::HugeField;

use http::{Reply, Request};

/// One attack per mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attack {
    /// Absurd values (`1e300`, `-1`, `NaN`, `18446744073709551616` …) in one number a registry
    /// controls; one repository per value ([`absurd_values`]).
    Numbers(NumberHeader),
    /// Strings of megabytes in one JSON field.
    HugeStrings(HugeField),
    /// Every manifest request wants a token for a scope never seen before; every token is 1 MiB.
    FreshTokens,
    /// Schema 1 manifests of 4 MiB: a 2 MiB payload under ~27,000 signatures, each of which
    /// says to rebuild the whole payload.
    Schema1Bomb,
    /// Manifest bodies announced with a `Content-Length` of 4 MiB, then not one byte.
    StalledBodies,
    /// Manifest bodies announced with a `Content-Length` of 4 MiB, then a byte every 500 ms.
    TrickledBodies,
    /// distribution 2.x: `n` and `last` ignored, every tag in every answer, unsorted, no `Link`.
    IgnoresPaging { tags: usize },
    /// A small honest repository with these headers on every answer.
    Headers(Vec<(String, String)>),
}

impl Attack {
    /// A short name, for test and bench output.
    pub fn name(&self) -> String {
        match self {
            Attack::Numbers(h) => format!("absurd {}", h.name()),
            Attack::HugeStrings(f) => format!("huge {}", f.name()),
            Attack::FreshTokens => "1 MiB tokens with fresh scopes".into(),
            Attack::Schema1Bomb => "schema 1 signature bomb".into(),
            Attack::StalledBodies => "stalled bodies".into(),
            Attack::TrickledBodies => "trickled bodies".into(),
            Attack::IgnoresPaging { tags } => format!("{tags} tags, paging ignored"),
            Attack::Headers(h) => format!("headers {h:?}"),
        }
    }

    /// The repositories a Registry (or `scan --repository`) should name to meet the attack.
    pub fn repositories(&self) -> Vec<String> {
        match self {
            Attack::Numbers(h) => (0..absurd_values(*h).len())
                .map(numbers::repository)
                .collect(),
            Attack::HugeStrings(_) => vec![strings::REPOSITORY.into()],
            Attack::FreshTokens => vec![tokens::REPOSITORY.into()],
            Attack::Schema1Bomb => vec![signatures::REPOSITORY.into()],
            Attack::StalledBodies | Attack::TrickledBodies => vec![stall::REPOSITORY.into()],
            Attack::IgnoresPaging { .. } => vec![paging::REPOSITORY.into()],
            Attack::Headers(_) => vec![headers::REPOSITORY.into()],
        }
    }

    /// Every mode, with the sizes the tests use.
    pub fn all() -> Vec<Attack> {
        let mut all: Vec<Attack> = NumberHeader::ALL.into_iter().map(Attack::Numbers).collect();
        all.extend(HugeField::ALL.into_iter().map(Attack::HugeStrings));
        all.extend([
            Attack::FreshTokens,
            Attack::Schema1Bomb,
            Attack::StalledBodies,
            Attack::TrickledBodies,
            Attack::IgnoresPaging { tags: 1000 },
        ]);
        all
    }
}

/// What the hostile registry saw and did.
#[derive(Default, Debug)]
pub struct Counters {
    /// Requests answered (or being answered).
    pub requests: AtomicUsize,
    /// Tokens handed out, and their bytes.
    pub tokens: AtomicUsize,
    pub token_bytes: AtomicU64,
    /// Bodies stalled or trickling right now.
    pub held_bodies: AtomicI64,
    /// Bodies that ever stalled or trickled.
    pub held_total: AtomicUsize,
    /// Tag-list answers.
    pub tag_lists: AtomicUsize,
    /// Manifest GETs (not HEADs).
    pub manifest_gets: AtomicUsize,
}

impl Counters {
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }
}

/// What every mode's answer function gets.
pub(crate) struct Ctx {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub counters: Arc<Counters>,
}

/// A mode's state and answers.
pub(crate) trait Mode: Send + Sync {
    fn answer(&self, ctx: &Ctx, req: &Request) -> Reply;
}

/// A running hostile registry; stops (and drops every connection) when dropped.
pub struct HostileRegistry {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub addr: SocketAddr,
    pub attack: Attack,
    pub counters: Arc<Counters>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HostileRegistry {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.task.abort();
    }
}

impl HostileRegistry {
    pub async fn start(attack: Attack) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the hostile registry")?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let counters = Arc::new(Counters::default());
        let mode: Arc<dyn Mode> = match &attack {
            Attack::Numbers(h) => Arc::new(numbers::Numbers::new(*h)),
            Attack::HugeStrings(f) => Arc::new(strings::Strings::new(*f)),
            Attack::FreshTokens => Arc::new(tokens::Tokens::default()),
            Attack::Schema1Bomb => Arc::new(signatures::Bomb::new()),
            Attack::StalledBodies => Arc::new(stall::Stall::new(false)),
            Attack::TrickledBodies => Arc::new(stall::Stall::new(true)),
            Attack::IgnoresPaging { tags } => Arc::new(paging::Paging::new(*tags)),
            Attack::Headers(h) => Arc::new(headers::Headers::new(h.clone())),
        };
        let ctx = Arc::new(Ctx {
            base: url.clone(),
            counters: counters.clone(),
        });
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (mode, ctx, mut rx) = (mode.clone(), ctx.clone(), rx.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = serve(stream, mode, ctx) => {}
                        _ = rx.wait_for(|stop| *stop) => {}
                    }
                });
            }
        });
        Ok(Self {
            url,
            addr,
            attack,
            counters,
            shutdown,
            task,
        })
    }

    /// `127.0.0.1:PORT`, as a Registry's `spec.url` without a scheme would name it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

async fn serve(mut stream: tokio::net::TcpStream, mode: Arc<dyn Mode>, ctx: Arc<Ctx>) {
    let mut buf = Vec::new();
    while let Some(req) = http::read_request(&mut stream, &mut buf).await {
        ctx.counters.requests.fetch_add(1, Ordering::Relaxed);
        let reply = mode.answer(&ctx, &req);
        let held = !matches!(reply.body, http::Body::Full(_)) && req.method != "HEAD";
        if held {
            ctx.counters.held_bodies.fetch_add(1, Ordering::Relaxed);
            ctx.counters.held_total.fetch_add(1, Ordering::Relaxed);
        }
        let reuse = http::write_reply(&mut stream, &reply, req.method == "HEAD").await;
        if held {
            ctx.counters.held_bodies.fetch_sub(1, Ordering::Relaxed);
        }
        if !matches!(reuse, Ok(true)) {
            return;
        }
    }
}

/// How long the tests let a trickle run between bytes.
pub const TRICKLE_EVERY: Duration = Duration::from_millis(500);
