//! The Registry objects this replica sees. With shard-scoped watching, one label-selected
//! watch per held shard (its buckets, see `placement.rs`), started when the shard is acquired
//! and dropped when it is lost, so a replica receives and decodes only its shards' objects;
//! otherwise (one shard, no election, or a webhook receiver that must know every object to
//! hand events over) one watch of everything.
//!
//! The watches come and go and an object moves from one to another when it is relabelled, so
//! their events are merged here into one stream of `Apply`/`Delete` for the single reflector
//! store and the single controller: an object is in the store while at least one watch lists
//! it, a watch that relists or stops takes away only what it alone listed, and an event
//! older than the one stored (by resourceVersion, from a slower watch) is not applied.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures::{Stream, StreamExt};
use kube::Api;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::labeller::Labeller;
use super::placement;
use crate::controller::metrics::Metrics;
use crate::controller::secrets;
use crate::controller::view::RegistryView;

/// Which watch an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Every object (no label selector).
    All,
    /// The objects labelled for one shard.
    Shard(u32),
}

enum Msg {
    /// A watch (of this run) starts; what an earlier run of it sent is gone.
    Started(Source, u64),
    // Boxed: an object is large, and the markers are not.
    Event(
        Source,
        u64,
        Box<Result<watcher::Event<RegistryView>, watcher::Error>>,
    ),
    /// A watch stopped: what only it listed leaves the store.
    Stopped(Source),
}

/// Starts and stops the watches; their merged events come out of [`Watches::events`].
pub struct Watches {
    api: Api<RegistryView>,
    count: u32,
    tx: mpsc::UnboundedSender<Msg>,
    running: Mutex<HashMap<Source, tokio::task::AbortHandle>>,
    /// The holder of shard 0 also watches the objects no shard watch sees, to label them.
    unlabelled: Mutex<Option<tokio::task::AbortHandle>>,
    runs: AtomicU64,
    labeller: Option<Arc<Labeller>>,
    synced: Arc<AtomicBool>,
}

impl Watches {
    /// `scoped`: one watch per held shard (started by [`Watches::acquired`]); else one watch
    /// of everything, started now. Returns the merged events, for the reflector.
    pub fn new(
        api: Api<RegistryView>,
        count: u32,
        scoped: bool,
        labeller: Option<Arc<Labeller>>,
        store: Store<RegistryView>,
        metrics: Arc<Metrics>,
    ) -> (
        Arc<Self>,
        impl Stream<Item = Result<watcher::Event<RegistryView>, watcher::Error>> + Send + 'static,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let synced = Arc::new(AtomicBool::new(false));
        let watches = Arc::new(Self {
            api,
            count,
            tx,
            running: Mutex::default(),
            unlabelled: Mutex::default(),
            runs: AtomicU64::new(0),
            labeller: if scoped { labeller } else { None },
            synced: synced.clone(),
        });
        let mut merge = Merge {
            store,
            synced,
            scoped,
            labeller: watches.labeller.clone(),
            metrics,
            active: HashMap::new(),
            relisting: HashMap::new(),
            listed: HashSet::new(),
            entries: HashMap::new(),
        };
        merge.publish_synced();
        if !scoped {
            watches.start(Source::All);
        }
        // The store is ready from the start (empty): which objects it holds follows the
        // shards, and readiness waits for the watches' initial lists instead (`synced`).
        let head = futures::stream::iter([Ok(watcher::Event::Init), Ok(watcher::Event::InitDone)]);
        let merged =
            futures::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|msg| (msg, rx)) },
            )
            .flat_map(move |msg| futures::stream::iter(merge.handle(msg).into_iter().map(Ok)));
        (watches, head.chain(merged))
    }

    /// Every running watch has delivered its initial list.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    /// Whether the watches follow the shards (else one watch sees everything).
    pub fn scoped(&self) -> bool {
        self.labeller.is_some()
    }

    /// A shard was acquired: watch its objects (their initial list reconciles them).
    pub fn acquired(&self, shard: u32) {
        if !self.scoped() {
            return;
        }
        self.start(Source::Shard(shard));
        if shard == 0
            && let Some(labeller) = &self.labeller
        {
            let task = tokio::spawn(labeller.clone().watch_unlabelled(self.api.clone()));
            if let Some(old) = self.unlabelled.lock().replace(task.abort_handle()) {
                old.abort();
            }
        }
    }

    /// A shard was lost: stop watching it; its objects leave the store.
    pub fn lost(&self, shard: u32) {
        if !self.scoped() {
            return;
        }
        if let Some(task) = self.running.lock().remove(&Source::Shard(shard)) {
            task.abort();
        }
        let _ = self.tx.send(Msg::Stopped(Source::Shard(shard)));
        if shard == 0
            && let Some(task) = self.unlabelled.lock().take()
        {
            task.abort();
        }
    }

    fn start(&self, source: Source) {
        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        // Before the watch's first event: the merge drops whatever an older run still sends.
        let _ = self.tx.send(Msg::Started(source, run));
        let config = match source {
            Source::All => watcher::Config::default(),
            Source::Shard(shard) => {
                watcher::Config::default().labels(&placement::shard_selector(shard, self.count))
            }
        };
        let stream = watcher(self.api.clone(), config.any_semantic())
            .default_backoff()
            // managedFields (parsed JSON, several KiB per object) are never read.
            .modify(|r| r.metadata.managed_fields = None);
        let tx = self.tx.clone();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                if tx.send(Msg::Event(source, run, Box::new(event))).is_err() {
                    return;
                }
            }
        });
        if let Some(old) = self.running.lock().insert(source, task.abort_handle()) {
            old.abort();
        }
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        for (_, task) in self.running.lock().drain() {
            task.abort();
        }
        if let Some(task) = self.unlabelled.lock().take() {
            task.abort();
        }
    }
}

/// What the merge knows of one object.
struct Entry {
    /// The watches that list it now.
    sources: HashSet<Source>,
    /// resourceVersion of what the store holds.
    version: Option<u64>,
}

struct Merge {
    store: Store<RegistryView>,
    synced: Arc<AtomicBool>,
    scoped: bool,
    labeller: Option<Arc<Labeller>>,
    metrics: Arc<Metrics>,
    /// The current run of each watch.
    active: HashMap<Source, u64>,
    /// Per watch that is (re)listing: the objects its list has brought so far.
    relisting: HashMap<Source, HashSet<String>>,
    /// Watches whose initial list is done.
    listed: HashSet<Source>,
    entries: HashMap<String, Entry>,
}

fn key_of(obj: &RegistryView) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

fn version_of(obj: &RegistryView) -> Option<u64> {
    obj.resource_version()?.parse().ok()
}

impl Merge {
    fn handle(&mut self, msg: Msg) -> Vec<watcher::Event<RegistryView>> {
        let out = match msg {
            Msg::Started(source, run) => {
                self.active.insert(source, run);
                self.listed.remove(&source);
                Vec::new()
            }
            Msg::Stopped(source) => {
                self.active.remove(&source);
                self.listed.remove(&source);
                self.relisting.remove(&source);
                self.take_away(source, |_| true)
            }
            Msg::Event(source, run, event) => {
                if self.active.get(&source) != Some(&run) {
                    return Vec::new();
                }
                self.event(source, *event)
            }
        };
        self.publish_synced();
        out
    }

    fn publish_synced(&self) {
        let synced = if self.scoped {
            self.active.keys().all(|s| self.listed.contains(s))
        } else {
            self.listed.contains(&Source::All)
        };
        self.synced.store(synced, Ordering::Relaxed);
    }

    fn event(
        &mut self,
        source: Source,
        event: Result<watcher::Event<RegistryView>, watcher::Error>,
    ) -> Vec<watcher::Event<RegistryView>> {
        match event {
            Err(e) => {
                secrets::watch_error(&self.metrics, "registries", &e);
                Vec::new()
            }
            Ok(watcher::Event::Init) => {
                self.relisting.insert(source, HashSet::new());
                Vec::new()
            }
            Ok(watcher::Event::InitApply(obj)) => {
                if let Some(seen) = self.relisting.get_mut(&source) {
                    seen.insert(key_of(&obj));
                }
                self.apply(source, obj)
            }
            Ok(watcher::Event::Apply(obj)) => self.apply(source, obj),
            Ok(watcher::Event::Delete(obj)) => {
                let key = key_of(&obj);
                self.take_away(source, |k| k == key)
            }
            Ok(watcher::Event::InitDone) => {
                self.listed.insert(source);
                let seen = self.relisting.remove(&source).unwrap_or_default();
                self.take_away(source, |k| !seen.contains(k))
            }
        }
    }

    fn apply(&mut self, source: Source, obj: RegistryView) -> Vec<watcher::Event<RegistryView>> {
        if let Some(labeller) = &self.labeller {
            labeller.check(&obj);
        }
        let version = version_of(&obj);
        let entry = self.entries.entry(key_of(&obj)).or_insert(Entry {
            sources: HashSet::new(),
            version: None,
        });
        entry.sources.insert(source);
        // resourceVersions are etcd revisions: a smaller one is an older state of the object,
        // delivered late by a watch that has not caught up (it is not applied over the newer).
        if let (Some(new), Some(old)) = (version, entry.version)
            && new < old
        {
            return Vec::new();
        }
        entry.version = version;
        vec![watcher::Event::Apply(obj)]
    }

    /// `source` no longer lists the objects whose keys `gone` picks: they leave the store
    /// unless another watch still lists them.
    fn take_away(
        &mut self,
        source: Source,
        gone: impl Fn(&str) -> bool,
    ) -> Vec<watcher::Event<RegistryView>> {
        let mut out = Vec::new();
        self.entries.retain(|key, entry| {
            if !entry.sources.contains(&source) || !gone(key) {
                return true;
            }
            entry.sources.remove(&source);
            if !entry.sources.is_empty() {
                return true;
            }
            let (ns, name) = key.split_once('/').unwrap_or(("", key));
            if let Some(obj) = self.store.get(&ObjectRef::new(name).within(ns)) {
                out.push(watcher::Event::Delete(obj.as_ref().clone()));
            }
            false
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector;

    fn obj(name: &str, rv: &str) -> RegistryView {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "registry.kubecontroller.io/v1alpha1", "kind": "Registry",
            "metadata": {"name": name, "namespace": "n", "resourceVersion": rv},
            "spec": {"url": "r.example.com", "repository": "a/b"},
        }))
        .unwrap()
    }

    /// Runs messages through a merge and its store; returns the store's names and versions.
    struct Harness {
        merge: Merge,
        writer: reflector::store::Writer<RegistryView>,
    }

    impl Harness {
        fn new(scoped: bool) -> Self {
            let (store, writer) = reflector::store();
            Self {
                merge: Merge {
                    store,
                    synced: Arc::default(),
                    scoped,
                    labeller: None,
                    metrics: Arc::default(),
                    active: HashMap::new(),
                    relisting: HashMap::new(),
                    listed: HashSet::new(),
                    entries: HashMap::new(),
                },
                writer,
            }
        }

        fn send(&mut self, msg: Msg) {
            for e in self.merge.handle(msg) {
                self.writer.apply_watcher_event(&e);
            }
        }

        fn ev(&mut self, s: Source, run: u64, e: watcher::Event<RegistryView>) {
            self.send(Msg::Event(s, run, Box::new(Ok(e))));
        }

        fn state(&self) -> Vec<(String, String)> {
            let mut v: Vec<_> = self
                .merge
                .store
                .state()
                .iter()
                .map(|o| (o.name_any(), o.resource_version().unwrap_or_default()))
                .collect();
            v.sort();
            v
        }
    }

    fn names(h: &Harness) -> Vec<String> {
        h.state().into_iter().map(|(n, _)| n).collect()
    }

    #[test]
    fn an_object_moving_between_shard_watches_stays_until_the_last_lets_go() {
        use watcher::Event::*;
        let (a, b) = (Source::Shard(0), Source::Shard(1));
        let mut h = Harness::new(true);
        h.send(Msg::Started(a, 1));
        h.send(Msg::Started(b, 2));
        assert!(!h.merge.synced.load(Ordering::Relaxed));
        h.ev(a, 1, Init);
        h.ev(a, 1, InitApply(obj("x", "10")));
        h.ev(a, 1, InitDone);
        h.ev(b, 2, Init);
        h.ev(b, 2, InitDone);
        assert!(h.merge.synced.load(Ordering::Relaxed));
        assert_eq!(names(&h), ["x"]);
        // Relabelled: the new shard's watch sees it first, the old one lets go later.
        h.ev(b, 2, Apply(obj("x", "12")));
        h.ev(a, 1, Apply(obj("x", "11")));
        assert_eq!(
            h.state(),
            [("x".into(), "12".into())],
            "older state not applied"
        );
        h.ev(a, 1, Delete(obj("x", "12")));
        assert_eq!(names(&h), ["x"], "still listed by the new shard's watch");
        // The new shard is lost: its objects leave, and what its dead run sends is ignored.
        h.send(Msg::Stopped(b));
        assert!(names(&h).is_empty());
        h.ev(b, 2, Apply(obj("x", "13")));
        assert!(names(&h).is_empty());
        // Taken again: a new run lists it again.
        h.send(Msg::Started(b, 3));
        assert!(!h.merge.synced.load(Ordering::Relaxed));
        h.ev(b, 3, Init);
        h.ev(b, 3, InitApply(obj("x", "13")));
        h.ev(b, 3, InitDone);
        assert_eq!(names(&h), ["x"]);
        assert!(h.merge.synced.load(Ordering::Relaxed));
    }

    #[test]
    fn a_relist_removes_only_what_it_no_longer_lists() {
        use watcher::Event::*;
        let mut h = Harness::new(false);
        h.send(Msg::Started(Source::All, 0));
        h.ev(Source::All, 0, Init);
        h.ev(Source::All, 0, InitApply(obj("x", "1")));
        h.ev(Source::All, 0, InitApply(obj("y", "2")));
        h.ev(Source::All, 0, InitDone);
        assert_eq!(names(&h), ["x", "y"]);
        // Desynced and relisted: y was deleted meanwhile.
        h.ev(Source::All, 0, Init);
        h.ev(Source::All, 0, InitApply(obj("x", "3")));
        assert_eq!(
            names(&h),
            ["x", "y"],
            "the old state stays until the list is done"
        );
        h.ev(Source::All, 0, InitDone);
        assert_eq!(h.state(), [("x".into(), "3".into())]);
    }
}
