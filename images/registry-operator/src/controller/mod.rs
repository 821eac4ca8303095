//! The Kubernetes shell around the scan core: watch Registries (and the Secrets they name),
//! reconcile, serve metrics and health, and hold the leader lease.

mod admission;
mod changes;
mod credentials;
mod egress;
mod http;
mod leader;
mod limits;
pub mod metrics;
mod reconcile;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, controller, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::watch;

use crate::api::Registry;
pub use reconcile::FIELD_MANAGER;

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
    /// Hold a Lease so that only one replica reconciles.
    #[arg(long, env = "LEADER_ELECT")]
    pub leader_elect: bool,
    /// Namespace of the Lease (default: the pod's namespace, else the kubeconfig's).
    #[arg(long, env = "POD_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    #[arg(long, default_value = "registry-operator")]
    pub leader_election_lease_name: String,
    /// This replica's identity in the Lease (default: POD_NAME, else host name + pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    #[command(flatten)]
    pub limits: limits::LimitArgs,
    #[command(flatten)]
    pub egress: egress::EgressArgs,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let egress = args.egress.policy()?;
    let client = kube::Client::try_default().await.context(
        "connecting to Kubernetes (in-cluster service account, or KUBECONFIG / ~/.kube/config)",
    )?;
    let registries: Api<Registry> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    registries.list(&ListParams::default().limit(1)).await.map_err(|e| match e {
        kube::Error::Api(ref s) if s.code == 404 => anyhow::anyhow!(
            "the Registry CRD is not installed in this cluster: run `kubectl apply -f crds/registry.yaml` (or `registry-operator crd | kubectl apply -f -`)"
        ),
        e => anyhow::Error::new(e).context("listing Registry objects"),
    })?;

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

    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let lease = if args.leader_elect {
        let namespace = match &args.leader_election_namespace {
            Some(ns) => ns.clone(),
            None => client.default_namespace().to_string(),
        };
        ready.store(true, Ordering::Relaxed);
        match leader::acquire(
            client.clone(),
            &namespace,
            &args.leader_election_lease_name,
            &identity,
            shutdown_rx.clone(),
        )
        .await?
        {
            Some(l) => Some(l),
            None => return Ok(()),
        }
    } else {
        None
    };
    metrics.leader.set(1);
    ready.store(true, Ordering::Relaxed);

    let lost = lease.as_ref().map(leader::Lease::lost);
    let stop = {
        let mut shutdown = shutdown_rx.clone();
        async move {
            let shutdown = async {
                let _ = shutdown.wait_for(|stop| *stop).await;
            };
            match lost {
                Some(lost) => {
                    tokio::select! { _ = shutdown => {}, _ = lost => tracing::error!("lost the leader lease; stopping") }
                }
                None => shutdown.await,
            }
        }
    };

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "registry-operator".into(),
            instance: Some(identity),
        },
    );
    let settings = reconcile::Settings {
        scan_concurrency: args.scan_concurrency.max(1).into(),
        scan_timeout: Duration::from_secs(args.scan_timeout.max(1)),
        max_images: args.max_images.max(1),
        max_concurrent_scans: args.max_concurrent_scans.max(1).into(),
        max_scans_per_namespace: args.limits.max_scans_per_namespace.unwrap_or_else(|| {
            admission::default_per_namespace(args.max_concurrent_scans.max(1).into())
        }),
        limits: args.limits.scan_limits(),
        body_budget: args.limits.body_budget(),
        egress,
        requests_per_second: args
            .registry_requests_per_second
            .filter(|r| r.is_finite() && *r > 0.0),
    };
    let ctx = Arc::new(reconcile::Context::new(
        client.clone(),
        recorder,
        metrics.clone(),
        settings,
    ));
    let secrets: Api<Secret> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let controller = Controller::new(registries, watcher::Config::default().any_semantic());
    let store = controller.store();
    tokio::spawn(prune(store.clone(), ctx.clone(), metrics.clone()));
    let mapper_store = store.clone();
    tracing::info!(
        concurrency = args.max_concurrent_scans,
        "starting the Registry controller"
    );
    controller
        .watches(
            secrets,
            watcher::Config::default().any_semantic(),
            move |secret| referencing(&mapper_store, &secret),
        )
        // Unbounded here: scans are admitted fairly by the context's semaphore instead.
        .with_config(controller::Config::default().concurrency(0))
        .graceful_shutdown_on({
            let ctx = ctx.clone();
            async move {
                stop.await;
                ctx.stop_admitting_scans();
            }
        })
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;

    metrics.leader.set(0);
    if let Some(lease) = lease {
        lease.release().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Registries in the Secret's namespace that name it (credentials or CA).
fn referencing(store: &Store<Registry>, secret: &Secret) -> Vec<ObjectRef<Registry>> {
    let (Some(ns), name) = (secret.namespace(), secret.name_any()) else {
        return Vec::new();
    };
    store
        .state()
        .into_iter()
        .filter(|r| r.namespace().as_deref() == Some(ns.as_str()))
        .filter(|r| {
            r.spec
                .credentials_secret
                .as_ref()
                .is_some_and(|s| s.name == name)
                || r.spec.ca_secret.as_ref().is_some_and(|s| s.name == name)
        })
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

/// Forgets deleted Registries: their remembered facts and their metric series.
async fn prune(
    store: Store<Registry>,
    ctx: Arc<reconcile::Context>,
    metrics: Arc<metrics::Metrics>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let live: HashSet<String> = store
            .state()
            .iter()
            .map(|r| format!("{}/{}", r.namespace().unwrap_or_default(), r.name_any()))
            .collect();
        for gone in ctx.retain(&live) {
            if let Some((namespace, name)) = gone.split_once('/') {
                metrics.forget(&metrics::ObjectLabels {
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
            .expect("installing the SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
