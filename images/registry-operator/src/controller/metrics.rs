//! Prometheus metrics: scans by result and reason, scan duration, registry requests, status
//! writes, watch errors, shards held, and per Registry its tags and the latest scan's outcome
//! (what the module's alerts in monitoring/ read).

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::registry::{RequestKind, RequestObserver};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScanLabels {
    /// `success` or `failure`.
    pub result: &'static str,
    /// The Ready condition's reason: `ScanSucceeded`, `AuthenticationFailed`, `RateLimited`, …
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `success` or `failure`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabels {
    /// `registries` or `secrets`.
    pub watch: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub kind: &'static str,
    pub method: String,
    /// HTTP status, or `error` when no response arrived.
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// The sender kind from the path (`distribution`, `harbor`, …; `unknown` for others).
    pub kind: &'static str,
    /// `accepted`, `handed_over`, `no_match`, `ignored`, `unauthorized`, `too_large`, `invalid`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefreshLabels {
    /// `updated`, `unchanged`, `skipped` or `failed`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShareLabels {
    /// `started` (ran the registry conversation), `joined` (waited for one running) or
    /// `reused` (served by one finished since the object became due).
    pub share: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PanicLabels {
    /// Where the panic was caught: `scan`, `refresh` or `reconcile`.
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `tokens`, `auth_modes`, `host_gates`, `listers`, `clients`, `snapshots`.
    pub cache: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    pub namespace: String,
    pub name: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub scans: Family<ScanLabels, Counter>,
    pub status_writes: Family<WriteLabels, Counter>,
    pub status_write_bytes: Counter,
    pub watch_errors: Family<WatchLabels, Counter>,
    pub shards_held: Gauge<i64, AtomicI64>,
    pub shard_relabels: Counter,
    pub watched_objects: Gauge<i64, AtomicI64>,
    pub scan_duration: Histogram,
    pub requests: Family<RequestLabels, Counter>,
    pub tags: Family<ObjectLabels, Gauge<i64, AtomicI64>>,
    pub signed_images: Family<ObjectLabels, Gauge<i64, AtomicI64>>,
    pub last_scan_success: Family<ObjectLabels, Gauge<i64, AtomicI64>>,
    pub last_success_timestamp: Family<ObjectLabels, Gauge<i64, AtomicI64>>,
    pub scan_interval: Family<ObjectLabels, Gauge<i64, AtomicI64>>,
    pub leader: Gauge<i64, AtomicI64>,
    pub webhook_requests: Family<WebhookLabels, Counter>,
    pub webhook_refreshes: Family<RefreshLabels, Counter>,
    pub panics: Family<PanicLabels, Counter>,
    pub shared_scans: Family<ShareLabels, Counter>,
    pub cache_bytes: Family<CacheLabels, Gauge<i64, AtomicI64>>,
    /// `latest_info`: the tag and digest `spec.policy` selects, per Registry.
    pub latest: super::latest::LatestInfo,
    /// Refreshes gauges read from elsewhere (the caches' sizes) just before each encode.
    samplers: parking_lot::Mutex<Vec<Sampler>>,
}

type Sampler = Box<dyn Fn(&Metrics) + Send + Sync>;

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("registry_operator");
        let scans = Family::<ScanLabels, Counter>::default();
        registry.register(
            "scans",
            "Finished scans by result and reason",
            scans.clone(),
        );
        let status_writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "status_writes",
            "Registry status writes to the API server",
            status_writes.clone(),
        );
        let status_write_bytes = Counter::default();
        registry.register_with_unit(
            "status_write",
            "Bytes of the status patches sent to the API server",
            prometheus_client::registry::Unit::Bytes,
            status_write_bytes.clone(),
        );
        let watch_errors = Family::<WatchLabels, Counter>::default();
        registry.register(
            "watch_errors",
            "Errors of the Kubernetes watches (each is retried with backoff)",
            watch_errors.clone(),
        );
        let shards_held = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "shards_held",
            "Shards of the Registry objects this replica works on",
            shards_held.clone(),
        );
        let shard_relabels = Counter::default();
        registry.register(
            "shard_relabels",
            "Shard bucket labels written on Registry objects (new objects, changed repositories)",
            shard_relabels.clone(),
        );
        let watched_objects = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "watched_objects",
            "Registry objects this replica's watches hold (with shard-scoped watches: those of its shards)",
            watched_objects.clone(),
        );
        let scan_duration = Histogram::new(exponential_buckets(0.05, 2.0, 14));
        registry.register(
            "scan_duration_seconds",
            "Duration of scans",
            scan_duration.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "registry_requests",
            "HTTP requests to registries",
            requests.clone(),
        );
        let tags = Family::<ObjectLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "tags",
            "Tags found by the latest successful scan, per Registry",
            tags.clone(),
        );
        let signed_images = Family::<ObjectLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "signed_images",
            "Tags whose image has at least one signature referrer (cosign, Sigstore bundle, Notary), per Registry, as of the latest successful scan",
            signed_images.clone(),
        );
        let last_scan_success = Family::<ObjectLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "last_scan_success",
            "1 when the latest scan of the Registry succeeded, 0 when it failed",
            last_scan_success.clone(),
        );
        let last_success_timestamp = Family::<ObjectLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time of the latest successful scan of the Registry",
            last_success_timestamp.clone(),
        );
        let scan_interval = Family::<ObjectLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "scan_interval_seconds",
            "The Registry's scan interval (spec.scanInterval, at least the minimum)",
            scan_interval.clone(),
        );
        let leader = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "leader",
            "1 when this replica works on at least one shard",
            leader.clone(),
        );
        let webhook_requests = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "webhook_requests",
            "Webhook requests by sender kind and outcome (unauthorized: wrong or missing secret)",
            webhook_requests.clone(),
        );
        let webhook_refreshes = Family::<RefreshLabels, Counter>::default();
        registry.register(
            "webhook_refreshes",
            "Targeted refreshes of a Registry's tags triggered by webhook events",
            webhook_refreshes.clone(),
        );
        let panics = Family::<PanicLabels, Counter>::default();
        registry.register(
            "panics",
            "Panics caught while working on one object (the object failed with InternalError; the process went on)",
            panics.clone(),
        );
        let shared_scans = Family::<ShareLabels, Counter>::default();
        registry.register(
            "shared_scans",
            "Objects' scans by how they were served: started (one registry conversation), joined or reused (served by another object's scan of the same repository, credentials and settings)",
            shared_scans.clone(),
        );
        let cache_bytes = Family::<CacheLabels, Gauge<i64, AtomicI64>>::default();
        registry.register_with_unit(
            "cache",
            "Bytes held by each of the operator's caches (each has a byte bound and a per-namespace share)",
            prometheus_client::registry::Unit::Bytes,
            cache_bytes.clone(),
        );
        let latest = super::latest::LatestInfo::default();
        registry.register(
            "latest_info",
            "1 for the tag and digest spec.policy selects as the Registry's newest version",
            latest.family(),
        );
        Self {
            registry,
            latest,
            panics,
            shared_scans,
            cache_bytes,
            samplers: parking_lot::Mutex::default(),
            scans,
            status_writes,
            status_write_bytes,
            watch_errors,
            shards_held,
            shard_relabels,
            watched_objects,
            scan_duration,
            requests,
            tags,
            signed_images,
            last_scan_success,
            last_success_timestamp,
            scan_interval,
            leader,
            webhook_requests,
            webhook_refreshes,
        }
    }
}

impl Metrics {
    /// `sample` runs before every encode (to copy sizes kept elsewhere into gauges).
    pub fn on_encode(&self, sample: impl Fn(&Metrics) + Send + Sync + 'static) {
        self.samplers.lock().push(Box::new(sample));
    }

    pub fn encode(&self) -> String {
        for sample in self.samplers.lock().iter() {
            sample(self);
        }
        let mut out = String::new();
        // Writing to a String cannot fail; an encoder error leaves a partial page, not a panic.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        out
    }

    /// Records how the latest scan of one Registry ended.
    pub fn scan_finished(&self, registry: &ObjectLabels, success: bool, interval: Duration) {
        self.last_scan_success
            .get_or_create(registry)
            .set(i64::from(success));
        self.scan_interval
            .get_or_create(registry)
            .set(i64::try_from(interval.as_secs()).unwrap_or(i64::MAX));
        if success {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            self.last_success_timestamp
                .get_or_create(registry)
                .set(i64::try_from(now).unwrap_or(i64::MAX));
        }
    }

    /// Drops a Registry's series (deleted, or suspended: nothing to alert on).
    pub fn forget(&self, registry: &ObjectLabels) {
        self.tags.remove(registry);
        self.signed_images.remove(registry);
        self.last_scan_success.remove(registry);
        self.last_success_timestamp.remove(registry);
        self.scan_interval.remove(registry);
        self.latest.forget(registry);
    }
}

/// Counts every registry request the scan core makes.
pub struct RequestCounter(pub Arc<Metrics>);

impl RequestObserver for RequestCounter {
    fn observe(&self, kind: RequestKind, method: &str, status: Option<u16>) {
        self.0
            .requests
            .get_or_create(&RequestLabels {
                kind: kind.as_str(),
                method: method.to_string(),
                code: status.map_or_else(|| "error".to_string(), |s| s.to_string()),
            })
            .inc();
    }
}
