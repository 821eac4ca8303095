//! The Kubernetes shell around the scan core: watch the Registries of the shards this replica
//! holds (and the metadata of the Secrets they name), reconcile them, serve metrics and health.

mod admission;
mod args;
mod backoff;
mod changes;
mod contain;
mod context;
mod credentials;
mod egress;
mod http;
pub mod latest;
mod limits;
mod memory;
pub mod metrics;
mod reconcile;
mod secrets;
pub mod shards;
mod shared;
mod snapshot;
mod targeted;
mod upkeep;
mod view;
mod webhook;
mod webhook_body;
mod webhook_index;
mod webhook_listener;
mod webhook_receive;
mod webhook_tenants;
mod writer;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use kube::Api;
use kube::api::ListParams;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, controller};
use tokio::sync::watch;

pub use args::RunArgs;
pub use reconcile::FIELD_MANAGER;
use view::RegistryView;

/// What the operator starts, in order.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let proxy = args.proxy.settings()?;
    let egress = args.egress.policy(proxy.as_ref())?;
    let client = connect().await?;
    let registries: Api<RegistryView> = namespaced(&client, args.namespace.as_deref());
    check_crd(&registries).await?;
    let identity = args.identity();
    let election = args.election(client.default_namespace(), identity.clone());
    election.validate()?;

    let metrics = Arc::new(metrics::Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let shutdown = upkeep::shutdown_channel();
    http::serve(
        args.metrics_addr,
        args.health_addr,
        metrics.clone(),
        ready.clone(),
        shutdown.clone(),
    )
    .await?;

    let ownership = ownership(&args, &metrics);
    let ctx = context(
        &args, &client, identity, &metrics, &ownership, egress, proxy,
    );
    let hooks = start_webhooks(&args, &ctx, &shutdown).await?;

    // The store holds the objects of the shards held, as views without status.images.
    let (store, writer) = reflector::store();
    let labeller = shards::Labeller::new(client.clone(), metrics.clone());
    let (watches, events) = shards::Watches::new(
        registries,
        args.shards,
        args.scoped_watches(),
        Some(labeller),
        store.clone(),
        metrics.clone(),
    );
    let objects = events
        .reflect(writer)
        .inspect(move |event| {
            if let (Ok(event), Some(hooks)) = (event, &hooks) {
                hooks.observe(event);
            }
        })
        .applied_objects();
    count_watched(&metrics, store.clone());
    tokio::spawn(upkeep::prune(store.clone(), ctx.clone()));
    tokio::spawn(upkeep::readiness(
        watches.clone(),
        ctx.clone(),
        ready.clone(),
    ));

    let (elector, changes) = match args.leader_elect {
        true => {
            let (elector, changes) =
                shards::Elector::new(client.clone(), election, ownership, metrics.clone());
            (
                Some(tokio::spawn(elector.run(shutdown.clone()))),
                Some(changes),
            )
        }
        false => (None, None),
    };
    let shard_triggers = shards::triggers(changes, watches.clone(), store.clone(), ctx.clone());
    let secret_triggers = secrets::triggers(
        namespaced(&client, args.namespace.as_deref()),
        store.clone(),
        ctx.clone(),
    );

    tracing::info!(
        concurrency = args.max_concurrent_scans,
        shards = args.shards,
        leader_elect = args.leader_elect,
        scoped_watches = watches.scoped(),
        "starting the Registry controller"
    );
    control(
        objects,
        store,
        secret_triggers,
        shard_triggers,
        shutdown,
        ctx,
        &metrics,
    )
    .await;

    if let Some(elector) = elector {
        let _ = elector.await;
    }
    drop(watches);
    metrics.leader.set(0);
    tracing::info!("stopped");
    Ok(())
}

/// Every shard held without election (a replica sure to be alone), else none until elected.
fn ownership(args: &RunArgs, metrics: &metrics::Metrics) -> Arc<shards::Ownership> {
    if !args.leader_elect {
        metrics.shards_held.set(i64::from(args.shards));
        metrics.leader.set(1);
    }
    Arc::new(shards::Ownership::new(args.shards, !args.leader_elect))
}

/// Each scrape reads how many objects the watches hold.
fn count_watched(metrics: &metrics::Metrics, store: Store<RegistryView>) {
    metrics.on_encode(move |m| {
        let n = store.state().len();
        m.watched_objects.set(i64::try_from(n).unwrap_or(i64::MAX));
    });
}

/// The controller: reconciles the watched objects, and those the Secrets and shard moves
/// point at, until shutdown.
async fn control(
    objects: impl futures::Stream<Item = Result<RegistryView, kube::runtime::watcher::Error>>
    + Send
    + 'static,
    store: Store<RegistryView>,
    secret_triggers: impl futures::Stream<Item = ObjectRef<RegistryView>> + Send + 'static,
    shard_triggers: impl futures::Stream<Item = ObjectRef<RegistryView>> + Send + 'static,
    shutdown: watch::Receiver<bool>,
    ctx: Arc<context::Context>,
    metrics: &Arc<metrics::Metrics>,
) {
    Controller::for_stream(objects, store)
        .reconcile_on(secret_triggers)
        .reconcile_on(shard_triggers)
        // Unbounded here: work is admitted fairly by the context's admission queue instead.
        .with_config(controller::Config::default().concurrency(0))
        .graceful_shutdown_on(stopped(shutdown, ctx.clone()))
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| {
            let metrics = metrics.clone();
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
}

async fn connect() -> anyhow::Result<kube::Client> {
    kube::Client::try_default().await.context(
        "connecting to Kubernetes (in-cluster service account, or KUBECONFIG / ~/.kube/config)",
    )
}

fn namespaced<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn check_crd(registries: &Api<RegistryView>) -> anyhow::Result<()> {
    registries.list(&ListParams::default().limit(1)).await.map_err(|e| match e {
        kube::Error::Api(ref s) if s.code == 404 => anyhow::anyhow!(
            "the Registry CRD is not installed in this cluster: run `kubectl apply -f crds/registry.yaml` (or `registry-operator crd | kubectl apply -f -`)"
        ),
        e => anyhow::Error::new(e).context("listing Registry objects"),
    })?;
    Ok(())
}

fn context(
    args: &RunArgs,
    client: &kube::Client,
    identity: String,
    metrics: &Arc<metrics::Metrics>,
    ownership: &Arc<shards::Ownership>,
    egress: Arc<crate::registry::EgressPolicy>,
    proxy: Option<crate::registry::ProxySettings>,
) -> Arc<context::Context> {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "registry-operator".into(),
            instance: Some(identity),
        },
    );
    let ctx = Arc::new(context::Context::new(
        client.clone(),
        recorder,
        metrics.clone(),
        args.settings(egress, proxy),
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
    ctx
}

async fn start_webhooks(
    args: &RunArgs,
    ctx: &Arc<context::Context>,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Option<Arc<webhook::Webhooks>>> {
    let (Some(addr), Some(file)) = (
        &args.webhook.webhook_addr,
        &args.webhook.webhook_secret_file,
    ) else {
        return Ok(None);
    };
    let hooks = webhook::Webhooks::new(
        ctx.clone(),
        file.clone(),
        Duration::from_secs(args.webhook.webhook_read_timeout),
    )?;
    let max_connections =
        usize::try_from(args.webhook.webhook_max_connections).unwrap_or(usize::MAX);
    webhook::serve(*addr, hooks.clone(), max_connections, shutdown.clone()).await?;
    Ok(Some(hooks))
}

/// Resolves on shutdown, after cancelling in-flight scans and writes rather than waiting for
/// them (up to the scan timeout): the standby takes over from the last written status.
async fn stopped(mut shutdown: watch::Receiver<bool>, ctx: Arc<context::Context>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
    ctx.shards.release_all();
    ctx.admission.close();
}
