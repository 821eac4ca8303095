//! The flags of `registry-operator run`, and the settings that follow from them.

use std::net::SocketAddr;
use std::time::Duration;

use super::{admission, context, egress, limits, shards, webhook};
use crate::registry::{EgressPolicy, ProxySettings};

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Where /metrics is served (Prometheus text format).
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:8080")]
    pub metrics_addr: SocketAddr,
    /// Where /healthz and /readyz are served.
    #[arg(long, env = "HEALTH_ADDR", default_value = "0.0.0.0:8081")]
    pub health_addr: SocketAddr,
    /// Registries scanned at the same time.
    #[arg(long, env = "MAX_CONCURRENT_SCANS", default_value_t = 16)]
    pub max_concurrent_scans: u16,
    /// Registry requests in flight per scan (a Registry's spec.concurrency overrides it).
    #[arg(long, env = "SCAN_CONCURRENCY", default_value_t = 8)]
    pub scan_concurrency: u16,
    /// Deadline of one scan, in seconds.
    #[arg(long, env = "SCAN_TIMEOUT", default_value_t = 300)]
    pub scan_timeout: u64,
    /// Images kept in a Registry's status unless its spec.maxImages says otherwise.
    #[arg(long, env = "MAX_IMAGES", default_value_t = 1000)]
    pub max_images: usize,
    /// At most this many requests per second to any one registry host, across all scans
    /// (default: no ceiling; a registry's 429 and Retry-After are always honoured).
    #[arg(long, env = "REGISTRY_REQUESTS_PER_SECOND")]
    pub registry_requests_per_second: Option<f64>,
    /// Objects that would have the same conversation with a registry (origin, repository,
    /// credentials, TLS settings, listing mode) share one scan; `false`: every object scans
    /// on its own.
    #[arg(long, env = "SHARE_SCANS", default_value_t = true, action = clap::ArgAction::Set)]
    pub share_scans: bool,
    /// Only watch Registries in this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Work only on the shards whose Lease this replica holds (`--leader-elect=false`: work on
    /// everything, for a single replica that is sure to be alone).
    #[arg(long, env = "LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,
    /// Namespace of the Leases (default: the pod's namespace, else the kubeconfig's).
    #[arg(long, env = "POD_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the Lease (one shard), or the prefix of the shard Leases.
    #[arg(long, default_value = "registry-operator")]
    pub leader_election_lease_name: String,
    /// This replica's identity in the Leases (default: POD_NAME, else host name + pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    #[command(flatten)]
    pub limits: limits::LimitArgs,
    #[command(flatten)]
    pub egress: egress::EgressArgs,
    #[command(flatten)]
    pub proxy: crate::cli::proxy::ProxyArgs,
    #[command(flatten)]
    pub webhook: webhook::WebhookArgs,
    /// Shards the Registry objects are split into (by a stable hash of the registry and
    /// repository each scans); each replica works on, and watches, the shards whose Lease it
    /// holds. Every replica must use the same number.
    #[arg(long, env = "SHARDS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub shards: u32,
    /// Seconds a Lease stays valid without renewal: how soon others take over a dead replica.
    #[arg(long, env = "LEASE_DURATION", default_value_t = 15)]
    pub lease_duration: u64,
    /// Seconds without a successful renewal after which a replica stops all work on a shard
    /// (must be below the lease duration).
    #[arg(long, env = "RENEW_DEADLINE", default_value_t = 10)]
    pub renew_deadline: u64,
    /// Seconds between renewals and between attempts to take a Lease.
    #[arg(long, env = "RETRY_PERIOD", default_value_t = 2)]
    pub retry_period: u64,
}

impl RunArgs {
    pub fn settings(
        &self,
        egress: std::sync::Arc<EgressPolicy>,
        proxy: Option<ProxySettings>,
    ) -> context::Settings {
        context::Settings {
            scan_concurrency: self.scan_concurrency.max(1).into(),
            scan_timeout: Duration::from_secs(self.scan_timeout.max(1)),
            max_images: self.max_images.max(1),
            max_concurrent_scans: self.max_concurrent_scans.max(1).into(),
            max_scans_per_namespace: self.limits.max_scans_per_namespace.unwrap_or_else(|| {
                admission::default_per_namespace(self.max_concurrent_scans.max(1).into())
            }),
            limits: self.limits.scan_limits(),
            body_budget: self.limits.body_budget(),
            body_idle_timeout: self.limits.body_idle_timeout(),
            egress,
            proxy,
            requests_per_second: self
                .registry_requests_per_second
                .filter(|r| r.is_finite() && *r > 0.0),
            min_scan_interval: Duration::from_secs(self.webhook.min_scan_interval.unwrap_or(0)),
            share_scans: self.share_scans,
        }
    }

    pub fn election(&self, default_namespace: &str, identity: String) -> shards::Config {
        shards::Config {
            namespace: self
                .leader_election_namespace
                .clone()
                .unwrap_or_else(|| default_namespace.to_string()),
            prefix: self.leader_election_lease_name.clone(),
            identity,
            shards: self.shards,
            lease_duration: Duration::from_secs(self.lease_duration),
            renew_deadline: Duration::from_secs(self.renew_deadline),
            retry_period: Duration::from_secs(self.retry_period),
        }
    }

    pub fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(default_identity)
    }

    /// One watch per held shard: with more than one shard shared by election, unless the
    /// webhook receiver is on (it matches events against every object, to hand those of other
    /// shards over, so it needs them all in its index).
    pub fn scoped_watches(&self) -> bool {
        self.leader_elect && self.shards > 1 && self.webhook.webhook_addr.is_none()
    }
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "registry-operator".into());
    format!("{host}-{}", std::process::id())
}
