//! Where a scan may connect. Tenants choose `spec.url`, and registries choose redirects, `Link`
//! pages and token realms, so every destination is judged after DNS resolution (a resolver that
//! drops forbidden addresses) and IP-literal hosts, which reqwest never resolves, before the
//! request. By default the operator's own loopback, link-local ranges, the unspecified address
//! and cloud metadata endpoints are closed; CIDR and host rules open or close more, and the most
//! specific matching rule wins.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Closed unless a more specific allow rule opens them.
const DEFAULT_DENY: &[&str] = &[
    "127.0.0.0/8",        // the operator's own loopback
    "::1/128",            //
    "0.0.0.0/8",          // "this host": 0.0.0.0 reaches local listeners
    "::/128",             //
    "169.254.0.0/16",     // link-local, incl. 169.254.169.254 (AWS, GCP, Azure, OpenStack …)
    "fe80::/10",          //
    "fd00:ec2::254/128",  // AWS metadata over IPv6
    "fd00:ec2::23/128",   // AWS EKS Pod Identity Agent over IPv6
    "fd20:ce::254/128",   // GCP metadata over IPv6
    "100.100.100.200/32", // Alibaba Cloud metadata
    "192.0.0.192/32",     // Oracle Cloud (classic) metadata
    "168.63.129.16/32",   // Azure host agent (WireServer)
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Allow,
    Deny,
}

/// Among rules of one prefix length, a setting beats a default, and a deny beats an allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Default,
    Allow,
    Deny,
}

#[derive(Debug, Clone)]
struct CidrRule {
    net: IpNet,
    rank: Rank,
}

/// A host name rule: `registry.example.com` (that name) or `.example.com` / `*.example.com`
/// (every name under it).
#[derive(Debug, Clone)]
struct HostRule {
    name: String,
    subdomains: bool,
    verdict: Verdict,
}

/// The operator's outbound policy. Built once from the settings; shared by every client.
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    cidrs: Vec<CidrRule>,
    hosts: Vec<HostRule>,
}

/// A destination the policy closes. Deliberately says nothing else: no address, no rule, so a
/// tenant learns nothing about the network behind the name.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{host} is not an allowed destination")]
pub struct EgressDenied {
    pub host: String,
}

impl Default for EgressPolicy {
    fn default() -> Self {
        // ok: only the compiled-in defaults, checked by the egress unit tests.
        Self::new(&[], &[]).expect("the default rules parse")
    }
}

impl EgressPolicy {
    /// The default rules plus `allow` and `deny`; each entry is a CIDR, an IP address, a host
    /// name or a `.domain` / `*.domain` suffix.
    pub fn new(allow: &[String], deny: &[String]) -> Result<Self, String> {
        let mut policy = Self {
            cidrs: DEFAULT_DENY
                .iter()
                .map(|c| CidrRule {
                    // ok: DEFAULT_DENY is a constant list, checked by the unit tests.
                    net: c.parse().expect("default CIDRs are valid"),
                    rank: Rank::Default,
                })
                .collect(),
            hosts: Vec::new(),
        };
        for (entries, verdict) in [(allow, Verdict::Allow), (deny, Verdict::Deny)] {
            for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
                policy.add(entry, verdict)?;
            }
        }
        Ok(policy)
    }

    /// Closes `nets` the way the built-in ranges are closed, so that an allow of the same or a
    /// narrower range opens them again: the cluster's Pod and Service networks.
    pub fn close_by_default(mut self, nets: &[String]) -> Result<Self, String> {
        for entry in nets.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let net = match entry.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => entry
                    .parse::<IpAddr>()
                    .map(|ip| IpNet::from(canonical(ip)))
                    .map_err(|_| format!("cluster network {entry:?} is not a CIDR"))?,
            };
            self.cidrs.push(CidrRule {
                net,
                rank: Rank::Default,
            });
        }
        Ok(self)
    }

    fn add(&mut self, entry: &str, verdict: Verdict) -> Result<(), String> {
        let rank = match verdict {
            Verdict::Allow => Rank::Allow,
            Verdict::Deny => Rank::Deny,
        };
        let bare = entry.trim_start_matches('[').trim_end_matches(']');
        if let Ok(net) = bare.parse::<IpNet>() {
            if net.trunc() != net {
                return Err(format!(
                    "egress rule {entry:?} has host bits set (did you mean {}?)",
                    net.trunc()
                ));
            }
            self.cidrs.push(CidrRule { net, rank });
            return Ok(());
        }
        if let Ok(ip) = bare.parse::<IpAddr>() {
            self.cidrs.push(CidrRule {
                net: IpNet::from(canonical(ip)),
                rank,
            });
            return Ok(());
        }
        let (name, subdomains) = match entry.strip_prefix("*.").or_else(|| entry.strip_prefix('.'))
        {
            Some(rest) => (rest, true),
            None => (entry, false),
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !valid || entry.contains('/') {
            return Err(format!(
                "egress rule {entry:?} is neither a CIDR, an IP address nor a host name"
            ));
        }
        self.hosts.push(HostRule {
            name,
            subdomains,
            verdict,
        });
        Ok(())
    }

    /// Whether a connection to `ip` is allowed: the matching rule with the longest prefix
    /// decides; no matching rule means allowed.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        // Behind DNS64/NAT64, 64:ff9b::a9fe:a9fe is 169.254.169.254: judge what it carries too.
        if let IpAddr::V6(v6) = ip
            && let [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] = v6.segments()
            && !self.permits_one(IpAddr::V4(((u32::from(hi) << 16) | u32::from(lo)).into()))
        {
            return false;
        }
        self.permits_one(ip)
    }

    fn permits_one(&self, ip: IpAddr) -> bool {
        self.cidrs
            .iter()
            .filter(|r| r.net.contains(&ip))
            .max_by_key(|r| (r.net.prefix_len(), r.rank))
            .is_none_or(|r| r.rank == Rank::Allow)
    }

    /// The verdict of the most specific host rule matching `host`, if any: an exact name beats
    /// a suffix, a longer suffix a shorter one, a deny an allow.
    fn host_verdict(&self, host: &str) -> Option<Verdict> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts
            .iter()
            .filter(|r| {
                if r.subdomains {
                    host.strip_suffix(&r.name)
                        .is_some_and(|head| head.ends_with('.'))
                } else {
                    host == r.name
                }
            })
            .max_by_key(|r| (!r.subdomains, r.name.len(), r.verdict))
            .map(|r| r.verdict)
    }

    /// Checks what can be checked before a request: IP-literal hosts (reqwest connects to them
    /// without asking the resolver) and host rules. Names are judged again, address by address,
    /// by [`PolicyResolver`].
    pub fn check_url(&self, url: &Url) -> Result<(), EgressDenied> {
        let denied = || EgressDenied {
            host: url.host_str().unwrap_or_default().to_string(),
        };
        match url.host() {
            Some(Host::Ipv4(ip)) if !self.permits(IpAddr::V4(ip)) => Err(denied()),
            Some(Host::Ipv6(ip)) if !self.permits(IpAddr::V6(ip)) => Err(denied()),
            Some(Host::Domain(name)) if self.host_verdict(name) == Some(Verdict::Deny) => {
                Err(denied())
            }
            None => Err(denied()),
            _ => Ok(()),
        }
    }

    /// Keeps the allowed addresses of `name`; none left is a refusal.
    pub fn filter(
        &self,
        name: &str,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, EgressDenied> {
        let verdict = self.host_verdict(name);
        let denied = || EgressDenied {
            host: name.to_string(),
        };
        if verdict == Some(Verdict::Deny) {
            return Err(denied());
        }
        let kept: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| verdict == Some(Verdict::Allow) || self.permits(a.ip()))
            .collect();
        if kept.is_empty() {
            return Err(denied());
        }
        Ok(kept)
    }
}

/// IPv4-mapped IPv6 (`::ffff:127.0.0.1`) is the IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// The system resolver (getaddrinfo, as reqwest's default) followed by the policy's filter, so
/// the connection can only go to an address that passed it (no second lookup to rebind).
#[derive(Debug, Clone)]
pub struct PolicyResolver {
    policy: Arc<EgressPolicy>,
}

impl PolicyResolver {
    pub fn new(policy: Arc<EgressPolicy>) -> Self {
        Self { policy }
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            if policy.host_verdict(&host) == Some(Verdict::Deny) {
                return Err(EgressDenied { host }.into());
            }
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let kept = policy.filter(&host, found)?;
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// The refusal inside a reqwest error, if the policy caused it.
pub(crate) fn denial_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a EgressDenied> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(d) = err.downcast_ref::<EgressDenied>() {
            return Some(d);
        }
        cur = err.source();
    }
    None
}

/// Credentials go only where they were meant to: the same scheme, host and port as `origin`
/// (so neither another host nor an https→http downgrade of the same one).
pub(crate) fn same_origin(origin: &Url, url: &Url) -> bool {
    origin.scheme() == url.scheme()
        && origin.host_str() == url.host_str()
        && origin.port_or_known_default() == url.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn policy(allow: &[&str], deny: &[&str]) -> EgressPolicy {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        EgressPolicy::new(&v(allow), &v(deny)).unwrap()
    }

    #[test]
    fn defaults_close_loopback_link_local_metadata_and_unspecified() {
        let p = EgressPolicy::default();
        for closed in [
            "127.0.0.1",
            "127.5.6.7",
            "::1",
            "0.0.0.0",
            "::",
            "169.254.169.254",
            "169.254.170.2",
            "fe80::1",
            "fd00:ec2::254",
            "fd00:ec2::23",
            "fd20:ce::254",
            "100.100.100.200",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::127.0.0.1",
        ] {
            assert!(!p.permits(ip(closed)), "{closed} should be closed");
        }
        for open in [
            "10.1.2.3",
            "192.168.0.10",
            "8.8.8.8",
            "2001:db8::1",
            "100.100.100.201",
            "64:ff9b::808:808",
        ] {
            assert!(p.permits(ip(open)), "{open} should be open");
        }
    }

    #[test]
    fn most_specific_rule_wins() {
        let p = policy(&["127.0.0.1/32"], &[]);
        assert!(p.permits(ip("127.0.0.1")));
        assert!(
            !p.permits(ip("127.0.0.2")),
            "the rest of loopback stays closed"
        );
        // A wide allow does not reopen a narrower default deny.
        let p = policy(&["0.0.0.0/0"], &[]);
        assert!(!p.permits(ip("169.254.169.254")));
        // A narrow deny inside a wide allow closes just that.
        let p = policy(&["10.0.0.0/8"], &["10.96.0.0/12"]);
        assert!(p.permits(ip("10.1.1.1")));
        assert!(!p.permits(ip("10.96.0.1")));
        // Equal prefixes: a setting beats the default, a deny beats an allow.
        assert!(policy(&["127.0.0.0/8"], &[]).permits(ip("127.0.0.9")));
        assert!(!policy(&["10.0.0.0/8"], &["10.0.0.0/8"]).permits(ip("10.0.0.1")));
        // A bare address is a /32 (or /128).
        assert!(policy(&["::1"], &[]).permits(ip("::1")));
    }

    #[test]
    fn cluster_networks_are_closed_like_the_defaults() {
        let nets = ["10.111.0.0/16".to_string(), "10.222.0.0/16".into()];
        let p = EgressPolicy::default().close_by_default(&nets).unwrap();
        assert!(!p.permits(ip("10.111.3.4")));
        assert!(!p.permits(ip("10.222.0.1")));
        assert!(p.permits(ip("10.1.0.1")));
        // An allow of the same range, or of one address in it, opens it again.
        let p = policy(&["10.111.0.0/16", "10.222.0.10"], &[])
            .close_by_default(&nets)
            .unwrap();
        assert!(p.permits(ip("10.111.3.4")));
        assert!(p.permits(ip("10.222.0.10")));
        assert!(!p.permits(ip("10.222.0.11")));
        assert!(
            EgressPolicy::default()
                .close_by_default(&["not a net".into()])
                .is_err()
        );
    }

    #[test]
    fn rules_are_validated() {
        let bad = |e: &str| EgressPolicy::new(&[e.to_string()], &[]).is_err();
        assert!(bad("10.0.0.1/8"), "host bits set");
        assert!(bad("10.0.0.0/33"));
        assert!(bad("not a host"));
        assert!(bad("a/b"));
        assert!(!bad("registry.example.com"));
        assert!(!bad("*.svc.cluster.local"));
        assert!(!bad("fd00::/8"));
        assert!(!bad("[::1]"));
    }

    #[test]
    fn host_rules_decide_for_names() {
        let p = policy(
            &["registry.local"],
            &["*.svc.cluster.local", "metadata.google.internal"],
        );
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(
            p.check_url(&url("http://metadata.google.internal/"))
                .is_err()
        );
        assert!(
            p.check_url(&url("http://x.ns.svc.cluster.local:5000/"))
                .is_err()
        );
        assert!(
            p.check_url(&url("http://svc.cluster.local/")).is_ok(),
            "suffix needs a dot"
        );
        assert!(p.check_url(&url("https://example.com/")).is_ok());
        // An allowed name may resolve into a closed range; other names may not.
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert_eq!(p.filter("registry.local", [lo]).unwrap(), vec![lo]);
        assert!(p.filter("other.local", [lo]).is_err());
    }

    #[test]
    fn ip_literals_are_checked_before_any_request() {
        let p = EgressPolicy::default();
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(
            p.check_url(&url("http://169.254.169.254/latest/meta-data/"))
                .is_err()
        );
        assert!(p.check_url(&url("http://[::1]:5000/v2/")).is_err());
        assert!(p.check_url(&url("http://[::ffff:7f00:1]/")).is_err());
        // WHATWG URL parsing turns these spellings into 127.0.0.1 too.
        assert!(p.check_url(&url("http://2130706433/")).is_err());
        assert!(p.check_url(&url("http://0x7f.1/")).is_err());
        assert!(p.check_url(&url("https://10.0.0.5:5000/")).is_ok());
    }

    #[test]
    fn filter_keeps_only_allowed_addresses() {
        let p = EgressPolicy::default();
        let addrs: Vec<SocketAddr> = ["127.0.0.1:0", "10.0.0.1:0", "[fe80::1]:0"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(
            p.filter("mixed.example", addrs.clone()).unwrap(),
            vec![addrs[1]]
        );
        let e = p.filter("loop.example", vec![addrs[0]]).unwrap_err();
        assert_eq!(e.to_string(), "loop.example is not an allowed destination");
    }

    #[test]
    fn credentials_stay_on_their_origin() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(same_origin(
            &u("https://r.io/v2/"),
            &u("https://r.io:443/x")
        ));
        assert!(!same_origin(&u("https://r.io/"), &u("http://r.io:443/")));
        assert!(!same_origin(&u("https://r.io/"), &u("https://cdn.r.io/")));
        assert!(!same_origin(
            &u("http://r.io:5000/"),
            &u("http://r.io:5001/")
        ));
    }

    #[tokio::test]
    async fn resolver_refuses_names_of_closed_addresses() {
        let r = PolicyResolver::new(Arc::new(EgressPolicy::default()));
        let e = match r.resolve("localhost".parse().unwrap()).await {
            Ok(a) => panic!("localhost resolved to {:?}", a.collect::<Vec<_>>()),
            Err(e) => e,
        };
        assert!(denial_in(e.as_ref()).is_some(), "{e}");
        let r = PolicyResolver::new(Arc::new(policy(&["127.0.0.1/32"], &[])));
        let found: Vec<SocketAddr> = r
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(found.iter().all(|a| a.ip() == ip("127.0.0.1")), "{found:?}");
    }
}
