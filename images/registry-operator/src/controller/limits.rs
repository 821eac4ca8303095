//! Per-tenant bounds of the operator: what one scan may hold, and how many scan slots one
//! namespace may take.

use std::sync::Arc;
use std::time::Duration;

use crate::registry::{
    BodyBudget, DEFAULT_BODY_IDLE_TIMEOUT, DEFAULT_MAX_PAGE_BYTES, DEFAULT_MAX_PAGES,
    DEFAULT_MAX_TAGS, ScanLimits,
};

#[derive(clap::Args, Debug, Clone)]
pub struct LimitArgs {
    /// Tags one scan may list (after spec.tagFilter); a repository with more fails with
    /// `TooManyTags` and keeps its last good images.
    #[arg(long, env = "MAX_TAGS", default_value_t = DEFAULT_MAX_TAGS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_tags: usize,
    /// Bytes of one tag-list page; a larger page fails the scan with `ResponseTooLarge`.
    #[arg(long, env = "MAX_TAG_PAGE_BYTES", default_value_t = DEFAULT_MAX_PAGE_BYTES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..))]
    pub max_tag_page_bytes: usize,
    /// Tag-list pages one scan may follow.
    #[arg(long, env = "MAX_TAG_PAGES", default_value_t = DEFAULT_MAX_PAGES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_tag_pages: usize,
    /// Scan slots (of --max-concurrent-scans) one namespace may hold at once (default: half).
    #[arg(long, env = "MAX_SCANS_PER_NAMESPACE",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_scans_per_namespace: Option<usize>,
    /// Bytes of registry response bodies all scans may hold at once; a body reserves its size
    /// (or its limit, when the length is unknown) and waits for room. One namespace holds at
    /// most `total / (namespaces holding or waiting + 1)`.
    #[arg(long, env = "MAX_BODY_BYTES_IN_FLIGHT", default_value_t = 128 << 20,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1 << 20..))]
    pub max_body_bytes_in_flight: usize,
    /// Seconds a registry may send no byte of a response body before it is dropped (a
    /// transient failure, retried); below the 30 s request timeout, so that stalled bodies
    /// give their share of the body budget back early.
    #[arg(long, env = "BODY_IDLE_TIMEOUT", default_value_t = DEFAULT_BODY_IDLE_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_idle_timeout: u64,
}

impl LimitArgs {
    pub fn scan_limits(&self) -> ScanLimits {
        ScanLimits {
            max_tags: self.max_tags,
            max_page_bytes: self.max_tag_page_bytes,
            max_pages: self.max_tag_pages,
        }
    }

    pub fn body_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.body_idle_timeout)
    }

    pub fn body_budget(&self) -> Arc<BodyBudget> {
        Arc::new(BodyBudget::new(self.max_body_bytes_in_flight))
    }
}
