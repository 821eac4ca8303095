//! Membership: each replica holds a Lease of its own while it runs (with more than one
//! shard), so that the others know how many share the shards.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams};
use rand::Rng;

use super::leases::{Leases, MEMBER_LABEL, SET_LABEL};

/// Membership Leases not renewed for this long belong to replicas that are gone for good.
const STALE_MEMBER: Duration = Duration::from_secs(600);

impl Leases {
    pub fn live_members(&self, leases: &[Lease], now: Instant) -> u32 {
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

    pub async fn renew_membership(&self) {
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

    /// Shutting down: the others need not wait for this replica's membership to expire.
    pub async fn leave(&self) {
        if self.cfg.shards > 1 {
            let _ = self
                .call(
                    self.api
                        .delete(&self.cfg.member_lease(), &DeleteParams::default()),
                )
                .await;
        }
    }
}
