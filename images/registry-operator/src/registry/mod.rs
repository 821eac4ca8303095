//! The cluster-free scan core: registry client, auth, manifests and the scanner.
//! Nothing here knows about Kubernetes; the controller and the `scan` CLI both call it.

mod auth;
mod budget;
mod classify;
mod client;
mod egress;
mod error;
mod facts;
mod limits;
mod listing;
pub mod manifest;
mod model;
pub mod order;
mod proxy;
mod ratelimit;
mod retry;
mod scanner;
pub mod schema1;
mod session;
mod state;
mod tags;
mod target;

pub use auth::{Challenge, Credentials, parse_challenge};
pub use budget::BodyBudget;
pub use client::{
    ClientOptions, RegistryClient, RequestKind, RequestObserver, install_crypto_provider,
};
pub use egress::{EgressDenied, EgressPolicy};
pub use error::{FailureReason, ScanError};
pub use facts::RepositoryFacts;
pub use limits::{DEFAULT_MAX_PAGE_BYTES, DEFAULT_MAX_PAGES, DEFAULT_MAX_TAGS, ScanLimits};
pub use listing::{Lister, ListingMode, NativeOutcome, detect_by_host};
pub use model::{Image, ManifestFacts, Platform, RequestCounts, TagFailure};
pub use proxy::{ProxySettings, redacted as redacted_proxy_url};
pub use retry::{RetryPolicy, parse_retry_after};
pub use scanner::{
    FAILED_TAGS_LIMIT_PERCENT, RefreshReport, ScanOptions, ScanReport, refresh, scan,
};
pub use state::RegistryState;
pub use tags::{TagFilter, next_link};
pub use target::{Target, valid_tag};
