//! What every reconcile shares: the API client, settings, scan admission, the registry client
//! pool, and what is remembered about each Registry between scans.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::events::Recorder;

use super::admission::Admission;
use super::backoff::Backoff;
use super::memory::Memory;
use super::metrics::{Metrics, RequestCounter};
use super::secrets::SecretVersions;
use super::shards::Ownership;
use crate::api::RegistrySpec;
use crate::registry::{
    BodyBudget, ClientOptions, EgressPolicy, ProxySettings, RegistryClient, RegistryState,
    ScanError, ScanLimits, ScanOptions, TagFilter,
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
    clients: Mutex<HashMap<ClientKey, RegistryClient>>,
}

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
            clients: Mutex::default(),
            settings,
        }
    }

    /// One pooled client per TLS setting: connections are shared, trust is not mixed.
    pub fn registry_client(
        &self,
        insecure: bool,
        ca: Option<Vec<u8>>,
    ) -> Result<RegistryClient, ScanError> {
        let mut clients = self.clients.lock().expect("client pool poisoned");
        let key = (insecure, ca.clone());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        if clients.len() >= 256 {
            clients.clear();
        }
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
        clients.insert(key, client.clone());
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
            ..ScanOptions::default()
        })
    }

    /// Runs `f` on what is remembered about `key` (a fresh record if the UID changed).
    pub fn with_memory<T>(&self, key: &str, uid: &str, f: impl FnOnce(&mut Memory) -> T) -> T {
        let mut memory = self.memory.lock().expect("memory poisoned");
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
        let memory = self.memory.lock().expect("memory poisoned");
        memory.get(key).filter(|m| m.uid == uid).map(f)
    }

    pub fn forget(&self, key: &str) {
        self.memory.lock().expect("memory poisoned").remove(key);
    }

    /// Forgets objects for which `keep` says no; returns their keys.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let mut memory = self.memory.lock().expect("memory poisoned");
        let gone: Vec<String> = memory.keys().filter(|k| !keep(k)).cloned().collect();
        for k in &gone {
            memory.remove(k);
            self.backoff.reset(k);
        }
        gone
    }
}
