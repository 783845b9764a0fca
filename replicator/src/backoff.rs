//! The retry delay after consecutive failures: exponential, capped, jittered.

use std::time::Duration;

/// Bounds of the backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure (before jitter).
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before retry number `failures` (1 = first retry), with
    /// `jitter` in [0, 1) spreading it over [delay/2, delay) so that spokes cut
    /// off together do not reconnect in lockstep.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let exp = failures.saturating_sub(1).min(30);
        let base = self.initial.saturating_mul(1u32 << exp.min(20)).min(self.max);
        let jitter = jitter.clamp(0.0, 0.999_999);
        base.mul_f64(0.5 + jitter / 2.0)
    }

    /// [`Backoff::delay`] with a random jitter.
    pub fn next(&self, failures: u32) -> Duration {
        self.delay(failures, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_then_caps() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        let table = [
            (1, 0.0, 50),
            (1, 0.999_999, 100),
            (2, 0.0, 100),
            (3, 0.0, 200),
            (5, 0.0, 800),
            (6, 0.0, 1000),
            (7, 0.0, 1000),
            (60, 0.5, 1500),
            (u32::MAX, 0.0, 1000),
        ];
        for (failures, jitter, want_ms) in table {
            let got = b.delay(failures, jitter).as_millis();
            assert!(
                got.abs_diff(want_ms) <= 1,
                "failures {failures} jitter {jitter}: {got} ms, want {want_ms}"
            );
        }
    }

    #[test]
    fn jitter_stays_in_range() {
        let b = Backoff::default();
        for f in 1..40 {
            let d = b.next(f);
            assert!(d <= b.max && d >= b.initial / 2, "{d:?}");
        }
    }
}
