//! What the operator remembers about one Registry between scans (lost on restart; the status
//! then stands in for it).

use std::collections::HashMap;
use std::time::Instant;

use crate::api::RegistryStatus;
use crate::registry::{Image, ManifestFacts};

pub struct Memory {
    pub uid: String,
    /// Secret versions the last scan used: a change means rescan now.
    pub inputs: Option<String>,
    pub scanned_at: Option<Instant>,
    /// Facts of every digest seen, so unchanged digests need no manifest GET.
    pub facts: HashMap<String, ManifestFacts>,
    /// The last good tag list, kept only when the status cannot list every tag: what change
    /// events compare against (otherwise the status is the baseline). Failures keep it, so
    /// that a success after a broken Secret does not announce every tag as new.
    pub tags: Option<Vec<Image>>,
    /// A finished scan whose status write has not gone through yet: a retry writes it again
    /// instead of scanning again.
    pub unwritten: Option<Outcome>,
}

/// A finished scan, ready to be written.
#[derive(Clone)]
pub struct Outcome {
    /// The generation that was scanned: a newer spec makes this outcome stale.
    pub generation: Option<i64>,
    pub status: RegistryStatus,
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
            facts: HashMap::new(),
            tags: None,
            unwritten: None,
        }
    }
}
