//! Keeps each object's bucket label equal to the bucket its spec hashes to, so that the shard
//! watches see it. Who does it, at the least cost:
//!
//! - an object with a wrong label (its spec changed, or a tenant wrote the label) is in some
//!   shard's watch: that shard's holder sees it there and relabels it, at no extra watch;
//! - an object with no label, or a value that names no bucket (new objects, objects from
//!   before labels), is in no shard's watch: the holder of shard 0 alone watches those
//!   (`notin` every bucket), which costs nothing once everything is labelled.
//!
//! The label only steers which watch delivers the object: ownership is decided from the spec
//! (`ownership.rs`), so a tenant who writes another bucket gets their object relabelled and
//! scanned where it belongs, never scanned by two replicas.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use super::placement::{self, BUCKET_LABEL};
use crate::controller::metrics::Metrics;
use crate::controller::secrets;
use crate::controller::view::RegistryView;

const FIELD_MANAGER: &str = "registry-operator-shards";
/// Label writes in flight at once (all of them at the first start on an unlabelled cluster).
const CONCURRENT_WRITES: usize = 4;

pub struct Labeller {
    client: kube::Client,
    metrics: Arc<Metrics>,
    /// Objects (`namespace/name`) being relabelled, and whether another event came for one
    /// meanwhile (then it is looked at again when the write is done: nothing is lost).
    pending: Mutex<HashMap<String, bool>>,
    writes: Arc<Semaphore>,
}

/// Writes tried per object (a conflict is retried on the fresh object at once, other errors
/// after a pause) before waiting for the object's next event.
const ATTEMPTS: usize = 5;
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_secs(2);

impl Labeller {
    pub fn new(client: kube::Client, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            client,
            metrics,
            pending: Mutex::default(),
            writes: Arc::new(Semaphore::new(CONCURRENT_WRITES)),
        })
    }

    /// The label `obj` should carry, when it carries another (or none).
    pub fn wanted(obj: &RegistryView) -> Option<String> {
        let want = placement::bucket_label(placement::bucket_of_spec(&obj.spec));
        (obj.labels().get(BUCKET_LABEL) != Some(&want)).then_some(want)
    }

    /// Relabels `obj` in the background if its label is not its spec's bucket.
    pub fn check(self: &Arc<Self>, obj: &RegistryView) {
        if obj.metadata.deletion_timestamp.is_some() || Self::wanted(obj).is_none() {
            return;
        }
        let key = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
        {
            let mut pending = self.pending.lock();
            if let Some(again) = pending.get_mut(&key) {
                *again = true;
                return;
            }
            pending.insert(key.clone(), false);
        }
        let this = self.clone();
        let first = obj.clone();
        tokio::spawn(async move {
            let mut seen = Some(first);
            loop {
                if let Ok(_permit) = this.writes.acquire().await {
                    this.relabel(&key, seen.take()).await;
                }
                let mut pending = this.pending.lock();
                match pending.get_mut(&key) {
                    Some(again) if *again => *again = false,
                    _ => {
                        pending.remove(&key);
                        return;
                    }
                }
            }
        });
    }

    /// Writes the bucket label of `key`, guarded by the resourceVersion read: on a conflict
    /// the object is read again (its spec may have moved it to another bucket).
    async fn relabel(&self, key: &str, mut seen: Option<RegistryView>) {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let api: Api<RegistryView> = Api::namespaced(self.client.clone(), ns);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        for _ in 0..ATTEMPTS {
            let obj = match seen.take() {
                Some(obj) => obj,
                None => match api.get_opt(name).await {
                    Ok(Some(obj)) => obj,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(registry = %key, error = %e, "reading a Registry to label it failed; retrying");
                        tokio::time::sleep(RETRY_PAUSE).await;
                        continue;
                    }
                },
            };
            if obj.metadata.deletion_timestamp.is_some() {
                return;
            }
            let Some(want) = Self::wanted(&obj) else {
                return;
            };
            let patch = serde_json::json!({"metadata": {
                "resourceVersion": obj.resource_version(),
                "labels": {BUCKET_LABEL: want},
            }});
            match api
                .patch_metadata(name, &params, &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    self.metrics.shard_relabels.inc();
                    return;
                }
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(kube::Error::Api(e)) if e.code == 404 => return,
                Err(e) => {
                    tracing::warn!(registry = %key, error = %e, "writing the shard bucket label failed; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }

    /// Watches the objects that carry no bucket label (or a value that names no bucket) and
    /// labels them. Runs while this replica holds shard 0.
    pub async fn watch_unlabelled(self: Arc<Self>, api: Api<RegistryView>) {
        let config = watcher::Config::default()
            .labels(&placement::unlabelled_selector())
            .any_semantic();
        let stream = watcher(api, config)
            .default_backoff()
            .modify(|r| r.metadata.managed_fields = None);
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => self.check(&obj),
                Ok(_) => {}
                Err(e) => secrets::watch_error(&self.metrics, "unlabelled_registries", &e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(labels: serde_json::Value) -> RegistryView {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "registry.kubecontroller.io/v1alpha1", "kind": "Registry",
            "metadata": {"name": "x", "namespace": "n", "labels": labels},
            "spec": {"url": "docker.io", "repository": "nginx"},
        }))
        .unwrap()
    }

    #[test]
    fn only_the_spec_decides_the_label() {
        let right = placement::bucket_label(placement::bucket_of(
            "registry-1.docker.io",
            "library/nginx",
        ));
        assert_eq!(
            Labeller::wanted(&obj(serde_json::json!({}))),
            Some(right.clone())
        );
        assert_eq!(
            Labeller::wanted(&obj(serde_json::json!({BUCKET_LABEL: "not-a-bucket"}))),
            Some(right.clone())
        );
        let other = placement::bucket_label(
            (placement::bucket_of("docker.io", "nginx") + 1) % placement::BUCKETS,
        );
        assert_eq!(
            Labeller::wanted(&obj(serde_json::json!({BUCKET_LABEL: other}))),
            Some(right.clone())
        );
        assert_eq!(
            Labeller::wanted(&obj(serde_json::json!({BUCKET_LABEL: right}))),
            None
        );
    }
}
