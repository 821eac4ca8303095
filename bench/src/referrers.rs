//! Issue #18: what referrers cost a rescan of the main repository, through testenv's referrers
//! fixture (the OCI 1.1 referrers API in front of the same registry): without referrers, within
//! `referrersInterval` of the last full read (target: unchanged), and after it (one request per
//! distinct digest more). In-process scans through the library, like section 2b.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use registry_operator::registry::{
    ClientOptions, ListingMode, RegistryClient, RegistryState, RequestCounts, ScanOptions, Target,
    Timestamp, scan,
};
use testenv::referrers::ReferrersRegistry;

use crate::fixture::Fixture;

/// One rescan's requests and time.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReferrerRun {
    /// `off`, `within` or `after`.
    pub case: String,
    pub requests: RequestCounts,
    pub seconds: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ReferrerRuns {
    pub tags: usize,
    pub distinct: usize,
    pub runs: Vec<ReferrerRun>,
}

pub fn total(r: &RequestCounts) -> i64 {
    r.tag_pages
        + r.manifest_heads
        + r.manifest_gets
        + r.token_requests
        + r.blob_heads
        + r.native_requests
        + r.referrer_requests
}

impl ReferrerRuns {
    pub fn per_tag(&self, case: &str) -> Option<f64> {
        let run = self.runs.iter().find(|r| r.case == case)?;
        Some(total(&run.requests) as f64 / self.tags.max(1) as f64)
    }
}

pub async fn measure(
    registry_url: &str,
    fx: &Fixture,
    concurrency: usize,
) -> anyhow::Result<ReferrerRuns> {
    let fixture = ReferrersRegistry::start(registry_url).await?;
    let client = RegistryClient::new(ClientOptions::default())?
        .with_state(Arc::new(RegistryState::default()));
    let target = Target::new(&fixture.url, &fx.repo)?;
    let hour = Duration::from_secs(3600);
    let options = ScanOptions {
        concurrency,
        listing: ListingMode::Distribution,
        referrers_interval: Some(hour),
        ..ScanOptions::default()
    };
    let first = scan(&client, &target, None, &options).await?;
    let checked = first
        .referrers_checked_at
        .context("the first scan read every digest's referrers")?;
    let known = ScanOptions {
        known: first.facts.clone(),
        known_tags: first
            .images
            .iter()
            .map(|i| (i.tag.clone(), i.digest.clone()))
            .collect(),
        referrers_checked_at: Some(checked),
        ..options
    };
    let cases = [
        (
            "off",
            ScanOptions {
                referrers_interval: None,
                ..known.clone()
            },
        ),
        ("within", known.clone()),
        (
            "after",
            ScanOptions {
                referrers_checked_at: Timestamp::from_unix(checked.unix().saturating_sub(7200)),
                ..known.clone()
            },
        ),
    ];
    let mut runs = Vec::new();
    for (case, o) in cases {
        let t = Instant::now();
        let r = scan(&client, &target, None, &o).await?;
        runs.push(ReferrerRun {
            case: case.to_string(),
            requests: r.requests,
            seconds: t.elapsed().as_secs_f64(),
        });
    }
    Ok(ReferrerRuns {
        tags: first.images.len(),
        distinct: first.facts.len(),
        runs,
    })
}
