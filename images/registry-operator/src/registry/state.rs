//! What outlives one scan: auth modes and bearer tokens, one rate-limit gate per registry host,
//! and what each registry's native listing API is. The CLI keeps it for one scan; the controller
//! shares one across every scan so a rescan sends its cached token up front.

use std::sync::Arc;

use super::auth::AuthState;
use super::listing::Listers;
use super::protocol::ReferrersMemory;
use super::transport::HostGates;

/// State shared by scans: build one per process (or per controller) and hand it to every
/// [`super::RegistryClient`] with [`super::RegistryClient::with_state`].
#[derive(Default)]
pub struct RegistryState {
    pub(crate) auth: AuthState,
    /// Shared with every client's transport.
    pub(crate) gates: Arc<HostGates>,
    pub(crate) listers: Listers,
    /// Registries found not to serve the referrers API.
    pub(crate) referrers: ReferrersMemory,
}

impl RegistryState {
    /// Bytes each shared cache holds (`tokens`, `auth_modes`, `host_gates`, `listers`,
    /// `referrers`): each is bounded in bytes with a share per tenant.
    pub fn cache_bytes(&self) -> [(&'static str, usize); 5] {
        [
            ("tokens", self.auth.tokens.bytes()),
            ("auth_modes", self.auth.modes.bytes()),
            ("host_gates", self.gates.bytes()),
            ("listers", self.listers.bytes()),
            ("referrers", self.referrers.bytes()),
        ]
    }

    /// `requests_per_second`: an optional ceiling on requests to any one registry host, shared
    /// by every scan using this state.
    pub fn new(requests_per_second: Option<f64>) -> Self {
        Self {
            gates: Arc::new(HostGates::new(requests_per_second)),
            ..Self::default()
        }
    }
}
