//! Which digests' referrers a scan reads, and at what cost: each **new** digest once, every
//! known digest again once `referrersInterval` has passed since the repository's last full
//! check — so a rescan of an unchanged repository between two checks costs what it did
//! without referrers (tag pages + one HEAD per tag). A registry that does not serve the API
//! costs one request per tenant until the operator restarts; Harbor's listing gives the
//! accessories with the artifacts, at no request at all.
//!
//! Asked for: the digest a tag points at (for a multi-arch image, the index). cosign and
//! notation sign the digest a tag resolves to — the index — by default; platform manifests
//! are only asked about by name (`cosign sign image@sha256:<platform>`), which a rescan
//! cannot guess without one request per platform.
//!
//! What the API gives replaces a digest's referrers in its facts; referrers named by tags
//! (the fallback schema, cosign's tags) are added to them after this, each digest once.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};

use super::ScanOptions;
use super::resolve::{Found, per_tag};
use crate::registry::protocol::{ReferrerListing, ReferrersMemory, list_referrers};
use crate::registry::session::Session;
use crate::registry::{Referrer, ScanError, Timestamp};

/// Whether a whole scan (which may refresh every known digest) or a webhook's refresh (only
/// the digests it found new) is asking.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Asker {
    Scan,
    Refresh,
}

/// Whether the referrers of every known digest are due again at `now`.
pub(crate) fn due(checked_at: Option<Timestamp>, interval: Duration, now: Timestamp) -> bool {
    let interval = i64::try_from(interval.as_secs()).unwrap_or(i64::MAX);
    checked_at.is_none_or(|at| now.unix().saturating_sub(at.unix()) >= interval)
}

/// Reads and attaches the referrers the scan owes; returns the repository's check time to
/// remember (unchanged unless this was a full check that finished).
pub(super) async fn attach(
    session: &Session<'_>,
    memory: &ReferrersMemory,
    options: &ScanOptions,
    asker: Asker,
    found: &mut Found,
    native: Option<HashMap<String, Vec<Referrer>>>,
) -> Option<Timestamp> {
    let Some(interval) = options.referrers_interval else {
        return options.referrers_checked_at;
    };
    let now = Timestamp::now();
    let full = asker == Asker::Scan && due(options.referrers_checked_at, interval, now);
    // Images whose manifest could not be read carry a note and no facts: nothing to ask.
    let digests: BTreeSet<String> = found
        .images
        .iter()
        .filter(|i| i.note.is_none())
        .map(|i| i.digest.clone())
        .filter(|d| full || !options.known.contains_key(d))
        .collect();
    let mut read: HashMap<String, Vec<Referrer>> = HashMap::new();
    let mut ask = Vec::new();
    for d in digests {
        match native.as_ref().and_then(|n| n.get(&d)) {
            Some(list) => {
                read.insert(d, list.clone());
            }
            None => ask.push(d),
        }
    }
    // Harbor's accessories come with every listing: known digests' are current too.
    if let Some(native) = native {
        for (d, list) in native {
            read.entry(d).or_insert(list);
        }
    }
    // Referrers never fail a scan: a registry-wide problem (a rate limit, the deadline) while
    // asking leaves every image the referrers it had, and the next scan asks again.
    let mut complete = true;
    if !ask.is_empty() {
        match ask_api(session, memory, options, ask).await {
            Ok(got) => read.extend(got),
            Err(e) => {
                complete = false;
                tracing::info!(registry = %session.target.registry(), repository = session.target.repository(), error = %e, "referrers not read this time; the images keep those they had");
            }
        }
    }
    for (digest, mut list) in read {
        list.sort_by(|a, b| (a.kind, &a.digest).cmp(&(b.kind, &b.digest)));
        for image in found.images.iter_mut().filter(|i| i.digest == digest) {
            image.referrers.clone_from(&list);
        }
        if let Some(f) = found.facts.get_mut(&digest) {
            f.referrers = list;
        }
    }
    if full && complete {
        Some(now)
    } else {
        options.referrers_checked_at
    }
}

/// Asks the referrers API about `ask`; `Err` only for what ends the asking (see [`per_tag`]).
async fn ask_api(
    session: &Session<'_>,
    memory: &ReferrersMemory,
    options: &ScanOptions,
    mut ask: Vec<String>,
) -> Result<HashMap<String, Vec<Referrer>>, ScanError> {
    let mut read = HashMap::new();
    let base = session.target.base_url().to_string();
    if ask.is_empty() || memory.is_unsupported(session.tenant, &base) {
        return Ok(read);
    }
    // The first answer says whether the registry serves the API at all, before many requests
    // go out in parallel to learn the same thing.
    let first = ask.remove(0);
    match per_tag(session, list_referrers(session, &first).await)? {
        Ok(ReferrerListing::Unsupported) => {
            tracing::debug!(registry = %session.target.registry(), "registry does not serve the referrers API; not asked again");
            memory.unsupported(session.tenant, &base);
            return Ok(read);
        }
        Ok(ReferrerListing::Referrers(list)) => {
            read.insert(first, list);
        }
        Err(e) => skipped(session, &first, &e),
    }
    let results: Vec<(String, Result<ReferrerListing, ScanError>)> = stream::iter(ask)
        .map(|d| async move {
            let r = per_tag(session, list_referrers(session, &d).await)?;
            Ok::<_, ScanError>((d, r))
        })
        .buffer_unordered(options.concurrency.max(1))
        .try_collect()
        .await?;
    for (d, r) in results {
        match r {
            Ok(ReferrerListing::Referrers(list)) => {
                read.insert(d, list);
            }
            // Not for one digest only: a registry answering so now has nothing to say.
            Ok(ReferrerListing::Unsupported) => {}
            Err(e) => skipped(session, &d, &e),
        }
    }
    Ok(read)
}

/// A digest whose referrers could not be read keeps those it had; the scan goes on.
fn skipped(session: &Session<'_>, digest: &str, e: &ScanError) {
    tracing::debug!(registry = %session.target.registry(), repository = session.target.repository(), %digest, error = %e, "referrers could not be read; the digest keeps those it had");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_is_due_once_the_interval_has_passed() {
        let hour = Duration::from_secs(3600);
        let at = Timestamp::from_unix(1_000_000).unwrap();
        let later = |s: i64| Timestamp::from_unix(1_000_000 + s).unwrap();
        assert!(due(None, hour, at), "never checked");
        assert!(!due(Some(at), hour, later(3599)));
        assert!(due(Some(at), hour, later(3600)));
        assert!(!due(Some(later(10)), hour, at), "a clock that went back");
        assert!(!due(Some(at), Duration::MAX, later(1 << 40)));
    }
}
