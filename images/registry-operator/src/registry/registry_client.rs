//! What the controller and the CLI hold to scan: a transport (one connection pool per TLS
//! setting) and the state every scan shares (tokens, auth modes, gates, native listers).

use std::sync::Arc;
use std::time::Duration;

use super::auth::Credentials;
use super::error::ScanError;
use super::session::Session;
use super::state::RegistryState;
use super::target::Target;
use super::transport::{ClientOptions, RequestObserver, Transport};

/// Cheap to clone; clones share the pool and the state.
#[derive(Clone)]
pub struct RegistryClient {
    pub(crate) transport: Transport,
    pub(crate) state: Arc<RegistryState>,
}

impl RegistryClient {
    pub fn new(options: ClientOptions) -> Result<Self, ScanError> {
        let state = Arc::new(RegistryState::default());
        Ok(Self {
            transport: Transport::new(options, state.gates.clone())?,
            state,
        })
    }

    /// Shares auth state, tokens and rate-limit gates with other clients (the controller keeps
    /// one for all its clients, so state survives across scans and TLS settings).
    pub fn with_state(mut self, state: Arc<RegistryState>) -> Self {
        self.transport.gates = state.gates.clone();
        self.state = state;
        self
    }

    pub fn with_observer(mut self, observer: Arc<dyn RequestObserver>) -> Self {
        self.transport.observer = Some(observer);
        self
    }

    /// One scan's conversation with `target`, for `tenant` (its share of shared resources:
    /// the body budget, and the caches its tokens and learned modes go to).
    pub(crate) fn session<'a>(
        &'a self,
        tenant: &'a str,
        target: &'a Target,
        credentials: Option<&'a Credentials>,
        timeout: Duration,
    ) -> Session<'a> {
        Session::new(
            &self.transport,
            &self.state.auth,
            tenant,
            target,
            credentials,
            timeout,
        )
    }
}
