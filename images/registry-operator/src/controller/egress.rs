//! The `--egress-allow` / `--egress-deny` flags: the outbound policy every scan runs under.

use std::sync::Arc;

use anyhow::Context as _;

use crate::registry::{EgressPolicy, ProxySettings};

#[derive(clap::Args, Debug, Clone)]
pub struct EgressArgs {
    /// Open a destination the default policy closes (loopback, link-local, cloud metadata):
    /// a CIDR, an IP address, a host name or `.domain`. Repeatable; the most specific rule wins.
    #[arg(
        long = "egress-allow",
        env = "EGRESS_ALLOW",
        value_delimiter = ',',
        value_name = "CIDR|HOST"
    )]
    pub allow: Vec<String>,
    /// Close a destination for scans, e.g. the cluster's Pod and Service CIDRs. Repeatable.
    #[arg(
        long = "egress-deny",
        env = "EGRESS_DENY",
        value_delimiter = ',',
        value_name = "CIDR|HOST"
    )]
    pub deny: Vec<String>,
    /// The cluster's Pod and Service CIDRs: closed like loopback and link-local, so that an
    /// `--egress-allow` of the same or a narrower range opens them again.
    #[arg(
        long = "egress-cluster-networks",
        env = "EGRESS_CLUSTER_NETWORKS",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    pub cluster_networks: Vec<String>,
}

impl EgressArgs {
    /// The policy; the host names of `proxy` are let through whatever they resolve to, since
    /// every proxied request has to reach them (the policy judges the registries behind).
    pub fn policy(&self, proxy: Option<&ProxySettings>) -> anyhow::Result<Arc<EgressPolicy>> {
        let mut allow = self.allow.clone();
        allow.extend(proxy.map(ProxySettings::host_names).unwrap_or_default());
        let policy = EgressPolicy::new(&allow, &self.deny)
            .map_err(anyhow::Error::msg)
            .context("--egress-allow / --egress-deny")?
            .close_by_default(&self.cluster_networks)
            .map_err(anyhow::Error::msg)
            .context("--egress-cluster-networks")?;
        tracing::info!(
            allow = ?allow,
            deny = ?self.deny,
            cluster_networks = ?self.cluster_networks,
            "egress policy: loopback, link-local, cloud metadata and cluster networks closed unless allowed"
        );
        Ok(Arc::new(policy))
    }
}
