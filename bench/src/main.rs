//! `make bench`: registry-operator measured against the registry's own ceiling, against the
//! tools people script instead (skopeo, crane, regctl), and at scale on a real control plane.
//! Everything runs on this machine against real processes; the results become BENCHMARKS.md
//! and a chart. `hack/bench.sh` installs the tools and builds the binaries first.

mod ceiling;
mod chart;
mod created;
mod fixture;
mod hostile;
mod meter;
mod native;
mod ours;
mod peers;
mod policy;
mod referrers;
mod report;
mod scale;
mod shared;
mod sys;
mod webhooks;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use testenv::push::Pusher;
use testenv::registry::{RegistryOptions, RegistryServer};

use crate::fixture::Fixture;
use crate::ours::{ScanRun, Scanner};
use crate::peers::{PeerRun, Peers};

#[derive(Parser, Debug, Clone, serde::Serialize)]
#[command(
    name = "bench",
    about = "registry-operator benchmarks; writes BENCHMARKS.md"
)]
pub struct Args {
    /// The registry-operator binary (release build).
    #[arg(long, default_value = "bin/registry-operator")]
    operator: PathBuf,
    /// Markdown report to write.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Chart to write (SVG), linked from the report by its path relative to the report.
    #[arg(long, default_value = "docs/bench/scan-time.svg")]
    chart: PathBuf,
    /// Raw results (JSON).
    #[arg(long, default_value = "target/bench/results.json")]
    json: PathBuf,
    /// Tags in the main repository.
    #[arg(long, default_value_t = 2000)]
    tags: usize,
    /// Distinct single-platform images in the main repository.
    #[arg(long, default_value_t = 200)]
    images: usize,
    /// Multi-arch indexes in the main repository.
    #[arg(long, default_value_t = 10)]
    indexes: usize,
    /// Registry requests in flight for the scanner, and connections for the ceiling.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Parallel processes per peer (`xargs -P`).
    #[arg(long, default_value_t = 8)]
    peer_parallelism: usize,
    /// Runs of each registry-operator scan; the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Tag counts of the chart.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000,2000,5000")]
    chart_sizes: Vec<usize>,
    /// Peers run on chart repositories up to this many tags (they take minutes each).
    #[arg(long, default_value_t = 5000)]
    peer_max_tags: usize,
    /// Seconds of each ceiling run.
    #[arg(long, default_value_t = 8)]
    ceiling_seconds: u64,
    /// Ceiling runs; the best one counts.
    #[arg(long, default_value_t = 2)]
    ceiling_runs: usize,
    /// Registry objects of the scale test (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    scale_objects: usize,
    /// Tags per repository of the scale test.
    #[arg(long, default_value_t = 50)]
    scale_tags: usize,
    /// Repositories the scale objects are spread over. Objects are sharded by repository, so
    /// this is what the shards balance: 10 repositories split at best 4/3/3 over 3 shards,
    /// 1,000 (10 objects each) leave the busiest of 3 shards about 35% of the objects.
    #[arg(long, default_value_t = 1000)]
    scale_repos: usize,
    /// Namespaces (tenants) the scale objects are spread over.
    #[arg(long, default_value_t = 10)]
    scale_namespaces: usize,
    /// Scale runs, one per entry: that many operator replicas, splitting the objects into as
    /// many shards (leader election on in every run).
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    scale_replicas: Vec<usize>,
    /// scanInterval of the scale objects: about as long as the first pass of 10,000 objects
    /// takes here, so that the rescans start as the first pass ends and the operator stays
    /// busy (the window then measures what a cycle costs, not idle time).
    #[arg(long, default_value_t = 300)]
    scale_interval: u64,
    /// --max-concurrent-scans of each operator in the scale test (its default).
    #[arg(long, default_value_t = 16)]
    scale_max_concurrent_scans: usize,
    /// Scans in the steady-state window (the per-cycle figures are per scan in it × objects).
    #[arg(long, default_value_t = 2000)]
    scale_window_scans: usize,
    /// Time limit of one scale run, in seconds.
    #[arg(long, default_value_t = 1800)]
    scale_timeout: u64,
    /// Objects of the shared-scan section (0 skips it), run with and without shared scans.
    #[arg(long, default_value_t = 1000)]
    shared_objects: usize,
    /// Namespaces (tenants) of the shared-scan section.
    #[arg(long, default_value_t = 50)]
    shared_namespaces: usize,
    /// Repositories the shared-scan objects watch.
    #[arg(long, default_value_t = 20)]
    shared_repos: usize,
    /// Tags per repository of the shared-scan section.
    #[arg(long, default_value_t = 50)]
    shared_tags: usize,
    /// scanInterval of the shared-scan objects.
    #[arg(long, default_value_t = 60)]
    shared_interval: u64,
    /// Pushes measured with registry webhooks (0 skips the webhook section).
    #[arg(long, default_value_t = 200)]
    webhook_pushes: usize,
    /// Pushes measured with polling at the minimum scan interval (30 s each at most).
    #[arg(long, default_value_t = 3)]
    webhook_poll_pushes: usize,
    /// Tags of the repository the webhook section's requests per day are computed for.
    #[arg(long, default_value_t = 20)]
    webhook_repo_tags: usize,
    /// The safety-net scan interval with webhooks on (the module's `webhook.minScanInterval`).
    #[arg(long, default_value_t = 3600)]
    webhook_safety_interval: u64,
    /// Tags of the hostile-tenant section's victim repository.
    #[arg(long, default_value_t = 500)]
    hostile_victim_tags: usize,
    /// Victim rescans per attack in the hostile-tenant section (the median counts).
    #[arg(long, default_value_t = 3)]
    hostile_runs: usize,
    /// Only the attacks whose names contain one of these words (default: every attack).
    #[arg(long, value_delimiter = ',')]
    hostile_attacks: Vec<String>,
    /// Skip the hostile-tenant section.
    #[arg(long)]
    skip_hostile: bool,
    /// Run only this section and print its part of the report (BENCHMARKS.md is left alone;
    /// the raw results go to target/bench/<section>.json).
    #[arg(long, value_enum)]
    only: Option<Section>,
    /// Skip the peers.
    #[arg(long)]
    skip_peers: bool,
    /// Skip the native listing APIs' rescans (issue #12).
    #[arg(long)]
    skip_native: bool,
    /// Skip the cost of `--created` (issue #17).
    #[arg(long)]
    skip_created: bool,
    /// oha (the ceiling's load tool).
    #[arg(long, default_value = "oha")]
    oha: PathBuf,
    /// skopeo.
    #[arg(long, default_value = "skopeo")]
    skopeo: PathBuf,
    /// Directory with crane and regctl (default: `hack/tools.sh peers`).
    #[arg(long)]
    peers_dir: Option<PathBuf>,
    /// Keep the work directory (scan outputs, peer outputs, logs) for inspection.
    #[arg(long)]
    keep: bool,
    /// Only fill the main repository, print the registry's URL and wait for Ctrl-C (for
    /// profiling a scan by hand, e.g. under `perf record`).
    #[arg(long)]
    serve: bool,
}

/// Sections that `--only` can run by themselves.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Section {
    Hostile,
    Shared,
    /// Section 4 (scale, one operator and sharded replicas) at the --scale-* settings.
    Scale,
    /// What `--created` costs on the main repository's first scan and rescan.
    Created,
    /// Rescans with referrers on (issue #18): section 2c only.
    Referrers,
    /// Version policy evaluation over 20,000 tags (in process, seconds).
    Policy,
}

/// One tag count of the chart.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChartPoint {
    pub tags: usize,
    pub first: Vec<ScanRun>,
    pub rescan: Vec<ScanRun>,
    pub peers: Vec<PeerRun>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Results {
    pub args: Args,
    pub date: String,
    pub commit: String,
    pub machine: sys::Machine,
    pub versions: Vec<(String, String)>,
    pub fixture: Fixture,
    pub ceiling: ceiling::Ceiling,
    pub first: Vec<ScanRun>,
    pub rescan: Vec<ScanRun>,
    /// Rescans through each native listing API's fixture, and the distribution path.
    pub native: Vec<native::NativeRun>,
    /// The cost of `--created`.
    pub created: Option<created::CreatedResult>,
    /// Rescans with referrers on, within and after the interval (issue #18).
    #[serde(default)]
    pub referrers: Option<referrers::ReferrerRuns>,
    pub peers: Vec<PeerRun>,
    pub chart: Vec<ChartPoint>,
    pub scale: Vec<scale::ScaleResult>,
    pub shared: Option<shared::SharedResult>,
    pub webhooks: Option<webhooks::WebhookResult>,
    pub hostile: Option<hostile::HostileResult>,
    pub policy: Vec<policy::PolicyRun>,
    pub notes: Vec<String>,
    pub seconds: f64,
}

/// The scale section's repositories.
async fn fill_scale(args: &Args, pusher: &Pusher) -> anyhow::Result<Vec<Fixture>> {
    say(format!(
        "filling {} scale repositories of {} tags",
        args.scale_repos, args.scale_tags
    ));
    let images = (args.scale_tags / 10).max(1);
    futures::stream::iter(0..args.scale_repos)
        .map(|r| async move {
            fixture::fill(
                pusher,
                &format!("scale/app-{r}"),
                args.scale_tags,
                images - 1,
                1,
                100 + r as u64,
            )
            .await
        })
        .buffered(8)
        .try_collect()
        .await
}

/// Section 4: one scale run per entry of --scale-replicas.
async fn scale_runs(
    args: &Args,
    operator: &Path,
    url: &str,
    scale_fx: &[Fixture],
    work: &Path,
) -> anyhow::Result<Vec<scale::ScaleResult>> {
    let mut scale = Vec::new();
    for &replicas in &args.scale_replicas {
        let opts = scale::ScaleOptions {
            operator: operator.to_path_buf(),
            url: url.to_string(),
            repos: scale_fx.to_vec(),
            objects: args.scale_objects,
            namespaces: args.scale_namespaces,
            replicas: replicas.max(1),
            interval_seconds: args.scale_interval,
            max_concurrent_scans: args.scale_max_concurrent_scans,
            window_scans: args.scale_window_scans,
            work: work.join(format!("scale-{replicas}")),
            timeout: Duration::from_secs(args.scale_timeout),
            share_scans: true,
        };
        std::fs::create_dir_all(&opts.work)?;
        let r = scale::run(&opts).await?;
        say(format!(
            "scale, {} replica(s): all Success in {:.1}s, peak RSS {} MiB, {:.1} CPU s per cycle",
            r.replicas,
            r.all_success_seconds,
            r.peak_rss_kib / 1024,
            r.cycle_cpu_seconds
        ));
        scale.push(r);
    }
    Ok(scale)
}

/// `--only scale`: the registry, the scale repositories and section 4, nothing else.
async fn scale_only(args: &Args, operator: &Path, work: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let root = testenv::tools::repo_root();
    say("starting the registry");
    let reg = RegistryServer::start(RegistryOptions::plain()).await?;
    let pusher = Pusher::new(&reg, None)?;
    let scale_fx = fill_scale(args, &pusher).await?;
    let scale = scale_runs(args, operator, &reg.url, &scale_fx, work).await?;
    let json = root.join("target/bench/scale.json");
    if let Some(p) = json.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(&json, serde_json::to_vec_pretty(&scale)?)?;
    let mut md = String::new();
    let one = scale.iter().find(|s| s.replicas == 1);
    let sharded = scale
        .iter()
        .filter(|s| s.replicas > 1)
        .max_by_key(|s| s.replicas);
    md.push_str("| Target | Measured | Verdict |\n|---|---|---|\n");
    report::shard_target_rows(&mut md, one, sharded);
    md.push('\n');
    report::scale_table(&mut md, &scale, "", args.scale_window_scans);
    println!("{md}");
    say(format!(
        "scale only: wrote {} in {:.0}s",
        json.display(),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn say(msg: impl std::fmt::Display) {
    eprintln!("bench: {msg}");
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    testenv::registry::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let root = testenv::tools::repo_root();
    let abs = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            root.join(p)
        }
    };
    // In process: needs no binary, registry or cluster.
    if args.only == Some(Section::Policy) {
        let runs = policy::measure()?;
        let mut md = String::new();
        report::policy_section(&mut md, &runs);
        println!("{md}");
        return Ok(());
    }
    let operator = abs(&args.operator);
    anyhow::ensure!(
        operator.is_file(),
        "no operator binary at {} (make build)",
        operator.display()
    );
    let work_dir = tempfile::Builder::new()
        .prefix("registry-operator-bench-")
        .tempdir()?;
    let work = work_dir.path().to_path_buf();
    if args.only == Some(Section::Hostile) {
        let h = hostile_section(&args, &operator, &work).await?;
        let json = root.join("target/bench/hostile.json");
        if let Some(p) = json.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::write(&json, serde_json::to_vec_pretty(&h)?)?;
        let mut md = String::new();
        report::hostile_section(&mut md, &h);
        println!("{md}");
        say(format!(
            "hostile tenants only: wrote {} in {:.0}s",
            json.display(),
            started.elapsed().as_secs_f64()
        ));
        return Ok(());
    }
    if args.only == Some(Section::Shared) {
        let r = shared::run(&args, &operator, &work).await?;
        let mut md = String::new();
        report::shared_section(&mut md, &r);
        println!("{md}");
        return Ok(());
    }
    if args.only == Some(Section::Scale) {
        return scale_only(&args, &operator, &work).await;
    }
    if args.only == Some(Section::Created) {
        say("starting the registry");
        let reg = RegistryServer::start(RegistryOptions::plain()).await?;
        let pusher = Pusher::new(&reg, None)?;
        say(format!("filling bench/app: {} tags", args.tags));
        let fx = fixture::fill(
            &pusher,
            "bench/app",
            args.tags,
            args.images,
            args.indexes,
            1,
        )
        .await?;
        let c = created::measure(&reg.url, &fx, args.concurrency, args.runs).await?;
        let json = root.join("target/bench/created.json");
        if let Some(p) = json.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::write(&json, serde_json::to_vec_pretty(&c)?)?;
        let mut md = String::new();
        report::created_section(&mut md, &c, args.concurrency, args.runs);
        println!("{md}");
        say(format!(
            "--created only: wrote {} in {:.0}s",
            json.display(),
            started.elapsed().as_secs_f64()
        ));
        return Ok(());
    }
    let peers_dir = match &args.peers_dir {
        Some(d) => d.clone(),
        None => testenv::tools::tool_dir("peers")?,
    };
    let registry_dir = testenv::tools::tool_dir("registry")?;
    let mut notes = Vec::new();

    say("starting the registry");
    let reg = RegistryServer::start(RegistryOptions::plain()).await?;
    let pusher = Pusher::new(&reg, None)?;

    say(format!(
        "filling bench/app: {} tags over {} images + {} indexes",
        args.tags, args.images, args.indexes
    ));
    let t = Instant::now();
    let main_fx = fixture::fill(
        &pusher,
        "bench/app",
        args.tags,
        args.images,
        args.indexes,
        1,
    )
    .await?;
    say(format!("filled in {:.1}s", t.elapsed().as_secs_f64()));
    if args.only == Some(Section::Referrers) {
        let r = referrers::measure(&reg.url, &main_fx, args.concurrency).await?;
        let mut md = String::new();
        report::referrers_section(&mut md, &r, args.concurrency);
        println!("{md}");
        return Ok(());
    }
    if args.serve {
        println!("{} {}", reg.url, main_fx.repo);
        say(format!(
            "serving {} ({} tags) at {}; Ctrl-C stops it",
            main_fx.repo,
            main_fx.tags(),
            reg.url
        ));
        tokio::signal::ctrl_c().await?;
        return Ok(());
    }
    let mut chart_fx: Vec<Fixture> = Vec::new();
    for (i, &n) in args.chart_sizes.iter().enumerate() {
        if n == args.tags {
            continue;
        }
        // Same shape as the main repository: 10 tags per image, one index per 200 tags.
        let images = (n / 10).max(1);
        let indexes = (n / 200).max(1).min(n - images);
        say(format!("filling bench/t{n}: {n} tags"));
        chart_fx.push(
            fixture::fill(
                &pusher,
                &format!("bench/t{n}"),
                n,
                images,
                indexes,
                10 + i as u64,
            )
            .await?,
        );
    }
    let scale_fx = if args.scale_objects > 0 {
        fill_scale(&args, &pusher).await?
    } else {
        Vec::new()
    };

    // 1. The ceiling.
    say("measuring the registry's ceiling (oha, HEAD by tag)");
    let ceiling = ceiling::measure(
        &args.oha,
        &reg.url,
        &main_fx,
        args.concurrency,
        args.ceiling_seconds,
        args.ceiling_runs,
        &work,
    )?;
    say(format!(
        "ceiling: {:.0} HEAD/s",
        ceiling.requests_per_second
    ));

    // 2. registry-operator on the main repository.
    let scanner = Scanner {
        bin: operator.clone(),
        url: reg.url.clone(),
        concurrency: args.concurrency,
        work: work.clone(),
    };
    let (first, rescan) = ours_runs(&scanner, &main_fx, args.runs)?;
    say(format!(
        "registry-operator: first scan {:.3}s, rescan {:.3}s (medians)",
        median_wall(&first),
        median_wall(&rescan)
    ));

    // 2b. Native listing APIs.
    let mut native_runs = Vec::new();
    if !args.skip_native {
        say("rescans through the native listing APIs' fixtures");
        native_runs = native::measure(&reg.url, &main_fx, args.concurrency, args.runs).await?;
        for n in &native_runs {
            say(format!(
                "{}: {:.4} requests per tag, {:.3}s (lister {})",
                n.path,
                n.per_tag(),
                n.seconds,
                n.lister
            ));
        }
    }

    // 2c. The cost of `--created`.
    let mut created_result = None;
    if !args.skip_created {
        say("first scan and rescan with --created");
        let c = created::measure(&reg.url, &main_fx, args.concurrency, args.runs).await?;
        say(format!(
            "--created: {} extra requests on the first scan ({} distinct digests), {} config GETs on the rescan",
            c.first_extra(),
            c.distinct_digests,
            c.rescan_blob_gets()
        ));
        created_result = Some(c);
    }

    // 2d. Referrers.
    let mut referrer_runs = None;
    if !args.skip_native {
        say("rescans with referrers on, through the referrers API fixture");
        let r = referrers::measure(&reg.url, &main_fx, args.concurrency).await?;
        for case in ["off", "within", "after"] {
            say(format!(
                "referrers {case}: {:.4} requests per tag",
                r.per_tag(case).unwrap_or_default()
            ));
        }
        referrer_runs = Some(r);
    }

    // 3. Peers and the chart.
    let peers = Peers {
        skopeo: args.skopeo.clone(),
        crane: peers_dir.join("crane"),
        ggcr: peers_dir.join("ggcr-digests"),
        regctl: peers_dir.join("regctl"),
        host: reg.host(),
        parallelism: args.peer_parallelism,
        work: work.clone(),
    };
    if !args.skip_peers {
        peers.prepare()?;
    }
    let mut chart_points = Vec::new();
    let mut main_peers = Vec::new();
    for &n in &args.chart_sizes {
        let (fx, first_n, rescan_n) = if n == args.tags {
            (&main_fx, first.clone(), rescan.clone())
        } else {
            let fx = chart_fx
                .iter()
                .find(|f| f.tags() == n)
                .context("chart fixture")?;
            let (a, b) = ours_runs(&scanner, fx, args.runs.min(3))?;
            (fx, a, b)
        };
        let mut peer_runs = Vec::new();
        if !args.skip_peers && n <= args.peer_max_tags.max(args.tags) {
            for peer in peers::ALL {
                say(format!("{} over {n} tags", peer.name()));
                let run = peers.run(peer, fx, &format!("{}-{n}", peer.name()))?;
                say(format!(
                    "{}: {:.1}s, {} of {n} digests right",
                    peer.name(),
                    run.measured.wall,
                    run.check.ok
                ));
                peer_runs.push(run);
            }
        } else if !args.skip_peers {
            notes.push(format!(
                "Peers were not run on the {n}-tag repository (--peer-max-tags {}).",
                args.peer_max_tags
            ));
        }
        if n == args.tags {
            main_peers = peer_runs.clone();
        }
        chart_points.push(ChartPoint {
            tags: n,
            first: first_n,
            rescan: rescan_n,
            peers: peer_runs,
        });
    }
    if !args.skip_peers && main_peers.is_empty() {
        for peer in peers::ALL {
            main_peers.push(peers.run(peer, &main_fx, &format!("{}-main", peer.name()))?);
        }
    }

    // 4. Scale.
    let scale = if args.scale_objects > 0 {
        scale_runs(&args, &operator, &reg.url, &scale_fx, &work).await?
    } else {
        Vec::new()
    };

    // 4c. Shared scans.
    let shared_result = if args.shared_objects > 0 {
        Some(shared::run(&args, &operator, &work).await?)
    } else {
        None
    };

    // 5. Webhooks against polling.
    let webhook_result = if args.webhook_pushes > 0 {
        let opts = webhooks::WebhookOptions {
            operator: operator.clone(),
            pushes: args.webhook_pushes,
            poll_pushes: args.webhook_poll_pushes,
            repo_tags: args.webhook_repo_tags,
            safety_interval: args.webhook_safety_interval,
            work: work.join("webhooks"),
        };
        std::fs::create_dir_all(&opts.work)?;
        let w = webhooks::run(&opts).await?;
        say(format!(
            "webhooks: push to status p50 {:.0} ms, p99 {:.0} ms over {} pushes; {:.2} requests per event",
            w.webhook_p50_ms, w.webhook_p99_ms, w.pushes, w.requests_per_event
        ));
        Some(w)
    } else {
        None
    };

    // 6. Hostile tenants.
    let hostile_result = if args.skip_hostile {
        None
    } else {
        Some(hostile_section(&args, &operator, &work).await?)
    };

    // 7. Version policies (in process).
    say("evaluating version policies over 20,000 tags");
    let policy_runs = policy::measure()?;

    let versions = versions(&operator, &registry_dir, &peers, &args.oha);
    let results = Results {
        args: args.clone(),
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        commit: git_commit(&root),
        machine: sys::machine(),
        versions,
        fixture: main_fx,
        ceiling,
        first,
        rescan,
        native: native_runs,
        created: created_result,
        referrers: referrer_runs,
        peers: main_peers,
        chart: chart_points,
        scale,
        shared: shared_result,
        webhooks: webhook_result,
        hostile: hostile_result,
        policy: policy_runs,
        notes,
        seconds: started.elapsed().as_secs_f64(),
    };
    let json = abs(&args.json);
    if let Some(p) = json.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(&json, serde_json::to_vec_pretty(&results)?)?;
    let chart_path = abs(&args.chart);
    if let Some(p) = chart_path.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(&chart_path, report::chart(&results))?;
    let out = abs(&args.out);
    let chart_link = relative(&chart_path, out.parent().unwrap_or(&root));
    std::fs::write(&out, report::markdown(&results, &chart_link))?;
    say(format!(
        "wrote {}, {} and {} in {:.0}s",
        out.display(),
        chart_path.display(),
        json.display(),
        results.seconds
    ));
    if args.keep {
        let kept = work_dir.keep();
        say(format!("work directory kept: {}", kept.display()));
    }
    drop(reg);
    Ok(())
}

async fn hostile_section(
    args: &Args,
    operator: &Path,
    work: &Path,
) -> anyhow::Result<hostile::HostileResult> {
    let opts = hostile::HostileOptions {
        operator: operator.to_path_buf(),
        work: work.join("hostile"),
        victim_tags: args.hostile_victim_tags,
        runs: args.hostile_runs,
        attacks: args.hostile_attacks.clone(),
    };
    std::fs::create_dir_all(&opts.work)?;
    let h = hostile::run(&opts).await?;
    say(format!(
        "hostile tenants: worst victim slowdown {}, peak RSS {} MiB, {} operator exit(s)",
        h.worst_ratio().map_or("n/a".into(), |r| format!("{r:.2}×")),
        h.peak_rss_kib() >> 10,
        h.deaths()
    ));
    Ok(h)
}

/// First scans (no previous result) and rescans (with the first scan's status).
fn ours_runs(
    scanner: &Scanner,
    fx: &Fixture,
    runs: usize,
) -> anyhow::Result<(Vec<ScanRun>, Vec<ScanRun>)> {
    say(format!("registry-operator over {} tags", fx.tags()));
    let mut first = Vec::new();
    for i in 0..runs.max(1) {
        first.push(scanner.scan(fx, None, &format!("ours-{}-first-{i}", fx.tags()))?);
    }
    let previous = first[0].output.clone();
    let mut rescan = Vec::new();
    for i in 0..runs.max(1) {
        rescan.push(scanner.scan(
            fx,
            Some(&previous),
            &format!("ours-{}-rescan-{i}", fx.tags()),
        )?);
    }
    Ok((first, rescan))
}

pub fn median_wall(runs: &[ScanRun]) -> f64 {
    sys::median(&runs.iter().map(|r| r.measured.wall).collect::<Vec<_>>())
}

fn git_commit(root: &Path) -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn versions(
    operator: &Path,
    registry_dir: &Path,
    peers: &Peers,
    oha: &Path,
) -> Vec<(String, String)> {
    use sys::version_of;
    let any = |_: &str| true;
    let mut v = vec![
        (
            "registry-operator".to_string(),
            format!(
                "{} (commit {})",
                version_of(operator, &["--version"], any),
                git_commit(&testenv::tools::repo_root())
            ),
        ),
        (
            "rustc".into(),
            version_of(Path::new("rustc"), &["--version"], any),
        ),
        ("go".into(), version_of(Path::new("go"), &["version"], any)),
        (
            "distribution registry".into(),
            version_of(&registry_dir.join("registry"), &["--version"], any).replace(
                &registry_dir.join("registry").display().to_string(),
                "registry",
            ),
        ),
        ("oha".into(), version_of(oha, &["--version"], any)),
        (
            "skopeo".into(),
            version_of(&peers.skopeo, &["--version"], any),
        ),
        ("crane".into(), version_of(&peers.crane, &["version"], any)),
        (
            "regctl".into(),
            version_of(&peers.regctl, &["version"], |l| l.starts_with("VCSTag")),
        ),
        (
            "ggcr-digests".into(),
            std::fs::read_to_string(testenv::tools::repo_root().join("tools/peers/go.mod"))
                .ok()
                .and_then(|m| {
                    m.lines()
                        .find(|l| l.contains("github.com/google/go-containerregistry "))
                        .map(|l| l.trim().replace("github.com/google/", ""))
                })
                .unwrap_or_else(|| "unknown".into()),
        ),
        (
            "jq".into(),
            version_of(Path::new("jq"), &["--version"], any),
        ),
        (
            "GNU xargs".into(),
            version_of(Path::new("xargs"), &["--version"], any),
        ),
    ];
    if let Ok(dir) = testenv::controlplane::controlplane_dir() {
        v.push((
            "kube-apiserver".into(),
            version_of(&dir.join("kube-apiserver"), &["--version"], any),
        ));
        v.push((
            "etcd".into(),
            version_of(&dir.join("etcd"), &["--version"], any),
        ));
    }
    v
}

/// `path` relative to `base` when it lies below it, else as it is.
fn relative(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}
