//! What the operator remembers about one Registry between scans (lost on restart; the status
//! then stands in for it).

use std::hash::Hasher;
use std::time::Instant;

use crate::registry::Image;
use crate::status::StatusPatch;

/// The last good scan is kept apart, in the context's bounded snapshot cache
/// ([`super::context::Context::last_scan`]): what the next scan starts from (unchanged digests
/// need no GET) and what change events compare against. Failures keep it, so that a success
/// after a broken Secret does not announce every tag as new.
pub struct Memory {
    pub uid: String,
    /// Secret versions the last scan used: a change means rescan now.
    pub inputs: Option<String>,
    pub scanned_at: Option<Instant>,
    /// A hash of the `images` the status holds (as written, or as read after a restart): a
    /// scan that finds the same leaves them out of its status patch.
    pub written_images: Option<u64>,
    /// A finished scan whose status write has not gone through yet: a retry writes it again
    /// instead of scanning again.
    pub unwritten: Option<Outcome>,
    /// A scan is running: webhook refreshes wait for its write, which would undo theirs.
    pub scanning: bool,
    /// When the operator first saw the object (with this UID): a never-scanned object is due
    /// since then, so a shared scan finished after it serves it.
    pub seen_at: Instant,
    /// When the scan that served the latest outcome finished (a shared one may have finished
    /// before this object asked): the next scan is due an interval after it.
    pub served_at: Option<Instant>,
}

/// A finished scan, ready to be written.
#[derive(Clone)]
pub struct Outcome {
    /// The generation that was scanned: a newer spec makes this outcome stale.
    pub generation: Option<i64>,
    pub status: StatusPatch,
    /// Set when the patch carries `images`: what the status holds once it is written.
    pub images_hash: Option<u64>,
    pub events: Vec<PendingEvent>,
}

#[derive(Clone)]
pub struct PendingEvent {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

impl Memory {
    pub fn new(uid: &str) -> Self {
        Self {
            uid: uid.to_string(),
            inputs: None,
            scanned_at: None,
            written_images: None,
            unwritten: None,
            scanning: false,
            seen_at: Instant::now(),
            served_at: None,
        }
    }
}

/// Identifies the `images` a status holds, to leave them out of a patch that would not
/// change them.
pub fn images_hash(images: &[Image]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    h.write(&serde_json::to_vec(images).unwrap_or_default());
    h.finish()
}
