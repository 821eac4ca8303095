//! The webhook receiver: `POST /webhook/{kind}` (the cluster-wide secret) and
//! `POST /webhook/namespaces/{namespace}/{kind}` (a tenant's own Secret) on its own address (off
//! unless `--webhook-addr` is given). A request is authenticated, parsed by the cluster-free
//! `webhook` module, and each event matched to the Registry objects that scan its repository
//! (webhook_receive.rs). Objects of shards this replica holds are refreshed here; the others are
//! handed over to their owner through an annotation on the object, which the owner sees in its
//! watch, acts on and removes. Every replica can therefore sit behind the Service.
//!
//! The annotation is on a tenant's object, so the tenant can write it too: what it asks for is
//! validated, and the refresh it starts waits for a scan slot and comes at most once per floor
//! interval per object.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use axum::Router;
use axum::routing::post;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tokio::sync::watch;

use super::context::Context;
use super::metrics::WebhookLabels;
use super::targeted::{Refresher, Work};
use super::view::RegistryView;
use super::webhook_body::Budget;
use super::webhook_index::Index;
use super::webhook_listener::{self, Limits};
use super::webhook_receive;
use super::webhook_tenants::TenantSecrets;
use crate::api::Registry;

/// Events for an object whose shard another replica holds, waiting for that replica.
pub const HANDOVER_ANNOTATION: &str = "registry.kubecontroller.io/webhook-pending";
const HANDOVER_MANAGER: &str = "registry-operator-webhook";
/// A larger annotation is ignored (and removed): the operator never writes one this big.
const MAX_HANDOVER_BYTES: usize = 64 * 1024;
/// Unauthenticated body bytes all requests may hold at once (16 HMAC senders at their cap).
const UNAUTHENTICATED_BUDGET: usize = 16 * webhook_receive::UNAUTHENTICATED_BODY_BYTES;

#[derive(clap::Args, Debug, Clone)]
pub struct WebhookArgs {
    /// Serve registry webhooks (`POST /webhook/{kind}`, `POST /webhook/namespaces/{ns}/{kind}`)
    /// on this address (default: off).
    #[arg(long, env = "WEBHOOK_ADDR", requires = "webhook_secret_file")]
    pub webhook_addr: Option<SocketAddr>,
    /// File holding the cluster-wide secret senders on `/webhook/{kind}` must present
    /// (re-read when it changes).
    #[arg(long, env = "WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Connections the webhook port holds at once; more are closed as they arrive.
    #[arg(long, env = "WEBHOOK_MAX_CONNECTIONS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub webhook_max_connections: u32,
    /// Seconds a webhook sender has for its request headers, and again for its body.
    #[arg(long, env = "WEBHOOK_READ_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub webhook_read_timeout: u64,
    /// Scan every Registry at most this often, in seconds, whatever its spec.scanInterval
    /// (with webhooks the periodic scan is only the safety net).
    #[arg(long, env = "MIN_SCAN_INTERVAL")]
    pub min_scan_interval: Option<u64>,
}

/// What the receiver and the watch hook share.
pub struct Webhooks {
    pub index: Index,
    pub(super) refresher: Arc<Refresher>,
    pub(super) ctx: Arc<Context>,
    pub(super) secret: SecretFile,
    pub(super) tenants: TenantSecrets,
    pub(super) unauthenticated: Budget,
    pub(super) read_timeout: Duration,
    /// Object key → when its latest annotation-started refresh may run: the floor.
    handovers: Mutex<HashMap<String, Instant>>,
    /// How often the annotation may start a refresh of one object.
    floor: Duration,
}

impl Webhooks {
    pub fn new(
        ctx: Arc<Context>,
        secret_file: PathBuf,
        read_timeout: Duration,
    ) -> anyhow::Result<Arc<Self>> {
        let secret = SecretFile::new(secret_file);
        anyhow::ensure!(
            !secret.get().is_empty(),
            "the webhook secret file {} is empty or unreadable",
            secret.path.display()
        );
        // No more often than any tenant may ask for a full scan, nor than the admin allows one.
        let floor = Duration::from_secs(crate::api::MIN_SCAN_INTERVAL.unsigned_abs())
            .max(ctx.settings.min_scan_interval);
        Ok(Arc::new(Self {
            index: Index::default(),
            refresher: Arc::new(Refresher::default()),
            ctx,
            secret,
            tenants: TenantSecrets::default(),
            unauthenticated: Budget::new(UNAUTHENTICATED_BUDGET),
            read_timeout,
            handovers: Mutex::default(),
            floor,
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
        if !self.ctx.shards.holds(&obj.spec) {
            return;
        }
        let key = format!("{ns}/{name}");
        let work = parse_handover(value);
        if !work.is_empty() {
            let at = next_at(&self.handovers, self.floor, &key, Instant::now());
            self.refresher.submit_at(&self.ctx, key, work, Some(at));
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
    pub(super) async fn hand_over(&self, key: &str, mut work: Work) -> Result<(), kube::Error> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let api: Api<Registry> = Api::namespaced(self.ctx.client.clone(), ns);
        for _ in 0..3 {
            let Some(obj) = api.get_metadata_opt(name).await? else {
                return Ok(());
            };
            if let Some(old) = obj.annotations().get(HANDOVER_ANNOTATION) {
                work.merge(parse_handover(old));
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

    pub(super) fn count(&self, kind: &'static str, outcome: &'static str) {
        self.ctx
            .metrics
            .webhook_requests
            .get_or_create(&WebhookLabels { kind, outcome })
            .inc();
    }
}

/// When the next annotation-started refresh of `key` may run: now, or a floor after the
/// previous one. While one is still ahead, later annotations join it (the same annotation is
/// seen again on every event of the object until it is removed, and must not push it back).
fn next_at(
    handovers: &Mutex<HashMap<String, Instant>>,
    floor: Duration,
    key: &str,
    now: Instant,
) -> Instant {
    let mut last = handovers.lock();
    let at = match last.get(key) {
        None => now,
        Some(prev) if *prev > now => *prev,
        Some(prev) => now.max(*prev + floor),
    };
    if last.len() >= 4096 {
        // Entries whose floor has passed decide nothing any more.
        last.retain(|_, t| now.saturating_duration_since(*t) < floor);
    }
    last.insert(key.to_string(), at);
    at
}

/// What an annotation value asks for, keeping only what is valid; anything else is nothing.
fn parse_handover(value: &str) -> Work {
    if value.len() > MAX_HANDOVER_BYTES {
        return Work::default();
    }
    serde_json::from_str::<Work>(value)
        .map(Work::sanitized)
        .unwrap_or_default()
}

pub async fn serve(
    addr: SocketAddr,
    hooks: Arc<Webhooks>,
    max_connections: usize,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let limits = Limits {
        max_connections,
        read_timeout: hooks.read_timeout,
    };
    let counter = hooks.clone();
    let app = Router::new()
        .route("/webhook/{kind}", post(webhook_receive::cluster))
        .route(
            "/webhook/namespaces/{namespace}/{kind}",
            post(webhook_receive::tenant),
        )
        .with_state(hooks);
    webhook_listener::spawn(
        addr,
        app,
        limits,
        move || counter.count("connection", "too_many_connections"),
        shutdown,
    )
    .await
}

/// The shared secret, re-read when the file changes (a rotated Secret is picked up without a
/// restart). Never logged.
pub(super) struct SecretFile {
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

    pub(super) fn get(&self) -> Arc<Vec<u8>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_spaces_annotation_refreshes_and_does_not_creep() {
        let floor = Duration::from_secs(30);
        let handovers: Mutex<HashMap<String, Instant>> = Mutex::default();
        let next = |key: &str, now: Instant| next_at(&handovers, floor, key, now);
        let t0 = Instant::now();
        assert_eq!(next("a/x", t0), t0, "the first one runs at once");
        let second = next("a/x", t0 + Duration::from_secs(1));
        assert_eq!(second, t0 + floor, "the next one waits for the floor");
        // Seen again (or written again) before that: it joins the same round.
        assert_eq!(next("a/x", t0 + Duration::from_secs(2)), second);
        assert_eq!(next("a/x", t0 + Duration::from_secs(29)), second);
        // Long after: at once again.
        let later = t0 + Duration::from_secs(300);
        assert_eq!(next("a/x", later), later);
        assert_eq!(next("b/y", t0), t0, "per object");
    }

    #[test]
    fn handed_over_work_is_validated_and_bounded() {
        let good = format!("sha256:{}", "a".repeat(64));
        let value = serde_json::json!({
            "tags": ["1.0", "../../etc", "", "x".repeat(200)],
            "digests": [good, "sha256:evil", "SHA256:AA"],
        })
        .to_string();
        let work = parse_handover(&value);
        assert_eq!(work.tags.into_iter().collect::<Vec<_>>(), ["1.0"]);
        assert_eq!(work.digests.into_iter().collect::<Vec<_>>(), [good]);
        let many = serde_json::json!({
            "tags": (0..1000).map(|i| format!("t{i}")).collect::<Vec<_>>(),
        })
        .to_string();
        assert_eq!(parse_handover(&many).tags.len(), 256);
        let huge = format!("{{\"tags\": [\"{}\"]}}", "a".repeat(MAX_HANDOVER_BYTES));
        assert!(parse_handover(&huge).is_empty());
        assert!(parse_handover("not json").is_empty());
    }
}
