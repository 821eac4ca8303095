//! What `spec.timestamps: Created` (`scan --created`) costs (issue #17): the first scan of the
//! main repository with and without it, and a rescan with it. The target: the first scan's
//! extra requests are its distinct digests (one config GET each, an index's through its
//! representative platform), the rescan's none. In-process through the library, as the
//! native section, so the two paths' times compare.

use std::time::Instant;

use registry_operator::registry::{
    ClientOptions, RegistryClient, RequestCounts, ScanOptions, ScanReport, Target, scan,
};

use crate::fixture::Fixture;

#[derive(Debug, Clone, serde::Serialize)]
pub struct CreatedRun {
    /// `first`, `first --created`, `rescan --created`.
    pub path: String,
    pub requests: RequestCounts,
    /// Median time, seconds.
    pub seconds: f64,
    /// Tags that got a `createdAt`.
    pub with_created: usize,
}

impl CreatedRun {
    pub fn total_requests(&self) -> i64 {
        let r = &self.requests;
        r.tag_pages
            + r.manifest_heads
            + r.manifest_gets
            + r.token_requests
            + r.blob_heads
            + r.blob_gets
            + r.native_requests
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CreatedResult {
    pub tags: usize,
    /// The target of the first scan's extra requests.
    pub distinct_digests: usize,
    pub runs: Vec<CreatedRun>,
}

impl CreatedResult {
    fn total(&self, path: &str) -> i64 {
        self.runs
            .iter()
            .find(|r| r.path == path)
            .map_or(0, CreatedRun::total_requests)
    }

    /// Requests `--created` added to the first scan.
    pub fn first_extra(&self) -> i64 {
        self.total("first --created") - self.total("first")
    }

    /// Config GETs of the rescan with `--created` (target 0).
    pub fn rescan_blob_gets(&self) -> i64 {
        self.runs
            .iter()
            .find(|r| r.path == "rescan --created")
            .map_or(0, |r| r.requests.blob_gets)
    }
}

pub async fn measure(
    registry_url: &str,
    fx: &Fixture,
    concurrency: usize,
    runs: usize,
) -> anyhow::Result<CreatedResult> {
    let target = Target::new(registry_url, &fx.repo)?;
    // A fresh client per run: nothing learned by one run (auth modes, listers) helps another.
    let client = || RegistryClient::new(ClientOptions::default());
    let options = |created: bool| ScanOptions {
        concurrency,
        created_from_config: created,
        ..ScanOptions::default()
    };
    let mut out = Vec::new();
    let mut with_facts: Option<ScanReport> = None;
    for (path, created) in [("first", false), ("first --created", true)] {
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..runs.max(1) {
            let c = client()?;
            let t = Instant::now();
            let r = scan(&c, &target, None, &options(created)).await?;
            times.push(t.elapsed().as_secs_f64());
            last = Some(r);
        }
        let r = last.expect("at least one run");
        out.push(run(path, &r, &times));
        if created {
            with_facts = Some(r);
        }
    }
    let first = with_facts.expect("the --created first scan ran");
    let again = ScanOptions {
        known: first.facts.clone(),
        known_tags: first
            .images
            .iter()
            .map(|i| (i.tag.clone(), i.digest.clone()))
            .collect(),
        ..options(true)
    };
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs.max(1) {
        let c = client()?;
        let t = Instant::now();
        let r = scan(&c, &target, None, &again).await?;
        times.push(t.elapsed().as_secs_f64());
        last = Some(r);
    }
    out.push(run(
        "rescan --created",
        &last.expect("at least one run"),
        &times,
    ));
    Ok(CreatedResult {
        tags: fx.tags(),
        distinct_digests: fx.distinct(),
        runs: out,
    })
}

fn run(path: &str, r: &ScanReport, times: &[f64]) -> CreatedRun {
    CreatedRun {
        path: path.to_string(),
        requests: r.requests.clone(),
        seconds: crate::sys::median(times),
        with_created: r.images.iter().filter(|i| i.created_at.is_some()).count(),
    }
}
