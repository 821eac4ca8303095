//! Shards: which replica works on which Registry objects.
//!
//! - `placement`: an object's shard is a stable hash of the registry origin and repository it
//!   scans (so every object that could share a scan is on one replica), through one of 1024
//!   buckets written on the object as a label;
//! - `election` (with `leases`, `membership`): one Lease per shard, shared among the replicas;
//! - `ownership`: the shards held now, and the guards that cancel work when one is lost;
//! - `watch`: one label-selected watch per held shard, merged into the controller's store;
//! - `labeller`: keeps the labels right (the label is a hint for the watches; ownership is
//!   always the spec's hash).

mod election;
mod labeller;
mod leases;
mod membership;
mod ownership;
pub mod placement;
mod watch;

use std::sync::Arc;

use futures::Stream;
use futures::StreamExt;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::mpsc;

pub use election::{Change, Elector};
pub use labeller::Labeller;
pub use leases::Config;
pub use ownership::Ownership;
pub use placement::shard_of;
pub use watch::Watches;

use super::context::Context;
use super::view::RegistryView;

/// What moving shards sets off. Gained: start its watch (whose initial list reconciles its
/// objects), or with one watch of everything, reconcile its objects from the store. Lost:
/// forget what was remembered about its objects (another replica writes them meanwhile),
/// then stop its watch.
pub fn triggers(
    changes: Option<mpsc::UnboundedReceiver<Change>>,
    watches: Arc<Watches>,
    store: Store<RegistryView>,
    ctx: Arc<Context>,
) -> impl Stream<Item = ObjectRef<RegistryView>> + Send + 'static {
    futures::stream::unfold(changes, |mut rx| async move {
        let change = rx.as_mut()?.recv().await?;
        Some((change, rx))
    })
    .flat_map(move |change| {
        let refs = match change {
            Change::Acquired(shard) => {
                watches.acquired(shard);
                if watches.scoped() {
                    Vec::new()
                } else {
                    objects_in(&store, &ctx.shards, shard)
                }
            }
            Change::Lost(shard) => {
                forget_unowned(&store, &ctx);
                watches.lost(shard);
                Vec::new()
            }
        };
        futures::stream::iter(refs)
    })
}

fn objects_in(
    store: &Store<RegistryView>,
    own: &Ownership,
    shard: u32,
) -> Vec<ObjectRef<RegistryView>> {
    store
        .state()
        .into_iter()
        .filter(|r| own.shard_of(&r.spec) == shard)
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

/// Forgets the remembered facts of objects whose shard is not held (or that the store no
/// longer has); returns their keys.
pub fn forget_unowned(store: &Store<RegistryView>, ctx: &Context) -> Vec<String> {
    let own = ctx.shards.clone();
    ctx.retain(|key| {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        store
            .get(&ObjectRef::new(name).within(ns))
            .is_some_and(|r| own.holds(&r.spec))
    })
}
