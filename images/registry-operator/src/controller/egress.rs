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
        let listed = |l: &[String]| -> Vec<String> {
            l.iter()
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect()
        };
        let mut allow = listed(&self.allow);
        allow.extend(proxy.map(ProxySettings::host_names).unwrap_or_default());
        let (deny, cluster_networks) = (listed(&self.deny), listed(&self.cluster_networks));
        let policy = EgressPolicy::new(&allow, &deny)
            .map_err(anyhow::Error::msg)
            .context("--egress-allow / --egress-deny")?
            .close_by_default(&cluster_networks)
            .map_err(anyhow::Error::msg)
            .context("--egress-cluster-networks")?;
        tracing::info!(
            allow = ?allow,
            deny = ?deny,
            cluster_networks = ?cluster_networks,
            "egress policy: loopback, link-local, cloud metadata and cluster networks closed unless allowed"
        );
        Ok(Arc::new(policy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_hosts_stay_reachable_and_cluster_networks_are_closed() {
        let args = EgressArgs {
            allow: vec![],
            deny: vec![],
            cluster_networks: vec!["10.111.0.0/16".into(), "10.222.0.0/16".into()],
        };
        let proxy = ProxySettings::new(Some("http://proxy.d8-system.svc:3128"), None, &[]).unwrap();
        let policy = args.policy(proxy.as_ref()).unwrap();
        let pod: std::net::SocketAddr = "10.111.0.5:3128".parse().unwrap();
        assert_eq!(
            policy.filter("proxy.d8-system.svc", [pod]).unwrap(),
            vec![pod]
        );
        assert!(policy.filter("tenant.example", [pod]).is_err());
        assert!(!policy.permits("10.222.1.1".parse().unwrap()));
        let without = args.policy(None).unwrap();
        assert!(without.filter("proxy.d8-system.svc", [pod]).is_err());
    }
}
