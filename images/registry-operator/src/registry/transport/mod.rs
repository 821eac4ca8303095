//! HTTP to registries, knowing nothing of registries' protocol or auth: the connection pool
//! (client), where requests may go (egress), memory for bodies (budget), per-host gates and
//! rate ceilings (ratelimit), an explicit proxy (proxy), retry timing (retry), what a network failure means (classify),
//! and one request's exchange (exchange) with its counts (counters).

mod budget;
mod classify;
mod client;
mod counters;
mod egress;
mod exchange;
mod proxy;
mod ratelimit;
mod retry;

pub use budget::BodyBudget;
pub(crate) use classify::NetFailure;
pub(crate) use client::Transport;
pub use client::{ClientOptions, RequestKind, RequestObserver, install_crypto_provider};
pub(crate) use counters::Counters;
pub(crate) use egress::same_origin;
pub use egress::{EgressDenied, EgressPolicy};
pub(crate) use exchange::{ExchangeError, MAX_GATE_CLOSE, Reply, Request};
pub use proxy::{ProxySettings, redacted as redacted_proxy_url};
pub(crate) use ratelimit::HostGates;
pub use retry::{RetryPolicy, parse_retry_after};
