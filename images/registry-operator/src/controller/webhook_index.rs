//! Which Registry objects a webhook event is about: (registry host, repository) → object keys,
//! kept up to date from the Registry watch's events, so that a request costs a map lookup.
//! It also knows which tenant webhook Secret (`spec.webhook.secretRef`) each object names.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use parking_lot::Mutex;

use kube::ResourceExt;
use kube::runtime::watcher;

use super::shards::placement;
use super::view::RegistryView;
use crate::registry::Target;
use crate::webhook::normalize_host;

#[derive(Default)]
pub struct Index {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Object key → where it is indexed.
    by_key: HashMap<String, Entry>,
    /// Repository → keys of the objects that scan it (on any host).
    by_repository: HashMap<String, BTreeSet<String>>,
    /// Namespace → tenant webhook Secrets its objects name, with how many name each.
    secrets: HashMap<String, BTreeMap<String, usize>>,
    /// Objects seen since the watch (re)started, swapped in when its initial list is done.
    relisting: Option<HashMap<String, Entry>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    host: String,
    repository: String,
    /// The object's `spec.webhook.secretRef.name`.
    secret: Option<String>,
    /// Its shard bucket (from the spec).
    bucket: u32,
}

/// Where an object points (`host[:port]` and repository, as events name them) and which
/// tenant webhook Secret it names.
fn location(obj: &RegistryView) -> Option<Entry> {
    let target = Target::new(&obj.spec.url, &obj.spec.repository).ok()?;
    Some(Entry {
        host: normalize_host(&target.registry()),
        repository: target.repository().to_string(),
        secret: obj.spec.webhook.as_ref().map(|w| w.secret_ref.name.clone()),
        bucket: placement::bucket_of_spec(&obj.spec),
    })
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
                inner.secrets.clear();
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
            .filter(|k| host.is_none_or(|h| inner.by_key.get(*k).is_some_and(|e| e.host == h)))
            .cloned()
            .collect()
    }

    /// The shard bucket of the object `key`.
    pub fn bucket_of(&self, key: &str) -> Option<u32> {
        self.inner.lock().by_key.get(key).map(|e| e.bucket)
    }

    /// The tenant webhook Secret the object `key` names.
    pub fn secret_of(&self, key: &str) -> Option<String> {
        let inner = self.inner.lock();
        inner.by_key.get(key).and_then(|e| e.secret.clone())
    }

    /// The tenant webhook Secrets objects of `namespace` name, sorted, at most `limit`.
    pub fn secrets_in(&self, namespace: &str, limit: usize) -> Vec<String> {
        let inner = self.inner.lock();
        inner
            .secrets
            .get(namespace)
            .map(|names| names.keys().take(limit).cloned().collect())
            .unwrap_or_default()
    }
}

fn namespace_of(key: &str) -> &str {
    key.split_once('/').map_or("", |(ns, _)| ns)
}

impl Inner {
    fn insert(&mut self, key: String, entry: Entry) {
        self.by_repository
            .entry(entry.repository.clone())
            .or_default()
            .insert(key.clone());
        if let Some(secret) = &entry.secret {
            let names = self
                .secrets
                .entry(namespace_of(&key).to_string())
                .or_default();
            *names.entry(secret.clone()).or_default() += 1;
        }
        self.by_key.insert(key, entry);
    }

    fn remove(&mut self, key: &str) {
        let Some(entry) = self.by_key.remove(key) else {
            return;
        };
        if let Some(keys) = self.by_repository.get_mut(&entry.repository) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_repository.remove(&entry.repository);
            }
        }
        let ns = namespace_of(key);
        if let Some(secret) = entry.secret
            && let Some(names) = self.secrets.get_mut(ns)
        {
            if let Some(n) = names.get_mut(&secret) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    names.remove(&secret);
                }
            }
            if names.is_empty() {
                self.secrets.remove(ns);
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

    #[test]
    fn knows_the_tenant_secrets_of_each_namespace() {
        let with_secret = |ns: &str, name: &str, secret: &str| {
            let mut r = reg(ns, name, "https://r.example.com", "team/app");
            r.spec.webhook = Some(crate::api::WebhookSpec {
                secret_ref: crate::api::SecretReference {
                    name: secret.into(),
                },
            });
            r
        };
        let index = Index::default();
        index.observe(&watcher::Event::Apply(with_secret("a", "x", "hooks")));
        index.observe(&watcher::Event::Apply(with_secret("a", "y", "hooks")));
        index.observe(&watcher::Event::Apply(with_secret("a", "z", "other")));
        index.observe(&watcher::Event::Apply(reg(
            "b",
            "x",
            "r.example.com",
            "team/app",
        )));
        assert_eq!(index.secrets_in("a", 16), ["hooks", "other"]);
        assert_eq!(index.secrets_in("a", 1), ["hooks"]);
        assert!(index.secrets_in("b", 16).is_empty());
        assert_eq!(index.secret_of("a/z").as_deref(), Some("other"));
        assert_eq!(index.secret_of("b/x"), None);
        index.observe(&watcher::Event::Delete(with_secret("a", "x", "hooks")));
        assert_eq!(index.secrets_in("a", 16), ["hooks", "other"]);
        index.observe(&watcher::Event::Apply(reg(
            "a",
            "y",
            "r.example.com",
            "team/app",
        )));
        assert_eq!(index.secrets_in("a", 16), ["other"]);
        index.observe(&watcher::Event::Delete(with_secret("a", "z", "other")));
        assert!(index.secrets_in("a", 16).is_empty());
    }
}
