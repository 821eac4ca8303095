//! The Kubernetes shell around the scan core: watch Registries (and the metadata of the
//! Secrets they name), reconcile the shards this replica holds, serve metrics and health.

mod admission;
mod backoff;
mod changes;
mod contain;
mod context;
mod credentials;
mod egress;
mod election;
mod http;
pub mod latest;
mod limits;
mod memory;
pub mod metrics;
mod reconcile;
mod secrets;
pub mod shards;
mod snapshot;
mod targeted;
mod view;
mod webhook;
mod webhook_body;
mod webhook_index;
mod webhook_listener;
mod webhook_receive;
mod webhook_tenants;
mod writer;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, controller, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::watch;

pub use reconcile::FIELD_MANAGER;
use view::RegistryView;

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Where /metrics is served (Prometheus text format).
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:8080")]
    pub metrics_addr: SocketAddr,
    /// Where /healthz and /readyz are served.
    #[arg(long, env = "HEALTH_ADDR", default_value = "0.0.0.0:8081")]
    pub health_addr: SocketAddr,
    /// Registries scanned at the same time.
    #[arg(long, env = "MAX_CONCURRENT_SCANS", default_value_t = 16)]
    pub max_concurrent_scans: u16,
    /// Registry requests in flight per scan (a Registry's spec.concurrency overrides it).
    #[arg(long, env = "SCAN_CONCURRENCY", default_value_t = 8)]
    pub scan_concurrency: u16,
    /// Deadline of one scan, in seconds.
    #[arg(long, env = "SCAN_TIMEOUT", default_value_t = 300)]
    pub scan_timeout: u64,
    /// Images kept in a Registry's status unless its spec.maxImages says otherwise.
    #[arg(long, env = "MAX_IMAGES", default_value_t = 1000)]
    pub max_images: usize,
    /// At most this many requests per second to any one registry host, across all scans
    /// (default: no ceiling; a registry's 429 and Retry-After are always honoured).
    #[arg(long, env = "REGISTRY_REQUESTS_PER_SECOND")]
    pub registry_requests_per_second: Option<f64>,
    /// Only watch Registries in this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Work only on the shards whose Lease this replica holds (`--leader-elect=false`: work on
    /// everything, for a single replica that is sure to be alone).
    #[arg(long, env = "LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,
    /// Namespace of the Leases (default: the pod's namespace, else the kubeconfig's).
    #[arg(long, env = "POD_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the Lease (one shard), or the prefix of the shard Leases.
    #[arg(long, default_value = "registry-operator")]
    pub leader_election_lease_name: String,
    /// This replica's identity in the Leases (default: POD_NAME, else host name + pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    #[command(flatten)]
    pub limits: limits::LimitArgs,
    #[command(flatten)]
    pub egress: egress::EgressArgs,
    #[command(flatten)]
    pub proxy: crate::cli::proxy::ProxyArgs,
    #[command(flatten)]
    pub webhook: webhook::WebhookArgs,
    /// Shards the Registry objects are split into (by a stable hash of namespace/name); each
    /// replica works on the shards whose Lease it holds. Every replica must use the same number.
    #[arg(long, env = "SHARDS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub shards: u32,
    /// Seconds a Lease stays valid without renewal: how soon others take over a dead replica.
    #[arg(long, env = "LEASE_DURATION", default_value_t = 15)]
    pub lease_duration: u64,
    /// Seconds without a successful renewal after which a replica stops all work on a shard
    /// (must be below the lease duration).
    #[arg(long, env = "RENEW_DEADLINE", default_value_t = 10)]
    pub renew_deadline: u64,
    /// Seconds between renewals and between attempts to take a Lease.
    #[arg(long, env = "RETRY_PERIOD", default_value_t = 2)]
    pub retry_period: u64,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let proxy = args.proxy.settings()?;
    let egress = args.egress.policy(proxy.as_ref())?;
    let client = kube::Client::try_default().await.context(
        "connecting to Kubernetes (in-cluster service account, or KUBECONFIG / ~/.kube/config)",
    )?;
    let registries: Api<RegistryView> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    registries.list(&ListParams::default().limit(1)).await.map_err(|e| match e {
        kube::Error::Api(ref s) if s.code == 404 => anyhow::anyhow!(
            "the Registry CRD is not installed in this cluster: run `kubectl apply -f crds/registry.yaml` (or `registry-operator crd | kubectl apply -f -`)"
        ),
        e => anyhow::Error::new(e).context("listing Registry objects"),
    })?;
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let election = election::Config {
        namespace: match &args.leader_election_namespace {
            Some(ns) => ns.clone(),
            None => client.default_namespace().to_string(),
        },
        prefix: args.leader_election_lease_name.clone(),
        identity: identity.clone(),
        shards: args.shards,
        lease_duration: Duration::from_secs(args.lease_duration),
        renew_deadline: Duration::from_secs(args.renew_deadline),
        retry_period: Duration::from_secs(args.retry_period),
    };
    election.validate()?;

    let metrics = Arc::new(metrics::Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = shutdown_tx.send(true);
    });
    http::serve(
        args.metrics_addr,
        args.health_addr,
        metrics.clone(),
        ready.clone(),
        shutdown_rx.clone(),
    )
    .await?;

    let ownership = Arc::new(shards::Ownership::new(args.shards, !args.leader_elect));
    if !args.leader_elect {
        metrics.shards_held.set(i64::from(args.shards));
        metrics.leader.set(1);
    }
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "registry-operator".into(),
            instance: Some(identity),
        },
    );
    let settings = context::Settings {
        scan_concurrency: args.scan_concurrency.max(1).into(),
        scan_timeout: Duration::from_secs(args.scan_timeout.max(1)),
        max_images: args.max_images.max(1),
        max_concurrent_scans: args.max_concurrent_scans.max(1).into(),
        max_scans_per_namespace: args.limits.max_scans_per_namespace.unwrap_or_else(|| {
            admission::default_per_namespace(args.max_concurrent_scans.max(1).into())
        }),
        limits: args.limits.scan_limits(),
        body_budget: args.limits.body_budget(),
        body_idle_timeout: args.limits.body_idle_timeout(),
        egress,
        proxy,
        requests_per_second: args
            .registry_requests_per_second
            .filter(|r| r.is_finite() && *r > 0.0),
        min_scan_interval: Duration::from_secs(args.webhook.min_scan_interval.unwrap_or(0)),
    };
    let ctx = Arc::new(context::Context::new(
        client.clone(),
        recorder,
        metrics.clone(),
        settings,
        ownership.clone(),
    ));
    // Each scrape reads the caches' sizes (a weak handle: the context owns the metrics).
    metrics.on_encode({
        let ctx = Arc::downgrade(&ctx);
        move |m| {
            if let Some(ctx) = ctx.upgrade() {
                for (cache, bytes) in ctx.cache_bytes() {
                    m.cache_bytes
                        .get_or_create(&metrics::CacheLabels { cache })
                        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
                }
            }
        }
    });
    let hooks = match (
        &args.webhook.webhook_addr,
        &args.webhook.webhook_secret_file,
    ) {
        (Some(addr), Some(file)) => {
            let hooks = webhook::Webhooks::new(
                ctx.clone(),
                file.clone(),
                Duration::from_secs(args.webhook.webhook_read_timeout),
            )?;
            let max_connections =
                usize::try_from(args.webhook.webhook_max_connections).unwrap_or(usize::MAX);
            webhook::serve(*addr, hooks.clone(), max_connections, shutdown_rx.clone()).await?;
            Some(hooks)
        }
        _ => None,
    };
    let secrets: Api<PartialObjectMeta<Secret>> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    // The store holds every Registry for the operator's lifetime, as a view without
    // status.images; managedFields (parsed JSON, several KiB per object) are never read
    // either, so they are dropped before it.
    let (store, writer) = reflector::store();
    let objects = watcher(registries, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|r| r.metadata.managed_fields = None)
        .reflect(writer)
        .inspect(move |event| {
            if let (Ok(event), Some(hooks)) = (event, &hooks) {
                hooks.observe(event);
            }
        })
        .applied_objects();
    let controller = Controller::for_stream(objects, store.clone());
    tokio::spawn(prune(store.clone(), ctx.clone()));
    tokio::spawn(readiness(store.clone(), ctx.clone(), ready.clone()));

    // Shards gained: reconcile their objects now. Shards lost: forget what was remembered
    // about their objects (another replica writes them meanwhile).
    let (elector, changes) = if args.leader_elect {
        let (elector, changes) =
            election::Elector::new(client.clone(), election, ownership.clone(), metrics.clone());
        (
            Some(tokio::spawn(elector.run(shutdown_rx.clone()))),
            Some(changes),
        )
    } else {
        (None, None)
    };
    let shard_triggers = {
        let (store, ctx) = (store.clone(), ctx.clone());
        futures::stream::unfold(changes, |mut rx| async move {
            let change = rx.as_mut()?.recv().await?;
            Some((change, rx))
        })
        .flat_map(move |change| {
            let refs = match change {
                election::Change::Acquired(shard) => objects_in(&store, &ctx, shard),
                election::Change::Lost(shard) => {
                    let own = ctx.shards.clone();
                    ctx.retain(|key| {
                        let (ns, name) = key.split_once('/').unwrap_or(("", key));
                        own.shard_of(ns, name) != shard
                    });
                    Vec::new()
                }
            };
            futures::stream::iter(refs)
        })
    };

    tracing::info!(
        concurrency = args.max_concurrent_scans,
        shards = args.shards,
        leader_elect = args.leader_elect,
        "starting the Registry controller"
    );
    let stop = {
        let mut shutdown = shutdown_rx.clone();
        let ctx = ctx.clone();
        async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
            // Cancel in-flight scans and writes rather than wait for them (up to the scan
            // timeout): the standby takes over from the last written status.
            ctx.shards.release_all();
            ctx.admission.close();
        }
    };
    let watch_metrics = metrics.clone();
    controller
        .reconcile_on(secrets::triggers(secrets, store.clone(), ctx.clone()))
        .reconcile_on(shard_triggers)
        // Unbounded here: work is admitted fairly by the context's admission queue instead.
        .with_config(controller::Config::default().concurrency(0))
        .graceful_shutdown_on(stop)
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| {
            let metrics = watch_metrics.clone();
            async move {
                match result {
                    Err(controller::Error::QueueError(e)) => {
                        secrets::watch_error(&metrics, "registries", &e)
                    }
                    Err(e) => tracing::debug!(error = %e, "controller event"),
                    Ok(_) => {}
                }
            }
        })
        .await;

    if let Some(elector) = elector {
        let _ = elector.await;
    }
    metrics.leader.set(0);
    tracing::info!("stopped");
    Ok(())
}

fn objects_in(
    store: &Store<RegistryView>,
    ctx: &context::Context,
    shard: u32,
) -> Vec<ObjectRef<RegistryView>> {
    store
        .state()
        .into_iter()
        .filter(|r| {
            ctx.shards
                .shard_of(&r.namespace().unwrap_or_default(), &r.name_any())
                == shard
        })
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

/// Ready once the caches hold the cluster's state (Registries, and the Secrets' versions).
async fn readiness(store: Store<RegistryView>, ctx: Arc<context::Context>, ready: Arc<AtomicBool>) {
    // Polled again and again: the store's readiness signal wakes only its latest waiter, and
    // the controller waits on it too.
    loop {
        match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
            Ok(Ok(())) => break,
            Ok(Err(_)) => return,
            Err(_) => {}
        }
    }
    while !ctx.secrets.synced() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::info!("caches synced");
    ready.store(true, Ordering::Relaxed);
}

/// Forgets deleted Registries (and objects of shards no longer held): their remembered facts,
/// their metric series, the versions of Secrets nobody names any more.
async fn prune(store: Store<RegistryView>, ctx: Arc<context::Context>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let objects = store.state();
        let live: HashSet<String> = objects
            .iter()
            .map(|r| format!("{}/{}", r.namespace().unwrap_or_default(), r.name_any()))
            .collect();
        let named: HashSet<String> = objects
            .iter()
            .flat_map(|r| {
                let ns = r.namespace().unwrap_or_default();
                secrets::named(r)
                    .map(|n| format!("{ns}/{n}"))
                    .collect::<Vec<_>>()
            })
            .collect();
        ctx.secrets.retain(|k| named.contains(k));
        let shards = ctx.shards.clone();
        let gone = ctx.retain(|k| {
            let (ns, name) = k.split_once('/').unwrap_or(("", k));
            live.contains(k) && shards.is_held(shards.shard_of(ns, name))
        });
        for key in &gone {
            if let Some((namespace, name)) = key.split_once('/') {
                ctx.metrics.forget(&metrics::ObjectLabels {
                    namespace: namespace.into(),
                    name: name.into(),
                });
            }
        }
    }
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "registry-operator".into());
    format!("{host}-{}", std::process::id())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            // ok: start-up, no outside input; without the handler the pod could not stop cleanly.
            .expect("installing the SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
