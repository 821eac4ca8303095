//! One repository scan: tag list, one HEAD per tag, and one GET per digest it has not seen.
//!
//! Request budget: tag pages + one HEAD per tag + one GET per new digest (+ one per new index
//! child, + one HEAD per distinct layer of a new schema 1 manifest). Digests an earlier scan
//! resolved (`ScanOptions::known`) cost no GET at all. With referrers on: + one referrers
//! request per new digest, and per distinct digest once `referrers_interval` has passed
//! (`referrers`).
//!
//! One bad tag never fails the scan: a tag whose manifest cannot be read keeps its last known
//! digest, carries a note, and is counted in `failed_tags`. Only the tag list, auth, a
//! registry-wide problem (TLS, rate limit, deadline) or too many failing tags fail the scan.

mod created;
mod fold;
mod key;
mod referrers;
mod refresh;
mod resolve;
mod shared;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::listing::{self, ListRequest, ListingMode, NativeOutcome};
use super::protocol::TagFilter;
use super::registry_client::RegistryClient;
use super::session::Session;
use super::{
    Credentials, Image, ManifestFacts, RequestCounts, ScanError, ScanLimits, TagFailure, Target,
    Timestamp,
};
use resolve::{Found, resolve};

pub use fold::{MAX_FOLDED_REFERRERS, fold as fold_referrer_tags};
pub use key::ScanKey;
pub use refresh::{RefreshReport, refresh};
pub use shared::{FilterId, Finished, Request as SharedRequest, Share, SharedScans};

/// A scan fails when more than this share of its tags cannot be read (and always when all of
/// them fail): past that, the repository's picture is more wrong than right.
pub const FAILED_TAGS_LIMIT_PERCENT: usize = 50;

#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Who the scan is for (the controller: the object's namespace; empty in the CLI). Shared
    /// resources (caches, the body budget) give no tenant more than its share.
    pub tenant: String,
    /// Registry requests in flight at once.
    pub concurrency: usize,
    /// `n` asked for per tag list page.
    pub page_size: u32,
    /// Deadline for the whole scan.
    pub timeout: Duration,
    pub filter: TagFilter,
    /// Facts an earlier scan learned, by manifest digest.
    pub known: HashMap<String, ManifestFacts>,
    pub limits: ScanLimits,
    /// Tag → digest as an earlier scan found them: a tag that cannot be read now keeps it.
    /// A native listing's guard HEADs every tag whose digest is not the one found here.
    pub known_tags: HashMap<String, String>,
    /// Whether a registry's native listing API may give the digests.
    pub listing: ListingMode,
    /// `spec.timestamps: Created`: read each new image's config for its `created` (one blob
    /// GET per new digest) when its manifest has no creation annotation.
    pub created_from_config: bool,
    /// Read referrers (OCI 1.1 referrers API, Harbor's accessories): each new digest's, and
    /// every known digest's again once this long has passed since `referrers_checked_at`.
    /// `None`: none are read (what facts already say stays).
    pub referrers_interval: Option<Duration>,
    /// When an earlier scan last read the referrers of every digest.
    pub referrers_checked_at: Option<Timestamp>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            tenant: String::new(),
            concurrency: 8,
            page_size: 1000,
            timeout: Duration::from_secs(300),
            filter: TagFilter::default(),
            known: HashMap::new(),
            limits: ScanLimits::default(),
            known_tags: HashMap::new(),
            listing: ListingMode::default(),
            created_from_config: false,
            referrers_interval: None,
            referrers_checked_at: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScanReport {
    /// Every tag with its digest, in version order — referrer tags too, whose referrers are
    /// also folded into the images they name (see `fold`; the status decides whether the
    /// referrer tags themselves are listed).
    pub images: Vec<Image>,
    /// Complete facts for the digests in `images`: feed them to the next scan as `known`.
    /// Incomplete ones (an index child not found yet, a refused blob HEAD) are left out so the
    /// next scan tries again.
    pub facts: HashMap<String, ManifestFacts>,
    pub requests: RequestCounts,
    /// Tags listed but gone before their manifest could be read.
    pub vanished_tags: Vec<String>,
    /// Tags whose manifest could not be read, in version order.
    pub failed_tags: Vec<TagFailure>,
    pub duration: Duration,
    /// What became of a native listing API, when the registry has one.
    pub native: Option<NativeOutcome>,
    /// When this or an earlier scan last read the referrers of every digest: feed it to the
    /// next scan as `referrers_checked_at`.
    pub referrers_checked_at: Option<Timestamp>,
}

#[cfg(test)]
impl ScanReport {
    /// A report holding just `images`, for the unit tests that build statuses from one.
    pub(crate) fn of_images(images: Vec<Image>) -> Self {
        Self {
            images,
            facts: HashMap::new(),
            requests: RequestCounts::default(),
            vanished_tags: Vec::new(),
            failed_tags: Vec::new(),
            duration: Duration::ZERO,
            native: None,
            referrers_checked_at: None,
        }
    }
}

pub async fn scan(
    client: &RegistryClient,
    target: &Target,
    credentials: Option<&Credentials>,
    options: &ScanOptions,
) -> Result<ScanReport, ScanError> {
    let started = Instant::now();
    let session = client.session(&options.tenant, target, credentials, options.timeout);
    // Belt and braces: every request and wait already respects the deadline.
    let run = tokio::time::timeout(
        options.timeout.saturating_add(Duration::from_secs(5)),
        run(client, &session, options),
    );
    let (found, referrers_checked_at) = run.await.map_err(|_| ScanError::Timeout {
        what: format!("scan of {}/{}", target.registry(), target.repository()),
        after: options.timeout,
    })??;
    Ok(ScanReport {
        images: found.images,
        facts: found.facts,
        requests: RequestCounts {
            lister: Some(found.lister.as_str().to_string()),
            ..session.counters.counts()
        },
        vanished_tags: found.vanished,
        failed_tags: found.failed,
        duration: started.elapsed(),
        native: found.native,
        referrers_checked_at,
    })
}

async fn run(
    client: &RegistryClient,
    session: &Session<'_>,
    options: &ScanOptions,
) -> Result<(Found, Option<Timestamp>), ScanError> {
    let request = ListRequest {
        mode: options.listing,
        page_size: options.page_size,
        filter: &options.filter,
        limits: &options.limits,
        known_tags: &options.known_tags,
        concurrency: options.concurrency.max(1),
    };
    let mut listed = listing::list(session, &client.state.listers, &request).await?;
    let accessories = listed.referrers.take();
    let total = listed.tags.len();
    tracing::debug!(registry = %session.target.registry(), repository = session.target.repository(), tags = total, lister = listed.lister.as_str(), "listed tags");

    // A native listing already gave (and the guard checked) these digests: no HEAD for them.
    let mut resolved: Vec<(String, String)> = Vec::new();
    let mut to_head = Vec::new();
    for tag in listed.tags {
        match listed.digests.get(&tag) {
            Some(d) => resolved.push((tag, d.clone())),
            None => to_head.push(tag),
        }
    }
    let (mut found, mut failures) = resolve(session, options, to_head, resolved).await?;
    if !failures.is_empty()
        && (failures.len() == total || failures.len() * 100 > total * FAILED_TAGS_LIMIT_PERCENT)
    {
        let failed = failures.len();
        let (tag, first) = failures.swap_remove(0);
        return Err(ScanError::TooManyTagFailures {
            failed,
            total,
            tag,
            first: Box::new(first),
        });
    }
    found.failed = failures
        .into_iter()
        .map(|(tag, e)| TagFailure {
            tag,
            message: e.to_string(),
            reason: e.reason().as_str(),
        })
        .collect();
    for image in &mut found.images {
        if let Some(at) = listed.pushed.get(&image.tag) {
            image.set_pushed_at(*at, listed.lister.as_str());
        }
    }
    found.lister = listed.lister;
    found.native = listed.native;
    let memory = &client.state.referrers;
    let checked_at = referrers::attach(
        session,
        memory,
        options,
        referrers::Asker::Scan,
        &mut found,
        accessories,
    )
    .await;
    // Tag-derived referrers (fallback tags, cosign's) join those the API gave.
    fold::fold(&mut found.images, &found.facts);
    Ok((found, checked_at))
}
