//! Which Registry objects a webhook event is about: (registry host, repository) → object keys,
//! kept up to date from the Registry watch's events, so that a request costs a map lookup.

use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap};

use kube::ResourceExt;
use kube::runtime::watcher;

use super::view::RegistryView;
use crate::registry::Target;
use crate::webhook::normalize_host;

#[derive(Default)]
pub struct Index {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Object key → (host, repository) it is indexed under.
    by_key: HashMap<String, (String, String)>,
    /// Repository → keys of the objects that scan it (on any host).
    by_repository: HashMap<String, BTreeSet<String>>,
    /// Objects seen since the watch (re)started, swapped in when its initial list is done.
    relisting: Option<HashMap<String, (String, String)>>,
}

/// Where an object points: (`host[:port]`, repository), as events name them.
pub fn location(obj: &RegistryView) -> Option<(String, String)> {
    let target = Target::new(&obj.spec.url, &obj.spec.repository).ok()?;
    Some((
        normalize_host(&target.registry()),
        target.repository().to_string(),
    ))
}

fn key_of(obj: &RegistryView) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

impl Index {
    pub fn observe(&self, event: &watcher::Event<RegistryView>) {
        let mut inner = self.inner.lock();
        match event {
            watcher::Event::Apply(obj) => {
                let key = key_of(obj);
                inner.remove(&key);
                if let Some(loc) = location(obj) {
                    inner.insert(key, loc);
                }
            }
            watcher::Event::Delete(obj) => inner.remove(&key_of(obj)),
            watcher::Event::Init => inner.relisting = Some(HashMap::new()),
            watcher::Event::InitApply(obj) => {
                if let (Some(list), Some(loc)) = (inner.relisting.as_mut(), location(obj)) {
                    list.insert(key_of(obj), loc);
                }
            }
            watcher::Event::InitDone => {
                let list = inner.relisting.take().unwrap_or_default();
                inner.by_key.clear();
                inner.by_repository.clear();
                for (key, loc) in list {
                    inner.insert(key, loc);
                }
            }
        }
    }

    /// Keys of the objects that scan `repository` on `host` (on any host when the event names
    /// none), sorted.
    pub fn matching(&self, host: Option<&str>, repository: &str) -> Vec<String> {
        let inner = self.inner.lock();
        let Some(keys) = inner.by_repository.get(repository) else {
            return Vec::new();
        };
        keys.iter()
            .filter(|k| host.is_none_or(|h| inner.by_key.get(*k).is_some_and(|(oh, _)| oh == h)))
            .cloned()
            .collect()
    }
}

impl Inner {
    fn insert(&mut self, key: String, loc: (String, String)) {
        self.by_repository
            .entry(loc.1.clone())
            .or_default()
            .insert(key.clone());
        self.by_key.insert(key, loc);
    }

    fn remove(&mut self, key: &str) {
        if let Some((_, repository)) = self.by_key.remove(key)
            && let Some(keys) = self.by_repository.get_mut(&repository)
        {
            keys.remove(key);
            if keys.is_empty() {
                self.by_repository.remove(&repository);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(ns: &str, name: &str, url: &str, repo: &str) -> RegistryView {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "registry.kubecontroller.io/v1alpha1", "kind": "Registry",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"url": url, "repository": repo},
        }))
        .unwrap()
    }

    #[test]
    fn matches_host_and_repository_across_namespaces() {
        let index = Index::default();
        index.observe(&watcher::Event::Init);
        index.observe(&watcher::Event::InitApply(reg(
            "a",
            "x",
            "https://r.example.com",
            "team/app",
        )));
        index.observe(&watcher::Event::InitApply(reg(
            "b",
            "y",
            "r.example.com:443",
            "team/app",
        )));
        index.observe(&watcher::Event::InitApply(reg(
            "c",
            "z",
            "https://other.example.com",
            "team/app",
        )));
        index.observe(&watcher::Event::InitApply(reg(
            "d",
            "hub",
            "docker.io",
            "nginx",
        )));
        assert!(
            index.matching(None, "team/app").is_empty(),
            "nothing before the list is done"
        );
        index.observe(&watcher::Event::InitDone);
        assert_eq!(
            index.matching(Some("r.example.com"), "team/app"),
            ["a/x", "b/y"]
        );
        assert_eq!(index.matching(None, "team/app").len(), 3);
        assert_eq!(
            index.matching(Some("registry-1.docker.io"), "library/nginx"),
            ["d/hub"]
        );

        // Moved to another repository, then deleted.
        index.observe(&watcher::Event::Apply(reg(
            "a",
            "x",
            "https://r.example.com",
            "team/other",
        )));
        assert_eq!(index.matching(Some("r.example.com"), "team/app"), ["b/y"]);
        index.observe(&watcher::Event::Delete(reg(
            "b",
            "y",
            "r.example.com",
            "team/app",
        )));
        assert!(index.matching(Some("r.example.com"), "team/app").is_empty());
        assert_eq!(index.matching(None, "team/other"), ["a/x"]);
    }
}
