//! Native listing APIs (issue #12): a rescan of the main repository through each vendor's
//! fixture (testenv's `vendor`, answering the documented shapes in front of the same registry),
//! against the distribution path. In-process scans through the library, since the vendor hosts
//! (registry-1.docker.io, gcr.io, *.azurecr.io) reach the fixtures only through
//! `ClientOptions::resolve`; the distribution row is measured the same way, so the times compare.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use registry_operator::registry::{
    ClientOptions, ListingMode, NativeOutcome, RegistryClient, RegistryState, RequestCounts,
    ScanOptions, ScanReport, Target, scan,
};
use testenv::certs::TestCa;
use testenv::vendor::{Vendor, VendorFixture};

use crate::fixture::{Check, Fixture};

pub const VENDORS: [Vendor; 5] = [
    Vendor::DockerHub,
    Vendor::Harbor,
    Vendor::Quay,
    Vendor::Gar,
    Vendor::Acr,
];

/// One lister's rescan of the main repository.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NativeRun {
    /// `distribution` or the vendor's lister name.
    pub path: String,
    /// The lister the rescan reported (a fallback would show `distribution`).
    pub lister: String,
    pub tags: usize,
    pub requests: RequestCounts,
    /// Median rescan time, seconds.
    pub seconds: f64,
    pub check: Check,
    /// Why the native API was not used, if it was not.
    pub fell_back: Option<String>,
}

impl NativeRun {
    /// Every request of the rescan, native API and guard HEADs included.
    pub fn total_requests(&self) -> i64 {
        let r = &self.requests;
        r.tag_pages
            + r.manifest_heads
            + r.manifest_gets
            + r.token_requests
            + r.blob_heads
            + r.native_requests
    }

    pub fn per_tag(&self) -> f64 {
        self.total_requests() as f64 / self.tags.max(1) as f64
    }
}

pub async fn measure(
    registry_url: &str,
    fx: &Fixture,
    concurrency: usize,
    runs: usize,
) -> anyhow::Result<Vec<NativeRun>> {
    let mut out = Vec::new();
    let client = RegistryClient::new(ClientOptions::default())?
        .with_state(Arc::new(RegistryState::default()));
    let target = Target::new(registry_url, &fx.repo)?;
    out.push(
        rescans(
            "distribution",
            &client,
            &target,
            fx,
            concurrency,
            runs,
            ListingMode::Distribution,
        )
        .await?,
    );
    let ca = TestCa::new();
    for vendor in VENDORS {
        let fixture = VendorFixture::start(vendor, registry_url, Some(&ca)).await?;
        let client = RegistryClient::new(ClientOptions {
            ca_pem: Some(ca.ca_pem.clone().into_bytes()),
            resolve: fixture.resolve(),
            ..ClientOptions::default()
        })?
        .with_state(Arc::new(RegistryState::default()));
        let target = Target::new(&fixture.url, &fx.repo)?;
        out.push(
            rescans(
                vendor.lister(),
                &client,
                &target,
                fx,
                concurrency,
                runs,
                ListingMode::Auto,
            )
            .await?,
        );
    }
    Ok(out)
}

/// A first scan (which also lets a fixture read the repository once), then `runs` rescans
/// with its result; the median time and the last rescan's counts.
async fn rescans(
    path: &str,
    client: &RegistryClient,
    target: &Target,
    fx: &Fixture,
    concurrency: usize,
    runs: usize,
    listing: ListingMode,
) -> anyhow::Result<NativeRun> {
    let options = ScanOptions {
        concurrency,
        listing,
        ..ScanOptions::default()
    };
    let first = scan(client, target, None, &options).await?;
    let again = ScanOptions {
        known: first.facts.clone(),
        known_tags: first
            .images
            .iter()
            .map(|i| (i.tag.clone(), i.digest.clone()))
            .collect(),
        ..options
    };
    let mut times = Vec::new();
    let mut last: Option<ScanReport> = None;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let r = scan(client, target, None, &again).await?;
        times.push(t.elapsed().as_secs_f64());
        last = Some(r);
    }
    let r = last.expect("at least one run");
    let found: HashMap<String, String> = r
        .images
        .iter()
        .map(|i| (i.tag.clone(), i.digest.clone()))
        .collect();
    Ok(NativeRun {
        path: path.to_string(),
        lister: r.requests.lister.clone().unwrap_or_default(),
        tags: r.images.len(),
        requests: r.requests.clone(),
        seconds: crate::sys::median(&times),
        check: fx.check(&found),
        fell_back: match &r.native {
            Some(NativeOutcome::FellBack { reason, .. } | NativeOutcome::Off { reason, .. }) => {
                Some(reason.clone())
            }
            _ => None,
        },
    })
}
