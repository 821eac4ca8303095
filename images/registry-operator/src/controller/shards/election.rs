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
//! A replica never takes a shard while an unexpired Lease of a different split is held (a
//! rolling update that changes the count, or comes from a release that split by
//! namespace/name): old and new replicas never work side by side.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;
use kube::api::ListParams;
use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::{mpsc, watch};

use super::leases::{Config, Leases, SET_LABEL};
use super::ownership::Ownership;
use super::placement;
use crate::controller::metrics::Metrics;

/// Between cancelling a shard's work and releasing its Lease: time for the cancelled
/// reconciles to unwind before anyone else can start.
const UNWIND: Duration = Duration::from_millis(200);

/// Shards gained (reconcile their objects now) and lost (forget what was remembered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Acquired(u32),
    Lost(u32),
}

pub struct Elector {
    leases: Leases,
    ownership: Arc<Ownership>,
    metrics: Arc<Metrics>,
    changes: mpsc::UnboundedSender<Change>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
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
        let elector = Arc::new(Self {
            leases: Leases::new(client, cfg),
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
            namespace = %self.leases.cfg.namespace,
            lease = %self.leases.cfg.prefix,
            identity = %self.leases.cfg.identity,
            shards = self.leases.cfg.shards,
            "campaigning for shard leases"
        );
        let watchdog = tokio::spawn(self.clone().watchdog());
        loop {
            self.tick().await;
            let pause = self
                .leases
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
                    .filter(|(_, (_, renewed))| renewed.elapsed() > self.leases.cfg.renew_deadline)
                    .map(|(s, _)| *s)
                    .collect()
            };
            for shard in expired {
                tracing::error!(
                    shard,
                    deadline_s = self.leases.cfg.renew_deadline.as_secs_f64(),
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
        tracing::info!(shard, identity = %self.leases.cfg.identity, "acquired the leader lease");
        self.publish_gauges();
    }

    fn publish_gauges(&self) {
        let held = self.ownership.held_count() as i64;
        self.metrics.shards_held.set(held);
        self.metrics.leader.set(i64::from(held > 0));
    }

    async fn tick(&self) {
        self.renew_held().await;
        if self.leases.cfg.shards > 1 {
            self.leases.renew_membership().await;
        }
        let leases = match self
            .leases
            .call(
                self.leases
                    .api
                    .list(&ListParams::default().labels(SET_LABEL)),
            )
            .await
        {
            Ok(list) => list.items,
            Err(e) => {
                tracing::warn!(error = %e, "listing leases failed");
                return;
            }
        };
        // A Lease written by an older version carries no labels: look at it by name too.
        let legacy = if leases
            .iter()
            .any(|l| l.name_any() == self.leases.cfg.prefix)
        {
            None
        } else {
            self.leases
                .call(self.leases.api.get_opt(&self.leases.cfg.prefix))
                .await
                .ok()
                .flatten()
        };
        let leases: Vec<Lease> = leases.into_iter().chain(legacy).collect();
        let now = Instant::now();
        self.leases.observe(&leases, now);
        let by_name: HashMap<String, &Lease> = leases.iter().map(|l| (l.name_any(), l)).collect();

        if self.leases.other_shard_count_active(&leases, now) {
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
        if self.leases.cfg.shards > 1 && first_round {
            return;
        }
        let members = self.leases.live_members(&leases, now).max(1);
        let cap = self.leases.cfg.shards.div_ceil(members) as usize;
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
        let offset = {
            let shards = u64::from(self.leases.cfg.shards.max(1));
            // ok: the remainder is below a u32 count.
            (placement::fnv1a([self.leases.cfg.identity.as_str()]) % shards) as u32
        };
        for i in 0..self.leases.cfg.shards {
            if room == 0 {
                break;
            }
            let shard = (offset + i) % self.leases.cfg.shards;
            if held.contains(&shard) {
                continue;
            }
            let name = self.leases.cfg.shard_lease(shard);
            let existing = by_name.get(&name).copied();
            if existing.is_some_and(|l| !self.leases.takeable(l, now)) {
                continue;
            }
            if self.acquire(shard, existing).await {
                room -= 1;
            }
        }
    }

    /// Create or update with the resourceVersion read: only one replica can win.
    async fn acquire(&self, shard: u32, existing: Option<&Lease>) -> bool {
        let name = self.leases.cfg.shard_lease(shard);
        let lease = self
            .leases
            .lease_object(name.clone(), self.leases.shard_labels(), existing);
        let sent = Instant::now();
        let result = self.leases.put(&name, &lease, existing.is_some()).await;
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
            let renewed = self.leases.lease_object(
                lease.name_any(),
                self.leases.shard_labels(),
                Some(&lease),
            );
            let sent = Instant::now();
            match self
                .leases
                .call(self.leases.api.replace(
                    &lease.name_any(),
                    &kube::api::PostParams::default(),
                    &renewed,
                ))
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
            self.leases.release(lease).await;
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
            self.leases.release(lease).await;
        }
        self.leases.leave().await;
        tracing::info!("released the shard leases");
    }
}
