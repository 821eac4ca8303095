//! Writes to the API server about a Registry: its status (a JSON merge patch of the fields
//! that change, guarded by the object's UID and resourceVersion) and its Events.

use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};

use super::context::Context;
use super::memory::PendingEvent;
use super::metrics::WriteLabels;
use crate::api::Registry;
use crate::status::StatusPatch;

pub const FIELD_MANAGER: &str = "registry-operator";

pub enum Written {
    Done,
    /// The object was deleted, or deleted and recreated under the same name, while we worked:
    /// what we found belongs to nobody.
    Gone,
}

/// Patches the status of the object `obj` was read from, and of no other: the UID and the
/// resourceVersion are preconditions, so an object recreated under the same name mid-scan
/// (new UID) is never given the old object's results. A concurrent change (409) is retried by
/// the caller with the fresh object.
///
/// A merge patch rather than a server-side apply: an apply must restate every field the
/// manager owns (or they are removed), so each scan would send every image again; a patch
/// sends what changed, and a failure leaves the last good images alone by construction.
pub async fn write_status<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    status: &StatusPatch,
) -> Result<Written, kube::Error> {
    let api: Api<Registry> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "metadata": {
            "uid": obj.meta().uid,
            "resourceVersion": obj.meta().resource_version,
        },
        "status": status.to_json(),
    });
    let bytes = serde_json::to_vec(&patch).map_or(0, |b| b.len());
    let result = api
        .patch_status(
            &obj.name_any(),
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PatchParams::default()
            },
            &Patch::Merge(&patch),
        )
        .await;
    let label = match &result {
        Ok(_) => "success",
        Err(_) => "failure",
    };
    ctx.metrics.status_write_bytes.inc_by(bytes as u64);
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

pub async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    pending: &PendingEvent,
) {
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
