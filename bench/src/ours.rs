//! registry-operator's side: `registry-operator scan --output json`, first scan and rescan
//! with `--previous`, as a user (or the bench) runs it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use registry_operator::api::RegistryStatus;
use registry_operator::registry::RequestCounts;

use crate::fixture::{Check, Fixture};
use crate::sys::{Measured, run_measured};

/// One run of the scan CLI.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScanRun {
    /// Process start to exit.
    pub measured: Measured,
    /// The scan itself, as the status reports it (`lastScanDurationMs`).
    pub scan_seconds: f64,
    pub requests: RequestCounts,
    pub tags: usize,
    /// Bytes of the status it printed, as compact JSON (what the apiserver would store).
    pub status_bytes: usize,
    pub check: Check,
    #[serde(skip)]
    pub output: PathBuf,
}

impl ScanRun {
    /// Every registry request the scan made (retries are inside the kinds).
    pub fn total_requests(&self) -> i64 {
        let r = &self.requests;
        // The CLI is one process: it probes for a native listing API (2 requests) every run.
        r.tag_pages + r.manifest_heads + r.manifest_gets + r.token_requests + r.native_requests
    }

    /// HEAD requests per second of scan time.
    pub fn head_rate(&self) -> f64 {
        self.requests.manifest_heads as f64 / self.scan_seconds
    }
}

pub struct Scanner {
    pub bin: PathBuf,
    pub url: String,
    pub concurrency: usize,
    pub work: PathBuf,
}

impl Scanner {
    /// Scans `fixture.repo`; with `previous`, hands the earlier status to `--previous`.
    pub fn scan(
        &self,
        fixture: &Fixture,
        previous: Option<&Path>,
        label: &str,
    ) -> anyhow::Result<ScanRun> {
        let output = self.work.join(format!("{label}.json"));
        let stderr = self.work.join(format!("{label}.stderr"));
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--log-level", "warn", "scan", "--output", "json"])
            .args(["--url", &self.url, "--repository", &fixture.repo])
            .args(["--concurrency", &self.concurrency.to_string()])
            // Every tag in status (the CRD's maximum), so --previous knows every digest.
            .args(["--max-images", "0"])
            .env_remove("RUST_LOG");
        if let Some(p) = previous {
            cmd.arg("--previous").arg(p);
        }
        let measured = run_measured(&mut cmd, &output, &stderr, Duration::from_secs(600))?;
        let text = std::fs::read(&output)?;
        let status: RegistryStatus = serde_json::from_slice(&text)
            .with_context(|| format!("parsing {}", output.display()))?;
        let images = status.images.clone().unwrap_or_default();
        let found: HashMap<String, String> = images
            .iter()
            .map(|i| (i.tag.clone(), i.digest.clone()))
            .collect();
        Ok(ScanRun {
            measured,
            scan_seconds: status.last_scan_duration_ms.unwrap_or(0) as f64 / 1000.0,
            requests: status.last_scan_requests.clone().unwrap_or_default(),
            tags: status.tag_count.unwrap_or(0) as usize,
            status_bytes: serde_json::to_vec(&status)?.len(),
            check: fixture.check(&found),
            output,
        })
    }
}
