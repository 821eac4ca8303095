//! Per-object retry delays: exponential with full jitter, so that objects failing together
//! (an apiserver answering 429) spread out instead of retrying in lockstep.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;

use rand::Rng;

const BASE: Duration = Duration::from_secs(2);
const MAX: Duration = Duration::from_secs(300);

#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Counts a failure of `key` and returns how long to wait before the next try.
    pub fn next(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock();
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let ceiling = delay_ceiling(*n);
        // Half fixed, half random: never a retry storm at 0 s, never later than the ceiling.
        ceiling.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    /// A success: the next failure starts from the base delay again.
    pub fn reset(&self, key: &str) {
        self.failures.lock().remove(key);
    }
}

fn delay_ceiling(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    BASE.saturating_mul(1 << exp).min(MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_per_object_up_to_the_cap_and_resets() {
        let b = Backoff::default();
        let first = b.next("a");
        assert!(first >= BASE / 2 && first <= BASE, "{first:?}");
        for _ in 0..3 {
            b.next("a");
        }
        let fifth = b.next("a");
        assert!(fifth >= BASE * 8 && fifth <= BASE * 16, "{fifth:?}");
        // Another object is not affected.
        assert!(b.next("b") <= BASE);
        for _ in 0..30 {
            assert!(b.next("a") <= MAX);
        }
        b.reset("a");
        assert!(b.next("a") <= BASE);
    }
}
