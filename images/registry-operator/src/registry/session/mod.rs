//! One scan's conversation with a registry, on top of the transport: authentication
//! (anonymous, Basic, Bearer token), retries and redirects within the scan's deadline, and
//! messages that never carry a secret.
//!
//! - `send`: the request loop (retries, redirects, 401 → authenticate, 429 → the host's gate);
//! - `authenticate`: the `Authorization` each request carries, and the token flow;
//! - `messages`: errors built from replies, scrubbed of credentials and tokens.

mod authenticate;
mod messages;
mod send;

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use super::auth::{AuthKey, AuthMode, AuthState, Credentials};
use super::error::ScanError;
use super::target::Target;
use super::transport::{Counters, Transport};

pub(crate) use super::transport::Reply;

pub(crate) struct Session<'a> {
    transport: &'a Transport,
    /// Whose share of the body budget, the parse pool and the shared caches this scan uses.
    pub tenant: &'a str,
    auth_state: &'a AuthState,
    pub target: &'a Target,
    credentials: Option<&'a Credentials>,
    auth_key: AuthKey,
    auth: Mutex<AuthMode>,
    /// Concurrent requests that find no valid token wait for one fetch instead of each fetching.
    token_fetch: tokio::sync::Mutex<()>,
    /// `None` when the timeout is too large to reach (no deadline then).
    deadline: Option<Instant>,
    scan_timeout: Duration,
    /// Tokens this session sent or received, withheld from any message.
    tokens_seen: Mutex<Vec<String>>,
    pub counters: Arc<Counters>,
}

impl<'a> Session<'a> {
    pub fn new(
        transport: &'a Transport,
        auth_state: &'a AuthState,
        tenant: &'a str,
        target: &'a Target,
        credentials: Option<&'a Credentials>,
        scan_timeout: Duration,
    ) -> Self {
        Self::scoped(
            transport,
            auth_state,
            tenant,
            target,
            credentials,
            scan_timeout,
            "",
        )
    }

    fn scoped(
        transport: &'a Transport,
        auth_state: &'a AuthState,
        tenant: &'a str,
        target: &'a Target,
        credentials: Option<&'a Credentials>,
        scan_timeout: Duration,
        scope: &str,
    ) -> Self {
        let repository = match scope {
            "" => target.repository().to_string(),
            s => format!("{}#{s}", target.repository()),
        };
        let auth_key = (
            target.base_url().to_string(),
            repository,
            credentials
                .map(Credentials::fingerprint)
                .unwrap_or_default(),
        );
        // What an earlier scan learned: send its token up front instead of collecting a 401.
        let mode = auth_state
            .modes
            .get(&auth_key)
            .unwrap_or(AuthMode::Anonymous);
        Self {
            transport,
            tenant,
            auth_state,
            target,
            credentials,
            auth_key,
            auth: Mutex::new(mode),
            token_fetch: tokio::sync::Mutex::new(()),
            deadline: Instant::now().checked_add(scan_timeout),
            scan_timeout,
            tokens_seen: Mutex::default(),
            counters: Arc::default(),
        }
    }

    /// A session for another API of the same scan (a vendor's listing API, on this host or
    /// its documented API host): same deadline and request counts, but its learned auth mode
    /// is kept apart under `scope`, since such an API may authenticate differently (Basic on
    /// Harbor's, a `metadata_read` token on ACR's).
    pub fn sibling<'b>(
        &self,
        target: &'b Target,
        credentials: Option<&'b Credentials>,
        scope: &str,
    ) -> Session<'b>
    where
        'a: 'b,
    {
        let mut s = Session::scoped(
            self.transport,
            self.auth_state,
            self.tenant,
            target,
            credentials,
            self.scan_timeout,
            scope,
        );
        s.deadline = self.deadline;
        s.counters = self.counters.clone();
        s
    }

    fn registry(&self) -> String {
        self.target.registry()
    }

    pub fn remaining(&self) -> Result<Duration, ScanError> {
        let Some(deadline) = self.deadline else {
            return Ok(Duration::MAX);
        };
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| self.scan_timed_out())
    }

    fn scan_timed_out(&self) -> ScanError {
        ScanError::Timeout {
            what: format!("scan of {}/{}", self.registry(), self.target.repository()),
            after: self.scan_timeout,
        }
    }

    /// Sleeps `wait`, or fails with a timeout if the scan deadline comes first.
    async fn pause(&self, wait: Duration) -> Result<(), ScanError> {
        if wait >= self.remaining()? {
            return Err(self.scan_timed_out());
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    pub fn credentials(&self) -> Option<&'a Credentials> {
        self.credentials
    }
}
