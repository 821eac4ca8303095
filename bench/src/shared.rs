//! Shared scans (issue #19): many tenants watching the same few repositories. The same
//! objects run twice on a fresh control plane — each object scanning on its own
//! (`--share-scans=false`, what the operator did before) and sharing one scan per repository —
//! and the registry requests and operator CPU of a full cycle are compared with the requests
//! of one scan per repository.

use std::path::Path;
use std::time::Duration;

use testenv::push::Pusher;
use testenv::registry::{RegistryOptions, RegistryServer};

use crate::scale::{self, ScaleOptions, ScaleResult};
use crate::{Args, fixture, say};

/// Shared scans may cost at most this much more than one scan per repository.
pub const REQUESTS_TARGET: f64 = 1.05;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SharedResult {
    pub objects: usize,
    pub namespaces: usize,
    pub repositories: usize,
    pub tags: usize,
    /// Registry requests of one scan of each repository (a tag page and a HEAD per tag).
    pub requests_of_one_scan_each: f64,
    pub unshared: ScaleResult,
    pub shared: ScaleResult,
}

impl SharedResult {
    pub fn requests(r: &ScaleResult) -> f64 {
        r.cycle_registry_requests.values().sum()
    }
}

pub async fn run(args: &Args, operator: &Path, work: &Path) -> anyhow::Result<SharedResult> {
    let reg = RegistryServer::start(RegistryOptions::plain()).await?;
    let pusher = Pusher::new(&reg, None)?;
    say(format!(
        "shared scans: filling {} repositories of {} tags",
        args.shared_repos, args.shared_tags
    ));
    let mut repos = Vec::new();
    for r in 0..args.shared_repos {
        let images = (args.shared_tags / 10).max(1);
        repos.push(
            fixture::fill(
                &pusher,
                &format!("shared/app-{r}"),
                args.shared_tags,
                images - 1,
                1,
                500 + r as u64,
            )
            .await?,
        );
    }
    let mut runs = Vec::new();
    for share in [false, true] {
        let opts = ScaleOptions {
            operator: operator.to_path_buf(),
            url: reg.url.clone(),
            repos: repos.clone(),
            objects: args.shared_objects,
            namespaces: args.shared_namespaces,
            replicas: 1,
            interval_seconds: args.shared_interval,
            max_concurrent_scans: args.scale_max_concurrent_scans,
            window_scans: args.shared_objects,
            work: work.join(format!("shared-{share}")),
            timeout: Duration::from_secs(args.scale_timeout),
            share_scans: share,
        };
        std::fs::create_dir_all(&opts.work)?;
        let r = scale::run(&opts).await?;
        say(format!(
            "shared scans {}: {:.0} registry requests and {:.1} CPU s per cycle",
            if share { "on" } else { "off" },
            SharedResult::requests(&r),
            r.cycle_cpu_seconds
        ));
        runs.push(r);
    }
    let shared = runs.pop().unwrap_or_default();
    let unshared = runs.pop().unwrap_or_default();
    Ok(SharedResult {
        objects: args.shared_objects,
        namespaces: args.shared_namespaces,
        repositories: args.shared_repos,
        tags: args.shared_tags,
        requests_of_one_scan_each: (args.shared_repos * (args.shared_tags + 1)) as f64,
        unshared,
        shared,
    })
}
