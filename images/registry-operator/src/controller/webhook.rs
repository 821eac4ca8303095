//! The webhook receiver: `POST /webhook/{kind}` on its own address (off unless
//! `--webhook-addr` is given). A request is authenticated with the shared secret, parsed by the
//! cluster-free `webhook` module, and each event matched to the Registry objects that scan its
//! repository. Objects of shards this replica holds are refreshed here; the others are handed
//! over to their owner through an annotation on the object, which the owner sees in its watch,
//! acts on and removes. Every replica can therefore sit behind the Service.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tokio::sync::watch;

use super::context::Context;
use super::metrics::WebhookLabels;
use super::targeted::{Refresher, Work};
use super::view::RegistryView;
use super::webhook_index::Index;
use crate::api::Registry;
use crate::webhook::{self, Kind, MAX_BODY_BYTES, auth};

/// Events for an object whose shard another replica holds, waiting for that replica.
pub const HANDOVER_ANNOTATION: &str = "registry.kubecontroller.io/webhook-pending";
const HANDOVER_MANAGER: &str = "registry-operator-webhook";

#[derive(clap::Args, Debug, Clone)]
pub struct WebhookArgs {
    /// Serve registry webhooks (`POST /webhook/{kind}`) on this address (default: off).
    #[arg(long, env = "WEBHOOK_ADDR", requires = "webhook_secret_file")]
    pub webhook_addr: Option<SocketAddr>,
    /// File holding the shared secret senders must present (re-read when it changes).
    #[arg(long, env = "WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Scan every Registry at most this often, in seconds, whatever its spec.scanInterval
    /// (with webhooks the periodic scan is only the safety net).
    #[arg(long, env = "MIN_SCAN_INTERVAL")]
    pub min_scan_interval: Option<u64>,
}

/// What the receiver and the watch hook share.
pub struct Webhooks {
    pub index: Index,
    refresher: Arc<Refresher>,
    ctx: Arc<Context>,
    secret: SecretFile,
}

impl Webhooks {
    pub fn new(ctx: Arc<Context>, secret_file: PathBuf) -> anyhow::Result<Arc<Self>> {
        let secret = SecretFile::new(secret_file);
        anyhow::ensure!(
            !secret.get().is_empty(),
            "the webhook secret file {} is empty or unreadable",
            secret.path.display()
        );
        Ok(Arc::new(Self {
            index: Index::default(),
            refresher: Arc::new(Refresher::new(ctx.settings.max_concurrent_scans)),
            ctx,
            secret,
        }))
    }

    /// Called with every event of the Registry watch: keeps the index, and picks up events
    /// other replicas handed over for objects of shards this replica holds.
    pub fn observe(self: &Arc<Self>, event: &watcher::Event<RegistryView>) {
        self.index.observe(event);
        let obj = match event {
            watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => obj,
            _ => return,
        };
        let Some(value) = obj.annotations().get(HANDOVER_ANNOTATION) else {
            return;
        };
        let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
        if !self
            .ctx
            .shards
            .is_held(self.ctx.shards.shard_of(&ns, &name))
        {
            return;
        }
        let mut work = Work::default();
        // Bounded: the annotation is on a tenant's object and anyone who can edit it can set it.
        if let Ok(handed) = serde_json::from_str::<Work>(value) {
            work.merge(handed);
        }
        work.tags.retain(|t| crate::registry::valid_tag(t));
        let key = format!("{ns}/{name}");
        if !work.is_empty() {
            self.refresher.submit(&self.ctx, key, work);
        }
        let this = self.clone();
        let rv = obj.resource_version();
        tokio::spawn(async move { this.clear_handover(&ns, &name, rv).await });
    }

    async fn clear_handover(&self, ns: &str, name: &str, resource_version: Option<String>) {
        let api: Api<Registry> = Api::namespaced(self.ctx.client.clone(), ns);
        // Guarded by the resourceVersion: events handed over meanwhile are not wiped out.
        let patch = serde_json::json!({"metadata": {
            "resourceVersion": resource_version,
            "annotations": {HANDOVER_ANNOTATION: null},
        }});
        if let Err(e) = api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::debug!(registry = %format!("{ns}/{name}"), error = %e, "clearing the webhook hand-over annotation");
        }
    }

    /// Hands `work` to the replica holding the object's shard: merged into the annotation.
    async fn hand_over(&self, key: &str, mut work: Work) -> Result<(), kube::Error> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let api: Api<Registry> = Api::namespaced(self.ctx.client.clone(), ns);
        for _ in 0..3 {
            let Some(obj) = api.get_metadata_opt(name).await? else {
                return Ok(());
            };
            if let Some(old) = obj
                .annotations()
                .get(HANDOVER_ANNOTATION)
                .and_then(|v| serde_json::from_str::<Work>(v).ok())
            {
                work.merge(old);
            }
            let value = serde_json::to_string(&work).unwrap_or_default();
            let patch = serde_json::json!({"metadata": {
                "resourceVersion": obj.resource_version(),
                "annotations": {HANDOVER_ANNOTATION: value},
            }});
            match api
                .patch(
                    name,
                    &PatchParams {
                        field_manager: Some(HANDOVER_MANAGER.into()),
                        ..PatchParams::default()
                    },
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn count(&self, kind: &'static str, outcome: &'static str) {
        self.ctx
            .metrics
            .webhook_requests
            .get_or_create(&WebhookLabels { kind, outcome })
            .inc();
    }
}

pub async fn serve(
    addr: SocketAddr,
    hooks: Arc<Webhooks>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/webhook/{kind}", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(hooks);
    super::http::spawn(addr, app, shutdown).await
}

async fn receive(
    State(hooks): State<Arc<Webhooks>>,
    Path(kind): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> (StatusCode, &'static str) {
    let Some(kind) = Kind::parse(&kind) else {
        hooks.count("unknown", "invalid");
        return (StatusCode::NOT_FOUND, "unknown webhook kind\n");
    };
    let name = kind.as_str();
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            hooks.count(name, "too_large");
            return (StatusCode::PAYLOAD_TOO_LARGE, "body over 1 MiB\n");
        }
        Err(_) => {
            hooks.count(name, "invalid");
            return (StatusCode::BAD_REQUEST, "unreadable body\n");
        }
    };
    let secret = hooks.secret.get();
    let proof = auth::Proof {
        authorization: headers.get("authorization").map(|v| v.as_bytes()),
        query: query.as_deref(),
        hub_signature: headers.get("x-hub-signature-256").map(|v| v.as_bytes()),
        body: &body,
    };
    if !auth::authenticate(&secret, &proof) {
        hooks.count(name, "unauthorized");
        return (
            StatusCode::UNAUTHORIZED,
            "missing or wrong webhook secret\n",
        );
    }
    let events = match webhook::parse(kind, &body) {
        Ok(events) => events,
        Err(e) => {
            hooks.count(name, "invalid");
            tracing::info!(kind = name, error = %e, "unparsable webhook payload");
            return (StatusCode::BAD_REQUEST, "unparsable payload\n");
        }
    };
    if events.is_empty() {
        hooks.count(name, "ignored");
        return (StatusCode::ACCEPTED, "no tag events\n");
    }
    let mut work: HashMap<String, Work> = HashMap::new();
    for e in &events {
        for key in hooks.index.matching(e.host.as_deref(), &e.repository) {
            let w = work.entry(key).or_default();
            let mut one = Work::default();
            match &e.tag {
                Some(tag) => {
                    one.tags.insert(tag.clone());
                }
                None => one.digests.extend(e.digest.clone()),
            }
            w.merge(one);
        }
    }
    if work.is_empty() {
        hooks.count(name, "no_match");
        return (StatusCode::ACCEPTED, "no Registry scans this repository\n");
    }
    let shards = hooks.ctx.shards.clone();
    let mut handed = false;
    for (key, w) in work {
        let (ns, obj) = key.split_once('/').unwrap_or(("", &key));
        if shards.is_held(shards.shard_of(ns, obj)) {
            hooks.refresher.submit(&hooks.ctx, key, w);
        } else {
            handed = true;
            if let Err(e) = hooks.hand_over(&key, w).await {
                tracing::warn!(registry = %key, error = %e, "handing a webhook event over failed; the periodic scan will catch up");
            }
        }
    }
    hooks.count(name, if handed { "handed_over" } else { "accepted" });
    (StatusCode::ACCEPTED, "accepted\n")
}

/// The shared secret, re-read when the file changes (a rotated Secret is picked up without a
/// restart). Never logged.
struct SecretFile {
    path: PathBuf,
    cached: Mutex<(Option<SystemTime>, Arc<Vec<u8>>)>,
}

impl SecretFile {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            cached: Mutex::new((None, Arc::default())),
        }
    }

    fn get(&self) -> Arc<Vec<u8>> {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let mut cached = self.cached.lock();
        if modified.is_some() && cached.0 == modified {
            return cached.1.clone();
        }
        let secret = std::fs::read(&self.path)
            .map(|b| b.trim_ascii().to_vec())
            .unwrap_or_default();
        *cached = (modified, Arc::new(secret));
        cached.1.clone()
    }
}
