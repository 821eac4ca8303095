//! Request counts of one scan, by what each request was for.

use std::sync::atomic::{AtomicU64, Ordering};

use super::client::RequestKind;
use crate::registry::RequestCounts;

#[derive(Default, Debug)]
pub(crate) struct Counters {
    pub tag_pages: AtomicU64,
    pub manifest_heads: AtomicU64,
    pub manifest_gets: AtomicU64,
    pub token_requests: AtomicU64,
    pub blob_heads: AtomicU64,
    pub blob_gets: AtomicU64,
    pub native_requests: AtomicU64,
    pub retries: AtomicU64,
    pub referrer_requests: AtomicU64,
}

impl Counters {
    pub fn count(&self, kind: RequestKind) {
        let c = match kind {
            RequestKind::TagList => &self.tag_pages,
            RequestKind::ManifestHead => &self.manifest_heads,
            RequestKind::ManifestGet => &self.manifest_gets,
            RequestKind::Token => &self.token_requests,
            RequestKind::BlobHead => &self.blob_heads,
            RequestKind::BlobGet => &self.blob_gets,
            RequestKind::NativeList => &self.native_requests,
            RequestKind::Referrers => &self.referrer_requests,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// What was counted so far, as a scan reports it.
    pub fn counts(&self) -> RequestCounts {
        let load = |a: &AtomicU64| i64::try_from(a.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        RequestCounts {
            tag_pages: load(&self.tag_pages),
            manifest_heads: load(&self.manifest_heads),
            manifest_gets: load(&self.manifest_gets),
            token_requests: load(&self.token_requests),
            blob_heads: load(&self.blob_heads),
            blob_gets: load(&self.blob_gets),
            retries: load(&self.retries),
            native_requests: load(&self.native_requests),
            referrer_requests: load(&self.referrer_requests),
            lister: None,
        }
    }
}
