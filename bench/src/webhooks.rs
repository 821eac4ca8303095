//! Push, not poll: push-to-status latency with registry webhooks (the registry's own
//! `notifications` pointed at a real operator on a real control plane) against polling, and
//! the registry requests a day each costs for a repository pushed to once an hour.
//!
//! Polling at the default interval (300 s) cannot be measured over many pushes in bench time:
//! it is measured at the minimum interval (30 s) on a few pushes, and the default-interval
//! figures are derived from it (a push waits on average half an interval, at worst a whole one,
//! plus one scan) and labelled as derived.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kube::api::{Api, PostParams};
use registry_operator::api::{MIN_SCAN_INTERVAL, Registry};
use testenv::controlplane::ControlPlane;
use testenv::push::{Format, ImageSpec, Pusher};
use testenv::registry::{RegistryOptions, RegistryServer};

use crate::scale::{scrape, sum};
use crate::sys;

pub struct WebhookOptions {
    pub operator: std::path::PathBuf,
    /// Pushes measured with webhooks.
    pub pushes: usize,
    /// Pushes measured with polling at the minimum interval.
    pub poll_pushes: usize,
    /// Tags of the repository whose requests per day are computed.
    pub repo_tags: usize,
    /// The safety-net interval with webhooks on (the module's `webhook.minScanInterval`).
    pub safety_interval: u64,
    pub work: std::path::PathBuf,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WebhookResult {
    pub pushes: usize,
    /// Push finished (manifest PUT answered) until the status lists the tag.
    pub webhook_p50_ms: f64,
    pub webhook_p99_ms: f64,
    pub webhook_max_ms: f64,
    /// Registry requests per pushed tag with webhooks, by kind, measured.
    pub heads_per_event: f64,
    pub gets_per_event: f64,
    pub requests_per_event: f64,
    pub poll_interval_seconds: u64,
    /// Measured latencies with polling at `poll_interval_seconds`.
    pub poll_latencies_s: Vec<f64>,
    /// Median duration of one scan of the polled repository.
    pub scan_seconds: f64,
    pub repo_tags: usize,
    /// Tags each repository started with.
    pub base_tags: usize,
    /// Registry requests of one scan of the unchanged repository (measured).
    pub requests_per_scan: f64,
    /// Derived for the default interval (300 s): half an interval plus a scan, and 99% of one.
    pub derived_default_p50_s: f64,
    pub derived_default_p99_s: f64,
    pub safety_interval_seconds: u64,
    /// For 1 push an hour: polling every 300 s vs webhooks + a scan every safety interval.
    pub per_day_polling: f64,
    pub per_day_webhooks: f64,
}

const SECRET: &str = "bench-webhook-secret";

pub async fn run(opts: &WebhookOptions) -> anyhow::Result<WebhookResult> {
    eprintln!("bench: webhooks: starting etcd + kube-apiserver, two registries and an operator");
    let cp = ControlPlane::start().await?;
    let result = measure(opts, &cp).await;
    cp.stop(Duration::from_secs(5));
    result
}

async fn measure(opts: &WebhookOptions, cp: &ControlPlane) -> anyhow::Result<WebhookResult> {
    let client = cp.client().await;
    let crd = std::fs::read_to_string(testenv::tools::repo_root().join("crds/registry.yaml"))?;
    cp.apply_yaml(&crd).await.context("installing the CRD")?;
    let ns = cp.create_namespace("bench-webhooks").await;

    let port = testenv::tools::free_port();
    let metrics_port = testenv::tools::free_port();
    let secret_file = opts.work.join("webhook-secret");
    std::fs::write(&secret_file, SECRET)?;
    // Webhooks: the registry notifies the operator. Polling: a registry that does not.
    let hooked = RegistryServer::start(RegistryOptions::plain().notifying(
        &format!("http://127.0.0.1:{port}/webhook/distribution"),
        &format!("Bearer {SECRET}"),
    ))
    .await?;
    let quiet = RegistryServer::start(RegistryOptions::plain()).await?;

    let mut cmd = Command::new(&opts.operator);
    cmd.arg("run")
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .args([
            "--health-addr",
            &format!("127.0.0.1:{}", testenv::tools::free_port()),
        ])
        .args(["--namespace", &ns, "--leader-elect=false"])
        .args(["--webhook-addr", &format!("127.0.0.1:{port}")])
        .arg("--webhook-secret-file")
        .arg(&secret_file)
        .args(["--egress-allow", "127.0.0.1/32"])
        .env("KUBECONFIG", cp.kubeconfig_path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(opts.work.join("operator.log"))?)
        .stderr(std::fs::File::create(opts.work.join("operator.stderr"))?);
    let mut child = testenv::registry::spawn_tied(cmd).context("starting the operator")?;
    let result = measure_with(opts, &client, &ns, &hooked, &quiet, metrics_port).await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

async fn measure_with(
    opts: &WebhookOptions,
    client: &kube::Client,
    ns: &str,
    hooked: &RegistryServer,
    quiet: &RegistryServer,
    metrics_port: u16,
) -> anyhow::Result<WebhookResult> {
    let api: Api<Registry> = Api::namespaced(client.clone(), ns);
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let http = reqwest::Client::new();
    let mut out = WebhookResult {
        pushes: opts.pushes,
        repo_tags: opts.repo_tags,
        base_tags: opts.repo_tags.max(1),
        safety_interval_seconds: opts.safety_interval,
        poll_interval_seconds: MIN_SCAN_INTERVAL as u64,
        ..WebhookResult::default()
    };

    // Both repositories start with `repo_tags` tags and a first scan.
    let push = Pusher::new(hooked, None)?;
    let poll_push = Pusher::new(quiet, None)?;
    for i in 0..opts.repo_tags.max(1) {
        let spec = ImageSpec::new(Format::Docker, 5000 + i as u64, &[512]);
        push.push_image("hooks/app", Some(&format!("base-{i}")), &spec)
            .await?;
        poll_push
            .push_image("poll/app", Some(&format!("base-{i}")), &spec)
            .await?;
    }
    for (name, url, repo, interval) in [
        ("hooked", &hooked.url, "hooks/app", 300),
        ("polled", &quiet.url, "poll/app", MIN_SCAN_INTERVAL),
    ] {
        let obj: Registry = serde_json::from_value(serde_json::json!({
            "apiVersion": "registry.kubecontroller.io/v1alpha1", "kind": "Registry",
            "metadata": {"name": name},
            "spec": {"url": url, "repository": repo, "scanInterval": interval},
        }))?;
        api.create(&PostParams::default(), &obj).await?;
    }
    for name in ["hooked", "polled"] {
        wait_tags(&api, name, opts.repo_tags.max(1), Duration::from_secs(120)).await?;
    }

    // Webhooks: one push at a time, until the status lists it.
    let requests_before = registry_requests(&http, &metrics_url).await?;
    let mut latencies = Vec::new();
    for i in 0..opts.pushes {
        let tag = format!("w-{i}");
        let spec = ImageSpec::new(Format::Docker, 10_000 + i as u64, &[512]);
        push.push_image("hooks/app", Some(&tag), &spec).await?;
        let pushed = Instant::now();
        wait_for_tag(&api, "hooked", &tag, Duration::from_secs(60)).await?;
        latencies.push(pushed.elapsed().as_secs_f64() * 1000.0);
    }
    let requests_after = registry_requests(&http, &metrics_url).await?;
    if opts.pushes > 0 {
        let n = opts.pushes as f64;
        let delta = |k: &str| {
            requests_after.get(k).copied().unwrap_or(0.0)
                - requests_before.get(k).copied().unwrap_or(0.0)
        };
        out.heads_per_event = delta("manifest_head") / n;
        out.gets_per_event = delta("manifest_get") / n;
        out.requests_per_event =
            requests_after.values().sum::<f64>() / n - requests_before.values().sum::<f64>() / n;
        out.webhook_p50_ms = sys::percentile(&latencies, 50.0);
        out.webhook_p99_ms = sys::percentile(&latencies, 99.0);
        out.webhook_max_ms = latencies.iter().copied().fold(0.0, f64::max);
    }

    // Polling at the minimum interval: a few pushes, each waiting for the next scan.
    let mut scans = Vec::new();
    for i in 0..opts.poll_pushes {
        let tag = format!("p-{i}");
        let spec = ImageSpec::new(Format::Docker, 20_000 + i as u64, &[512]);
        poll_push.push_image("poll/app", Some(&tag), &spec).await?;
        let pushed = Instant::now();
        let r = wait_for_tag(
            &api,
            "polled",
            &tag,
            Duration::from_secs(MIN_SCAN_INTERVAL as u64 * 3),
        )
        .await?;
        out.poll_latencies_s.push(pushed.elapsed().as_secs_f64());
        if let Some(ms) = r.status.as_ref().and_then(|s| s.last_scan_duration_ms) {
            scans.push(ms as f64 / 1000.0);
        }
    }
    // One scan of the (now unchanged) polled repository: what every polling scan costs.
    let r = api.get("polled").await?;
    let seen = r.status.as_ref().and_then(|s| s.last_scan_time.clone());
    let deadline = Instant::now() + Duration::from_secs(MIN_SCAN_INTERVAL as u64 * 3);
    let unchanged = loop {
        let r = api.get("polled").await?;
        let s = r.status.clone().unwrap_or_default();
        if s.last_scan_time != seen {
            break s;
        }
        if Instant::now() > deadline {
            bail!("no rescan of the polled repository");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    if let Some(ms) = unchanged.last_scan_duration_ms {
        scans.push(ms as f64 / 1000.0);
    }
    let counts = unchanged.last_scan_requests.unwrap_or_default();
    out.requests_per_scan = (counts.tag_pages
        + counts.manifest_heads
        + counts.manifest_gets
        + counts.token_requests
        + counts.blob_heads) as f64;
    out.repo_tags = unchanged.tag_count.unwrap_or(0) as usize;
    out.scan_seconds = sys::median(&scans);

    let default = registry_operator::api::DEFAULT_SCAN_INTERVAL as f64;
    out.derived_default_p50_s = default / 2.0 + out.scan_seconds;
    out.derived_default_p99_s = default * 0.99 + out.scan_seconds;
    // A day of one push an hour: each push costs polling one more GET (its new digest) on top of
    // the scans; webhooks cost one event each plus the safety-net scans.
    let pushes_per_day = 24.0;
    out.per_day_polling =
        (86_400.0 / default) * out.requests_per_scan + pushes_per_day * out.gets_per_event;
    out.per_day_webhooks = pushes_per_day * out.requests_per_event
        + (86_400.0 / opts.safety_interval.max(1) as f64) * out.requests_per_scan;
    Ok(out)
}

async fn registry_requests(
    http: &reqwest::Client,
    url: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, f64>> {
    let samples = scrape(http, url).await?;
    let mut out = std::collections::BTreeMap::new();
    for (n, l, _) in &samples {
        if n == "registry_operator_registry_requests_total"
            && let Some(kind) = l.get("kind")
        {
            let k = kind.clone();
            out.insert(k.clone(), sum(&samples, n, |l| l.get("kind") == Some(&k)));
        }
    }
    Ok(out)
}

async fn wait_tags(
    api: &Api<Registry>,
    name: &str,
    tags: usize,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let r = api.get(name).await?;
        if r.status.as_ref().and_then(|s| s.tag_count) == Some(tags as i64) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{name}: no scan listing {tags} tags within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_for_tag(
    api: &Api<Registry>,
    name: &str,
    tag: &str,
    limit: Duration,
) -> anyhow::Result<Registry> {
    let deadline = Instant::now() + limit;
    loop {
        let r = api.get(name).await?;
        let listed = r
            .status
            .as_ref()
            .and_then(|s| s.images.as_ref())
            .is_some_and(|i| i.iter().any(|i| i.tag == tag));
        if listed {
            return Ok(r);
        }
        if Instant::now() > deadline {
            bail!("{name}: tag {tag} not in the status within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
