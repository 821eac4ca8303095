//! Per registry: which native listing API it has, and whether a guard disagreement turned it off.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Lister;

/// Registries remembered at most; past that the map starts over (detection is cheap).
const MAX_LISTERS: usize = 10_000;

/// Per registry base URL: which native listing API it has, and whether a guard disagreement
/// turned it off (until the process restarts).
#[derive(Default)]
pub(crate) struct Listers {
    detected: Mutex<HashMap<String, Lister>>,
    off: Mutex<HashMap<String, String>>,
}

impl Listers {
    pub fn detected(&self, base: &str) -> Option<Lister> {
        self.detected
            .lock()
            .expect("listers poisoned")
            .get(base)
            .copied()
    }

    pub fn detected_as(&self, base: &str, lister: Lister) {
        let mut m = self.detected.lock().expect("listers poisoned");
        if m.len() >= MAX_LISTERS && !m.contains_key(base) {
            m.clear();
        }
        m.insert(base.to_string(), lister);
    }

    /// Why the native API of this registry is off, if it is.
    pub fn off(&self, base: &str) -> Option<String> {
        self.off
            .lock()
            .expect("listers poisoned")
            .get(base)
            .cloned()
    }

    /// Never forgotten wholesale: a registry that lied stays on the distribution API.
    pub fn turn_off(&self, base: &str, reason: String) {
        let mut m = self.off.lock().expect("listers poisoned");
        if m.len() < MAX_LISTERS || m.contains_key(base) {
            m.insert(base.to_string(), reason);
        }
    }
}
