//! A webhook's targeted refresh: only the tags it named, no tag list.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::ScanOptions;
use super::referrers::{self, Asker};
use super::resolve::resolve;
use crate::registry::registry_client::RegistryClient;
use crate::registry::{
    Credentials, Image, ManifestFacts, RequestCounts, ScanError, TagFailure, Target,
};

/// What [`refresh`] learned about the tags it was given.
#[derive(Debug, Clone)]
pub struct RefreshReport {
    /// The given tags that exist, with their digest and facts, in version order.
    pub images: Vec<Image>,
    /// Complete facts of the digests in `images` (as [`ScanReport::facts`]).
    pub facts: HashMap<String, ManifestFacts>,
    /// Given tags the registry no longer has (404).
    pub gone: Vec<String>,
    /// Given tags that could not be read; they keep whatever the caller knew.
    pub failed: Vec<TagFailure>,
    pub requests: RequestCounts,
    pub duration: Duration,
}

/// Re-reads only `tags` (a webhook said they changed): one HEAD each, and one GET per digest
/// `options.known` does not have yet — no tag list. Tags outside `options.filter` are skipped.
pub async fn refresh(
    client: &RegistryClient,
    target: &Target,
    credentials: Option<&Credentials>,
    tags: &[String],
    options: &ScanOptions,
) -> Result<RefreshReport, ScanError> {
    let started = Instant::now();
    let session = client.session(&options.tenant, target, credentials, options.timeout);
    let tags: Vec<String> = tags
        .iter()
        .filter(|t| options.filter.admits(t))
        .cloned()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let run = tokio::time::timeout(
        options.timeout.saturating_add(Duration::from_secs(5)),
        resolve(&session, options, tags, Vec::new()),
    );
    let (mut found, failures) = run.await.map_err(|_| ScanError::Timeout {
        what: format!("refresh of {}/{}", target.registry(), target.repository()),
        after: options.timeout,
    })??;
    // New digests get their referrers as in a scan; known ones wait for the next full check.
    let memory = &client.state.referrers;
    referrers::attach(&session, memory, options, Asker::Refresh, &mut found, None).await;
    let failed_tags: HashSet<&str> = failures.iter().map(|(t, _)| t.as_str()).collect();
    Ok(RefreshReport {
        // A tag whose HEAD failed is listed with the caller's old digest: leave it to them.
        images: found
            .images
            .into_iter()
            .filter(|i| !failed_tags.contains(i.tag.as_str()))
            .collect(),
        facts: found.facts,
        gone: found.vanished,
        failed: failures
            .into_iter()
            .map(|(tag, e)| TagFailure {
                tag,
                message: e.to_string(),
                reason: e.reason().as_str(),
            })
            .collect(),
        requests: session.counters.counts(),
        duration: started.elapsed(),
    })
}
