//! Hostile tenants (issue 16): one victim repository on a real registry, rescanned by one
//! operator with no attack, then while each attack of testenv's hostile registry and hostile
//! webhook senders runs against the same operator from another namespace, then with all of
//! them at once. Reported: the victim's rescan time under each attack over its time without
//! (target ≤ 1.5×), and the operator's peak resident memory under attack (target ≤ 256 MiB),
//! with `/healthz` probes missed and whether the operator survived. An operator that dies is
//! started again for the next attack, and the row says so.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use registry_operator::api::{Registry, ScanStatus};
use testenv::controlplane::ControlPlane;
use testenv::hostile::senders::{HostileSenders, SenderAttack};
use testenv::hostile::{Attack, HostileRegistry};
use testenv::push::Pusher;
use testenv::registry::{RegistryOptions, RegistryServer};

use crate::{fixture, sys};

pub const RATIO_TARGET: f64 = 1.5;
pub const RSS_TARGET_MIB: u64 = 256;
const SECRET: &str = "bench-hostile-webhook-secret";
/// The victim's rescan must end within this, or it counts as not done.
const RESCAN_WITHIN: Duration = Duration::from_secs(120);
/// Let an attack take hold before the victim's rescans start.
const HEAD_START: Duration = Duration::from_secs(5);

pub struct HostileOptions {
    pub operator: PathBuf,
    pub work: PathBuf,
    /// Tags of the victim's repository.
    pub victim_tags: usize,
    /// Victim rescans per attack (the median counts).
    pub runs: usize,
    /// Only these attacks (names containing one of the words), or every attack.
    pub attacks: Vec<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AttackRow {
    pub attack: String,
    /// Median victim rescan under the attack (`None`: none finished within the bound).
    pub victim_seconds: Option<f64>,
    pub ratio: Option<f64>,
    pub peak_rss_kib: u64,
    pub healthz_probes: usize,
    pub healthz_missed: usize,
    /// `None` while the operator lives; else how it ended.
    pub operator_exit: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HostileResult {
    pub victim_tags: usize,
    pub baseline_seconds: f64,
    pub baseline_rss_kib: u64,
    pub rows: Vec<AttackRow>,
    /// Every attack at once.
    pub all_at_once: Option<AttackRow>,
}

impl HostileResult {
    pub fn worst_ratio(&self) -> Option<f64> {
        let rows = self.rows.iter().chain(&self.all_at_once);
        // A victim that never finished is infinitely slowed.
        rows.map(|r| r.ratio.unwrap_or(f64::INFINITY))
            .max_by(f64::total_cmp)
    }

    pub fn peak_rss_kib(&self) -> u64 {
        self.rows
            .iter()
            .chain(&self.all_at_once)
            .map(|r| r.peak_rss_kib)
            .max()
            .unwrap_or(self.baseline_rss_kib)
    }

    pub fn deaths(&self) -> usize {
        self.rows
            .iter()
            .chain(&self.all_at_once)
            .filter(|r| r.operator_exit.is_some())
            .count()
    }
}

/// One aggressor of the bench: a hostile registry (and how many Registries point at each of
/// its repositories), or hostile webhook senders.
#[derive(Clone)]
enum Aggression {
    Registry(Attack, usize),
    Senders(SenderAttack, usize),
}

impl Aggression {
    fn name(&self) -> String {
        match self {
            Aggression::Registry(a, _) => a.name(),
            Aggression::Senders(s, _) => s.name(),
        }
    }
}

fn aggressions() -> Vec<Aggression> {
    let mut all: Vec<Aggression> = Attack::all()
        .into_iter()
        .map(|a| {
            // As in tests/hostile_tenants.rs: enough Registries to hold more than the body
            // budget, and more bomb scans than the runtime has workers.
            let copies = match a {
                Attack::StalledBodies | Attack::TrickledBodies => 6,
                Attack::Schema1Bomb => 4,
                _ => 1,
            };
            Aggression::Registry(a, copies)
        })
        .collect();
    all.extend([
        Aggression::Senders(SenderAttack::TrickleHeaders, 500),
        Aggression::Senders(SenderAttack::TrickleBody, 500),
        Aggression::Senders(SenderAttack::UnauthenticatedBodies { bytes: 1 << 20 }, 300),
    ]);
    all
}

/// Held while an aggression runs; dropping it stops the attack.
#[allow(dead_code)]
enum Running {
    Registry(HostileRegistry),
    Senders(HostileSenders),
}

struct Operator {
    child: Child,
    health: String,
    webhook: std::net::SocketAddr,
}

impl Operator {
    fn start(opts: &HostileOptions, cp: &ControlPlane, n: usize) -> anyhow::Result<Self> {
        let health = format!("127.0.0.1:{}", testenv::tools::free_port());
        let webhook: std::net::SocketAddr =
            format!("127.0.0.1:{}", testenv::tools::free_port()).parse()?;
        let secret_file = opts.work.join("webhook-secret");
        std::fs::write(&secret_file, SECRET)?;
        let mut cmd = Command::new(&opts.operator);
        cmd.arg("run")
            .args(["--health-addr", &health])
            .args([
                "--metrics-addr",
                &format!("127.0.0.1:{}", testenv::tools::free_port()),
            ])
            .args(["--leader-elect=false", "--egress-allow", "127.0.0.1/32"])
            .args(["--webhook-addr", &webhook.to_string()])
            .arg("--webhook-secret-file")
            .arg(&secret_file)
            .env("KUBECONFIG", cp.kubeconfig_path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(
                opts.work.join(format!("operator-{n}.log")),
            )?)
            .stderr(std::fs::File::create(
                opts.work.join(format!("operator-{n}.stderr")),
            )?);
        let child = testenv::registry::spawn_tied(cmd).context("starting the operator")?;
        Ok(Self {
            child,
            health: format!("http://{health}/healthz"),
            webhook,
        })
    }

    fn exited(&mut self) -> Option<String> {
        self.child.try_wait().ok().flatten().map(|s| s.to_string())
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Samples resident memory and `/healthz` every 250 ms while it lives.
struct Sampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    probes: Arc<AtomicUsize>,
    missed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(pid: u32, health: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let probes = Arc::new(AtomicUsize::new(0));
        let missed = Arc::new(AtomicUsize::new(0));
        let (s, p, pr, m, url) = (
            stop.clone(),
            peak.clone(),
            probes.clone(),
            missed.clone(),
            health.to_string(),
        );
        let task = tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(1))
                .build()
                .unwrap_or_default();
            while !s.load(Ordering::Relaxed) {
                if let Ok(kib) = sys::status_kib(pid, "VmRSS") {
                    p.fetch_max(kib, Ordering::Relaxed);
                }
                pr.fetch_add(1, Ordering::Relaxed);
                let ok = http
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if !ok {
                    m.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Self {
            stop,
            peak,
            probes,
            missed,
            task,
        }
    }

    async fn finish(self) -> (u64, usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        (
            self.peak.load(Ordering::Relaxed),
            self.probes.load(Ordering::Relaxed),
            self.missed.load(Ordering::Relaxed),
        )
    }
}

pub async fn run(opts: &HostileOptions) -> anyhow::Result<HostileResult> {
    eprintln!("bench: hostile: starting etcd + kube-apiserver, a registry and an operator");
    let cp = ControlPlane::start().await?;
    let result = measure(opts, &cp).await;
    cp.stop(Duration::from_secs(5));
    result
}

async fn measure(opts: &HostileOptions, cp: &ControlPlane) -> anyhow::Result<HostileResult> {
    let client = cp.client().await;
    let crd = std::fs::read_to_string(testenv::tools::repo_root().join("crds/registry.yaml"))?;
    cp.apply_yaml(&crd).await.context("installing the CRD")?;

    let reg = RegistryServer::start(RegistryOptions::plain()).await?;
    let pusher = Pusher::new(&reg, None)?;
    let tags = opts.victim_tags.max(10);
    let fx = fixture::fill(&pusher, "victim/app", tags, tags / 10, 1, 300).await?;
    let victim_ns = cp.create_namespace("bench-victim").await;
    let victim: Api<Registry> = Api::namespaced(client.clone(), &victim_ns);
    let spec = serde_json::json!({"url": reg.url, "repository": fx.repo, "scanInterval": 3600});
    victim
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "apiVersion": "registry.kubecontroller.io/v1alpha1", "kind": "Registry",
                "metadata": {"name": "victim"}, "spec": spec,
            }))?,
        )
        .await?;

    let mut starts = 0;
    let mut op = Operator::start(opts, cp, starts)?;
    let mut generation = 1;
    wait_scanned(&victim, generation, &mut op)
        .await
        .context("the victim's first scan")?;

    let mut out = HostileResult {
        victim_tags: fx.tags(),
        ..HostileResult::default()
    };
    let mut baseline = Vec::new();
    for _ in 0..opts.runs.max(1) {
        generation += 1;
        if let Some(s) = rescan(&victim, generation, &mut op).await {
            baseline.push(s);
        }
    }
    anyhow::ensure!(
        !baseline.is_empty(),
        "the victim's rescans without attack failed"
    );
    out.baseline_seconds = sys::median(&baseline);
    out.baseline_rss_kib = sys::status_kib(op.child.id(), "VmRSS").unwrap_or_default();
    eprintln!(
        "bench: hostile: victim rescan without attack {:.2}s over {} tags, operator at {} MiB",
        out.baseline_seconds,
        fx.tags(),
        out.baseline_rss_kib >> 10
    );

    let chosen: Vec<Aggression> = aggressions()
        .into_iter()
        .filter(|a| {
            opts.attacks.is_empty() || opts.attacks.iter().any(|w| a.name().contains(w.as_str()))
        })
        .collect();
    let mut round = 0;
    for a in &chosen {
        round += 1;
        let row = under(
            opts,
            cp,
            &client,
            &victim,
            &mut op,
            &mut starts,
            &mut generation,
            &out,
            std::slice::from_ref(a),
            round,
        )
        .await?;
        out.rows.push(row);
    }
    if chosen.len() > 1 {
        round += 1;
        let mut row = under(
            opts,
            cp,
            &client,
            &victim,
            &mut op,
            &mut starts,
            &mut generation,
            &out,
            &chosen,
            round,
        )
        .await?;
        row.attack = "all of the above at once".into();
        out.all_at_once = Some(row);
    }
    drop(reg);
    Ok(out)
}

/// Runs `attacks` together and measures the victim's rescans under them.
#[allow(clippy::too_many_arguments)]
async fn under(
    opts: &HostileOptions,
    cp: &ControlPlane,
    client: &kube::Client,
    victim: &Api<Registry>,
    op: &mut Operator,
    starts: &mut usize,
    generation: &mut i64,
    base: &HostileResult,
    attacks: &[Aggression],
    round: usize,
) -> anyhow::Result<AttackRow> {
    let name = attacks
        .iter()
        .map(Aggression::name)
        .collect::<Vec<_>>()
        .join(" + ");
    let ns = cp
        .create_namespace(&format!("bench-attacker-{round}"))
        .await;
    let attackers: Api<Registry> = Api::namespaced(client.clone(), &ns);
    let sampler = Sampler::start(op.child.id(), &op.health);
    let mut running = Vec::new();
    for (i, a) in attacks.iter().enumerate() {
        match a {
            Aggression::Registry(attack, copies) => {
                let hostile = HostileRegistry::start(attack.clone()).await?;
                for (r, repository) in attack.repositories().iter().enumerate() {
                    for c in 0..*copies {
                        let obj: Registry = serde_json::from_value(serde_json::json!({
                            "apiVersion": "registry.kubecontroller.io/v1alpha1", "kind": "Registry",
                            "metadata": {"name": format!("attack-{i}-{r}-{c}")},
                            "spec": {"url": hostile.url, "repository": repository, "scanInterval": 300},
                        }))?;
                        attackers.create(&PostParams::default(), &obj).await?;
                    }
                }
                running.push(Running::Registry(hostile));
            }
            Aggression::Senders(attack, connections) => {
                running.push(Running::Senders(
                    HostileSenders::start(
                        op.webhook,
                        "/webhook/distribution",
                        *attack,
                        *connections,
                    )
                    .await,
                ));
            }
        }
    }
    tokio::time::sleep(HEAD_START).await;
    let mut times = Vec::new();
    for _ in 0..opts.runs.max(1) {
        *generation += 1;
        match rescan(victim, *generation, op).await {
            Some(s) => times.push(s),
            None => break,
        }
    }
    let exited = op.exited();
    let (peak, probes, missed) = sampler.finish().await;
    drop(running);
    let _ = attackers
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    if let Ok(list) = attackers.list(&ListParams::default()).await {
        for r in list.items {
            let _ = attackers
                .patch(
                    &r.metadata.name.unwrap_or_default(),
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
                )
                .await;
        }
    }
    let victim_seconds = (!times.is_empty()).then(|| sys::median(&times));
    let row = AttackRow {
        attack: name,
        victim_seconds,
        ratio: victim_seconds.map(|s| s / base.baseline_seconds.max(1e-3)),
        peak_rss_kib: peak,
        healthz_probes: probes,
        healthz_missed: missed,
        operator_exit: exited.clone(),
    };
    eprintln!(
        "bench: hostile: {}: victim {:?}s ({:?}×), peak RSS {} MiB, /healthz {missed}/{probes} missed{}",
        row.attack,
        row.victim_seconds.map(|s| (s * 100.0).round() / 100.0),
        row.ratio.map(|r| (r * 100.0).round() / 100.0),
        peak >> 10,
        exited
            .as_ref()
            .map(|e| format!(", operator exited ({e})"))
            .unwrap_or_default()
    );
    if exited.is_some() {
        // The next attack gets a live operator.
        *starts += 1;
        *op = Operator::start(opts, cp, *starts)?;
        *generation += 1;
        bump(victim, *generation).await?;
        wait_scanned(victim, *generation, op).await?;
    }
    Ok(row)
}

async fn bump(api: &Api<Registry>, generation: i64) -> anyhow::Result<()> {
    api.patch(
        "victim",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"scanInterval": 3600 + generation}})),
    )
    .await?;
    Ok(())
}

/// Seconds from a spec change until the victim's status shows it scanned with `Success`.
async fn rescan(api: &Api<Registry>, generation: i64, op: &mut Operator) -> Option<f64> {
    let started = Instant::now();
    bump(api, generation).await.ok()?;
    wait_scanned(api, generation, op).await.ok()?;
    Some(started.elapsed().as_secs_f64())
}

async fn wait_scanned(
    api: &Api<Registry>,
    generation: i64,
    op: &mut Operator,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + RESCAN_WITHIN;
    loop {
        if let Ok(r) = api.get("victim").await {
            let s = r.status.clone().unwrap_or_default();
            if r.metadata.generation == Some(generation)
                && s.observed_generation == Some(generation)
                && s.last_scan_status == Some(ScanStatus::Success)
            {
                return Ok(());
            }
        }
        if let Some(e) = op.exited() {
            anyhow::bail!("the operator exited: {e}");
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no Success within {RESCAN_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
