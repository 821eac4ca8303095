//! The controller's side of shared scans (the scan core's `SharedScans`): which objects use
//! which scan key and tag filter, a shared result cut down to one object's filter, and the
//! wait that keeps a tenant from telling a shared scan from its own.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::api::RegistrySpec;
use crate::registry::{FilterId, ScanKey, ScanReport, TagFilter};

/// Which objects use which key, and with which filters.
#[derive(Default)]
pub struct ScanKeys {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_object: HashMap<String, (ScanKey, FilterId)>,
    /// Key → filter → how many objects use it.
    by_key: HashMap<ScanKey, BTreeMap<FilterId, usize>>,
}

/// What [`ScanKeys::register`] tells about a key.
pub struct Users {
    pub filters: BTreeSet<FilterId>,
    pub objects: usize,
    /// The object was registered with another key before: what it learned came from another
    /// conversation.
    pub moved_from_another_key: bool,
}

impl ScanKeys {
    /// `object` scans `key` with `filter` (from now on, instead of whatever it did before).
    pub fn register(&self, object: &str, key: &ScanKey, filter: &FilterId) -> Users {
        let mut inner = self.inner.lock();
        let moved_from_another_key = inner.by_object.get(object).is_some_and(|(k, _)| k != key);
        let same = inner
            .by_object
            .get(object)
            .is_some_and(|(k, f)| k == key && f == filter);
        if !same {
            inner.unregister(object);
            inner
                .by_object
                .insert(object.to_string(), (key.clone(), filter.clone()));
            let count = inner
                .by_key
                .entry(key.clone())
                .or_default()
                .entry(filter.clone())
                .or_default();
            *count = count.saturating_add(1);
        }
        let filters = inner.by_key.get(key);
        Users {
            filters: filters
                .map(|f| f.keys().cloned().collect())
                .unwrap_or_default(),
            objects: filters.map_or(0, |f| f.values().sum()),
            moved_from_another_key,
        }
    }

    /// `object` is gone (or no longer ours); returns its key when no other object uses it.
    pub fn forget(&self, object: &str) -> Option<ScanKey> {
        self.inner.lock().unregister(object)
    }
}

impl Inner {
    fn unregister(&mut self, object: &str) -> Option<ScanKey> {
        let (key, filter) = self.by_object.remove(object)?;
        let filters = self.by_key.get_mut(&key)?;
        if let Some(n) = filters.get_mut(&filter) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                filters.remove(&filter);
            }
        }
        if filters.is_empty() {
            self.by_key.remove(&key);
            return Some(key);
        }
        None
    }
}

/// An object's tag filter as written: what identifies it among a key's filters.
pub fn filter_id(spec: &RegistrySpec) -> FilterId {
    let f = spec.tag_filter.clone().unwrap_or_default();
    let written = |p: Option<String>| p.filter(|p| !p.is_empty());
    (written(f.include), written(f.exclude))
}

/// The union of `filters`; an invalid one (its own object fails with InvalidSpec before it
/// gets here) admits nothing.
pub fn union(filters: &BTreeSet<FilterId>) -> TagFilter {
    TagFilter::union(
        filters
            .iter()
            .filter_map(|(i, e)| TagFilter::new(i.as_deref(), e.as_deref()).ok())
            .collect(),
    )
}

/// A shared scan's report as one object's own scan with `filter` would have found it.
pub fn view(report: &ScanReport, filter: &TagFilter) -> ScanReport {
    ScanReport {
        images: report
            .images
            .iter()
            .filter(|i| filter.admits(&i.tag))
            .cloned()
            .collect(),
        vanished_tags: report
            .vanished_tags
            .iter()
            .filter(|t| filter.admits(t))
            .cloned()
            .collect(),
        failed_tags: report
            .failed_tags
            .iter()
            .filter(|t| filter.admits(&t.tag))
            .cloned()
            .collect(),
        ..report.clone()
    }
}

/// How long an object served by another's scan waits before it goes on: as long as its own
/// scan would have taken (the shared scan's duration, from when it asked), so its status
/// comes no sooner than if it had scanned alone. Capped by the scan timeout.
pub fn privacy_wait(asked: Instant, report: &ScanReport, timeout: Duration) -> Duration {
    privacy_wait_for(asked, report.duration, timeout)
}

/// [`privacy_wait`] for a shared run that took `took`.
pub fn privacy_wait_for(asked: Instant, took: Duration, timeout: Duration) -> Duration {
    asked
        .checked_add(took.min(timeout))
        .map_or(Duration::ZERO, |until| {
            until.saturating_duration_since(Instant::now())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{ListingMode, Target};

    fn key(repo: &str) -> ScanKey {
        ScanKey::new(
            &Target::new("https://r.example", repo).unwrap(),
            None,
            false,
            None,
            ListingMode::Auto,
        )
    }

    #[test]
    fn registrations_follow_objects_and_their_filters() {
        let keys = ScanKeys::default();
        let v1: FilterId = (Some("^v1".into()), None);
        let first = keys.register("a/x", &key("app"), &v1);
        assert_eq!((first.objects, first.moved_from_another_key), (1, false));
        assert!(
            !keys
                .register("a/x", &key("app"), &(None, None))
                .moved_from_another_key
        );
        assert!(
            keys.register("a/x", &key("elsewhere"), &v1)
                .moved_from_another_key
        );
        keys.register("a/x", &key("app"), &v1);
        let users = keys.register("b/x", &key("app"), &(None, None));
        assert_eq!((users.objects, users.filters.len()), (2, 2));
        // Registering again changes nothing; moving to another key leaves the first.
        assert_eq!(keys.register("b/x", &key("app"), &(None, None)).objects, 2);
        assert_eq!(
            keys.register("b/x", &key("other"), &(None, None)).objects,
            1
        );
        assert_eq!(keys.register("a/x", &key("app"), &v1).filters, [v1].into());
        assert_eq!(keys.forget("a/x"), Some(key("app")));
        assert_eq!(keys.forget("a/x"), None);
    }

    #[test]
    fn a_view_shows_only_the_objects_own_tags() {
        let report = ScanReport {
            vanished_tags: vec!["v2.1".into()],
            ..ScanReport::of_images(
                ["v1.0", "v2.0", "latest"]
                    .iter()
                    .map(|t| crate::registry::Image {
                        tag: t.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            )
        };
        let mine = TagFilter::new(Some("^v1"), None).unwrap();
        let seen = view(&report, &mine);
        assert_eq!(seen.images.len(), 1);
        assert_eq!(seen.images[0].tag, "v1.0");
        assert!(seen.vanished_tags.is_empty());
        let both: BTreeSet<FilterId> =
            [(Some("^v1".into()), None), (Some("^v2".into()), None)].into();
        let u = union(&both);
        assert!(u.admits("v1.0") && u.admits("v2.0") && !u.admits("latest"));
        assert!(union(&[(None, None), (Some("^v1".into()), None)].into()).admits("latest"));
    }
}
