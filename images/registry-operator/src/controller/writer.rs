//! Writes to the API server about a Registry: its status (server-side apply, guarded by the
//! object's UID and resourceVersion) and its Events.

use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};

use super::context::Context;
use super::memory::PendingEvent;
use super::metrics::WriteLabels;
use crate::api::{Registry, RegistryStatus};

pub const FIELD_MANAGER: &str = "registry-operator";

pub enum Written {
    Done,
    /// The object was deleted, or deleted and recreated under the same name, while we worked:
    /// what we found belongs to nobody.
    Gone,
}

/// Applies `status` to the object `obj` was read from, and to no other: the UID and the
/// resourceVersion are preconditions, so an object recreated under the same name mid-scan
/// (new UID) is never given the old object's results. A concurrent change (409) is retried by
/// the caller with the fresh object.
pub async fn write_status(
    ctx: &Context,
    obj: &Registry,
    status: RegistryStatus,
) -> Result<Written, kube::Error> {
    let api: Api<Registry> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": Registry::api_version(&()),
        "kind": Registry::kind(&()),
        "metadata": {
            "uid": obj.metadata.uid,
            "resourceVersion": obj.metadata.resource_version,
        },
        "status": status,
    });
    let result = api
        .patch_status(
            &obj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await;
    let label = match &result {
        Ok(_) => "success",
        Err(_) => "failure",
    };
    ctx.metrics
        .status_writes
        .get_or_create(&WriteLabels { result: label })
        .inc();
    match result {
        Ok(_) => Ok(Written::Done),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Written::Gone),
        Err(e) => Err(e),
    }
}

pub async fn publish(ctx: &Context, obj: &Registry, pending: &PendingEvent) {
    let event = Event {
        type_: if pending.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: pending.reason.clone(),
        note: Some(truncate_note(pending.note.clone())),
        action: "Scan".into(),
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
