//! The operator's side of `spec.policy`: the clock `minAge` reads, and the
//! `registry_operator_latest_info` series (one per object, moved when `latest` moves).

use std::collections::HashMap;
use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::metrics::ObjectLabels;
use crate::registry::{Latest, Timestamp};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatestLabels {
    pub namespace: String,
    pub name: String,
    pub tag: String,
    pub digest: String,
}

/// `registry_operator_latest_info{namespace,name,tag,digest} 1`: which series each object
/// has now, so that a move or a deletion removes the old one.
#[derive(Default)]
pub struct LatestInfo {
    family: Family<LatestLabels, Gauge<i64, AtomicI64>>,
    current: parking_lot::Mutex<HashMap<ObjectLabels, LatestLabels>>,
}

impl LatestInfo {
    /// The family to register (metrics.rs registers every series, so its list is complete).
    pub fn family(&self) -> Family<LatestLabels, Gauge<i64, AtomicI64>> {
        self.family.clone()
    }

    /// The object's latest is now `latest` (none: no series).
    pub fn set(&self, object: &ObjectLabels, latest: Option<&Latest>) {
        let mut current = self.current.lock();
        let new = latest.map(|l| LatestLabels {
            namespace: object.namespace.clone(),
            name: object.name.clone(),
            tag: l.tag.clone(),
            digest: l.digest.clone(),
        });
        if let Some(old) = current.get(object)
            && Some(old) != new.as_ref()
        {
            self.family.remove(old);
        }
        match new {
            Some(labels) => {
                self.family.get_or_create(&labels).set(1);
                current.insert(object.clone(), labels);
            }
            None => {
                current.remove(object);
            }
        }
    }

    pub fn forget(&self, object: &ObjectLabels) {
        self.set(object, None);
    }
}

/// The time `minAge` is measured against. Test builds (`fault-injection`) read it from the
/// file `REGISTRY_OPERATOR_TEST_NOW_FILE` names (RFC 3339), so a test moves the clock instead
/// of sleeping; release builds have no such hook.
pub fn now() -> Timestamp {
    #[cfg(feature = "fault-injection")]
    if let Some(at) = std::env::var_os("REGISTRY_OPERATOR_TEST_NOW_FILE")
        .and_then(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| Timestamp::parse(&text))
    {
        return at;
    }
    Timestamp::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latest(tag: &str) -> Latest {
        Latest {
            tag: tag.into(),
            digest: format!("sha256:{tag}"),
            version: tag.into(),
            pushed_at: None,
            created_at: None,
        }
    }

    #[test]
    fn one_series_per_object_moved_with_latest() {
        let mut registry = prometheus_client::registry::Registry::with_prefix("registry_operator");
        let info = LatestInfo::default();
        registry.register("latest_info", "test", info.family());
        let object = ObjectLabels {
            namespace: "ns".into(),
            name: "app".into(),
        };
        let encode = |registry: &prometheus_client::registry::Registry| {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
            out.lines()
                .filter(|l| l.starts_with("registry_operator_latest_info{"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        info.set(&object, Some(&latest("1.0")));
        info.set(&object, Some(&latest("1.1")));
        assert_eq!(
            encode(&registry),
            [
                r#"registry_operator_latest_info{namespace="ns",name="app",tag="1.1",digest="sha256:1.1"} 1"#
            ]
        );
        info.forget(&object);
        assert!(encode(&registry).is_empty());
    }
}
