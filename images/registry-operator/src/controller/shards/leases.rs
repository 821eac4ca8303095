//! The Leases of the election: their names and labels, the guarded writes, and when a record
//! counts as expired: seen unchanged for a whole lease duration on this replica's own clock
//! (no clock comparison between machines).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, ResourceExt};
use parking_lot::Mutex;

/// Label on every Lease of this scheme; the value is the name prefix.
pub(super) const SET_LABEL: &str = "registry-operator.deckhouse.io/lease-set";
/// Label on shard Leases: how many shards the holder splits the objects into, and by what
/// (see [`Config::split`]).
const SHARDS_LABEL: &str = "registry-operator.deckhouse.io/shards";
/// How objects are split into more than one shard since issue #19: by registry and repository.
/// Releases before it split by namespace/name and wrote the bare count, so the two never
/// work side by side (each waits for the other's Leases to go, as for a new count).
const BY_REPOSITORY: &str = "by-repository";
/// Label on membership Leases.
pub(super) const MEMBER_LABEL: &str = "registry-operator.deckhouse.io/member";

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

    pub fn shard_lease(&self, shard: u32) -> String {
        if self.shards == 1 {
            self.prefix.clone()
        } else {
            format!("{}-{shard}-of-{}", self.prefix, self.shards)
        }
    }

    pub fn member_lease(&self) -> String {
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

    /// How this replica splits the objects: the shard count, and with more than one shard what
    /// they are split by (one shard holds everything however it is computed).
    pub fn split(&self) -> String {
        if self.shards == 1 {
            "1".to_string()
        } else {
            format!("{}-{BY_REPOSITORY}", self.shards)
        }
    }

    /// A shard Lease of another split than this replica's.
    pub fn foreign(&self, lease: &Lease) -> bool {
        let split = match lease.labels().get(SHARDS_LABEL) {
            Some(n) => n.clone(),
            None if lease.name_any() == self.prefix => "1".to_string(),
            None => return false,
        };
        split != self.split()
    }

    /// Each API call gives up in time for the watchdog to matter.
    pub fn request_timeout(&self) -> Duration {
        self.renew_deadline / 2
    }
}

/// The Lease API of one replica: every call bounded in time, every write guarded by the
/// resourceVersion read.
pub(super) struct Leases {
    pub cfg: Config,
    pub api: Api<Lease>,
    /// Per Lease name: the resourceVersion last seen and when it was first seen.
    sightings: Mutex<HashMap<String, (String, Instant)>>,
}

impl Leases {
    pub fn new(client: kube::Client, cfg: Config) -> Self {
        let api = Api::namespaced(client, &cfg.namespace);
        Self {
            cfg,
            api,
            sightings: Mutex::default(),
        }
    }

    /// Replaces a Lease that was read (its resourceVersion guards the write), else creates it.
    pub async fn put(&self, name: &str, lease: &Lease, exists: bool) -> Result<Lease, kube::Error> {
        if exists {
            self.call(self.api.replace(name, &PostParams::default(), lease))
                .await
        } else {
            self.call(self.api.create(&PostParams::default(), lease))
                .await
        }
    }

    pub async fn call<T>(
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

    pub fn observe(&self, leases: &[Lease], now: Instant) {
        let mut seen = self.sightings.lock();
        seen.retain(|name, _| leases.iter().any(|l| &l.name_any() == name));
        for l in leases {
            let rv = l.resource_version().unwrap_or_default();
            let entry = seen
                .entry(l.name_any())
                .or_insert_with(|| (rv.clone(), now));
            if entry.0 != rv {
                *entry = (rv, now);
            }
        }
    }

    /// Held by nobody, by us, or by someone whose record has not changed for a lease duration.
    pub fn takeable(&self, lease: &Lease, now: Instant) -> bool {
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.unwrap_or_default();
        if holder.is_empty() || holder == self.cfg.identity {
            return true;
        }
        self.expired(lease, now)
    }

    pub fn expired(&self, lease: &Lease, now: Instant) -> bool {
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.unwrap_or_default().is_empty() {
            return true;
        }
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
        self.sightings
            .lock()
            .get(&lease.name_any())
            .is_none_or(|(_, seen)| now.duration_since(*seen) >= duration)
    }

    /// Held Leases of another split: from before a change of the shard count or of how the
    /// objects are split (the single `<prefix>` Lease, labelled or not, counts as one shard).
    pub fn other_shard_count_active(&self, leases: &[Lease], now: Instant) -> bool {
        leases
            .iter()
            .any(|l| self.cfg.foreign(l) && !self.expired(l, now))
    }

    pub fn lease_object(
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

    pub fn shard_labels(&self) -> [(&'static str, String); 2] {
        [
            (SET_LABEL, self.cfg.prefix.clone()),
            (SHARDS_LABEL, self.cfg.split()),
        ]
    }

    pub async fn release(&self, mut lease: Lease) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(shards: u32) -> Config {
        Config {
            namespace: "ns".into(),
            prefix: "registry-operator".into(),
            identity: "me".into(),
            shards,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    fn lease(name: &str, split: Option<&str>) -> Lease {
        let mut l = Lease::default();
        l.metadata.name = Some(name.into());
        if let Some(s) = split {
            l.metadata.labels = Some([(SHARDS_LABEL.to_string(), s.to_string())].into());
        }
        l
    }

    #[test]
    fn leases_of_another_count_or_of_the_old_split_are_foreign() {
        let three = cfg(3);
        assert_eq!(three.split(), "3-by-repository");
        assert!(!three.foreign(&lease("registry-operator-0-of-3", Some("3-by-repository"))));
        // A release that split by namespace/name, same count and same Lease names.
        assert!(three.foreign(&lease("registry-operator-0-of-3", Some("3"))));
        assert!(three.foreign(&lease("registry-operator-0-of-2", Some("2-by-repository"))));
        assert!(three.foreign(&lease("registry-operator", None)));
        assert!(!three.foreign(&lease("registry-operator-member-x", None)));
        // One shard: every release agrees on what it holds.
        let one = cfg(1);
        assert!(!one.foreign(&lease("registry-operator", None)));
        assert!(!one.foreign(&lease("registry-operator", Some("1"))));
        assert!(one.foreign(&lease("registry-operator-0-of-3", Some("3"))));
    }
}
