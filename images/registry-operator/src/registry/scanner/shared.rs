//! One scan per conversation: scans of one [`ScanKey`] that are due together share a single
//! conversation with the registry. A caller is satisfied by any scan of its key that finished
//! at or after the time it became due (so its interval stays an upper bound on staleness),
//! and by one that is running now; otherwise it starts one that every later caller of the
//! key can join.
//!
//! A shared scan lists what any of its callers' tag filters keeps; each caller then applies
//! its own filter to the result. A result is only offered to callers whose filter was among
//! those it listed for.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures::FutureExt;
use futures::future::{BoxFuture, WeakShared};
use parking_lot::Mutex;

use super::key::ScanKey;
use super::{RefreshReport, ScanReport};
use crate::registry::ScanError;
use crate::registry::cache::BoundedCache;

/// A tag filter as written (`include`, `exclude`): what a shared scan's result was listed for.
pub type FilterId = (Option<String>, Option<String>);

/// A finished shared scan (or webhook refresh).
pub struct Finished<R = ScanReport> {
    pub at: Instant,
    /// The filters whose union it listed.
    pub filters: BTreeSet<FilterId>,
    pub result: Result<Arc<R>, ScanError>,
}

/// What a shared result holds in memory, about.
pub trait Weigh {
    fn bytes(&self) -> usize;
}

/// How a caller came by its result (for the operator's metrics only: a tenant is never told).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Share {
    /// It ran the scan.
    Started,
    /// It waited for a scan another caller had started.
    Joined,
    /// A scan that had finished since it became due served it.
    Reused,
}

impl Share {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Joined => "joined",
            Self::Reused => "reused",
        }
    }
}

struct Flight<R> {
    id: u64,
    filters: BTreeSet<FilterId>,
    /// Weak: when every caller waiting for it is gone (cancelled, its shard moved), the scan
    /// is dropped as an unshared one would be, not kept half-done for a later caller.
    future: WeakShared<BoxFuture<'static, Arc<Finished<R>>>>,
}

/// What a caller asks of [`SharedScans::scan`].
pub struct Request<'a> {
    /// Whose share of the bounded result cache a kept result uses (the starter's namespace).
    pub tenant: &'a str,
    pub key: ScanKey,
    /// The caller's own filter.
    pub filter: FilterId,
    /// Every filter the key's callers use now: a scan this call starts lists for all of them.
    pub filters: BTreeSet<FilterId>,
    /// When the caller became due.
    pub due: Instant,
    /// Whether other callers have this key: only then is a finished result worth keeping.
    pub keep: bool,
}

/// Shared scans; with `R = RefreshReport`, shared webhook refreshes (keyed by the scan key
/// with the refreshed tags as extras).
pub struct SharedScans<R = ScanReport> {
    flights: Mutex<HashMap<ScanKey, Flight<R>>>,
    recent: BoundedCache<ScanKey, Arc<Finished<R>>>,
    ids: AtomicU64,
}

impl<R: Weigh + Send + Sync + 'static> SharedScans<R> {
    /// Finished results are kept in at most `bytes`, `share` per tenant.
    pub fn new(bytes: usize, share: usize) -> Self {
        Self {
            flights: Mutex::new(HashMap::new()),
            recent: BoundedCache::new(bytes, share),
            ids: AtomicU64::new(0),
        }
    }

    /// The result for `request`: a kept one, a running one, or the one `start` runs (given
    /// the filters to list for). `start` is called at most once, never under a lock.
    pub async fn scan(
        self: &Arc<Self>,
        request: Request<'_>,
        start: impl FnOnce(&BTreeSet<FilterId>) -> BoxFuture<'static, Result<R, ScanError>>,
    ) -> (Arc<Finished<R>>, Share) {
        let Request {
            tenant,
            key,
            filter,
            mut filters,
            due,
            keep,
        } = request;
        if let Some(done) = self
            .recent
            .get(&key)
            .filter(|f| f.at >= due && f.filters.contains(&filter))
        {
            return (done, Share::Reused);
        }
        let joined = self
            .flights
            .lock()
            .get(&key)
            .filter(|f| f.filters.contains(&filter))
            .and_then(|f| f.future.upgrade());
        if let Some(running) = joined {
            return (running.await, Share::Joined);
        }
        filters.insert(filter);
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let scan = start(&filters);
        let this = Arc::clone(self);
        let (flight_key, flight_filters, tenant) =
            (key.clone(), filters.clone(), tenant.to_string());
        let future = async move {
            let result = scan.await.map(Arc::new);
            let done = Arc::new(Finished {
                at: Instant::now(),
                filters: flight_filters,
                result,
            });
            this.land(&tenant, &flight_key, id, &done, keep);
            done
        }
        .boxed()
        .shared();
        if let Some(weak) = future.downgrade() {
            let mut flights = self.flights.lock();
            flights.retain(|_, f| f.future.upgrade().is_some());
            flights.insert(
                key,
                Flight {
                    id,
                    filters,
                    future: weak,
                },
            );
        }
        (future.await, Share::Started)
    }

    /// A flight is over: it is no longer joinable, and its result is kept for callers that
    /// become due later (unless a newer result is there already).
    fn land(&self, tenant: &str, key: &ScanKey, id: u64, done: &Arc<Finished<R>>, keep: bool) {
        {
            let mut flights = self.flights.lock();
            if flights.get(key).is_some_and(|f| f.id == id) {
                flights.remove(key);
            }
        }
        if !keep || self.recent.get(key).is_some_and(|f| f.at > done.at) {
            return;
        }
        let bytes = key.bytes()
            + done.result.as_ref().map_or(256, |r| r.bytes())
            + done
                .filters
                .iter()
                .map(|(i, e)| {
                    48 + i.as_deref().map_or(0, str::len) + e.as_deref().map_or(0, str::len)
                })
                .sum::<usize>();
        self.recent.put(tenant, key.clone(), done.clone(), bytes);
    }

    /// Forgets a kept result (its key has one caller left, or none).
    pub fn forget(&self, key: &ScanKey) {
        self.recent.remove(key);
    }

    /// Bytes the kept results hold.
    pub fn bytes(&self) -> usize {
        self.recent.bytes()
    }
}

fn images_bytes(images: &[crate::registry::Image]) -> usize {
    images
        .iter()
        .map(|i| {
            std::mem::size_of_val(i)
                + i.tag.len()
                + i.digest.len()
                + i.media_type.as_deref().map_or(0, str::len)
                + i.note.as_deref().map_or(0, str::len)
                + i.artifact_type.as_deref().map_or(0, str::len)
                + i.platforms.len() * 160
                + i.referrers.len() * 160
        })
        .sum()
}

impl Weigh for ScanReport {
    fn bytes(&self) -> usize {
        images_bytes(&self.images)
            + self.facts.len() * 256
            + self.failed_tags.len() * 128
            + self.vanished_tags.len() * 64
    }
}

impl Weigh for RefreshReport {
    fn bytes(&self) -> usize {
        images_bytes(&self.images)
            + self.facts.len() * 256
            + self.failed.len() * 128
            + self.gone.len() * 64
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::registry::{Image, ListingMode, Target};

    fn key(repo: &str) -> ScanKey {
        ScanKey::new(
            &Target::new("https://r.example", repo).unwrap(),
            None,
            false,
            None,
            ListingMode::Auto,
        )
    }

    fn report(tags: &[&str]) -> ScanReport {
        ScanReport::of_images(
            tags.iter()
                .map(|t| Image {
                    tag: t.to_string(),
                    digest: format!("sha256:{:0>64}", t.len()),
                    ..Image::default()
                })
                .collect(),
        )
    }

    fn all() -> FilterId {
        (None, None)
    }

    fn request(key: ScanKey, filter: FilterId, due: Instant) -> Request<'static> {
        Request {
            tenant: "ns",
            key,
            filters: [filter.clone()].into(),
            filter,
            due,
            keep: true,
        }
    }

    /// Each call of the returned closure counts one scan, which waits for `gate`.
    fn counted(
        runs: &Arc<AtomicUsize>,
        gate: &Arc<tokio::sync::Notify>,
    ) -> impl FnOnce(&BTreeSet<FilterId>) -> BoxFuture<'static, Result<ScanReport, ScanError>> + use<>
    {
        let (runs, gate) = (runs.clone(), gate.clone());
        move |_| {
            runs.fetch_add(1, Ordering::SeqCst);
            async move {
                gate.notified().await;
                Ok(report(&["1.0"]))
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn callers_due_together_share_one_scan() {
        let shared: Arc<SharedScans> = Arc::new(SharedScans::new(1 << 20, 1 << 20));
        let runs = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let due = Instant::now();
        let first = tokio::spawn({
            let (s, f) = (shared.clone(), counted(&runs, &gate));
            async move { s.scan(request(key("app"), all(), due), f).await.1 }
        });
        while runs.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let second = tokio::spawn({
            let (s, f) = (shared.clone(), counted(&runs, &gate));
            async move { s.scan(request(key("app"), all(), due), f).await.1 }
        });
        tokio::task::yield_now().await;
        gate.notify_waiters();
        gate.notify_one();
        assert_eq!(first.await.unwrap(), Share::Started);
        assert_eq!(second.await.unwrap(), Share::Joined);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Due before it finished: the kept result serves; due after: a new scan.
        let (_, share) = shared
            .scan(request(key("app"), all(), due), counted(&runs, &gate))
            .await;
        assert_eq!(share, Share::Reused);
        gate.notify_one();
        let (_, share) = shared
            .scan(
                request(key("app"), all(), Instant::now()),
                counted(&runs, &gate),
            )
            .await;
        assert_eq!(share, Share::Started);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn other_keys_and_unlisted_filters_never_share() {
        let shared: Arc<SharedScans> = Arc::new(SharedScans::new(1 << 20, 1 << 20));
        let runs = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let due = Instant::now();
        gate.notify_one();
        shared
            .scan(request(key("app"), all(), due), counted(&runs, &gate))
            .await;
        gate.notify_one();
        let (_, share) = shared
            .scan(request(key("other"), all(), due), counted(&runs, &gate))
            .await;
        assert_eq!(share, Share::Started, "another repository");
        let only_v1 = (Some("^v1".to_string()), None);
        gate.notify_one();
        let (done, share) = shared
            .scan(
                request(key("app"), only_v1.clone(), due),
                counted(&runs, &gate),
            )
            .await;
        assert_eq!(
            share,
            Share::Started,
            "a filter the kept result was not listed for"
        );
        assert!(done.filters.contains(&only_v1));
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_scan_nobody_waits_for_is_dropped_not_joined() {
        let shared: Arc<SharedScans> = Arc::new(SharedScans::new(1 << 20, 1 << 20));
        let runs = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let first = tokio::spawn({
            let (s, f) = (shared.clone(), counted(&runs, &gate));
            async move { s.scan(request(key("app"), all(), Instant::now()), f).await }
        });
        while runs.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        first.abort();
        let _ = first.await;
        gate.notify_one();
        let (_, share) = shared
            .scan(
                request(key("app"), all(), Instant::now()),
                counted(&runs, &gate),
            )
            .await;
        assert_eq!(share, Share::Started);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_single_caller_keeps_nothing() {
        let shared: Arc<SharedScans> = Arc::new(SharedScans::new(1 << 20, 1 << 20));
        let runs = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        gate.notify_one();
        let r = Request {
            keep: false,
            ..request(key("app"), all(), Instant::now())
        };
        shared.scan(r, counted(&runs, &gate)).await;
        assert_eq!(shared.bytes(), 0);
    }
}
