//! One gate per registry host that every scan's requests pass: a 429 (or a 503 with
//! `Retry-After`) closes it for the time the registry asked, so all streams wait together
//! instead of each retrying on its own; an optional requests-per-second ceiling spaces requests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use url::Url;

use crate::registry::cache::BoundedCache;

/// Gates remembered in all, and per tenant (a gate is ~100 bytes + its host name): past that
/// the least recently used go, one at a time; a host seen again starts with an open gate.
const GATES_BYTES: usize = 4 << 20;
const GATES_SHARE: usize = 512 << 10;

pub(crate) struct HostGates {
    /// Charged to the tenant whose request first met the host; shared by every tenant.
    gates: BoundedCache<String, Arc<Gate>>,
    /// Minimum spacing of requests to one host, from the requests-per-second ceiling.
    spacing: Option<Duration>,
}

#[derive(Default)]
pub(crate) struct Gate {
    state: Mutex<GateState>,
}

#[derive(Default)]
struct GateState {
    /// Closed until then by a registry's `Retry-After`.
    closed_until: Option<Instant>,
    /// The earliest the next request may go under the rate ceiling.
    next_slot: Option<Instant>,
}

/// How long a request must wait at the gate, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Admission {
    pub wait: Duration,
    /// The part of `wait` a registry asked for (rather than the rate ceiling).
    pub closed_for: Duration,
}

impl HostGates {
    pub fn new(requests_per_second: Option<f64>) -> Self {
        let spacing = requests_per_second
            .filter(|r| r.is_finite() && *r > 0.0)
            .and_then(|r| Duration::try_from_secs_f64((1.0 / r).min(3600.0)).ok());
        Self {
            gates: BoundedCache::new(GATES_BYTES, GATES_SHARE),
            spacing,
        }
    }

    pub fn for_url(&self, tenant: &str, url: &Url) -> Arc<Gate> {
        let host = format!(
            "{}:{}",
            url.host_str().unwrap_or_default().to_ascii_lowercase(),
            url.port_or_known_default().unwrap_or(0)
        );
        if let Some(gate) = self.gates.get(&host) {
            return gate;
        }
        let gate = Arc::new(Gate::default());
        let bytes = host.len() + std::mem::size_of::<Gate>();
        self.gates.put(tenant, host, gate.clone(), bytes);
        gate
    }

    /// Reserves the next slot at `url`'s host: the wait before the request may be sent.
    pub fn admit(&self, tenant: &str, url: &Url) -> Admission {
        self.for_url(tenant, url)
            .admit(Instant::now(), self.spacing)
    }

    /// Closes `url`'s host for `wait` (never shortens an earlier, longer close).
    pub fn close(&self, tenant: &str, url: &Url, wait: Duration) {
        self.for_url(tenant, url).close(Instant::now(), wait);
    }

    pub fn bytes(&self) -> usize {
        self.gates.bytes()
    }
}

impl Default for HostGates {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Gate {
    fn admit(&self, now: Instant, spacing: Option<Duration>) -> Admission {
        let mut s = self.state.lock();
        let closed_until = s.closed_until.filter(|t| *t > now);
        let mut start = closed_until.unwrap_or(now);
        if let Some(spacing) = spacing {
            if let Some(slot) = s.next_slot {
                start = start.max(slot);
            }
            s.next_slot = start.checked_add(spacing);
        }
        Admission {
            wait: start - now,
            closed_for: closed_until.map_or(Duration::ZERO, |t| t - now),
        }
    }

    fn close(&self, now: Instant, wait: Duration) {
        let Some(until) = now.checked_add(wait) else {
            return;
        };
        let mut s = self.state.lock();
        if s.closed_until.is_none_or(|t| t < until) {
            s.closed_until = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn a_close_holds_every_request_to_that_host_only() {
        let gates = HostGates::new(None);
        let a = url("https://r.example/v2/x/tags/list");
        assert_eq!(gates.admit("t", &a).wait, Duration::ZERO);
        gates.close("t", &a, Duration::from_secs(30));
        gates.close("t", &a, Duration::from_secs(5));
        let held = gates.admit("t", &url("https://R.example:443/v2/y/manifests/1"));
        assert!(held.wait > Duration::from_secs(29), "{held:?}");
        assert_eq!(held.wait, held.closed_for);
        let other = gates.admit("t", &url("https://other.example/v2/x/tags/list"));
        assert_eq!(other.wait, Duration::ZERO);
    }

    #[test]
    fn the_rate_ceiling_spaces_requests() {
        let gates = HostGates::new(Some(10.0));
        let spacing = gates.spacing.expect("a ceiling");
        assert_eq!(spacing, Duration::from_millis(100));
        let gate = Gate::default();
        let now = Instant::now();
        let waits: Vec<Duration> = (0..5)
            .map(|_| gate.admit(now, Some(spacing)).wait)
            .collect();
        assert_eq!(
            waits,
            [0, 100, 200, 300, 400].map(Duration::from_millis),
            "one slot every 100 ms"
        );
        let later = gate.admit(now + Duration::from_secs(10), Some(spacing));
        assert_eq!(later.wait, Duration::ZERO, "idle time is not saved up");
        assert_eq!(later.closed_for, Duration::ZERO);
        gate.close(now, Duration::from_secs(1));
        let both = gate.admit(now, Some(spacing));
        assert_eq!(both.closed_for, Duration::from_secs(1));
        assert!(both.wait >= both.closed_for);
        assert!(HostGates::new(Some(f64::NAN)).spacing.is_none());
        assert!(HostGates::new(Some(0.0)).spacing.is_none());
    }

    #[test]
    fn gates_are_bounded() {
        let gates = HostGates::new(None);
        let victim = url("https://victim.example/");
        gates.close("victim", &victim, Duration::from_secs(60));
        for i in 0..100_000 {
            gates.admit("attacker", &url(&format!("http://h{i}.example/")));
        }
        assert!(gates.bytes() <= GATES_SHARE + 1024, "{}", gates.bytes());
        assert!(
            gates.admit("victim", &victim).closed_for > Duration::from_secs(50),
            "another tenant's flood left the victim's closed gate alone"
        );
    }
}
