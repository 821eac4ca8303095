//! The Secrets that Registries name: a metadata-only watch (names and resourceVersions, never
//! contents) tells which Registries to reconcile when one changes; contents are read with a
//! GET only when a scan needs them, while the scan holds its admission slot.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

use super::context::Context;
use super::credentials::{self, SecretProblem};
use super::metrics::{Metrics, WatchLabels};
use super::reconcile::Error;
use super::view::RegistryView;
use crate::api::RegistrySpec;
use crate::registry::{Credentials, Target};

/// The version string of a Secret that does not exist.
const MISSING: &str = "missing";

/// Everything a scan needs besides the spec itself.
#[derive(Default)]
pub struct Inputs {
    pub credentials: Option<Credentials>,
    pub ca: Option<Vec<u8>>,
    /// The Secrets' resourceVersions as read, joined.
    pub versions: String,
}

/// resourceVersions of the Secrets that Registries name (`namespace/name` → version).
#[derive(Default)]
pub struct SecretVersions {
    versions: Mutex<HashMap<String, String>>,
    synced: AtomicBool,
}

impl SecretVersions {
    fn set(&self, key: String, version: String) {
        self.versions.lock().insert(key, version);
    }

    /// What the versions of the Secrets `obj` names are now, as far as the watch knows.
    pub fn versions_of(&self, obj: &RegistryView) -> String {
        let ns = obj.namespace().unwrap_or_default();
        let versions = self.versions.lock();
        named(obj)
            .map(|name| {
                versions
                    .get(&format!("{ns}/{name}"))
                    .cloned()
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("|")
    }

    /// Forgets Secrets no Registry names any more.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.versions.lock().retain(|k, _| keep(k));
    }

    /// The initial list of the watch is done.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }
}

/// Names of the Secrets a Registry uses, credentials first.
pub fn named(obj: &RegistryView) -> impl Iterator<Item = &str> {
    let creds = obj
        .spec
        .credentials_secret
        .as_ref()
        .map(|s| s.name.as_str());
    let ca = obj.spec.ca_secret.as_ref().map(|s| s.name.as_str());
    creds.into_iter().chain(ca)
}

/// Registries to reconcile because a Secret they name changed. Watch errors are logged and
/// counted; the watcher retries with backoff.
pub fn triggers(
    api: Api<PartialObjectMeta<Secret>>,
    registries: Store<RegistryView>,
    ctx: Arc<Context>,
) -> impl Stream<Item = ObjectRef<RegistryView>> + Send + 'static {
    watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .flat_map(move |event| {
            let refs = match event {
                Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => changed(
                    &ctx,
                    &registries,
                    &s,
                    s.resource_version().unwrap_or_default(),
                ),
                Ok(watcher::Event::Delete(s)) => changed(&ctx, &registries, &s, MISSING.into()),
                Ok(watcher::Event::InitDone) => {
                    ctx.secrets.synced.store(true, Ordering::Relaxed);
                    Vec::new()
                }
                Ok(watcher::Event::Init) => Vec::new(),
                Err(e) => {
                    watch_error(&ctx.metrics, "secrets", &e);
                    Vec::new()
                }
            };
            futures::stream::iter(refs)
        })
}

pub fn watch_error(metrics: &Metrics, watch: &'static str, error: &dyn std::fmt::Display) {
    tracing::warn!(watch, error = %error, "watch failed; retrying");
    metrics
        .watch_errors
        .get_or_create(&WatchLabels { watch })
        .inc();
}

fn changed(
    ctx: &Context,
    registries: &Store<RegistryView>,
    secret: &PartialObjectMeta<Secret>,
    version: String,
) -> Vec<ObjectRef<RegistryView>> {
    let (Some(ns), name) = (secret.namespace(), secret.name_any()) else {
        return Vec::new();
    };
    let refs: Vec<ObjectRef<RegistryView>> = registries
        .state()
        .into_iter()
        .filter(|r| r.namespace().as_deref() == Some(ns.as_str()))
        .filter(|r| named(r).any(|n| n == name))
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect();
    if !refs.is_empty() {
        ctx.secrets.set(format!("{ns}/{name}"), version);
    }
    refs
}

/// Reads the Secrets `spec` names in namespace `ns`. `Err` for API errors other than 404
/// (retried, status left alone); `Ok(Err(problem))` for a missing or unusable Secret (a failed
/// scan the user fixes).
pub async fn read_inputs(
    ctx: &Context,
    ns: &str,
    spec: &RegistrySpec,
    target: &Target,
) -> Result<Result<Inputs, (SecretProblem, String)>, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let mut versions = Vec::new();
    let mut inputs = Inputs::default();
    let mut problem = None;
    let mut read = async |name: &str, what: &'static str| {
        let loaded = credentials::fetch(&api, name, what)
            .await
            .map_err(|source| Error::SecretRead {
                what,
                name: name.to_string(),
                source,
            })?;
        let version = match &loaded {
            Ok(s) => s.resource_version().unwrap_or_default(),
            Err(_) => MISSING.to_string(),
        };
        // What the watch will report for this Secret, so that it does not look changed.
        ctx.secrets.set(format!("{ns}/{name}"), version.clone());
        versions.push(version);
        Ok::<_, Error>(loaded)
    };
    if let Some(r) = &spec.credentials_secret {
        match read(&r.name, "credentials")
            .await?
            .and_then(|s| credentials::credentials_from(&s, target))
        {
            Ok(c) => inputs.credentials = Some(c),
            Err(p) => problem = Some(p),
        }
    }
    if let Some(r) = &spec.ca_secret {
        match read(&r.name, "CA")
            .await?
            .and_then(|s| credentials::ca_from(&s, r.key.as_deref()))
        {
            Ok(pem) => inputs.ca = Some(pem),
            Err(p) => problem = problem.or(Some(p)),
        }
    }
    let versions = versions.join("|");
    Ok(match problem {
        Some(p) => Err((p, versions)),
        None => {
            inputs.versions = versions;
            Ok(inputs)
        }
    })
}
