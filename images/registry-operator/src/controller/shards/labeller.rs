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

use std::collections::HashSet;
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
    /// `namespace/name=bucket` of the writes queued or in flight: one per object and value.
    pending: Mutex<HashSet<String>>,
    writes: Arc<Semaphore>,
}

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
        if obj.metadata.deletion_timestamp.is_some() {
            return;
        }
        let Some(want) = Self::wanted(obj) else {
            return;
        };
        let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
        let job = format!("{ns}/{name}={want}");
        if !self.pending.lock().insert(job.clone()) {
            return;
        }
        let this = self.clone();
        let version = obj.resource_version();
        tokio::spawn(async move {
            if let Ok(_permit) = this.writes.acquire().await {
                this.write(&ns, &name, &want, version).await;
            }
            this.pending.lock().remove(&job);
        });
    }

    async fn write(&self, ns: &str, name: &str, bucket: &str, version: Option<String>) {
        let api: Api<RegistryView> = Api::namespaced(self.client.clone(), ns);
        // Guarded by the resourceVersion read: if the spec changed meanwhile, the event of
        // that change brings the right bucket.
        let patch = serde_json::json!({"metadata": {
            "resourceVersion": version,
            "labels": {BUCKET_LABEL: bucket},
        }});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        match api.patch_metadata(name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => {
                self.metrics.shard_relabels.inc();
            }
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
            Err(e) => {
                tracing::warn!(registry = %format!("{ns}/{name}"), error = %e, "writing the shard bucket label failed; retried on the object's next event")
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
                Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                    self.check(&obj)
                }
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
        let right = placement::bucket_label(placement::bucket_of("registry-1.docker.io", "library/nginx"));
        assert_eq!(Labeller::wanted(&obj(serde_json::json!({}))), Some(right.clone()));
        assert_eq!(
            Labeller::wanted(&obj(serde_json::json!({BUCKET_LABEL: "not-a-bucket"}))),
            Some(right.clone())
        );
        let other = placement::bucket_label((placement::bucket_of("docker.io", "nginx") + 1) % placement::BUCKETS);
        assert_eq!(
            Labeller::wanted(&obj(serde_json::json!({BUCKET_LABEL: other}))),
            Some(right.clone())
        );
        assert_eq!(Labeller::wanted(&obj(serde_json::json!({BUCKET_LABEL: right}))), None);
    }
}
