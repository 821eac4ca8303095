//! The HTTP side of the scan core: one connection pool per TLS setting, the rate-limit gates
//! every request passes, and a hook that lets the controller count requests for its metrics.

use std::sync::Arc;
use std::time::Duration;

use super::budget::BodyBudget;
use super::egress::{EgressPolicy, PolicyResolver};
use super::proxy::ProxySettings;
use super::ratelimit::HostGates;
use super::retry::RetryPolicy;
use crate::registry::error::ScanError;

/// Default of [`ClientOptions::body_idle_timeout`].
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a request was for; tests and metrics count requests by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    TagList,
    ManifestHead,
    ManifestGet,
    Token,
    BlobHead,
    /// An image config blob (`spec.timestamps: Created`).
    BlobGet,
    /// A vendor's own listing API (and its detection probes and token).
    NativeList,
    /// The OCI 1.1 referrers API.
    Referrers,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TagList => "tag_list",
            Self::ManifestHead => "manifest_head",
            Self::ManifestGet => "manifest_get",
            Self::Token => "token",
            Self::BlobHead => "blob_head",
            Self::BlobGet => "blob_get",
            Self::NativeList => "native_list",
            Self::Referrers => "referrers",
        }
    }
}

/// Sees every HTTP exchange with a registry (status `None` when no response arrived).
pub trait RequestObserver: Send + Sync {
    fn observe(&self, kind: RequestKind, method: &str, status: Option<u16>);
}

#[derive(Clone)]
pub struct ClientOptions {
    pub insecure_skip_verify: bool,
    /// Extra trusted CA certificates (PEM), added to the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Bound on one request, connection and body included.
    pub request_timeout: Duration,
    /// A body that sends no byte for this long is dropped (a transient failure, retried):
    /// well below `request_timeout`, so a stalled body gives its share of the body budget
    /// back early.
    pub body_idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
    pub user_agent: String,
    /// Where requests may go; `None` (the one-shot CLI) allows anything.
    pub egress: Option<Arc<EgressPolicy>>,
    /// Memory for response bodies shared with other clients; `None` reserves nothing.
    pub body_budget: Option<Arc<BodyBudget>>,
    /// Fixed addresses for host names (reqwest's `resolve`), ahead of DNS. Tests map vendor
    /// hosts (registry-1.docker.io, gcr.io …) to loopback fixtures with it; empty otherwise.
    pub resolve: Vec<(String, std::net::SocketAddr)>,
    /// The proxy requests go through; `None`: straight to the registry. Proxy variables of
    /// the environment are never used.
    pub proxy: Option<ProxySettings>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            insecure_skip_verify: false,
            ca_pem: None,
            request_timeout: Duration::from_secs(30),
            body_idle_timeout: DEFAULT_BODY_IDLE_TIMEOUT,
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            user_agent: format!("registry-operator/{}", env!("CARGO_PKG_VERSION")),
            egress: None,
            body_budget: None,
            resolve: Vec::new(),
            proxy: None,
        }
    }
}

/// Cheap to clone; clones share the pool and the gates.
#[derive(Clone)]
pub(crate) struct Transport {
    pub(crate) http: reqwest::Client,
    pub(crate) gates: Arc<HostGates>,
    pub(crate) options: Arc<ClientOptions>,
    pub(crate) observer: Option<Arc<dyn RequestObserver>>,
}

/// reqwest is built without a bundled crypto provider; kube uses ring too, so both agree.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Transport {
    pub fn new(options: ClientOptions, gates: Arc<HostGates>) -> Result<Self, ScanError> {
        install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .user_agent(options.user_agent.clone())
            .connect_timeout(options.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            // Redirects (blob/manifest CDNs) are followed by hand so that credentials never
            // travel to another host.
            .redirect(reqwest::redirect::Policy::none())
            .tls_danger_accept_invalid_certs(options.insecure_skip_verify)
            .no_proxy();
        for proxy in options
            .proxy
            .as_ref()
            .map(ProxySettings::reqwest_proxies)
            .transpose()
            .map_err(ScanError::InvalidConfig)?
            .unwrap_or_default()
        {
            builder = builder.proxy(proxy);
        }
        if let Some(policy) = &options.egress {
            builder = builder.dns_resolver(PolicyResolver::new(policy.clone()));
        }
        for (host, addr) in &options.resolve {
            builder = builder.resolve(host, *addr);
        }
        if let Some(pem) = &options.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                ScanError::InvalidConfig(format!("CA bundle is not valid PEM: {e}"))
            })?;
            if certs.is_empty() {
                return Err(ScanError::InvalidConfig(
                    "CA bundle holds no certificate".into(),
                ));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| ScanError::InvalidConfig(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            http,
            gates,
            options: Arc::new(options),
            observer: None,
        })
    }
}
