//! Leader election over shards, one coordination.k8s.io Lease per shard, after client-go's
//! leaderelection:
//!
//! - A holder renews each of its Leases every retry period. A shard is **lost when no renewal
//!   succeeded within the renew deadline**, whatever the reason (apiserver slow, unreachable,
//!   a conflict): a watchdog checks that on its own timer, and losing a shard cancels every scan
//!   and status write of its objects at once.
//! - Another replica takes a Lease only after it has seen the same Lease record, unchanged, for a
//!   whole lease duration, measured on its own clock (no clock comparison between machines).
//!   renew deadline < lease duration, so the old holder has stopped before anyone takes over.
//! - Every write carries the resourceVersion read, so two replicas never both win a Lease.
//!
//! Sharing: each replica also holds a membership Lease (when there is more than one shard);
//! with `m` live members a replica holds at most `ceil(shards / m)` shards, takes free or
//! expired shards up to that, and hands back (cancel first, then release) what is above it.
//! A replica that dies stops renewing; its Leases expire and the others take its shards.
//!
//! A replica never takes a shard while an unexpired Lease of a different shard count is held
//! (a rolling update that changes the count): old and new replicas never work side by side.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, ResourceExt};
use rand::Rng;
use tokio::sync::{mpsc, watch};

use super::metrics::Metrics;
use super::shards::Ownership;

/// Label on every Lease of this scheme; the value is the name prefix.
const SET_LABEL: &str = "registry-operator.deckhouse.io/lease-set";
/// Label on shard Leases: how many shards the holder splits the objects into.
const SHARDS_LABEL: &str = "registry-operator.deckhouse.io/shards";
/// Label on membership Leases.
const MEMBER_LABEL: &str = "registry-operator.deckhouse.io/member";
/// Membership Leases not renewed for this long belong to replicas that are gone for good.
const STALE_MEMBER: Duration = Duration::from_secs(600);
/// Between cancelling a shard's work and releasing its Lease: time for the cancelled
/// reconciles to unwind before anyone else can start.
const UNWIND: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct Config {
    pub namespace: String,
    /// Lease names: `<prefix>` with one shard, `<prefix>-<i>-of-<n>` with more.
    pub prefix: String,
    pub identity: String,
    pub shards: u32,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Config {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.retry_period < self.renew_deadline && self.renew_deadline < self.lease_duration,
            "leader election needs retry period < renew deadline < lease duration (got {:?}, {:?}, {:?})",
            self.retry_period,
            self.renew_deadline,
            self.lease_duration
        );
        Ok(())
    }

    fn shard_lease(&self, shard: u32) -> String {
        if self.shards == 1 {
            self.prefix.clone()
        } else {
            format!("{}-{shard}-of-{}", self.prefix, self.shards)
        }
    }

    fn member_lease(&self) -> String {
        let id: String = self
            .identity
            .to_ascii_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let name = format!("{}-member-{}", self.prefix, id.trim_matches('-'));
        name.chars().take(253).collect()
    }

    /// Each API call gives up in time for the watchdog to matter.
    fn request_timeout(&self) -> Duration {
        self.renew_deadline / 2
    }
}

/// Shards gained (reconcile their objects now) and lost (forget what was remembered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Acquired(u32),
    Lost(u32),
}

pub struct Elector {
    cfg: Config,
    api: Api<Lease>,
    ownership: Arc<Ownership>,
    metrics: Arc<Metrics>,
    changes: mpsc::UnboundedSender<Change>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Per Lease name: the resourceVersion last seen and when it was first seen.
    observed: HashMap<String, (String, Instant)>,
    /// Per held shard: our Lease as last written, and when that write was sent.
    held: HashMap<u32, (Lease, Instant)>,
    /// Rounds of the campaign so far.
    ticks: u64,
}

impl Elector {
    pub fn new(
        client: kube::Client,
        cfg: Config,
        ownership: Arc<Ownership>,
        metrics: Arc<Metrics>,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Change>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let api = Api::namespaced(client, &cfg.namespace);
        let elector = Arc::new(Self {
            cfg,
            api,
            ownership,
            metrics,
            changes: tx,
            state: Mutex::default(),
        });
        (elector, rx)
    }

    /// Campaigns until `shutdown`, then cancels all work and hands every Lease back.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(
            namespace = %self.cfg.namespace,
            lease = %self.cfg.prefix,
            identity = %self.cfg.identity,
            shards = self.cfg.shards,
            "campaigning for shard leases"
        );
        let watchdog = tokio::spawn(self.clone().watchdog());
        loop {
            self.tick().await;
            let pause = self
                .cfg
                .retry_period
                .mul_f64(rand::rng().random_range(0.8..=1.0));
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
        watchdog.abort();
        self.release_all().await;
    }

    /// Drops any shard whose last successful renewal is older than the renew deadline.
    async fn watchdog(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let expired: Vec<u32> = {
                let state = self.state.lock();
                state
                    .held
                    .iter()
                    .filter(|(_, (_, renewed))| renewed.elapsed() > self.cfg.renew_deadline)
                    .map(|(s, _)| *s)
                    .collect()
            };
            for shard in expired {
                tracing::error!(
                    shard,
                    deadline_s = self.cfg.renew_deadline.as_secs_f64(),
                    "no successful lease renewal within the renew deadline: stepping down"
                );
                self.lose(shard);
            }
        }
    }

    fn lose(&self, shard: u32) {
        // Cancel first: the work must stop before anyone else can take the shard.
        self.ownership.set(shard, false);
        let was_held = self.state.lock().held.remove(&shard).is_some();
        if was_held {
            let _ = self.changes.send(Change::Lost(shard));
        }
        self.publish_gauges();
    }

    fn gain(&self, shard: u32, lease: Lease, sent: Instant) {
        self.state.lock().held.insert(shard, (lease, sent));
        self.ownership.set(shard, true);
        let _ = self.changes.send(Change::Acquired(shard));
        tracing::info!(shard, identity = %self.cfg.identity, "acquired the leader lease");
        self.publish_gauges();
    }

    fn publish_gauges(&self) {
        let held = self.ownership.held_count() as i64;
        self.metrics.shards_held.set(held);
        self.metrics.leader.set(i64::from(held > 0));
    }

    /// Replaces a Lease that was read (its resourceVersion guards the write), else creates it.
    async fn put(&self, name: &str, lease: &Lease, exists: bool) -> Result<Lease, kube::Error> {
        if exists {
            self.call(self.api.replace(name, &PostParams::default(), lease))
                .await
        } else {
            self.call(self.api.create(&PostParams::default(), lease))
                .await
        }
    }

    async fn call<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, kube::Error> {
        match tokio::time::timeout(self.cfg.request_timeout(), f).await {
            Ok(r) => r,
            Err(_) => Err(kube::Error::Service(
                format!(
                    "lease request timed out after {:?}",
                    self.cfg.request_timeout()
                )
                .into(),
            )),
        }
    }

    async fn tick(&self) {
        self.renew_held().await;
        if self.cfg.shards > 1 {
            self.renew_membership().await;
        }
        let leases = match self
            .call(self.api.list(&ListParams::default().labels(SET_LABEL)))
            .await
        {
            Ok(list) => list.items,
            Err(e) => {
                tracing::warn!(error = %e, "listing leases failed");
                return;
            }
        };
        // A Lease written by an older version carries no labels: look at it by name too.
        let legacy = if leases.iter().any(|l| l.name_any() == self.cfg.prefix) {
            None
        } else {
            self.call(self.api.get_opt(&self.cfg.prefix))
                .await
                .ok()
                .flatten()
        };
        let leases: Vec<Lease> = leases.into_iter().chain(legacy).collect();
        let now = Instant::now();
        self.observe(&leases, now);
        let by_name: HashMap<String, &Lease> = leases.iter().map(|l| (l.name_any(), l)).collect();

        if self.other_shard_count_active(&leases, now) {
            tracing::info!("leases of a different shard count are held: waiting for them to go");
            return;
        }
        // Replicas started together register first and take shards from the next round on,
        // when they see one another: otherwise the first one up takes every shard and has to
        // hand most back, and their objects are scanned twice.
        let first_round = {
            let mut state = self.state.lock();
            state.ticks += 1;
            state.ticks == 1
        };
        if self.cfg.shards > 1 && first_round {
            return;
        }
        let members = self.live_members(&leases, now).max(1);
        let cap = self.cfg.shards.div_ceil(members) as usize;
        let held: Vec<u32> = {
            let state = self.state.lock();
            let mut h: Vec<u32> = state.held.keys().copied().collect();
            h.sort_unstable();
            h
        };
        if held.len() > cap {
            for shard in held.iter().rev().take(held.len() - cap) {
                self.hand_back(*shard).await;
            }
            return;
        }
        let mut room = cap - held.len();
        // Start at a per-replica offset so that replicas do not all race for shard 0.
        let offset = super::shards::shard_of("", &self.cfg.identity, self.cfg.shards);
        for i in 0..self.cfg.shards {
            if room == 0 {
                break;
            }
            let shard = (offset + i) % self.cfg.shards;
            if held.contains(&shard) {
                continue;
            }
            let name = self.cfg.shard_lease(shard);
            let existing = by_name.get(&name).copied();
            if existing.is_some_and(|l| !self.takeable(l, now)) {
                continue;
            }
            if self.acquire(shard, existing).await {
                room -= 1;
            }
        }
    }

    fn observe(&self, leases: &[Lease], now: Instant) {
        let mut state = self.state.lock();
        state
            .observed
            .retain(|name, _| leases.iter().any(|l| &l.name_any() == name));
        for l in leases {
            let rv = l.resource_version().unwrap_or_default();
            let entry = state
                .observed
                .entry(l.name_any())
                .or_insert_with(|| (rv.clone(), now));
            if entry.0 != rv {
                *entry = (rv, now);
            }
        }
    }

    /// Held by nobody, by us, or by someone whose record has not changed for a lease duration.
    fn takeable(&self, lease: &Lease, now: Instant) -> bool {
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.unwrap_or_default();
        if holder.is_empty() || holder == self.cfg.identity {
            return true;
        }
        self.expired(lease, now)
    }

    fn expired(&self, lease: &Lease, now: Instant) -> bool {
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.unwrap_or_default().is_empty() {
            return true;
        }
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
        let state = self.state.lock();
        state
            .observed
            .get(&lease.name_any())
            .is_none_or(|(_, seen)| now.duration_since(*seen) >= duration)
    }

    /// Held Leases of another shard count: from before a change of the count (the single
    /// `<prefix>` Lease, labelled or not, counts as one shard).
    fn other_shard_count_active(&self, leases: &[Lease], now: Instant) -> bool {
        let ours = self.cfg.shards.to_string();
        leases.iter().any(|l| {
            let count = match l.labels().get(SHARDS_LABEL) {
                Some(n) => n.clone(),
                None if l.name_any() == self.cfg.prefix => "1".to_string(),
                None => return false,
            };
            count != ours && !self.expired(l, now)
        })
    }

    fn live_members(&self, leases: &[Lease], now: Instant) -> u32 {
        if self.cfg.shards == 1 {
            return 1;
        }
        let own = self.cfg.member_lease();
        let others = leases
            .iter()
            .filter(|l| l.labels().contains_key(MEMBER_LABEL) && l.name_any() != own)
            .filter(|l| !self.expired(l, now))
            .count() as u32;
        others + 1
    }

    fn lease_object(
        &self,
        name: String,
        labels: [(&str, String); 2],
        old: Option<&Lease>,
    ) -> Lease {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let old_spec = old.and_then(|l| l.spec.clone()).unwrap_or_default();
        let ours = old_spec.holder_identity.as_deref() == Some(self.cfg.identity.as_str());
        let mut meta = old
            .map(|l| l.metadata.clone())
            .unwrap_or_else(|| ObjectMeta {
                name: Some(name),
                namespace: Some(self.cfg.namespace.clone()),
                ..ObjectMeta::default()
            });
        meta.managed_fields = None;
        let l = meta.labels.get_or_insert_with(Default::default);
        for (k, v) in labels {
            l.insert(k.to_string(), v);
        }
        Lease {
            metadata: meta,
            spec: Some(LeaseSpec {
                holder_identity: Some(self.cfg.identity.clone()),
                lease_duration_seconds: Some(self.cfg.lease_duration.as_secs().max(1) as i32),
                acquire_time: if ours {
                    old_spec.acquire_time.clone()
                } else {
                    Some(now.clone())
                },
                renew_time: Some(now),
                lease_transitions: Some(
                    old_spec.lease_transitions.unwrap_or(0) + i32::from(!ours && old.is_some()),
                ),
                ..LeaseSpec::default()
            }),
        }
    }

    fn shard_labels(&self) -> [(&'static str, String); 2] {
        [
            (SET_LABEL, self.cfg.prefix.clone()),
            (SHARDS_LABEL, self.cfg.shards.to_string()),
        ]
    }

    /// Create or update with the resourceVersion read: only one replica can win.
    async fn acquire(&self, shard: u32, existing: Option<&Lease>) -> bool {
        let name = self.cfg.shard_lease(shard);
        let lease = self.lease_object(name.clone(), self.shard_labels(), existing);
        let sent = Instant::now();
        let result = self.put(&name, &lease, existing.is_some()).await;
        match result {
            Ok(written) => {
                self.gain(shard, written, sent);
                true
            }
            Err(kube::Error::Api(e)) if e.code == 409 => false, // someone was faster
            Err(e) => {
                tracing::warn!(shard, error = %e, "acquiring a shard lease failed");
                false
            }
        }
    }

    /// A snapshot of the Leases this replica holds, so no lock is kept across awaits.
    fn held_leases(&self) -> Vec<(u32, Lease)> {
        let state = self.state.lock();
        state
            .held
            .iter()
            .map(|(s, (l, _))| (*s, l.clone()))
            .collect()
    }

    async fn renew_held(&self) {
        let held = self.held_leases();
        for (shard, lease) in held {
            let renewed = self.lease_object(lease.name_any(), self.shard_labels(), Some(&lease));
            let sent = Instant::now();
            match self
                .call(
                    self.api
                        .replace(&lease.name_any(), &PostParams::default(), &renewed),
                )
                .await
            {
                Ok(written) => {
                    let mut state = self.state.lock();
                    // Only if the watchdog has not dropped it meanwhile.
                    if let Some(entry) = state.held.get_mut(&shard) {
                        *entry = (written, sent);
                    }
                }
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
                    tracing::error!(
                        shard,
                        "the shard lease was changed by someone else: stepping down"
                    );
                    self.lose(shard);
                }
                Err(e) => tracing::warn!(shard, error = %e, "renewing a shard lease failed"),
            }
        }
    }

    async fn renew_membership(&self) {
        let name = self.cfg.member_lease();
        let labels = [
            (SET_LABEL, self.cfg.prefix.clone()),
            (MEMBER_LABEL, "true".to_string()),
        ];
        let existing = match self.call(self.api.get_opt(&name)).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "reading the membership lease failed");
                return;
            }
        };
        let lease = self.lease_object(name.clone(), labels, existing.as_ref());
        let result = self.put(&name, &lease, existing.is_some()).await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "renewing the membership lease failed");
        }
        self.sweep_stale_members().await;
    }

    /// Membership Leases of replicas gone long ago (Pods get new names on every restart).
    async fn sweep_stale_members(&self) {
        if rand::rng().random_range(0..30) != 0 {
            return; // now and then is enough
        }
        let Ok(list) = self
            .call(self.api.list(&ListParams::default().labels(MEMBER_LABEL)))
            .await
        else {
            return;
        };
        let now = k8s_openapi::jiff::Timestamp::now();
        for l in list.items {
            let renewed = l.spec.as_ref().and_then(|s| s.renew_time.clone());
            let stale = renewed.is_some_and(|MicroTime(t)| {
                Duration::try_from(now.duration_since(t)).is_ok_and(|d| d > STALE_MEMBER)
            });
            if stale {
                let _ = self
                    .call(self.api.delete(&l.name_any(), &DeleteParams::default()))
                    .await;
            }
        }
    }

    /// Gives a shard to another replica: cancel its work, then release its Lease.
    async fn hand_back(&self, shard: u32) {
        let lease = {
            let state = self.state.lock();
            state.held.get(&shard).map(|(l, _)| l.clone())
        };
        tracing::info!(shard, "handing a shard back to balance the replicas");
        self.lose(shard);
        if let Some(lease) = lease {
            tokio::time::sleep(UNWIND).await;
            self.release(lease).await;
        }
    }

    async fn release(&self, mut lease: Lease) {
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
        }
        lease.metadata.managed_fields = None;
        let name = lease.name_any();
        if let Err(e) = self
            .call(self.api.replace(&name, &PostParams::default(), &lease))
            .await
        {
            tracing::warn!(lease = %name, error = %e, "releasing a lease failed");
        }
    }

    /// Shutting down: stop all work, then hand every Lease back so others take over at once.
    async fn release_all(&self) {
        let held = self.held_leases();
        for (shard, _) in &held {
            self.lose(*shard);
        }
        if !held.is_empty() {
            tokio::time::sleep(UNWIND).await;
        }
        for (_, lease) in held {
            self.release(lease).await;
        }
        if self.cfg.shards > 1 {
            let _ = self
                .call(
                    self.api
                        .delete(&self.cfg.member_lease(), &DeleteParams::default()),
                )
                .await;
        }
        tracing::info!("released the shard leases");
    }
}
