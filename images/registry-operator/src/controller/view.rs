//! What the watch cache keeps of each Registry: metadata, spec and the status without
//! `images`. With thousands of objects the images were most of the operator's memory and of
//! the CPU every replica spends decoding watch events; serde skips them while decoding, so
//! they are never allocated. The controller keeps what it needs of them in
//! [`super::snapshot::Snapshot`], and reads them with a GET after a restart.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use kube::Resource;
use kube::core::NamespaceResourceScope;
use serde::Deserialize;

use crate::api::{Registry, RegistrySpec, ScanStatus};

#[derive(Deserialize, Clone, Debug)]
pub struct RegistryView {
    pub metadata: ObjectMeta,
    pub spec: RegistrySpec,
    #[serde(default)]
    pub status: Option<StatusView>,
}

/// The status fields the controller decides on; everything else is left to serde's skipping.
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    #[serde(default)]
    pub last_scan_status: Option<ScanStatus>,
    #[serde(default)]
    pub last_scan_time: Option<Time>,
    #[serde(default)]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub tag_count: Option<i64>,
    #[serde(default)]
    pub omitted_tags: Option<i64>,
    #[serde(default)]
    pub failed_tags: Option<i64>,
    /// When every digest's referrers were last read: survives a restart.
    #[serde(default)]
    pub referrers_checked_at: Option<Time>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// What `spec.policy` selected last: a move is announced.
    #[serde(default)]
    pub latest: Option<crate::registry::Latest>,
    #[serde(default)]
    pub previous_latest: Option<crate::registry::Latest>,
}

impl Resource for RegistryView {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Registry::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        Registry::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        Registry::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        Registry::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_skipped_and_the_rest_is_read() {
        let json = serde_json::json!({
            "apiVersion": "registry.kubecontroller.io/v1alpha1",
            "kind": "Registry",
            "metadata": {"name": "a", "namespace": "n", "generation": 2},
            "spec": {"url": "https://r.example", "repository": "x/y"},
            "status": {
                "lastScanStatus": "Success",
                "observedGeneration": 2,
                "omittedTags": 0,
                "images": [{"tag": "1.0", "digest": "sha256:00", "size": 1}],
                "conditions": [{"type": "Ready", "status": "True", "reason": "ScanSucceeded",
                                "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
            }
        });
        let v: RegistryView = serde_json::from_value(json).unwrap();
        let s = v.status.unwrap();
        assert_eq!(s.last_scan_status, Some(ScanStatus::Success));
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(s.conditions[0].type_, "Ready");
        assert_eq!(v.spec.scan_interval, crate::api::DEFAULT_SCAN_INTERVAL);
        assert_eq!(RegistryView::plural(&()), "registries");
        assert_eq!(
            RegistryView::api_version(&()),
            "registry.kubecontroller.io/v1alpha1"
        );
    }
}
