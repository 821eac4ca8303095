//! A panic while working on one object stays with that object: it is caught at the edge of
//! the object's work, counted, logged, and turned into an error for that object alone. The
//! locks the work held do not poison (`parking_lot`), so every other object, and this one's
//! next try, go on as before.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;

use super::metrics::{Metrics, PanicLabels};

/// Runs `work` for the object `key`; a panic inside it comes back as `Err(())` after it is
/// counted under `phase` (`scan`, `refresh`, `reconcile`).
pub async fn contained<T>(
    metrics: &Metrics,
    phase: &'static str,
    key: &str,
    work: impl Future<Output = T>,
) -> Result<T, ()> {
    // Unwind safety: what the work shares with others sits behind non-poisoning locks and
    // is left consistent between statements; the object's own state is rebuilt by its next
    // reconcile.
    match AssertUnwindSafe(work).catch_unwind().await {
        Ok(value) => Ok(value),
        Err(payload) => {
            metrics.panics.get_or_create(&PanicLabels { phase }).inc();
            tracing::error!(registry = %key, phase, panic = panic_message(payload.as_ref()), "contained a panic; this object fails with InternalError, the others go on");
            Err(())
        }
    }
}

pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}
