//! What every reconcile shares: the API client, settings, scan admission, the registry client
//! pool, and what is remembered about each Registry between scans.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use kube::runtime::events::Recorder;

use super::admission::Admission;
use super::backoff::Backoff;
use super::memory::Memory;
use super::metrics::{Metrics, RequestCounter};
use super::secrets::SecretVersions;
use super::shards::Ownership;
use super::shared::ScanKeys;
use super::snapshot::{Snapshot, Snapshots};
use crate::api::RegistrySpec;
use crate::registry::cache::BoundedCache;
use crate::registry::{
    BodyBudget, ClientOptions, EgressPolicy, ProxySettings, RefreshReport, RegistryClient,
    RegistryState, ScanError, ScanLimits, ScanOptions, SharedScans, TagFilter,
};

#[derive(Debug, Clone)]
pub struct Settings {
    /// Scans running at once across all Registries.
    pub max_concurrent_scans: usize,
    pub scan_concurrency: usize,
    pub scan_timeout: Duration,
    pub max_images: usize,
    /// Scans of one namespace running at once.
    pub max_scans_per_namespace: usize,
    pub limits: ScanLimits,
    pub egress: Arc<EgressPolicy>,
    /// The proxy registry requests go through (`--registry-https-proxy` …), if any.
    pub proxy: Option<ProxySettings>,
    /// Shared by every registry client.
    pub body_budget: Arc<BodyBudget>,
    /// A body that sends no byte for this long is dropped.
    pub body_idle_timeout: Duration,
    /// Ceiling on requests per second to one registry host, across all scans.
    pub requests_per_second: Option<f64>,
    /// Floor under every Registry's scan interval (`--min-scan-interval`; zero: none).
    pub min_scan_interval: Duration,
    /// Objects of one scan key share scans (`--share-scans`).
    pub share_scans: bool,
}

/// insecureSkipVerify and the CA bundle: what sets a pooled client apart.
type ClientKey = (bool, Option<Vec<u8>>);

pub struct Context {
    pub client: kube::Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    pub admission: Admission,
    /// resourceVersions of the Secrets that Registries name, from the metadata watch.
    pub secrets: SecretVersions,
    /// Which shards of the Registry objects this replica works on.
    pub shards: Arc<Ownership>,
    pub backoff: Backoff,
    /// Auth modes, tokens and per-host rate-limit gates, shared by every client and kept
    /// across scans (bounded inside): a rescan sends its cached token up front.
    registry_state: Arc<RegistryState>,
    memory: Mutex<HashMap<String, Memory>>,
    /// Each object's last good scan, bounded in bytes with a share per namespace.
    snapshots: Snapshots,
    clients: BoundedCache<ClientKey, RegistryClient>,
    /// Scans shared by the objects of one scan key, and which objects use which key.
    pub shared: Arc<SharedScans>,
    /// Webhook refreshes of the same tags shared the same way (only while they run).
    pub shared_refreshes: Arc<SharedScans<RefreshReport>>,
    pub scan_keys: ScanKeys,
}

/// Finished shared results kept for objects that become due a little later, and one
/// namespace's part. Small: the objects of a key fall into step and mostly join a running
/// scan; a result evicted early only costs a straggler its own scan.
const SHARED_BYTES: usize = 16 << 20;
const SHARED_SHARE: usize = 4 << 20;

/// Pooled clients, and one namespace's part. A client is charged its CA bundle and this much
/// for its connection pool and TLS configuration (an estimate: idle connections come and go).
const CLIENTS_BYTES: usize = 64 << 20;
const CLIENTS_SHARE: usize = 8 << 20;
const CLIENT_COST: usize = 256 << 10;

impl Context {
    pub fn new(
        client: kube::Client,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        settings: Settings,
        shards: Arc<Ownership>,
    ) -> Self {
        Self {
            client,
            recorder,
            metrics,
            admission: Admission::new(
                settings.max_concurrent_scans,
                settings.max_scans_per_namespace,
            ),
            registry_state: Arc::new(RegistryState::new(settings.requests_per_second)),
            secrets: SecretVersions::default(),
            shards,
            backoff: Backoff::default(),
            memory: Mutex::default(),
            snapshots: Snapshots::default(),
            clients: BoundedCache::new(CLIENTS_BYTES, CLIENTS_SHARE),
            shared: Arc::new(SharedScans::new(SHARED_BYTES, SHARED_SHARE)),
            shared_refreshes: Arc::new(SharedScans::new(0, 0)),
            scan_keys: ScanKeys::default(),
            settings,
        }
    }

    /// One pooled client per TLS setting: connections are shared, trust is not mixed. A new one
    /// is charged to `namespace`'s share of the pool.
    pub fn registry_client(
        &self,
        namespace: &str,
        insecure: bool,
        ca: Option<Vec<u8>>,
    ) -> Result<RegistryClient, ScanError> {
        let key = (insecure, ca.clone());
        if let Some(c) = self.clients.get(&key) {
            return Ok(c);
        }
        let bytes = CLIENT_COST.saturating_add(ca.as_ref().map_or(0, Vec::len));
        let client = RegistryClient::new(ClientOptions {
            insecure_skip_verify: insecure,
            ca_pem: ca,
            egress: Some(self.settings.egress.clone()),
            proxy: self.settings.proxy.clone(),
            body_budget: Some(self.settings.body_budget.clone()),
            body_idle_timeout: self.settings.body_idle_timeout,
            ..ClientOptions::default()
        })?
        .with_state(self.registry_state.clone())
        .with_observer(Arc::new(RequestCounter(self.metrics.clone())));
        // Not kept when over the share (a CA bundle of megabytes): the scan still runs.
        self.clients.put(namespace, key, client.clone(), bytes);
        Ok(client)
    }

    /// How scans (and webhook refreshes) of an object with this spec run in `namespace` (the
    /// tenant whose share of shared resources they use); what is known from earlier scans is
    /// the caller's to add.
    pub fn scan_options(
        &self,
        namespace: &str,
        spec: &RegistrySpec,
    ) -> Result<ScanOptions, ScanError> {
        let filter = spec.tag_filter.clone().unwrap_or_default();
        Ok(ScanOptions {
            tenant: namespace.to_string(),
            concurrency: spec
                .concurrency
                .map_or(self.settings.scan_concurrency, |c| c.max(1) as usize),
            timeout: self.settings.scan_timeout,
            filter: TagFilter::new(filter.include.as_deref(), filter.exclude.as_deref())?,
            limits: self.settings.limits,
            listing: spec.listing.unwrap_or_default().mode(),
            created_from_config: spec.timestamps == Some(crate::api::Timestamps::Created),
            referrers_interval: Some(std::time::Duration::from_secs(
                spec.referrers_interval
                    .map_or(crate::api::DEFAULT_REFERRERS_INTERVAL, |s| s.max(60))
                    .unsigned_abs(),
            )),
            ..ScanOptions::default()
        })
    }

    /// Runs `f` on what is remembered about `key` (a fresh record if the UID changed).
    pub fn with_memory<T>(&self, key: &str, uid: &str, f: impl FnOnce(&mut Memory) -> T) -> T {
        let mut memory = self.memory.lock();
        let m = memory
            .entry(key.to_string())
            .or_insert_with(|| Memory::new(uid));
        if m.uid != uid {
            *m = Memory::new(uid);
        }
        f(m)
    }

    /// A copy of what is remembered about `key`, if it is about the object with this UID.
    pub fn recall<T>(&self, key: &str, uid: &str, f: impl FnOnce(&Memory) -> T) -> Option<T> {
        let memory = self.memory.lock();
        memory.get(key).filter(|m| m.uid == uid).map(f)
    }

    pub fn forget(&self, key: &str) {
        self.memory.lock().remove(key);
        self.snapshots.forget(key);
        self.forget_scan_key(key);
    }

    /// `key` no longer scans here: a shared result only it used goes too.
    fn forget_scan_key(&self, key: &str) {
        if let Some(unused) = self.scan_keys.forget(key) {
            self.shared.forget(&unused);
        }
    }

    /// The last good scan of the object `key` with this UID, if still kept.
    pub fn last_scan(&self, key: &str, uid: &str) -> Option<Arc<Snapshot>> {
        self.snapshots.get(key, uid)
    }

    /// Keeps `snapshot` as the last good scan of `key`, charged to its namespace.
    pub fn keep_last_scan(&self, key: &str, uid: &str, snapshot: Snapshot) {
        self.snapshots.keep(key, uid, snapshot);
    }

    /// Bytes held by the controller's caches and the scan core's.
    pub fn cache_bytes(&self) -> Vec<(&'static str, usize)> {
        let mut all = vec![
            ("snapshots", self.snapshots.bytes()),
            ("clients", self.clients.bytes()),
            ("shared_scans", self.shared.bytes()),
        ];
        all.extend(self.registry_state.cache_bytes());
        all
    }

    /// Forgets objects for which `keep` says no; returns their keys.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let mut memory = self.memory.lock();
        let gone: Vec<String> = memory.keys().filter(|k| !keep(k)).cloned().collect();
        for k in &gone {
            memory.remove(k);
            self.snapshots.forget(k);
            self.backoff.reset(k);
            self.forget_scan_key(k);
        }
        gone
    }
}
