//! `--registry-http-proxy`, `--registry-https-proxy`, `--registry-no-proxy`: the one way to
//! send registry requests through a proxy, for the operator and the `scan` CLI alike.

use anyhow::Context as _;

use crate::registry::{ProxySettings, redacted_proxy_url as redacted};

#[derive(clap::Args, Clone, Default)]
pub struct ProxyArgs {
    /// Proxy for http:// registries, e.g. http://proxy.example:3128 (HTTP_PROXY and its
    /// kin in the environment are ignored).
    #[arg(
        long = "registry-http-proxy",
        env = "REGISTRY_HTTP_PROXY",
        value_name = "URL",
        hide_env_values = true
    )]
    pub http: Option<String>,
    /// Proxy for https:// registries (a CONNECT tunnel), e.g. http://proxy.example:3128.
    #[arg(
        long = "registry-https-proxy",
        env = "REGISTRY_HTTPS_PROXY",
        value_name = "URL",
        hide_env_values = true
    )]
    pub https: Option<String>,
    /// Hosts, domains (with their subdomains), IP addresses and CIDRs reached without the
    /// proxy, comma-separated as in NO_PROXY.
    #[arg(
        long = "registry-no-proxy",
        env = "REGISTRY_NO_PROXY",
        value_delimiter = ',',
        value_name = "HOST|CIDR"
    )]
    pub no_proxy: Vec<String>,
}

/// Proxy URLs may carry a password: only their redacted form is ever printed.
impl std::fmt::Debug for ProxyArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<String>| {
            v.as_deref()
                .map(|v| url::Url::parse(v).map_or_else(|_| "(invalid)".into(), |u| redacted(&u)))
        };
        f.debug_struct("ProxyArgs")
            .field("http", &show(&self.http))
            .field("https", &show(&self.https))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

impl ProxyArgs {
    pub fn settings(&self) -> anyhow::Result<Option<ProxySettings>> {
        let settings =
            ProxySettings::new(self.http.as_deref(), self.https.as_deref(), &self.no_proxy)
                .map_err(anyhow::Error::msg)
                .context("--registry-http-proxy / --registry-https-proxy")?;
        if let Some(s) = &settings {
            tracing::info!(proxy = %s, "registry requests go through a proxy");
        }
        Ok(settings)
    }
}
