//! The `--egress-allow` / `--egress-deny` flags: the outbound policy every scan runs under.

use std::sync::Arc;

use anyhow::Context as _;

use crate::registry::EgressPolicy;

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
}

impl EgressArgs {
    pub fn policy(&self) -> anyhow::Result<Arc<EgressPolicy>> {
        let policy = EgressPolicy::new(&self.allow, &self.deny)
            .map_err(anyhow::Error::msg)
            .context("--egress-allow / --egress-deny")?;
        tracing::info!(
            allow = ?self.allow,
            deny = ?self.deny,
            "egress policy: loopback, link-local and cloud metadata addresses closed unless allowed"
        );
        Ok(Arc::new(policy))
    }
}
