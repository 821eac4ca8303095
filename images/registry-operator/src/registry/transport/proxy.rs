//! An explicit HTTP proxy for registry requests. Proxy variables of the environment
//! (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`) are never read: they would send a
//! tenant's requests wherever the process environment says, out of the egress policy's sight.
//! Only what the operator is told by its flags is used.

use std::fmt;

use url::{Host, Url};

/// Where registry requests go when they go through a proxy. A proxy URL may carry credentials
/// (`http://user:pass@proxy:3128`); they never appear in `Debug` or any message.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProxySettings {
    /// Proxy for `http://` registries.
    http: Option<Url>,
    /// Proxy for `https://` registries (a CONNECT tunnel: the proxy sees the host name only).
    https: Option<Url>,
    /// Hosts, domains (`example.com` also covers its subdomains), IP addresses and CIDRs
    /// reached directly, in `NO_PROXY`'s syntax.
    no_proxy: Vec<String>,
}

impl ProxySettings {
    /// `None` when neither proxy is set: every request goes directly.
    pub fn new(
        http: Option<&str>,
        https: Option<&str>,
        no_proxy: &[String],
    ) -> Result<Option<Self>, String> {
        let parse = |flag: &str, v: Option<&str>| -> Result<Option<Url>, String> {
            let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else {
                return Ok(None);
            };
            // The value may hold a password: the error names the flag, never the value.
            let url = Url::parse(v).map_err(|e| {
                format!("{flag} is not a URL ({e}), e.g. http://proxy.example:3128")
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(format!(
                    "{flag} must be an http:// or https:// URL with a host, e.g. http://proxy.example:3128"
                ));
            }
            Ok(Some(url))
        };
        let settings = Self {
            http: parse("the HTTP proxy", http)?,
            https: parse("the HTTPS proxy", https)?,
            no_proxy: no_proxy
                .iter()
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect(),
        };
        Ok((settings.http.is_some() || settings.https.is_some()).then_some(settings))
    }

    /// Host names of the proxies: the operator must be able to connect to them whatever the
    /// egress policy says about the addresses they resolve to (the policy judges where the
    /// requests are meant to go, not the proxy they pass).
    pub fn host_names(&self) -> Vec<String> {
        [&self.http, &self.https]
            .into_iter()
            .flatten()
            .filter_map(|u| match u.host() {
                Some(Host::Domain(d)) => Some(d.to_string()),
                _ => None,
            })
            .collect()
    }

    /// The reqwest proxies: one per scheme, each with the same exclusions.
    pub(crate) fn reqwest_proxies(&self) -> Result<Vec<reqwest::Proxy>, String> {
        let no_proxy = || reqwest::NoProxy::from_string(&self.no_proxy.join(","));
        let mut out = Vec::new();
        if let Some(u) = &self.http {
            out.push(
                reqwest::Proxy::http(u.clone())
                    .map_err(|_| "the HTTP proxy is not usable".to_string())?
                    .no_proxy(no_proxy()),
            );
        }
        if let Some(u) = &self.https {
            out.push(
                reqwest::Proxy::https(u.clone())
                    .map_err(|_| "the HTTPS proxy is not usable".to_string())?
                    .no_proxy(no_proxy()),
            );
        }
        Ok(out)
    }
}

/// A proxy URL without its credentials, for logs.
pub fn redacted(url: &Url) -> String {
    let mut u = url.clone();
    let had = !u.username().is_empty() || u.password().is_some();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if had {
        // Say that there were credentials, without them.
        let text = u.to_string();
        return text.replacen("://", "://***@", 1);
    }
    u.to_string()
}

impl fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxySettings")
            .field("http", &self.http.as_ref().map(redacted))
            .field("https", &self.https.as_ref().map(redacted))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

impl fmt::Display for ProxySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |u: &Option<Url>| u.as_ref().map_or_else(|| "none".to_string(), redacted);
        write!(
            f,
            "http: {}, https: {}, direct: {}",
            show(&self.http),
            show(&self.https),
            if self.no_proxy.is_empty() {
                "none".to_string()
            } else {
                self.no_proxy.join(",")
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_url_means_no_settings() {
        assert_eq!(
            ProxySettings::new(None, Some("  "), &["x".into()]),
            Ok(None)
        );
    }

    #[test]
    fn credentials_of_a_proxy_never_show() {
        let p = ProxySettings::new(Some("http://bob:S3cret-pw@proxy.corp:3128"), None, &[])
            .unwrap()
            .unwrap();
        for text in [format!("{p:?}"), p.to_string()] {
            assert!(
                !text.contains("S3cret-pw") && !text.contains("bob"),
                "{text}"
            );
            assert!(text.contains("http://***@proxy.corp:3128/"), "{text}");
        }
        let e = ProxySettings::new(Some("ftp://bob:S3cret-pw@proxy.corp"), None, &[]).unwrap_err();
        assert!(!e.contains("S3cret-pw"), "{e}");
        let e = ProxySettings::new(None, Some("bob:S3cret-pw@proxy corp"), &[]).unwrap_err();
        assert!(!e.contains("S3cret-pw"), "{e}");
    }

    #[test]
    fn proxy_host_names_are_listed_for_the_egress_policy() {
        let p = ProxySettings::new(
            Some("http://proxy.corp:3128"),
            Some("http://10.0.0.5:3128"),
            &[],
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.host_names(), vec!["proxy.corp".to_string()]);
        assert_eq!(p.reqwest_proxies().unwrap().len(), 2);
    }
}
