//! HTTP to registries, knowing nothing of registries' protocol or auth: the connection pool
//! (client), where requests may go (egress), memory for bodies (budget), per-host gates and
//! rate ceilings (ratelimit), an explicit proxy (proxy), retry timing (retry), what a network
//! failure means (classify), and one request's exchange (exchange) with its counts (counters).
//! Budget and the parse pool for large bodies (offload) give each tenant its share (share).

mod budget;
mod classify;
mod client;
mod counters;
mod egress;
mod exchange;
mod offload;
mod proxy;
mod ratelimit;
mod retry;
mod share;

pub use budget::BodyBudget;
pub(crate) use classify::NetFailure;
pub(crate) use client::Transport;
pub use client::{
    ClientOptions, DEFAULT_BODY_IDLE_TIMEOUT, RequestKind, RequestObserver, install_crypto_provider,
};
pub(crate) use counters::Counters;
pub(crate) use egress::same_origin;
pub use egress::{EgressDenied, EgressPolicy};
pub(crate) use exchange::{ExchangeError, MAX_GATE_CLOSE, Reply, Request};
pub(crate) use offload::offload;
pub use proxy::{ProxySettings, redacted as redacted_proxy_url};
pub(crate) use ratelimit::HostGates;
pub use retry::{RetryPolicy, parse_retry_after};
