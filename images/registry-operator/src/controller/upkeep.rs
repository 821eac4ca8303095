//! What runs beside the controller for the operator's lifetime: readiness, pruning what is
//! remembered about objects gone (or moved to other shards), and the shutdown signal.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use tokio::sync::watch;

use super::context::Context;
use super::metrics;
use super::secrets;
use super::shards::Watches;
use super::view::RegistryView;

/// Ready once the caches hold the cluster's state: the Registries of the shards held (every
/// running watch has delivered its initial list), and the Secrets' versions.
pub async fn readiness(watches: Arc<Watches>, ctx: Arc<Context>, ready: Arc<AtomicBool>) {
    while !watches.synced() || !ctx.secrets.synced() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::info!("caches synced");
    ready.store(true, Ordering::Relaxed);
}

/// Forgets deleted Registries (and objects of shards no longer held): their remembered facts,
/// their metric series, the versions of Secrets nobody names any more.
pub async fn prune(store: Store<RegistryView>, ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let objects = store.state();
        let live: HashMap<String, u32> = objects
            .iter()
            .map(|r| {
                let key = format!("{}/{}", r.namespace().unwrap_or_default(), r.name_any());
                (key, ctx.shards.shard_of(&r.spec))
            })
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
        let gone = ctx.retain(|k| live.get(k).is_some_and(|s| shards.is_held(*s)));
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

/// Turns `true` on SIGTERM or Ctrl-C.
pub fn shutdown_channel() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    rx
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
