//! Targeted refreshes: a webhook said some tags of a Registry changed, so only those are read
//! again (one HEAD each, one manifest GET per new digest) and only they change in the status.
//! Events for one object that arrive while it is being refreshed are coalesced into the next
//! round. The object is read fresh from the API server (not from the watch cache) and written
//! through the usual guarded status write; the periodic scan stays the safety net.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, ResourceExt};

use super::changes;
use super::contain::contained;
use super::context::Context;
use super::memory::PendingEvent;
use super::memory::images_hash;
use super::metrics::RefreshLabels;
use super::secrets;
use super::shared;
use super::snapshot::Snapshot;
use super::writer::{self, Written};
use crate::api::Registry;
use crate::registry::{Image, ScanKey, ScanOptions, Share, SharedRequest, Target, refresh};
use crate::status;
use crate::webhook;

/// Tags remembered per object between rounds; more than this waits for the periodic scan.
const MAX_PENDING_TAGS: usize = 256;
/// How long a first event waits for the rest of its burst.
const GATHER: Duration = Duration::from_millis(100);
/// How often a refresh that waits for a running scan looks again.
const DEFER: Duration = Duration::from_millis(500);
/// The object is being scanned: the scan's write would undo the refresh, so it waits.
const DEFERRED: &str = "deferred";

/// What to read again for one object.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Work {
    #[serde(default)]
    pub tags: BTreeSet<String>,
    /// Manifests deleted by digest: every tag that pointed at one is read again.
    #[serde(default)]
    pub digests: BTreeSet<String>,
}

impl Work {
    pub fn merge(&mut self, other: Work) {
        for t in other.tags {
            if self.tags.len() < MAX_PENDING_TAGS {
                self.tags.insert(t);
            }
        }
        for d in other.digests {
            if self.digests.len() < MAX_PENDING_TAGS {
                self.digests.insert(d);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.digests.is_empty()
    }

    /// Only valid tags and digests, at most as many as are remembered: for work read from
    /// where anyone who can edit an object can write (the hand-over annotation).
    pub fn sanitized(self) -> Work {
        let mut out = Work::default();
        out.merge(Work {
            tags: self
                .tags
                .into_iter()
                .filter(|t| webhook::validate::tag(t))
                .collect(),
            digests: self
                .digests
                .into_iter()
                .filter(|d| webhook::validate::digest(d))
                .collect(),
        });
        out
    }
}

/// One object's work not started yet.
struct Pending {
    work: Option<Work>,
    /// The next round starts no earlier than this.
    not_before: Option<Instant>,
}

/// Object key → work not started yet: at most one pending round per object. A key is
/// present while its worker runs. Every round waits for a scan slot of the object's
/// namespace, like a scan: refreshes take the same share.
#[derive(Default)]
pub struct Refresher {
    pending: Mutex<HashMap<String, Pending>>,
}

impl Refresher {
    /// Queues `work` for the object `key` (namespace/name); starts its worker if none runs.
    pub fn submit(self: &Arc<Self>, ctx: &Arc<Context>, key: String, work: Work) {
        self.submit_at(ctx, key, work, None);
    }

    /// As [`Refresher::submit`], but the round that takes `work` starts no earlier than
    /// `not_before`.
    pub fn submit_at(
        self: &Arc<Self>,
        ctx: &Arc<Context>,
        key: String,
        work: Work,
        not_before: Option<Instant>,
    ) {
        let mut pending = self.pending.lock();
        match pending.get_mut(&key) {
            Some(slot) => {
                slot.work.get_or_insert_with(Work::default).merge(work);
                slot.not_before = slot.not_before.max(not_before);
            }
            None => {
                pending.insert(
                    key.clone(),
                    Pending {
                        work: Some(work),
                        not_before,
                    },
                );
                tokio::spawn(self.clone().worker(ctx.clone(), key));
            }
        }
    }

    async fn worker(self: Arc<Self>, ctx: Arc<Context>, key: String) {
        tokio::time::sleep(GATHER).await;
        let ns = key.split_once('/').map_or("", |(ns, _)| ns).to_string();
        loop {
            let wait = {
                let pending = self.pending.lock();
                pending
                    .get(&key)
                    .and_then(|p| p.not_before)
                    .filter(|t| *t > Instant::now())
            };
            if let Some(t) = wait {
                tokio::time::sleep_until(t.into()).await;
                continue;
            }
            let work = {
                let mut pending = self.pending.lock();
                match pending.get_mut(&key).and_then(|p| p.work.take()) {
                    Some(w) => w,
                    None => {
                        pending.remove(&key);
                        return;
                    }
                }
            };
            let Ok(slot) = ctx.admission.acquire(&ns).await else {
                self.pending.lock().remove(&key);
                return;
            };
            // A panic fails this refresh only; the worker goes on and `pending` stays right.
            let refreshed = contained(
                &ctx.metrics,
                "refresh",
                &key,
                refresh_object(&ctx, &key, &work),
            )
            .await
            .unwrap_or_else(|()| Err(anyhow::anyhow!("internal error (contained)")));
            let result = match refreshed {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(registry = %key, error = %e, "webhook refresh failed; the periodic scan will catch up");
                    "failed"
                }
            };
            drop(slot);
            if result == DEFERRED {
                {
                    let mut pending = self.pending.lock();
                    if let Some(slot) = pending.get_mut(&key) {
                        slot.work.get_or_insert_with(Work::default).merge(work);
                    }
                }
                tokio::time::sleep(DEFER).await;
                continue;
            }
            ctx.metrics
                .webhook_refreshes
                .get_or_create(&RefreshLabels { result })
                .inc();
        }
    }
}

/// Reads `work`'s tags of the object `key` again and writes what changed. Returns the result
/// label; `Err` for what the periodic scan must report instead.
async fn refresh_object(ctx: &Context, key: &str, work: &Work) -> anyhow::Result<&'static str> {
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    let api: Api<Registry> = Api::namespaced(ctx.client.clone(), ns);
    // A conflicting write (a scan finished meanwhile) is retried on the fresh object.
    for _ in 0..3 {
        let Some(obj) = api.get_opt(name).await? else {
            return Ok("skipped");
        };
        if !ctx.shards.holds(&obj.spec) {
            return Ok("skipped");
        }
        let scanning = ctx
            .recall(key, &obj.uid().unwrap_or_default(), |m| {
                m.scanning || m.unwritten.is_some()
            })
            .unwrap_or(false);
        if scanning {
            return Ok(DEFERRED);
        }
        if obj.metadata.deletion_timestamp.is_some() || obj.spec.suspend == Some(true) {
            return Ok("skipped");
        }
        // Not scanned yet: the first scan reads every tag anyway.
        let Some(previous) = obj.status.clone().filter(|s| s.last_scan_status.is_some()) else {
            return Ok("skipped");
        };
        let uid = obj.uid().unwrap_or_default();
        let target = Target::new(&obj.spec.url, &obj.spec.repository)?;
        let inputs = match secrets::read_inputs(ctx, ns, &obj.spec, &target).await? {
            Ok(inputs) => inputs,
            Err((problem, _)) => anyhow::bail!("{}", problem.message),
        };
        // The full list of the last scan when memory has it; else the status's.
        let full = ctx
            .last_scan(key, &uid)
            .filter(|s| s.complete)
            .map(|s| s.images());
        let (known, unlisted) = match full {
            Some(tags) => (tags, 0),
            // A capped status without the full list (just restarted): an event's tag may be one
            // left out, so neither "added" nor the count could be told right. The next scan is.
            // Likewise with referrer tags a status may not list.
            None if previous.omitted_tags.unwrap_or(0) > 0
                || previous.referrer_tags.unwrap_or(0) > 0 =>
            {
                return Ok("skipped");
            }
            None => (previous.images.clone().unwrap_or_default(), 0),
        };
        let tags: Vec<String> = work
            .tags
            .iter()
            .cloned()
            .chain(
                known
                    .iter()
                    .filter(|i| work.digests.contains(&i.digest))
                    .map(|i| i.tag.clone()),
            )
            .collect();
        if tags.is_empty() {
            return Ok("unchanged");
        }
        let mut facts = ctx
            .last_scan(key, &uid)
            .map(|s| s.known())
            .unwrap_or_default();
        for (digest, f) in status::known_facts(&previous) {
            facts.entry(digest).or_insert(f);
        }
        let spec = &obj.spec;
        // Native listing plays no part: a refresh HEADs the named tags.
        let options = ScanOptions {
            known: facts,
            ..ctx.scan_options(&obj.namespace().unwrap_or_default(), spec)?
        };
        let client = ctx.registry_client(
            ns,
            spec.insecure_skip_verify == Some(true),
            inputs.ca.clone(),
        )?;
        // Objects of one scan key refreshed for the same event share one refresh.
        let mut tags = tags;
        tags.sort();
        tags.dedup();
        let filter = shared::filter_id(spec);
        let request = SharedRequest {
            tenant: ns,
            key: ScanKey::new(
                &target,
                inputs.credentials.as_ref(),
                spec.insecure_skip_verify == Some(true),
                inputs.ca.as_deref(),
                options.listing,
            )
            .with_extras(format!("refresh\n{}", tags.join("\n"))),
            filters: [filter.clone()].into(),
            filter,
            due: Instant::now(),
            keep: false,
        };
        // Unshared: a key of its own (`--share-scans=false`).
        let request = if ctx.settings.share_scans {
            request
        } else {
            let own = request.key.clone().with_extras(format!("object\n{key}"));
            SharedRequest {
                key: own,
                ..request
            }
        };
        let (credentials, shared_options) = (inputs.credentials.clone(), options.clone());
        let asked = Instant::now();
        let (done, share) = ctx
            .shared_refreshes
            .scan(request, move |_| {
                Box::pin(async move {
                    refresh(
                        &client,
                        &target,
                        credentials.as_ref(),
                        &tags,
                        &shared_options,
                    )
                    .await
                })
            })
            .await;
        let report = done.result.clone()?;
        if share != Share::Started {
            tokio::time::sleep(shared::privacy_wait_for(
                asked,
                report.duration,
                options.timeout,
            ))
            .await;
        }
        for failure in &report.failed {
            tracing::info!(registry = %key, tag = %failure.tag, error = %failure.message, "tag could not be read after a webhook event");
        }
        let sctx = status::Context {
            generation: obj.metadata.generation,
            now: Time(k8s_openapi::jiff::Timestamp::now()),
            next_scan: previous.next_scan_time.clone(),
            max_images: spec
                .max_images
                .map_or(ctx.settings.max_images, |m| m as usize)
                .max(1),
            byte_budget: status::IMAGES_BYTE_BUDGET,
            show_referrer_tags: spec.referrer_tags == Some(crate::api::ReferrerTags::Show),
        };
        let mut facts = options.known;
        facts.extend(report.facts.iter().map(|(d, f)| (d.clone(), f.clone())));
        let (mut patch, mut all) = status::event_applied(&known, unlisted, &report, &facts, &sctx);
        let moved = match obj.spec.policy.as_ref().and_then(|p| p.compile().ok()) {
            Some(policy) => {
                let applied = crate::latest::apply_to_refresh(
                    &policy,
                    &mut patch,
                    &mut all,
                    previous.latest.as_ref(),
                    &previous.conditions,
                    &sctx,
                    super::latest::now(),
                );
                applied.moved
            }
            None => None,
        };
        let c = changes::diff(&known, &all);
        if c == changes::Changes::default() {
            remember(ctx, key, &uid, &facts, &all, None);
            return Ok("unchanged");
        }
        match writer::write_status(ctx, &obj, &patch).await {
            Ok(Written::Done) => remember(ctx, key, &uid, &facts, &all, Some(&patch.status)),
            Ok(Written::Gone) => return Ok("skipped"),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
        tracing::info!(registry = %key, added = c.added.len(), changed = c.changed.len(), removed = c.removed.len(), heads = report.requests.manifest_heads, gets = report.requests.manifest_gets, "tags refreshed by a webhook event");
        if obj.spec.policy.is_some() {
            let (namespace, name) = (ns.to_string(), name.to_string());
            let labels = super::metrics::ObjectLabels { namespace, name };
            ctx.metrics
                .latest
                .set(&labels, patch.status.latest.as_ref());
        }
        if let Some((from, to)) = &moved {
            let event = PendingEvent {
                warning: false,
                reason: crate::latest::REASON_NEWER_VERSION.to_string(),
                note: format!("{} (webhook event)", crate::latest::moved_note(from, to)),
            };
            writer::publish(ctx, &obj, &event).await;
        }
        for (tags, reason, verb) in [
            (&c.added, "TagsAdded", "added"),
            (&c.changed, "DigestsChanged", "changed digest"),
            (&c.removed, "TagsRemoved", "removed"),
        ] {
            if !tags.is_empty() {
                let note = format!("{} (webhook event)", changes::summary(verb, tags));
                let event = PendingEvent {
                    warning: false,
                    reason: reason.to_string(),
                    note,
                };
                writer::publish(ctx, &obj, &event).await;
            }
        }
        return Ok("updated");
    }
    anyhow::bail!("the object kept changing while its status was written")
}

/// Keeps what the refresh learned for the next scan: the new full list with every digest's
/// facts, and which images the status now holds when `written`.
fn remember(
    ctx: &Context,
    key: &str,
    uid: &str,
    facts: &HashMap<String, crate::registry::ManifestFacts>,
    all: &[Image],
    written: Option<&crate::api::RegistryStatus>,
) {
    let snapshot = Snapshot::of_scan(all, facts);
    let hash = written.map(|s| images_hash(s.images.as_deref().unwrap_or_default()));
    ctx.keep_last_scan(key, uid, snapshot);
    ctx.with_memory(key, uid, |m| {
        if hash.is_some() {
            m.written_images = hash;
        }
    });
}
