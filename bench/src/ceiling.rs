//! The registry's own ceiling: HEAD of manifests by tag, rotating over every tag of the
//! repository, at the scanner's concurrency, measured with `oha`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::fixture::Fixture;
use crate::sys::run_measured;

/// The `Accept` header the scanner sends (all four manifest types).
pub const ACCEPT: &str = registry_operator::registry::manifest::ACCEPT_MANIFESTS;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Ceiling {
    pub requests_per_second: f64,
    pub requests: u64,
    pub non_200: u64,
    pub seconds: f64,
    pub connections: usize,
    /// Every run's rate; the best one is the ceiling.
    pub runs: Vec<f64>,
}

/// Runs `oha` `runs` times for `seconds` each and keeps the best rate.
pub fn measure(
    oha: &Path,
    url: &str,
    fixture: &Fixture,
    connections: usize,
    seconds: u64,
    runs: usize,
    work: &Path,
) -> anyhow::Result<Ceiling> {
    let urls: PathBuf = work.join("ceiling-urls.txt");
    let lines: Vec<String> = fixture
        .digests
        .keys()
        .map(|t| format!("{url}/v2/{}/manifests/{t}", fixture.repo))
        .collect();
    std::fs::write(&urls, lines.join("\n") + "\n")?;
    let mut best: Option<Ceiling> = None;
    let mut rates = Vec::new();
    for run in 0..runs {
        let out = work.join(format!("ceiling-{run}.json"));
        let err = work.join(format!("ceiling-{run}.stderr"));
        let mut cmd = Command::new(oha);
        cmd.args(["--no-tui", "--output-format", "json", "-m", "HEAD"])
            .args(["-c", &connections.to_string()])
            .args(["-z", &format!("{seconds}s")])
            .args(["-H", &format!("Accept: {ACCEPT}")])
            // With --urls-from-file, the positional argument is the file of URLs.
            .arg("--urls-from-file")
            .arg(&urls);
        run_measured(&mut cmd, &out, &err, Duration::from_secs(seconds + 60))?;
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out)?)
            .with_context(|| format!("parsing oha's JSON in {}", out.display()))?;
        let rps = v["summary"]["requestsPerSec"]
            .as_f64()
            .context("oha JSON without summary.requestsPerSec")?;
        let codes = v["statusCodeDistribution"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let ok = codes.get("200").and_then(|c| c.as_u64()).unwrap_or(0);
        let all: u64 = codes.values().filter_map(|c| c.as_u64()).sum();
        rates.push(rps);
        let c = Ceiling {
            requests_per_second: rps,
            requests: all,
            non_200: all - ok,
            seconds: seconds as f64,
            connections,
            runs: Vec::new(),
        };
        if best
            .as_ref()
            .is_none_or(|b| c.requests_per_second > b.requests_per_second)
        {
            best = Some(c);
        }
    }
    let mut best = best.context("no ceiling run")?;
    best.runs = rates;
    Ok(best)
}
