//! One tenant points its Registries at a hostile registry (testenv::hostile), or holds the
//! webhook port with slow, unauthenticated senders; the real operator (`registry-operator run`
//! against the real API server, over every namespace) must shrug it off. For every attack mode:
//! the process stays alive, its resident memory grows by at most [`RSS_BOUND_KIB`], `/healthz`
//! keeps answering within a second, and a victim tenant in another namespace, scanning a real
//! distribution registry, still gets a rescan to `Success` (liveness, with a generous bound —
//! not a speed assertion: the victim's slowdown is measured by `make bench`). The webhook
//! senders' connections must also have been closed by the end of their attack (read timeouts).
//!
//! A test binary of its own, because each operator here watches every namespace; the tests
//! take turns ([`SERIAL`]) so that one operator's memory is one attack's doing.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::operator::{self, Operator, status};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use registry_operator::api::{Registry, ScanStatus};
use testenv::controlplane::{self, ControlPlane};
use testenv::hostile::senders::{HostileSenders, SenderAttack};
use testenv::hostile::{Attack, HostileRegistry, HugeField, NumberHeader};
use testenv::registry::{Implementation, RegistryOptions, RegistryServer};

/// Growth of the operator's resident set over its level before the attack. What bounds it is
/// the in-flight body budget (an attacker's bodies, and the copies their parsing makes, wait
/// for room in it), so the operator here runs with a budget well under the bound: with the
/// default 128 MiB budget the same attacks peak at what `make bench` reports.
const RSS_BOUND_KIB: u64 = 64 * 1024;
/// `--max-body-bytes-in-flight` for these operators.
const BODY_BUDGET: &str = "33554432";
/// How long each attack on the registry side runs (the victim's rescan happens inside it).
const ATTACK_FOR: Duration = Duration::from_secs(16);
/// How long the webhook senders hold their connections: longer than any sane header or body
/// read timeout, so that at the end the operator should have closed nearly all of them.
const SENDERS_FOR: Duration = Duration::from_secs(32);
/// Let the attack take hold before the victim asks for its rescan.
const HEAD_START: Duration = Duration::from_secs(3);
/// The victim's rescan reaches `Success` within this, attack or not: generous (it takes well
/// under a second here), but shorter than the 30 s one registry request may take, so that a
/// victim made to wait out an attacker's held bodies does not pass.
const VICTIM_WITHIN: Duration = Duration::from_secs(12);
/// A `/healthz` probe that takes longer than this is a miss.
const HEALTHZ_WITHIN: Duration = Duration::from_secs(1);
/// Misses in a row that count as "`/healthz` stopped answering" (one miss can be the
/// machine's other load; two seconds of silence is the operator's).
const HEALTHZ_MISSES: usize = 2;
const WEBHOOK_SECRET: &str = "hostile-tenants-webhook-secret";

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

#[derive(Default)]
struct Watched {
    probes: usize,
    misses: usize,
    longest_run_of_misses: usize,
    run: usize,
    first_miss: Option<String>,
    peak_rss_kib: u64,
    exited: Option<String>,
}

/// Probes the operator every 250 ms until dropped: alive, `/healthz`, resident memory.
struct Watcher {
    seen: Arc<Mutex<Watched>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watcher {
    fn start(pid: u32, health: &str) -> Self {
        let seen = Arc::new(Mutex::new(Watched::default()));
        let (s, url) = (seen.clone(), format!("{health}/healthz"));
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(HEALTHZ_WITHIN)
            .build()
            .unwrap();
        let task = tokio::spawn(async move {
            loop {
                let started = Instant::now();
                let answer = http.get(&url).send().await;
                let ok = matches!(&answer, Ok(r) if r.status().is_success())
                    && started.elapsed() <= HEALTHZ_WITHIN;
                let rss = rss_kib(pid);
                {
                    let mut w = s.lock().unwrap();
                    w.probes += 1;
                    match rss {
                        Some((now, _)) => w.peak_rss_kib = w.peak_rss_kib.max(now),
                        None if w.exited.is_none() => {
                            w.exited = Some("its /proc entry is gone".into())
                        }
                        None => {}
                    }
                    if ok {
                        w.run = 0;
                    } else {
                        w.misses += 1;
                        w.run += 1;
                        w.longest_run_of_misses = w.longest_run_of_misses.max(w.run);
                        if w.first_miss.is_none() {
                            w.first_miss = Some(match answer {
                                Ok(r) => {
                                    format!("HTTP {} after {:?}", r.status(), started.elapsed())
                                }
                                Err(e) => format!("{e} after {:?}", started.elapsed()),
                            });
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Self { seen, task }
    }
}

/// The victim: a real registry with a small repository, and its Registry in a namespace of its own.
struct Victim {
    _reg: RegistryServer,
    api: Api<Registry>,
}

async fn victim(cp: &ControlPlane, client: &kube::Client) -> Victim {
    // distribution v3 where it is built, Debian's 2.8 otherwise: either is a real registry.
    let implementation = if Implementation::DistributionV3.binary().is_ok() {
        Implementation::DistributionV3
    } else {
        Implementation::Distribution28
    };
    let reg = RegistryServer::start(RegistryOptions::plain().on(implementation))
        .await
        .unwrap();
    common::seed_small(&reg, None, "victim/app").await;
    let ns = cp.create_namespace("victim").await;
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &operator::registry("victim", &reg.url, "victim/app", serde_json::json!({})),
    )
    .await
    .unwrap();
    Victim { _reg: reg, api }
}

fn scanned(r: &Registry, generation: i64) -> bool {
    status(r).last_scan_status == Some(ScanStatus::Success)
        && r.metadata.generation == Some(generation)
        && status(r).observed_generation == Some(generation)
}

/// What a test runs against the operator once the victim has been scanned.
enum Aggressor {
    Registry(HostileRegistry),
    Senders(HostileSenders),
}

/// Runs one attack against a fresh operator and returns every broken promise.
async fn survive<F, Fut>(name: &str, extra: &[&str], attack_for: Duration, attack: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: std::future::Future<Output = Aggressor>,
{
    let _turn = SERIAL.lock().await;
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let client = cp.client().await;
    let victim = victim(cp, &client).await;
    let lease_ns = victim.api.namespace().unwrap_or_default().to_string();

    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("webhook-secret");
    std::fs::write(&secret_file, WEBHOOK_SECRET).unwrap();
    let webhook_port = testenv::tools::free_port();
    let webhook_addr = format!("127.0.0.1:{webhook_port}");
    let mut args: Vec<&str> = vec!["--leader-election-namespace", &lease_ns];
    args.extend([
        "--max-body-bytes-in-flight",
        BODY_BUDGET,
        "--webhook-addr",
        &webhook_addr,
        "--webhook-secret-file",
        secret_file.to_str().unwrap(),
    ]);
    args.extend(extra);
    let mut op = Operator::start_all_namespaces(cp, &args).await;
    let pid = op.child.id().unwrap();
    operator::wait_for(&victim.api, "victim", &op, "the victim's first scan", |r| {
        scanned(r, 1)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (baseline, _) = rss_kib(pid).expect("the operator runs");

    let attacker_ns = cp.create_namespace("attacker").await;
    let attackers: Api<Registry> = Api::namespaced(client.clone(), &attacker_ns);
    let watcher = Watcher::start(pid, &op.health);
    let started = Instant::now();
    let aggressor = attack(Ctx {
        attackers: attackers.clone(),
        webhook: webhook_addr.parse().unwrap(),
    })
    .await;
    tokio::time::sleep(HEAD_START).await;

    // The victim asks for a rescan (a new generation) while the attack goes on.
    let mut problems = Vec::new();
    victim
        .api
        .patch(
            "victim",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"scanInterval": 301}})),
        )
        .await
        .unwrap();
    let asked = Instant::now();
    let mut rescanned = None;
    while asked.elapsed() < VICTIM_WITHIN {
        if let Ok(r) = victim.api.get("victim").await
            && scanned(&r, 2)
        {
            rescanned = Some(asked.elapsed());
            break;
        }
        if op.child.try_wait().ok().flatten().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if let Some(left) = attack_for.checked_sub(started.elapsed()) {
        tokio::time::sleep(left).await;
    }
    // A legitimate sender (the victim's registry, with the secret) is heard, also after the
    // attack held the port all this time.
    let hook = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .post(format!("http://{webhook_addr}/webhook/distribution"))
        .header("Authorization", format!("Bearer {WEBHOOK_SECRET}"))
        .header("Content-Type", "application/json")
        .body(r#"{"events":[]}"#)
        .send()
        .await;
    let exited = op.child.try_wait().ok().flatten();
    let (rss_now, hwm) = rss_kib(pid).unwrap_or_default();
    let seen = {
        let w = watcher.seen.lock().unwrap();
        (
            w.probes,
            w.misses,
            w.longest_run_of_misses,
            w.first_miss.clone(),
            w.peak_rss_kib.max(rss_now).max(hwm),
        )
    };
    drop(watcher);
    let (probes, misses, longest, first_miss, peak) = seen;
    let detail = match &aggressor {
        Aggressor::Registry(h) => format!(
            "hostile registry: {} requests, {} tokens ({} MiB), {} bodies held now ({} ever), {} manifest GETs",
            h.counters.requests(),
            h.counters.tokens.load(Ordering::Relaxed),
            h.counters.token_bytes.load(Ordering::Relaxed) >> 20,
            h.counters.held_bodies.load(Ordering::Relaxed),
            h.counters.held_total.load(Ordering::Relaxed),
            h.counters.manifest_gets.load(Ordering::Relaxed),
        ),
        Aggressor::Senders(s) => format!(
            "hostile senders: {} connections opened, {} still held by the operator, {} MiB sent",
            s.counters.opened.load(Ordering::Relaxed),
            s.counters.held(),
            s.counters.sent.load(Ordering::Relaxed) >> 20,
        ),
    };
    eprintln!(
        "{name}: baseline {baseline} KiB, peak {peak} KiB (VmHWM {hwm} KiB), /healthz {misses} of {probes} missed (longest run {longest}), victim rescan {rescanned:?}, webhook {:?}; {detail}",
        hook.as_ref().map(|r| r.status())
    );

    if let Some(status) = exited {
        problems.push(format!("the operator exited: {status}"));
    }
    if peak > baseline + RSS_BOUND_KIB {
        problems.push(format!(
            "resident memory grew from {baseline} KiB to {peak} KiB (more than {} MiB)",
            RSS_BOUND_KIB >> 10
        ));
    }
    if longest >= HEALTHZ_MISSES {
        problems.push(format!(
            "/healthz missed {longest} probes in a row ({misses} of {probes} in all; first: {})",
            first_miss.unwrap_or_default()
        ));
    }
    if rescanned.is_none() {
        let r = victim.api.get("victim").await.ok();
        problems.push(format!(
            "the victim's rescan did not reach Success within {}s (status: {:?})",
            VICTIM_WITHIN.as_secs(),
            r.map(|r| (
                status(&r).last_scan_status,
                status(&r).observed_generation,
                status(&r).message
            ))
        ));
    }
    if let Aggressor::Senders(s) = &aggressor {
        let opened = s.counters.opened.load(Ordering::Relaxed);
        if s.counters.held() > opened / 10 {
            problems.push(format!(
                "{} of {opened} connections that never sent a proof were still open after {}s",
                s.counters.held(),
                attack_for.as_secs()
            ));
        }
    }
    match &hook {
        Ok(r) if r.status().is_success() => {}
        other => problems.push(format!(
            "a legitimate webhook was not answered: {:?}",
            other.as_ref().map(|r| r.status())
        )),
    }
    let attacker_objects = attackers.list(&ListParams::default()).await;
    if let Ok(list) = &attacker_objects {
        // What a tenant's registry says must not fill the tenant's status either.
        for r in &list.items {
            let bytes = serde_json::to_vec(&r.status).map_or(0, |b| b.len());
            if bytes > 256 << 10 {
                problems.push(format!(
                    "{} has a status of {bytes} bytes",
                    r.metadata.name.clone().unwrap_or_default()
                ));
            }
        }
    }
    let logs = op.logs();
    let panics: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("panicked"))
        .take(5)
        .collect();
    let log = format!(
        "{}\n…\n{}",
        panics.join("\n"),
        common::operator::tail(&logs, 15)
    );

    // Out of the next test's way: no Registry left for the next operator to pick up.
    drop(aggressor);
    for api in [&attackers, &victim.api] {
        let _ = api
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await;
        if let Ok(list) = api.list(&ListParams::default()).await {
            for r in list.items {
                let _ = api
                    .patch(
                        &r.metadata.name.unwrap_or_default(),
                        &PatchParams::default(),
                        &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
                    )
                    .await;
            }
        }
    }
    op.terminate().await;
    assert!(
        problems.is_empty(),
        "under attack ({name}):\n- {}\noperator log tail:\n{log}",
        problems.join("\n- ")
    );
}

/// What an attack gets to work with.
struct Ctx {
    /// The attacker's namespace.
    attackers: Api<Registry>,
    /// The operator's webhook receiver.
    webhook: std::net::SocketAddr,
}

/// Starts `attack` and points `copies` Registries at each of its repositories.
async fn hostile_registry(ctx: Ctx, attack: Attack, copies: usize) -> Aggressor {
    let hostile = HostileRegistry::start(attack.clone()).await.unwrap();
    for (i, repository) in attack.repositories().iter().enumerate() {
        for c in 0..copies {
            ctx.attackers
                .create(
                    &PostParams::default(),
                    &operator::registry(
                        &format!("attack-{i}-{c}"),
                        &hostile.url,
                        repository,
                        serde_json::json!({}),
                    ),
                )
                .await
                .unwrap();
        }
    }
    Aggressor::Registry(hostile)
}

macro_rules! registry_attack {
    ($($name:ident: $attack:expr, $copies:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let attack: Attack = $attack;
            let name = attack.name();
            survive(&name, &[], ATTACK_FOR, |ctx| hostile_registry(ctx, attack, $copies)).await;
        }
    )*};
}

registry_attack! {
    absurd_retry_after: Attack::Numbers(NumberHeader::RetryAfter), 1;
    absurd_rate_limit_reset: Attack::Numbers(NumberHeader::RateLimitReset), 1;
    absurd_content_length: Attack::Numbers(NumberHeader::ContentLength), 1;
    absurd_expires_in: Attack::Numbers(NumberHeader::ExpiresIn), 1;
    absurd_manifest_sizes: Attack::Numbers(NumberHeader::ManifestSizes), 1;
    absurd_page_links: Attack::Numbers(NumberHeader::PageLinks), 1;
    huge_media_types: Attack::HugeStrings(HugeField::MediaType), 1;
    huge_platform_fields: Attack::HugeStrings(HugeField::Platform), 1;
    huge_unknown_kinds: Attack::HugeStrings(HugeField::UnknownKind), 1;
    huge_tag_names: Attack::HugeStrings(HugeField::TagNames), 1;
    huge_error_messages: Attack::HugeStrings(HugeField::ErrorMessage), 2;
    one_mib_tokens_with_fresh_scopes: Attack::FreshTokens, 1;
    // A scan's work runs on one runtime worker at a time: a few at once block them all.
    schema1_signature_bombs: Attack::Schema1Bomb, 4;
    stalled_bodies_hold_the_body_budget: Attack::StalledBodies, 6;
    trickled_bodies_hold_the_body_budget: Attack::TrickledBodies, 6;
}

/// distribution 2.x with exactly a page of tags: besides the usual promises, the attacker's
/// own scan lists every tag once and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_ignores_paging() {
    let attack = Attack::IgnoresPaging { tags: 1000 };
    // Checked once the operator's promises are, so that a failure here still cleans up.
    let outcome = Arc::new(Mutex::new(None));
    let seen = outcome.clone();
    survive(&attack.name(), &[], ATTACK_FOR, |ctx| async move {
        let api = ctx.attackers.clone();
        let aggressor = hostile_registry(ctx, attack, 1).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = api
                .get("attack-0-0")
                .await
                .map(|r| status(&r))
                .unwrap_or_default();
            if s.last_scan_status.is_some() || Instant::now() > deadline {
                *seen.lock().unwrap() = Some((s.last_scan_status, s.tag_count, s.message));
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        aggressor
    })
    .await;
    let (scan_status, tags, message) = outcome.lock().unwrap().clone().unwrap_or_default();
    assert_eq!(
        (scan_status, tags),
        (Some(ScanStatus::Success), Some(1000)),
        "the scan of 1,000 tags that ignore paging: {message:?}"
    );
}

macro_rules! sender_attack {
    ($($name:ident: $attack:expr, $connections:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let attack: SenderAttack = $attack;
            survive(&attack.name(), &[], SENDERS_FOR, |ctx| async move {
                Aggressor::Senders(
                    HostileSenders::start(ctx.webhook, "/webhook/distribution", attack, $connections)
                        .await,
                )
            })
            .await;
        }
    )*};
}

sender_attack! {
    webhook_headers_trickled_on_many_connections: SenderAttack::TrickleHeaders, 500;
    webhook_bodies_trickled_on_many_connections: SenderAttack::TrickleBody, 500;
    unauthenticated_webhook_bodies_on_many_connections: SenderAttack::UnauthenticatedBodies { bytes: 1 << 20 }, 300;
}
