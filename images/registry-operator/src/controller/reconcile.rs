//! Reconcile one Registry: decide whether a scan is due, run it through the scan core, write
//! status with server-side apply, publish events, and requeue for the next interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource, ResourceExt};
use rand::Rng;

use super::admission::Admission;
use super::changes;
use super::credentials::{self, SecretProblem};
use super::metrics::{Metrics, ObjectLabels, RequestCounter, ResultLabels};
use crate::api::{MIN_SCAN_INTERVAL, Registry, RegistryStatus, ScanStatus};
use crate::registry::{
    BodyBudget, ClientOptions, Credentials, EgressPolicy, ManifestFacts, RegistryClient,
    RegistryState, ScanLimits, ScanOptions, TagFilter, Target, scan,
};
use crate::status::{self, REASON_SUSPENDED};

pub const FIELD_MANAGER: &str = "registry-operator";

#[derive(Debug, Clone)]
pub struct Settings {
    /// Scans running at once across all Registries.
    pub max_concurrent_scans: usize,
    pub scan_concurrency: usize,
    pub scan_timeout: Duration,
    pub max_images: usize,
    /// Scans of one namespace running at once.
    pub max_scans_per_namespace: usize,
    pub limits: ScanLimits,
    pub egress: Arc<EgressPolicy>,
    /// Shared by every registry client.
    pub body_budget: Arc<BodyBudget>,
    /// Ceiling on requests per second to one registry host, across all scans.
    pub requests_per_second: Option<f64>,
}

/// What the operator remembers about one Registry between scans (lost on restart; status
/// then stands in for it).
struct Memory {
    uid: String,
    /// Secret versions the last scan used: a change means rescan now.
    inputs: String,
    scanned_at: Instant,
    facts: HashMap<String, ManifestFacts>,
    tags: Vec<crate::registry::Image>,
}

/// insecureSkipVerify and the CA bundle: what sets a pooled client apart.
type ClientKey = (bool, Option<Vec<u8>>);

pub struct Context {
    pub client: kube::Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    memory: Mutex<HashMap<String, Memory>>,
    clients: Mutex<HashMap<ClientKey, RegistryClient>>,
    /// Fair admission of scans, across namespaces and in order within one. kube-runtime's own
    /// concurrency limit picks due objects from a set, which starves some objects when more are
    /// due than can run.
    admission: Admission,
    /// Auth modes, tokens and per-host rate-limit gates, shared by every client and kept
    /// across scans (bounded inside): a rescan sends its cached token up front.
    registry_state: Arc<RegistryState>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing status: {0}")]
    Status(#[source] kube::Error),
}

impl Context {
    pub fn new(
        client: kube::Client,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Self {
        Self {
            client,
            recorder,
            metrics,
            memory: Mutex::default(),
            clients: Mutex::default(),
            admission: Admission::new(
                settings.max_concurrent_scans,
                settings.max_scans_per_namespace,
            ),
            registry_state: Arc::new(RegistryState::new(settings.requests_per_second)),
            settings,
        }
    }

    /// Lets reconciles that wait for a scan slot return at once, so shutdown does not wait for
    /// every queued scan.
    pub fn stop_admitting_scans(&self) {
        self.admission.close();
    }

    /// One pooled client per TLS setting: connections are shared, trust is not mixed.
    fn registry_client(
        &self,
        insecure: bool,
        ca: Option<Vec<u8>>,
    ) -> Result<RegistryClient, crate::registry::ScanError> {
        let mut clients = self.clients.lock().expect("client pool poisoned");
        let key = (insecure, ca.clone());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        if clients.len() >= 256 {
            clients.clear();
        }
        let client = RegistryClient::new(ClientOptions {
            insecure_skip_verify: insecure,
            ca_pem: ca,
            egress: Some(self.settings.egress.clone()),
            body_budget: Some(self.settings.body_budget.clone()),
            ..ClientOptions::default()
        })?
        .with_state(self.registry_state.clone())
        .with_observer(Arc::new(RequestCounter(self.metrics.clone())));
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Drops what is remembered about objects that no longer exist; returns their keys.
    pub fn retain(&self, live: &std::collections::HashSet<String>) -> Vec<String> {
        let mut memory = self.memory.lock().expect("memory poisoned");
        let gone: Vec<String> = memory
            .keys()
            .filter(|k| !live.contains(*k))
            .cloned()
            .collect();
        for k in &gone {
            memory.remove(k);
        }
        gone
    }
}

/// Everything a scan needs besides the spec itself.
#[derive(Default)]
struct Inputs {
    credentials: Option<Credentials>,
    ca: Option<Vec<u8>>,
}

pub async fn reconcile(obj: Arc<Registry>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let key = format!("{ns}/{name}");
    if obj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let previous = obj.status.as_ref();
    let generation = obj.metadata.generation;
    let interval = Duration::from_secs(obj.spec.scan_interval.max(MIN_SCAN_INTERVAL) as u64);

    if obj.spec.suspend == Some(true) {
        let already = previous.is_some_and(|s| {
            s.observed_generation == generation
                && s.conditions.iter().any(|c| c.reason == REASON_SUSPENDED)
        });
        if !already {
            let ctx_status = status_context(&obj, &ctx, None);
            write_status(&ctx, &obj, status::suspended(previous, &ctx_status)).await?;
        }
        ctx.metrics.forget(&ObjectLabels {
            namespace: ns.clone(),
            name: name.clone(),
        });
        return Ok(Action::await_change());
    }

    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let target = Target::new(&obj.spec.url, &obj.spec.repository);
    let (versions, inputs) = match &target {
        Ok(t) => resolve_inputs(&obj, &secrets, t).await,
        Err(_) => (String::new(), Ok(Inputs::default())),
    };

    if let Some(wait) = not_due(&ctx, &key, &obj, &versions, interval) {
        return Ok(Action::requeue(wait));
    }

    let next = Time(k8s_openapi::jiff::Timestamp::now() + interval);
    let sctx = status_context(&obj, &ctx, Some(next));
    let uid = obj.uid().unwrap_or_default();
    let metric_labels = ObjectLabels {
        namespace: ns.clone(),
        name: name.clone(),
    };
    let remember = |facts, tags| {
        ctx.memory.lock().expect("memory poisoned").insert(
            key.clone(),
            Memory {
                uid: uid.clone(),
                inputs: versions.clone(),
                scanned_at: Instant::now(),
                facts,
                tags,
            },
        );
    };

    let prepared = target
        .map_err(|e| (e.reason().as_str(), e.to_string()))
        .and_then(|t| inputs.map(|i| (t, i)).map_err(|p| (p.reason, p.message)));
    let (target, inputs) = match prepared {
        Ok(ready) => ready,
        Err((reason, message)) => {
            fail(&ctx, &obj, &sctx, reason, &message).await?;
            ctx.metrics.scan_finished(&metric_labels, false, interval);
            remember(HashMap::new(), Vec::new());
            return Ok(Action::requeue(jitter(interval)));
        }
    };

    let (mut known, before) = {
        let memory = ctx.memory.lock().expect("memory poisoned");
        match memory.get(&key).filter(|m| m.uid == uid) {
            Some(m) => (m.facts.clone(), Some(m.tags.clone())),
            None => (HashMap::new(), None),
        }
    };
    // After a restart the status still knows every listed digest's facts.
    for (digest, facts) in previous.map(status::known_facts).unwrap_or_default() {
        known.entry(digest).or_insert(facts);
    }
    // A tag that cannot be read this time keeps the digest it had.
    let mut known_tags = previous.map(status::known_tags).unwrap_or_default();
    for image in before.iter().flatten() {
        known_tags.insert(image.tag.clone(), image.digest.clone());
    }
    let before = before.or_else(|| {
        previous
            .filter(|s| s.omitted_tags.unwrap_or(0) == 0 && s.last_scan_status.is_some())
            .and_then(|s| s.images.clone())
    });

    let Ok(_slot) = ctx.admission.acquire(&ns).await else {
        return Ok(Action::await_change()); // shutting down
    };
    let filter = obj.spec.tag_filter.clone().unwrap_or_default();
    let outcome = async {
        let client = ctx.registry_client(
            obj.spec.insecure_skip_verify == Some(true),
            inputs.ca.clone(),
        )?;
        let options = ScanOptions {
            concurrency: obj
                .spec
                .concurrency
                .map_or(ctx.settings.scan_concurrency, |c| c.max(1) as usize),
            timeout: ctx.settings.scan_timeout,
            filter: TagFilter::new(filter.include.as_deref(), filter.exclude.as_deref())?,
            known,
            limits: ctx.settings.limits,
            known_tags,
            ..ScanOptions::default()
        };
        scan(&client, &target, inputs.credentials.as_ref(), &options).await
    }
    .await;
    // The status tells when the scan finished, not when it was queued.
    let next = Time(k8s_openapi::jiff::Timestamp::now() + interval);
    let sctx = status_context(&obj, &ctx, Some(next));

    match outcome {
        Ok(report) => {
            ctx.metrics
                .scans
                .get_or_create(&ResultLabels {
                    result: "success".into(),
                })
                .inc();
            ctx.metrics
                .scan_duration
                .observe(report.duration.as_secs_f64());
            ctx.metrics
                .tags
                .get_or_create(&metric_labels)
                .set(report.images.len() as i64);
            ctx.metrics.scan_finished(&metric_labels, true, interval);
            let was_ready =
                previous.is_some_and(|s| s.last_scan_status == Some(ScanStatus::Success));
            let new_status = status::succeeded(previous, &report, &sctx);
            let message = new_status.message.clone().unwrap_or_default();
            let degraded = degraded_message(&new_status);
            write_status(&ctx, &obj, new_status).await?;
            // Said once when tags start failing, not on every scan while they do.
            if let Some(note) = degraded
                && previous.and_then(|s| s.failed_tags).unwrap_or(0) == 0
            {
                publish(
                    &ctx,
                    &obj,
                    EventType::Warning,
                    status::REASON_TAGS_UNREADABLE,
                    "Scan",
                    note,
                )
                .await;
            }
            tracing::info!(registry = %key, tags = report.images.len(), gets = report.requests.manifest_gets, ms = report.duration.as_millis() as u64, "scan succeeded");
            if !was_ready {
                publish(
                    &ctx,
                    &obj,
                    EventType::Normal,
                    "ScanSucceeded",
                    "Scan",
                    message,
                )
                .await;
            }
            if let Some(before) = &before {
                let c = changes::diff(before, &report.images);
                for (tags, reason, verb) in [
                    (&c.added, "TagsAdded", "added"),
                    (&c.changed, "DigestsChanged", "changed digest"),
                    (&c.removed, "TagsRemoved", "removed"),
                ] {
                    if !tags.is_empty() {
                        publish(
                            &ctx,
                            &obj,
                            EventType::Normal,
                            reason,
                            "Scan",
                            changes::summary(verb, tags),
                        )
                        .await;
                    }
                }
            }
            remember(report.facts, report.images);
        }
        Err(e) => {
            fail(&ctx, &obj, &sctx, e.reason().as_str(), &e.to_string()).await?;
            ctx.metrics.scan_finished(&metric_labels, false, interval);
            let memory = ctx.memory.lock().expect("memory poisoned").remove(&key);
            let (facts, tags) = memory
                .filter(|m| m.uid == uid)
                .map(|m| (m.facts, m.tags))
                .unwrap_or_default();
            remember(facts, tags);
        }
    }
    Ok(Action::requeue(jitter(interval)))
}

/// The `Degraded` condition's message when it is `True`.
fn degraded_message(s: &RegistryStatus) -> Option<String> {
    s.conditions
        .iter()
        .find(|c| c.type_ == status::DEGRADED && c.status == "True")
        .map(|c| c.message.clone())
}

/// `Some(wait)` when nothing asks for a scan yet: the spec and Secrets are as last scanned
/// and the interval has not passed.
fn not_due(
    ctx: &Context,
    key: &str,
    obj: &Registry,
    versions: &str,
    interval: Duration,
) -> Option<Duration> {
    let status = obj.status.as_ref()?;
    if status.observed_generation != obj.metadata.generation {
        return None;
    }
    let memory = ctx.memory.lock().expect("memory poisoned");
    match memory
        .get(key)
        .filter(|m| Some(&m.uid) == obj.metadata.uid.as_ref())
    {
        Some(m) if m.inputs != versions => None,
        Some(m) => interval
            .checked_sub(m.scanned_at.elapsed())
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
            interval.checked_sub(elapsed).filter(|d| !d.is_zero())
        }
    }
}

/// The Secrets' contents, and their resourceVersions (which tell the controller that a Secret
/// changed since the last scan).
async fn resolve_inputs(
    obj: &Registry,
    secrets: &Api<Secret>,
    target: &Target,
) -> (String, Result<Inputs, SecretProblem>) {
    let mut versions = Vec::new();
    let mut inputs = Inputs::default();
    let mut problem = None;
    if let Some(r) = &obj.spec.credentials_secret {
        let loaded = credentials::fetch(secrets, &r.name, "credentials").await;
        versions.push(version_of(&loaded));
        match loaded.and_then(|s| credentials::credentials_from(&s, target)) {
            Ok(c) => inputs.credentials = Some(c),
            Err(p) => problem = Some(p),
        }
    }
    if let Some(r) = &obj.spec.ca_secret {
        let loaded = credentials::fetch(secrets, &r.name, "CA").await;
        versions.push(version_of(&loaded));
        match loaded.and_then(|s| credentials::ca_from(&s, r.key.as_deref())) {
            Ok(pem) => inputs.ca = Some(pem),
            Err(p) => problem = problem.or(Some(p)),
        }
    }
    (versions.join("|"), problem.map_or(Ok(inputs), Err))
}

fn version_of(loaded: &Result<Secret, SecretProblem>) -> String {
    match loaded {
        Ok(s) => s.resource_version().unwrap_or_default(),
        Err(_) => "missing".into(),
    }
}

fn status_context(obj: &Registry, ctx: &Context, next: Option<Time>) -> status::Context {
    status::Context {
        generation: obj.metadata.generation,
        now: Time(k8s_openapi::jiff::Timestamp::now()),
        next_scan: next,
        max_images: obj
            .spec
            .max_images
            .map_or(ctx.settings.max_images, |m| m as usize)
            .max(1),
        byte_budget: status::IMAGES_BYTE_BUDGET,
    }
}

async fn fail(
    ctx: &Context,
    obj: &Registry,
    sctx: &status::Context,
    reason: &str,
    message: &str,
) -> Result<(), Error> {
    ctx.metrics
        .scans
        .get_or_create(&ResultLabels {
            result: reason.to_string(),
        })
        .inc();
    tracing::warn!(registry = %format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()), reason, message, "scan failed");
    write_status(
        ctx,
        obj,
        status::failed(obj.status.as_ref(), reason, message, sctx),
    )
    .await?;
    publish(
        ctx,
        obj,
        EventType::Warning,
        reason,
        "Scan",
        message.to_string(),
    )
    .await;
    Ok(())
}

async fn write_status(ctx: &Context, obj: &Registry, status: RegistryStatus) -> Result<(), Error> {
    let api: Api<Registry> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": Registry::api_version(&()),
        "kind": Registry::kind(&()),
        "status": status,
    });
    match api
        .patch_status(
            &obj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Deleted while we scanned: nothing left to report to.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::Status(e)),
    }
}

async fn publish(
    ctx: &Context,
    obj: &Registry,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(truncate_note(note)),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::debug!(error = %e, "publishing event failed");
    }
}

/// Events' notes are limited to 1 KiB by the API server.
fn truncate_note(mut note: String) -> String {
    if note.len() > 1000 {
        let mut end = 1000;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push('…');
    }
    note
}

/// Up to 10% later, so that many objects created together drift apart.
fn jitter(interval: Duration) -> Duration {
    interval.mul_f64(1.0 + rand::rng().random_range(0.0..0.1))
}

pub fn error_policy(obj: Arc<Registry>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(registry = %obj.name_any(), %error, "reconcile failed; retrying in 30s");
    Action::requeue(Duration::from_secs(30))
}
