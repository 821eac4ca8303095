//! The cluster-free scan core. Nothing here knows about Kubernetes; the controller and the
//! `scan` CLI both call it. Layers, each using only those above it in this list:
//!
//! - base data: `artifact`, `error`, `model`, `facts`, `limits`, `order`, `target`, `timestamp`, and `cache` (the one
//!   bounded, per-tenant cache every layer keeps its state in), and `policy` (which tag is the
//!   newest version a `spec.policy` allows: pure, over the images a scan found);
//! - `transport`: HTTP, egress, body budget, per-host gates, retry timing, error classes;
//! - `auth`: credentials, challenges, tokens, learned auth modes;
//! - `session`: one scan's conversation — auth flow, retries, redirects, deadline, messages;
//! - `protocol`: the distribution API's operations (tags, head, fetch, blob) and formats;
//! - `listing`: where the tag → digest list comes from (distribution API or a vendor's);
//! - `state`, `registry_client`: what scans share, and the handle callers hold;
//! - `scanner`: a whole scan, and a webhook's targeted refresh.
//!
//! `tests/layers.rs` fails when a module reaches up the list.

pub mod artifact;
mod auth;
pub(crate) mod cache;
mod error;
mod facts;
mod limits;
mod listing;
mod model;
pub mod order;
pub mod policy;
mod protocol;
mod registry_client;
mod scanner;
mod session;
mod state;
mod target;
mod timestamp;
mod transport;

pub use auth::{Challenge, Credentials, parse_challenge};
pub use error::{FailureReason, ScanError};
pub use facts::RepositoryFacts;
pub use limits::{DEFAULT_MAX_PAGE_BYTES, DEFAULT_MAX_PAGES, DEFAULT_MAX_TAGS, ScanLimits};
pub use listing::{Lister, ListingMode, NativeOutcome, detect_by_host};
pub use model::{
    CreatedSource, Image, Latest, ManifestFacts, Platform, Referrer, ReferrerKind, RequestCounts,
    TagFailure, TimestampSource,
};
pub use protocol::{TagFilter, manifest, next_link, schema1, valid_digest};
pub use registry_client::RegistryClient;
pub use scanner::{
    FAILED_TAGS_LIMIT_PERCENT, FilterId, Finished, MAX_FOLDED_REFERRERS, RefreshReport, ScanKey,
    ScanOptions, ScanReport, Share, SharedRequest, SharedScans, fold_referrer_tags, refresh, scan,
};
pub use state::RegistryState;
pub use target::{Target, valid_repository, valid_tag};
pub use timestamp::Timestamp;
pub use transport::{
    BodyBudget, ClientOptions, DEFAULT_BODY_IDLE_TIMEOUT, EgressDenied, EgressPolicy,
    ProxySettings, RequestKind, RequestObserver, RetryPolicy, install_crypto_provider,
    parse_retry_after, redacted_proxy_url,
};

/// Test builds (`fault-injection` feature) only: a scan of this repository panics once, inside a
/// shared cache's lock, so the tests can show the panic is contained and nothing stays poisoned.
#[cfg(feature = "fault-injection")]
pub const FAULT_INJECTION_REPOSITORY: &str = "fault-injection/panic";
