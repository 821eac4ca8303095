//! Many Registry objects on a real kube-apiserver + etcd, on one operator process or on several
//! sharded replicas: time until all are Success, peak RSS, CPU, API writes and bytes sent to
//! the apiserver per full rescan cycle, each replica's share of the work, status sizes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, PostParams};
use registry_operator::api::Registry;
use registry_operator::controller::shards::shard_of;
use testenv::controlplane::ControlPlane;

use crate::fixture::Fixture;
use crate::meter::{Bytes, Meter};
use crate::sys;

pub struct ScaleOptions {
    pub operator: PathBuf,
    pub url: String,
    pub repos: Vec<Fixture>,
    pub objects: usize,
    /// Namespaces the objects are spread over (the tenants).
    pub namespaces: usize,
    /// Operator processes; the objects are split into as many shards.
    pub replicas: usize,
    pub interval_seconds: u64,
    pub max_concurrent_scans: usize,
    /// Scans in the steady-state window (at most `objects`).
    pub window_scans: usize,
    pub work: PathBuf,
    pub timeout: Duration,
    /// `--share-scans` of each operator.
    pub share_scans: bool,
}

/// One operator process of a scale run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReplicaResult {
    pub identity: String,
    pub peak_rss_kib: u64,
    pub end_rss_kib: u64,
    /// CPU seconds from start to all Success.
    pub initial_cpu_seconds: f64,
    /// CPU of the steady-state window, scaled to a full cycle (see `ScaleResult`).
    pub cycle_cpu_seconds: f64,
    /// Scans this replica finished in the steady-state window.
    pub window_scans: f64,
    /// Objects this replica holds a successful scan of at the end (its metric series).
    pub objects_scanned: usize,
    pub shards_held: f64,
    /// Bytes on the wire between this replica and the apiserver, per cycle.
    pub cycle_bytes_to_apiserver: f64,
    pub cycle_bytes_from_apiserver: f64,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ScaleResult {
    pub objects: usize,
    pub namespaces: usize,
    pub replicas: usize,
    pub tags_per_object: usize,
    pub repositories: usize,
    pub interval_seconds: u64,
    pub max_concurrent_scans: usize,
    pub create_seconds: f64,
    /// Operator start until every object's status says Success.
    pub all_success_seconds: f64,
    /// All replicas together.
    pub initial_cpu_seconds: f64,
    pub initial_status_writes: f64,
    /// The steady-state window: from all Success until `window_scans` more scans have
    /// finished and the counters have settled. The `cycle_*` figures below are per scan in
    /// this window times `objects` (all replicas together).
    pub cycle_seconds: f64,
    pub cycle_scans: f64,
    pub cycle_cpu_seconds: f64,
    pub cycle_status_writes: f64,
    pub cycle_event_writes: f64,
    /// Every write the apiserver counted in the window, its own housekeeping included.
    pub cycle_all_writes: f64,
    /// Bytes on the wire from the operators to the apiserver (TLS, every request).
    pub cycle_bytes_to_apiserver: f64,
    pub cycle_bytes_from_apiserver: f64,
    /// Registry requests of the window by kind (`tag_list`, `manifest_head`, …).
    pub cycle_registry_requests: BTreeMap<String, f64>,
    /// The largest of the replicas.
    pub peak_rss_kib: u64,
    pub end_rss_kib: u64,
    pub largest_status_bytes: usize,
    pub largest_object_bytes: usize,
    pub failed_scans: f64,
    /// Objects in each shard: the operator shards by registry and repository, so this is
    /// how the repositories' objects fall into the shards (from the same hash).
    pub objects_per_shard: Vec<usize>,
    pub replica: Vec<ReplicaResult>,
}

/// One Prometheus sample: metric name, labels, value.
pub type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the Prometheus text format (enough of it for counters and gauges).
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, value) = match line.rfind('}') {
            Some(end) => (&line[..=end], line[end + 1..].trim()),
            None => match line.split_once(' ') {
                Some((h, v)) => (h, v.trim()),
                None => continue,
            },
        };
        let value = value.split_whitespace().next().unwrap_or("");
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match head.split_once('{') {
            Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
            None => (head, BTreeMap::new()),
        };
        out.push((name.to_string(), labels, value));
    }
    out
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim().trim_start_matches(',').trim().to_string(), value);
        rest = after[end..].trim_start_matches(',');
    }
    labels
}

/// Sum of the samples named `name` whose labels satisfy `keep`.
pub fn sum(
    samples: &[Sample],
    name: &str,
    keep: impl Fn(&BTreeMap<String, String>) -> bool,
) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| n == name && keep(l))
        .map(|(_, _, v)| v)
        .sum::<f64>()
        // An empty float sum is -0.0.
        + 0.0
}

const WRITE_VERBS: [&str; 8] = [
    "POST",
    "PUT",
    "PATCH",
    "APPLY",
    "DELETE",
    "DELETECOLLECTION",
    "CREATE",
    "UPDATE",
];

#[derive(Debug, Clone, Copy, Default)]
struct Writes {
    status: f64,
    events: f64,
    all: f64,
}

impl std::ops::Sub for Writes {
    type Output = Writes;
    fn sub(self, o: Writes) -> Writes {
        Writes {
            status: self.status - o.status,
            events: self.events - o.events,
            all: self.all - o.all,
        }
    }
}

async fn apiserver_writes(client: &kube::Client) -> anyhow::Result<Writes> {
    let text = client
        .request_text(http::Request::get("/metrics").body(Vec::new())?)
        .await
        .context("reading the apiserver's /metrics")?;
    let samples = parse_prometheus(&text);
    let is_write = |l: &BTreeMap<String, String>| {
        l.get("verb")
            .is_some_and(|v| WRITE_VERBS.contains(&v.to_ascii_uppercase().as_str()))
    };
    let name = "apiserver_request_total";
    Ok(Writes {
        status: sum(&samples, name, |l| {
            is_write(l)
                && l.get("resource").map(String::as_str) == Some("registries")
                && l.get("subresource").map(String::as_str) == Some("status")
        }),
        events: sum(&samples, name, |l| {
            is_write(l) && l.get("resource").map(String::as_str) == Some("events")
        }),
        all: sum(&samples, name, is_write),
    })
}

#[derive(Default)]
struct OperatorMetrics {
    success: f64,
    failed: f64,
    requests: BTreeMap<String, f64>,
    /// Objects with a successful scan (they have a `registry_operator_tags` series).
    scanned_objects: usize,
    shards_held: f64,
}

impl OperatorMetrics {
    fn scans(&self) -> f64 {
        self.success + self.failed
    }

    fn add(mut self, o: &OperatorMetrics) -> Self {
        self.success += o.success;
        self.failed += o.failed;
        for (k, v) in &o.requests {
            *self.requests.entry(k.clone()).or_insert(0.0) += v;
        }
        self.scanned_objects += o.scanned_objects;
        self.shards_held += o.shards_held;
        self
    }
}

/// The samples a /metrics endpoint serves now.
pub async fn scrape(http: &reqwest::Client, url: &str) -> anyhow::Result<Vec<Sample>> {
    let text = http
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(parse_prometheus(&text))
}

async fn operator_metrics(http: &reqwest::Client, url: &str) -> anyhow::Result<OperatorMetrics> {
    let samples = scrape(http, url).await?;
    let scans = "registry_operator_scans_total";
    let mut requests = BTreeMap::new();
    for (n, l, v) in &samples {
        if n == "registry_operator_registry_requests_total" {
            let kind = l.get("kind").cloned().unwrap_or_default();
            *requests.entry(kind).or_insert(0.0) += v;
        }
    }
    Ok(OperatorMetrics {
        success: sum(&samples, scans, |l| {
            l.get("result").map(String::as_str) == Some("success")
        }),
        failed: sum(&samples, scans, |l| {
            l.get("result").map(String::as_str) != Some("success")
        }),
        requests,
        scanned_objects: samples
            .iter()
            .filter(|(n, _, _)| n == "registry_operator_tags")
            .count(),
        shards_held: sum(&samples, "registry_operator_shards_held", |_| true),
    })
}

/// Status facts from a paged list of every object in the cluster.
struct Listing {
    success: usize,
    largest_status: usize,
    largest_object: usize,
}

async fn list_all(client: &kube::Client) -> anyhow::Result<Listing> {
    let mut out = Listing {
        success: 0,
        largest_status: 0,
        largest_object: 0,
    };
    let mut cont = String::new();
    loop {
        let path = format!(
            "/apis/registry.kubecontroller.io/v1alpha1/registries?limit=500&continue={cont}"
        );
        let text = client
            .request_text(http::Request::get(path).body(Vec::new())?)
            .await?;
        let list: serde_json::Value = serde_json::from_str(&text)?;
        for item in list["items"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            if item["status"]["lastScanStatus"] == "Success" {
                out.success += 1;
            }
            out.largest_status = out
                .largest_status
                .max(serde_json::to_vec(&item["status"])?.len());
            out.largest_object = out.largest_object.max(serde_json::to_vec(item)?.len());
        }
        match list["metadata"]["continue"].as_str() {
            Some(c) if !c.is_empty() => cont = c.to_string(),
            _ => return Ok(out),
        }
    }
}

/// One running operator process and the meter in front of its apiserver connection.
struct Replica {
    identity: String,
    child: std::process::Child,
    pid: u32,
    metrics_url: String,
    meter: Meter,
}

impl Replica {
    fn stop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
    }
}

async fn start_replica(
    opts: &ScaleOptions,
    cp: &ControlPlane,
    lease_ns: &str,
    index: usize,
) -> anyhow::Result<Replica> {
    let server = cp.server_url();
    let meter = Meter::start(server.trim_start_matches("https://")).await?;
    let identity = format!("bench-{index}");
    let dir = opts.work.join(&identity);
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        cp.kubeconfig_yaml()
            .replace(server, &format!("https://{}", meter.addr)),
    )?;
    let metrics_port = testenv::tools::free_port();
    let health_port = testenv::tools::free_port();
    let mut cmd = Command::new(&opts.operator);
    cmd.arg("run")
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .args(["--health-addr", &format!("127.0.0.1:{health_port}")])
        .args([
            "--max-concurrent-scans",
            &opts.max_concurrent_scans.to_string(),
        ])
        .args(["--identity", &identity])
        .args(["--shards", &opts.replicas.to_string()])
        .args(["--share-scans", &opts.share_scans.to_string()])
        .args(["--leader-election-namespace", lease_ns])
        // The registries are on loopback, which the egress policy closes by default.
        .args(["--egress-allow", "127.0.0.1/32"]);
    if opts.namespaces == 1 {
        // One namespace stands for every tenant here, so it may use every slot.
        cmd.args([
            "--max-scans-per-namespace",
            &opts.max_concurrent_scans.to_string(),
        ]);
    }
    cmd.env("KUBECONFIG", &kubeconfig)
        .env_remove("RUST_LOG")
        .env_remove("POD_NAME")
        .env_remove("POD_NAMESPACE")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("operator.log"))?)
        .stderr(std::fs::File::create(dir.join("operator.stderr"))?);
    let child = testenv::registry::spawn_tied(cmd).context("starting the operator")?;
    Ok(Replica {
        identity,
        pid: child.id(),
        child,
        metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
        meter,
    })
}

pub async fn run(opts: &ScaleOptions) -> anyhow::Result<ScaleResult> {
    let deadline = Instant::now() + opts.timeout;
    eprintln!("bench: scale: starting etcd + kube-apiserver");
    let cp = ControlPlane::start().await?;
    let client = cp.client().await;
    let crd = std::fs::read_to_string(testenv::tools::repo_root().join("crds/registry.yaml"))
        .context("reading crds/registry.yaml")?;
    cp.apply_yaml(&crd).await.context("installing the CRD")?;
    let mut namespaces = Vec::new();
    for _ in 0..opts.namespaces.max(1) {
        namespaces.push(cp.create_namespace("bench-scale").await);
    }
    let lease_ns = cp.create_namespace("bench-leases").await;

    eprintln!(
        "bench: scale: creating {} Registry objects in {} namespaces",
        opts.objects,
        namespaces.len()
    );
    let started = Instant::now();
    futures::stream::iter((0..opts.objects).map(|i| {
        let api: Api<Registry> = Api::namespaced(client.clone(), &namespaces[i % namespaces.len()]);
        let repo = &opts.repos[i % opts.repos.len()].repo;
        let obj: Registry = serde_json::from_value(serde_json::json!({
            "apiVersion": "registry.kubecontroller.io/v1alpha1",
            "kind": "Registry",
            "metadata": {"name": format!("reg-{i:05}")},
            "spec": {"url": opts.url, "repository": repo, "scanInterval": opts.interval_seconds},
        }))
        .expect("a valid Registry");
        async move { api.create(&PostParams::default(), &obj).await }
    }))
    .buffer_unordered(16)
    .try_collect::<Vec<_>>()
    .await
    .context("creating Registry objects")?;
    let create_seconds = started.elapsed().as_secs_f64();

    let writes_before = apiserver_writes(&client).await?;
    eprintln!("bench: scale: starting {} operator(s)", opts.replicas);
    let started = Instant::now();
    let mut replicas = Vec::new();
    for i in 0..opts.replicas.max(1) {
        replicas.push(start_replica(opts, &cp, &lease_ns, i).await?);
    }
    let result = measure(opts, &client, &replicas, started, writes_before, deadline).await;
    for r in &mut replicas {
        r.stop();
    }
    let stop = Instant::now();
    for r in &mut replicas {
        while r.child.try_wait()?.is_none() && stop.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = r.child.kill();
        let _ = r.child.wait();
    }
    cp.stop(Duration::from_secs(5));
    let mut result = result?;
    result.create_seconds = create_seconds;
    result.objects_per_shard = objects_per_shard(opts);
    Ok(result)
}

/// How the objects fall into the shards, by the operator's own placement.
fn objects_per_shard(opts: &ScaleOptions) -> Vec<usize> {
    let count = u32::try_from(opts.replicas.max(1)).unwrap_or(u32::MAX);
    let mut per = vec![0usize; count as usize];
    for i in 0..opts.objects {
        let repo = &opts.repos[i % opts.repos.len()].repo;
        per[shard_of(&opts.url, repo, count) as usize] += 1;
    }
    per
}

/// Every replica's metrics (an error while one of them does not answer yet).
async fn all_metrics(
    http: &reqwest::Client,
    replicas: &[Replica],
) -> anyhow::Result<Vec<OperatorMetrics>> {
    let mut out = Vec::new();
    for r in replicas {
        out.push(operator_metrics(http, &r.metrics_url).await?);
    }
    Ok(out)
}

fn total(ms: &[OperatorMetrics]) -> OperatorMetrics {
    ms.iter().fold(OperatorMetrics::default(), |a, m| a.add(m))
}

async fn measure(
    opts: &ScaleOptions,
    client: &kube::Client,
    replicas: &[Replica],
    started: Instant,
    writes_before: Writes,
    deadline: Instant,
) -> anyhow::Result<ScaleResult> {
    let http = testenv::registry::http_client(None)?;
    let n = opts.objects as f64;
    // Wait until the operators have scanned every object (cheap: their metrics), then confirm
    // in the objects themselves (a list of every object is heavy, so not often).
    let mut last_list = Instant::now() - Duration::from_secs(60);
    loop {
        if Instant::now() > deadline {
            let m = total(&all_metrics(&http, replicas).await?);
            bail!(
                "not all {} objects were Success in time: {} scanned, {} successful scans",
                opts.objects,
                m.scanned_objects,
                m.success
            );
        }
        if let Ok(ms) = all_metrics(&http, replicas).await
            && total(&ms).scanned_objects >= opts.objects
            && last_list.elapsed() >= Duration::from_secs(3)
        {
            last_list = Instant::now();
            if list_all(client).await?.success == opts.objects {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_success_seconds = started.elapsed().as_secs_f64();
    let cpu0: Vec<f64> = replicas
        .iter()
        .map(|r| sys::cpu_seconds(r.pid))
        .collect::<anyhow::Result<_>>()?;
    let bytes0: Vec<Bytes> = replicas.iter().map(|r| r.meter.bytes()).collect();
    let w0 = apiserver_writes(client).await?;
    let ms0 = all_metrics(&http, replicas).await?;
    let m0 = total(&ms0);
    let t0 = Instant::now();
    let window = opts.window_scans.clamp(1, opts.objects.max(1)) as f64;
    eprintln!(
        "bench: scale: all {} Success after {all_success_seconds:.1}s; measuring {window} more scans",
        opts.objects
    );

    loop {
        if Instant::now() > deadline {
            bail!("the steady-state window did not finish in time");
        }
        let m = total(&all_metrics(&http, replicas).await?);
        if m.scans() >= m0.scans() + window {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The status write of a scan lands a moment after the scan is counted: end the window
    // once both counters have held still for a while (or after 10 s in a busy steady state),
    // and report per-scan figures times the object count.
    let settle = Instant::now();
    let mut last = (f64::NAN, f64::NAN);
    let mut still_since = Instant::now();
    let (ms1, w1) = loop {
        let ms = all_metrics(&http, replicas).await?;
        let w = apiserver_writes(client).await?;
        let scans = total(&ms).scans();
        if (scans, w.status) != last {
            last = (scans, w.status);
            still_since = Instant::now();
        }
        if still_since.elapsed() >= Duration::from_millis(1500)
            || settle.elapsed() >= Duration::from_secs(10)
        {
            break (ms, w);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let cycle_seconds = t0.elapsed().as_secs_f64();
    let m1 = total(&ms1);
    let scans = m1.scans() - m0.scans();
    // Per full cycle: per scan in the window, times the number of objects.
    let per_cycle = |v: f64| v / scans * n;
    let mut replica = Vec::new();
    for (i, r) in replicas.iter().enumerate() {
        let cpu1 = sys::cpu_seconds(r.pid)?;
        let bytes = r.meter.bytes() - bytes0[i];
        // A replica's own cycle: per scan it made in the window, times the objects it holds.
        // With shared scans the objects of a repository finish together, so a window of a
        // few thousand scans gives replicas uneven slices of the cycle; scaling each by its
        // own scans and objects measures its cost per cycle, not the slice it happened to get.
        let own_scans = ms1[i].scans() - ms0[i].scans();
        let own_objects = ms1[i].scanned_objects as f64;
        let own_cycle = |v: f64| {
            if own_scans > 0.0 && own_objects > 0.0 {
                v / own_scans * own_objects
            } else {
                per_cycle(v)
            }
        };
        replica.push(ReplicaResult {
            identity: r.identity.clone(),
            peak_rss_kib: sys::status_kib(r.pid, "VmHWM")?,
            end_rss_kib: sys::status_kib(r.pid, "VmRSS")?,
            initial_cpu_seconds: cpu0[i],
            cycle_cpu_seconds: own_cycle(cpu1 - cpu0[i]),
            window_scans: ms1[i].scans() - ms0[i].scans(),
            objects_scanned: ms1[i].scanned_objects,
            shards_held: ms1[i].shards_held,
            cycle_bytes_to_apiserver: own_cycle(bytes.to_apiserver as f64),
            cycle_bytes_from_apiserver: own_cycle(bytes.from_apiserver as f64),
        });
    }
    let listing = list_all(client).await?;
    let cycle = w1 - w0;
    let requests = m1
        .requests
        .iter()
        .map(|(k, v)| {
            let d = v - m0.requests.get(k).copied().unwrap_or(0.0);
            (k.clone(), per_cycle(d))
        })
        .collect();
    let sum_of = |f: fn(&ReplicaResult) -> f64| replica.iter().map(f).sum::<f64>();
    Ok(ScaleResult {
        objects: opts.objects,
        namespaces: opts.namespaces.max(1),
        replicas: replicas.len(),
        tags_per_object: opts.repos.first().map_or(0, Fixture::tags),
        repositories: opts.repos.len(),
        interval_seconds: opts.interval_seconds,
        max_concurrent_scans: opts.max_concurrent_scans,
        create_seconds: 0.0,
        all_success_seconds,
        initial_cpu_seconds: sum_of(|r| r.initial_cpu_seconds),
        initial_status_writes: (w0 - writes_before).status,
        cycle_seconds,
        cycle_scans: scans,
        cycle_cpu_seconds: sum_of(|r| r.cycle_cpu_seconds),
        cycle_status_writes: per_cycle(cycle.status),
        cycle_event_writes: per_cycle(cycle.events),
        cycle_all_writes: per_cycle(cycle.all),
        cycle_bytes_to_apiserver: sum_of(|r| r.cycle_bytes_to_apiserver),
        cycle_bytes_from_apiserver: sum_of(|r| r.cycle_bytes_from_apiserver),
        cycle_registry_requests: requests,
        peak_rss_kib: replica.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0),
        end_rss_kib: replica.iter().map(|r| r.end_rss_kib).max().unwrap_or(0),
        largest_status_bytes: listing.largest_status,
        largest_object_bytes: listing.largest_object,
        failed_scans: m1.failed,
        objects_per_shard: Vec::new(),
        replica,
    })
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_prometheus_text() {
        let text = "# HELP x y\n# TYPE apiserver_request_total counter\n\
            apiserver_request_total{code=\"201\",resource=\"registries\",subresource=\"status\",verb=\"APPLY\"} 12\n\
            apiserver_request_total{code=\"200\",resource=\"events\",verb=\"POST\"} 3\n\
            registry_operator_scans_total{result=\"success\"} 7\n\
            plain_metric 1.5e3\n\
            odd{a=\"x\\\"y,z\"} 2\n";
        let s = parse_prometheus(text);
        assert_eq!(s.len(), 5);
        assert_eq!(
            sum(&s, "apiserver_request_total", |l| l
                .get("verb")
                .map(String::as_str)
                == Some("APPLY")),
            12.0
        );
        assert_eq!(sum(&s, "plain_metric", |_| true), 1500.0);
        assert_eq!(s[4].1.get("a").map(String::as_str), Some("x\"y,z"));
    }
}
