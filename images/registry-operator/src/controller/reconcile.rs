//! Reconcile one Registry as a short pipeline of phases: skip what is not ours or not due,
//! take a scan slot, read the Secrets, scan, remember the outcome, write it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::changes;
use super::contain::contained;
use super::context::Context;
use super::credentials::SecretProblem;
use super::memory::{Outcome, PendingEvent, images_hash};
use super::metrics::ShareLabels;
use super::metrics::{ObjectLabels, ScanLabels};
use super::secrets::{self, Inputs};
use super::shared;
use super::snapshot::Snapshot;
use super::view::RegistryView;
use super::writer::{self, Written};
use crate::api::{MIN_SCAN_INTERVAL, PolicySpec, Registry, RegistryStatus, ScanStatus};
use crate::latest;
use crate::registry::{
    ScanError, ScanKey, ScanOptions, ScanReport, Share, SharedRequest, Target, scan,
};
use crate::status::{self, REASON_SUCCEEDED, REASON_SUSPENDED};

pub use super::writer::FIELD_MANAGER;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing status: {0}")]
    Status(#[source] kube::Error),
    #[error("reading the status of the last scan: {0}")]
    Restore(#[source] kube::Error),
    /// Anything but a 404 (403, 429, 5xx, a timeout): retried, the status is left alone.
    #[error("reading {what} Secret {name:?}: {source}")]
    SecretRead {
        what: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// A panic was caught and counted; retried with backoff like any other error.
    #[error("internal error while reconciling (contained; see the operator's log)")]
    Internal,
}

/// The object being reconciled and the facts every phase needs about it.
struct Job {
    obj: Arc<RegistryView>,
    key: String,
    uid: String,
    interval: Duration,
}

pub async fn reconcile(obj: Arc<RegistryView>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    // Not our shard: another replica works on it. Losing the shard mid-way cancels everything
    // below (scan, Secret reads, the status write) at its next await point.
    let Some(mut held) = ctx.shards.guard(&obj.spec) else {
        return Ok(Action::await_change());
    };
    let job = Job {
        key: format!("{ns}/{name}"),
        uid: obj.uid().unwrap_or_default(),
        interval: Duration::from_secs(obj.spec.scan_interval.max(MIN_SCAN_INTERVAL) as u64)
            .max(ctx.settings.min_scan_interval),
        obj,
    };
    tokio::select! {
        biased;
        _ = held.wait_for(|held| !*held) => {
            ctx.forget(&job.key);
            Ok(Action::await_change())
        }
        // The last line of defence: a panic anywhere in this object's pipeline ends only it.
        result = contained(&ctx.metrics, "reconcile", &job.key, pipeline(&job, &ctx)) => {
            result.unwrap_or(Err(Error::Internal))
        }
    }
}

async fn pipeline(job: &Job, ctx: &Context) -> Result<Action, Error> {
    if job.obj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // The phases that talk to the API server or a registry are boxed: thousands of
    // reconciles can wait for a scan slot at once, and each should hold only a few words
    // while it waits, not the state of a scan.
    if job.obj.spec.suspend == Some(true) {
        return Box::pin(suspend(job, ctx)).await;
    }
    if has_unwritten(job, ctx) {
        return Box::pin(write(job, ctx)).await;
    }
    if let Some(wait) = not_due(job, ctx) {
        return Ok(Action::requeue(wait));
    }
    let ns = job.obj.namespace().unwrap_or_default();
    let Ok(_slot) = ctx.admission.acquire(&ns).await else {
        return Ok(Action::await_change()); // shutting down
    };
    Box::pin(scan_and_write(job, ctx)).await
}

async fn scan_and_write(job: &Job, ctx: &Context) -> Result<Action, Error> {
    let _scanning = Scanning::start(job, ctx);
    restore(job, ctx).await?;
    let outcome = match prepare(job, ctx).await? {
        Ok((target, inputs)) => {
            // A panic in the scan fails this object with InternalError, like any scan error.
            let result = contained(
                &ctx.metrics,
                "scan",
                &job.key,
                run_scan(job, ctx, &target, &inputs),
            )
            .await
            .unwrap_or(Err(ScanError::Internal { phase: "scan" }));
            outcome_of_scan(job, ctx, result, inputs.versions)
        }
        Err((problem, versions)) => outcome_of_failure(job, ctx, &problem, versions),
    };
    ctx.with_memory(&job.key, &job.uid, |m| m.unwritten = Some(outcome));
    write(job, ctx).await
}

/// Marks the object as being scanned until dropped (however the scan ends, cancellation
/// included).
struct Scanning<'a> {
    job: &'a Job,
    ctx: &'a Context,
}

impl<'a> Scanning<'a> {
    fn start(job: &'a Job, ctx: &'a Context) -> Self {
        ctx.with_memory(&job.key, &job.uid, |m| m.scanning = true);
        Self { job, ctx }
    }
}

impl Drop for Scanning<'_> {
    fn drop(&mut self) {
        let job = self.job;
        self.ctx
            .with_memory(&job.key, &job.uid, |m| m.scanning = false);
    }
}

/// Suspended: say so once, then wait for a change.
async fn suspend(job: &Job, ctx: &Context) -> Result<Action, Error> {
    let previous = job.obj.status.as_ref();
    let already = previous.is_some_and(|s| {
        s.observed_generation == job.obj.metadata.generation
            && s.conditions.iter().any(|c| c.reason == REASON_SUSPENDED)
    });
    if !already {
        let sctx = status_context(job, ctx, None);
        let patch = status::suspended(conditions(job), &sctx);
        writer::write_status(ctx, job.obj.as_ref(), &patch)
            .await
            .map_err(Error::Status)?;
    }
    ctx.metrics.forget(&object_labels(&job.key));
    Ok(Action::await_change())
}

/// A finished scan is waiting to be written (an earlier write failed) and the spec has not
/// moved on since: write it instead of scanning again.
fn has_unwritten(job: &Job, ctx: &Context) -> bool {
    let generation = job.obj.metadata.generation;
    ctx.with_memory(&job.key, &job.uid, |m| {
        if m.unwritten
            .as_ref()
            .is_some_and(|o| o.generation != generation)
        {
            m.unwritten = None;
        }
        m.unwritten.is_some()
    })
}

/// `Some(wait)` when nothing asks for a scan yet: the spec and Secrets are as last scanned
/// and the interval has not passed.
fn not_due(job: &Job, ctx: &Context) -> Option<Duration> {
    let status = job.obj.status.as_ref()?;
    if status.observed_generation != job.obj.metadata.generation {
        return None;
    }
    let current = ctx.secrets.versions_of(&job.obj);
    let remembered = ctx
        .recall(&job.key, &job.uid, |m| m.inputs.clone().zip(m.scanned_at))
        .flatten();
    match remembered {
        Some((inputs, _)) if inputs != current => None,
        Some((_, at)) => job
            .interval
            .checked_sub(at.elapsed())
            .filter(|d| !d.is_zero()),
        // Restarted: trust the status's clock, but retry failures right away (they are
        // usually what someone is fixing).
        None => {
            if status.last_scan_status != Some(ScanStatus::Success) {
                return None;
            }
            let last = status.last_scan_time.as_ref()?.0;
            let elapsed = k8s_openapi::jiff::Timestamp::now().duration_since(last);
            let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
            job.interval.checked_sub(elapsed).filter(|d| !d.is_zero())
        }
    }
}

/// After a restart (or when a shard moves here) nothing is remembered about the object: the
/// images of its status stand in for the last scan, read with one GET because the watch
/// cache holds none.
async fn restore(job: &Job, ctx: &Context) -> Result<(), Error> {
    let remembered = ctx.last_scan(&job.key, &job.uid).is_some();
    let listed = job
        .obj
        .status
        .as_ref()
        .is_some_and(|s| s.tag_count.unwrap_or(0) > 0);
    if remembered || !listed {
        return Ok(());
    }
    let api: Api<Registry> =
        Api::namespaced(ctx.client.clone(), &job.obj.namespace().unwrap_or_default());
    let Some(full) = api
        .get_opt(&job.obj.name_any())
        .await
        .map_err(Error::Restore)?
    else {
        return Ok(());
    };
    if full.uid().as_deref() != Some(job.uid.as_str()) {
        return Ok(());
    }
    let Some(status) = full.status else {
        return Ok(());
    };
    let images = status.images.unwrap_or_default();
    // A status that lists every tag is a baseline for change events; a capped one only
    // teaches facts.
    let complete = status.omitted_tags.unwrap_or(0) == 0 && status.last_scan_status.is_some();
    let snapshot = Snapshot::of_status(&images, complete);
    let hash = images_hash(&images);
    ctx.keep_last_scan(&job.key, &job.uid, snapshot);
    ctx.with_memory(&job.key, &job.uid, |m| m.written_images = Some(hash));
    Ok(())
}

type Prepared = Result<(Target, Inputs), ((&'static str, String), String)>;

/// The target and the Secrets' contents. A problem the user must fix (bad URL, missing or
/// invalid Secret) becomes a failed scan; an API error reading a Secret is returned for retry.
async fn prepare(job: &Job, ctx: &Context) -> Result<Prepared, Error> {
    let target = match Target::new(&job.obj.spec.url, &job.obj.spec.repository) {
        Ok(t) => t,
        Err(e) => {
            let versions = ctx.secrets.versions_of(&job.obj);
            return Ok(Err(((e.reason().as_str(), e.to_string()), versions)));
        }
    };
    // A range or pattern CEL could not check fails the scan before it starts; the last
    // good images and latest stay.
    if let Some(Err(e)) = job.obj.spec.policy.as_ref().map(PolicySpec::compile) {
        let versions = ctx.secrets.versions_of(&job.obj);
        let message = format!("spec.policy is invalid: {e}");
        return Ok(Err(((latest::REASON_INVALID_SPEC, message), versions)));
    }
    let ns = job.obj.namespace().unwrap_or_default();
    let inputs = secrets::read_inputs(ctx, &ns, &job.obj.spec, &target).await?;
    Ok(match inputs {
        Ok(inputs) => Ok((target, inputs)),
        Err((SecretProblem { reason, message }, versions)) => Err(((reason, message), versions)),
    })
}

async fn run_scan(
    job: &Job,
    ctx: &Context,
    target: &Target,
    inputs: &Inputs,
) -> Result<ScanReport, crate::registry::ScanError> {
    // Known digests need no GET; a tag that cannot be read this time keeps the digest it had.
    let (known, known_tags) = ctx
        .last_scan(&job.key, &job.uid)
        .map(|s| (s.known(), s.known_tags()))
        .unwrap_or_default();
    let spec = &job.obj.spec;
    let client = ctx.registry_client(
        &job.obj.namespace().unwrap_or_default(),
        spec.insecure_skip_verify == Some(true),
        inputs.ca.clone(),
    )?;
    let ns = job.obj.namespace().unwrap_or_default();
    let options = ScanOptions {
        known,
        known_tags,
        // The status outlives the operator: a restart reads no referrer again before it is due.
        referrers_checked_at: job
            .obj
            .status
            .as_ref()
            .and_then(|s| status::timestamp_of(s.referrers_checked_at.as_ref())),
        ..ctx.scan_options(&ns, spec)?
    };
    if !ctx.settings.share_scans {
        return scan(&client, target, inputs.credentials.as_ref(), &options).await;
    }
    // Objects with the same conversation share one scan; each keeps only its own tags.
    let key = ScanKey::new(
        target,
        inputs.credentials.as_ref(),
        spec.insecure_skip_verify == Some(true),
        inputs.ca.as_deref(),
        options.listing,
    )
    // What else changes the requests and what they learn.
    .with_extras(format!(
        "created={} referrers={:?}",
        options.created_from_config, options.referrers_interval
    ));
    let filter = shared::filter_id(spec);
    let users = ctx.scan_keys.register(&job.key, &key, &filter);
    // What the object learned in another conversation (a registry, repository or credential
    // it named before) must not reach the others of this key: manifests are checked against
    // their digests, but referrers and a failed tag's last digest are what a registry said.
    let options = if !users.moved_from_another_key {
        options
    } else {
        ScanOptions {
            known: Default::default(),
            known_tags: Default::default(),
            referrers_checked_at: None,
            ..options
        }
    };
    let request = SharedRequest {
        tenant: &ns,
        key,
        filter,
        filters: users.filters,
        // A tenth of the interval early still serves (the next scan is then due an interval
        // after the one that served): objects due a little apart fall into step instead of
        // each starting its own scan.
        due: due_at(job, ctx)
            .checked_sub(job.interval / 10)
            .unwrap_or_else(Instant::now),
        keep: users.objects > 1,
    };
    let own = options.filter.clone();
    let timeout = options.timeout;
    let (target, credentials) = (target.clone(), inputs.credentials.clone());
    let asked = Instant::now();
    let (done, share) = ctx
        .shared
        .scan(request, move |filters| {
            let options = ScanOptions {
                filter: shared::union(filters),
                ..options
            };
            Box::pin(async move { scan(&client, &target, credentials.as_ref(), &options).await })
        })
        .await;
    ctx.metrics
        .shared_scans
        .get_or_create(&ShareLabels {
            share: share.as_str(),
        })
        .inc();
    ctx.with_memory(&job.key, &job.uid, |m| m.served_at = Some(done.at));
    tracing::debug!(registry = %job.key, share = share.as_str(), "scan served");
    let report = done.result.clone()?;
    if share != Share::Started {
        tokio::time::sleep(shared::privacy_wait(asked, &report, timeout)).await;
    }
    Ok(shared::view(&report, &own))
}

/// When the object became due: a scan of its key that finished since then serves it.
fn due_at(job: &Job, ctx: &Context) -> Instant {
    let now = Instant::now();
    let remembered = ctx.recall(&job.key, &job.uid, |m| {
        (m.inputs.clone(), m.scanned_at, m.seen_at)
    });
    let Some(status) = job.obj.status.as_ref() else {
        return remembered.map_or(now, |(_, _, seen)| seen);
    };
    // A new spec or Secret: only a scan from now on.
    if status.observed_generation != job.obj.metadata.generation {
        return now;
    }
    match remembered {
        Some((Some(inputs), _, _)) if inputs != ctx.secrets.versions_of(&job.obj) => now,
        Some((_, Some(at), _)) => at.checked_add(job.interval).unwrap_or(now).min(now),
        // Nothing scanned since a restart: due an interval after the status's last scan.
        _ => {
            let Some(last) = status.last_scan_time.as_ref() else {
                return remembered.map_or(now, |(_, _, seen)| seen);
            };
            let elapsed = k8s_openapi::jiff::Timestamp::now().duration_since(last.0);
            let overdue = Duration::try_from(elapsed)
                .unwrap_or(Duration::ZERO)
                .saturating_sub(job.interval);
            now.checked_sub(overdue).unwrap_or(now)
        }
    }
}

fn outcome_of_scan(
    job: &Job,
    ctx: &Context,
    result: Result<ScanReport, crate::registry::ScanError>,
    versions: String,
) -> Outcome {
    let mut report = match result {
        Ok(r) => r,
        Err(e) => {
            let problem = (e.reason().as_str(), e.to_string());
            return outcome_of_failure(job, ctx, &problem, versions);
        }
    };
    count_scan(ctx, REASON_SUCCEEDED);
    let labels = object_labels(&job.key);
    ctx.metrics
        .scan_duration
        .observe(report.duration.as_secs_f64());
    ctx.metrics
        .tags
        .get_or_create(&labels)
        .set(report.images.len() as i64);
    ctx.metrics
        .signed_images
        .get_or_create(&labels)
        .set(i64::try_from(status::signed_count(&report.images)).unwrap_or(i64::MAX));
    ctx.metrics.scan_finished(&labels, true, job.interval);
    tracing::info!(registry = %job.key, tags = report.images.len(), gets = report.requests.manifest_gets, ms = report.duration.as_millis() as u64, "scan succeeded");

    let previous = job.obj.status.as_ref();
    // Ordered by the policy before the cap, so that maxImages keeps what it ranks highest.
    let evaluation = job
        .obj
        .spec
        .policy
        .as_ref()
        .and_then(|p| p.compile().ok())
        .map(|p| latest::order_report(&p, &mut report, super::latest::now()));
    let sctx = status_context_now(job, ctx);
    let mut status = status::succeeded(conditions(job), &report, &sctx);
    let applied = latest::apply(
        &mut status,
        evaluation.as_ref(),
        latest::Before {
            latest: previous.and_then(|s| s.latest.as_ref()),
            has_previous: previous.is_some_and(|s| s.previous_latest.is_some()),
        },
        conditions(job),
        &sctx,
    );
    ctx.metrics.latest.set(&labels, status.latest.as_ref());
    let mut events = Vec::new();
    if let Some((from, to)) = &applied.moved {
        events.push(event(
            false,
            latest::REASON_NEWER_VERSION,
            latest::moved_note(from, to),
        ));
    }
    if !previous.is_some_and(|s| s.last_scan_status == Some(ScanStatus::Success)) {
        events.push(event(
            false,
            REASON_SUCCEEDED,
            status.message.clone().unwrap_or_default(),
        ));
    }
    // Said once when tags start failing, not on every scan while they do.
    if let Some(note) = degraded_message(&status)
        && previous.and_then(|s| s.failed_tags).unwrap_or(0) == 0
    {
        events.push(event(true, status::REASON_TAGS_UNREADABLE, note));
    }
    // The images change events compare against: the last good scan, if it listed every tag.
    let before = ctx
        .last_scan(&job.key, &job.uid)
        .filter(|s| s.complete)
        .map(|s| s.images());
    if let Some(before) = before {
        let c = changes::diff(&before, &report.images);
        for (tags, reason, verb) in [
            (&c.added, "TagsAdded", "added"),
            (&c.changed, "DigestsChanged", "changed digest"),
            (&c.removed, "TagsRemoved", "removed"),
        ] {
            if !tags.is_empty() {
                events.push(event(false, reason, changes::summary(verb, tags)));
            }
        }
    }
    let snapshot = Snapshot::of_scan(&report.images, &report.facts);
    let hash = images_hash(status.images.as_deref().unwrap_or_default());
    ctx.keep_last_scan(&job.key, &job.uid, snapshot);
    let unchanged = ctx.with_memory(&job.key, &job.uid, |m| {
        m.inputs = Some(versions);
        m.scanned_at = Some(m.served_at.take().unwrap_or_else(Instant::now));
        m.written_images == Some(hash)
    });
    // The status already lists these images: a steady-state rescan writes only its times
    // and counters.
    if unchanged {
        status.images = None;
    }
    Outcome {
        generation: job.obj.metadata.generation,
        status: status::StatusPatch {
            status,
            clear: applied.clear,
        },
        images_hash: (!unchanged).then_some(hash),
        events,
    }
}

/// A failed scan keeps what the last good one learned (facts and the tag baseline).
fn outcome_of_failure(
    job: &Job,
    ctx: &Context,
    (reason, message): &(&'static str, String),
    versions: String,
) -> Outcome {
    count_scan(ctx, reason);
    ctx.metrics
        .scan_finished(&object_labels(&job.key), false, job.interval);
    tracing::warn!(registry = %job.key, reason, message, "scan failed");
    ctx.with_memory(&job.key, &job.uid, |m| {
        m.inputs = Some(versions);
        m.scanned_at = Some(m.served_at.take().unwrap_or_else(Instant::now));
    });
    let status = status::failed(
        conditions(job),
        reason,
        message,
        &status_context_now(job, ctx),
    );
    Outcome {
        generation: job.obj.metadata.generation,
        status,
        images_hash: None,
        events: vec![event(true, reason, message.clone())],
    }
}

/// Writes the remembered outcome; only a write that went through clears it and publishes
/// its events.
async fn write(job: &Job, ctx: &Context) -> Result<Action, Error> {
    let Some(outcome) = ctx
        .recall(&job.key, &job.uid, |m| m.unwritten.clone())
        .flatten()
    else {
        return Ok(Action::requeue(jitter(job)));
    };
    match writer::write_status(ctx, job.obj.as_ref(), &outcome.status).await {
        Ok(Written::Done) => {}
        Ok(Written::Gone) => {
            ctx.forget(&job.key);
            return Ok(Action::await_change());
        }
        Err(e) => return Err(Error::Status(e)),
    }
    ctx.with_memory(&job.key, &job.uid, |m| {
        m.unwritten = None;
        if outcome.images_hash.is_some() {
            m.written_images = outcome.images_hash;
        }
    });
    ctx.backoff.reset(&job.key);
    for e in outcome.events {
        writer::publish(ctx, job.obj.as_ref(), &e).await;
    }
    Ok(Action::requeue(jitter(job)))
}

fn count_scan(ctx: &Context, reason: &str) {
    let result = if reason == REASON_SUCCEEDED {
        "success"
    } else {
        "failure"
    };
    ctx.metrics
        .scans
        .get_or_create(&ScanLabels {
            result,
            reason: reason.to_string(),
        })
        .inc();
}

fn event(warning: bool, reason: &str, note: String) -> PendingEvent {
    PendingEvent {
        warning,
        reason: reason.to_string(),
        note,
    }
}

fn object_labels(key: &str) -> ObjectLabels {
    let (namespace, name) = key.split_once('/').unwrap_or(("", key));
    ObjectLabels {
        namespace: namespace.into(),
        name: name.into(),
    }
}

/// The conditions the status has now (a patch replaces the list).
fn conditions(job: &Job) -> &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition] {
    job.obj
        .status
        .as_ref()
        .map_or(&[][..], |s| &s.conditions[..])
}

/// The `Degraded` condition's message when it is `True`.
fn degraded_message(s: &RegistryStatus) -> Option<String> {
    s.conditions
        .iter()
        .find(|c| c.type_ == status::DEGRADED && c.status == "True")
        .map(|c| c.message.clone())
}

/// The status tells when the scan finished, not when it was queued.
fn status_context_now(job: &Job, ctx: &Context) -> status::Context {
    // Checked: `+` panics past the year 9999, and the interval comes from the spec.
    let next = k8s_openapi::jiff::Timestamp::now()
        .checked_add(job.interval)
        .ok()
        .map(Time);
    status_context(job, ctx, next)
}

fn status_context(job: &Job, ctx: &Context, next: Option<Time>) -> status::Context {
    status::Context {
        generation: job.obj.metadata.generation,
        now: Time(k8s_openapi::jiff::Timestamp::now()),
        next_scan: next,
        max_images: job
            .obj
            .spec
            .max_images
            .map_or(ctx.settings.max_images, |m| m as usize)
            .max(1),
        byte_budget: status::IMAGES_BYTE_BUDGET,
        show_referrer_tags: job.obj.spec.referrer_tags == Some(crate::api::ReferrerTags::Show),
    }
}

/// Up to 10% later, so that many objects created together drift apart — by how much from
/// the repository they scan, so that the objects that share its scans stay together.
fn jitter(job: &Job) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    (&job.obj.spec.url, &job.obj.spec.repository).hash(&mut h);
    let fraction = (h.finish() % 1000) as f64 / 10_000.0;
    job.interval.mul_f64(1.0 + fraction)
}

/// Per-object exponential backoff with jitter; a success resets it.
pub fn error_policy(obj: Arc<RegistryView>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
    let wait = ctx.backoff.next(&key);
    tracing::warn!(registry = %key, %error, retry_in_ms = wait.as_millis() as u64, "reconcile failed; retrying");
    Action::requeue(wait)
}
