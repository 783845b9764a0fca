//! Per-target health: a circuit breaker. After `threshold` consecutive failures
//! a target is open (skipped at no cost) until a background probe succeeds.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// One target's breaker.
#[derive(Debug, Default)]
pub(crate) struct Health {
    failures: AtomicU32,
    open: AtomicBool,
}

impl Health {
    /// Whether requests may go to the target.
    pub fn is_available(&self) -> bool {
        !self.open.load(Ordering::Acquire)
    }

    /// Records a success: the breaker closes.
    pub fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.open.store(false, Ordering::Release);
    }

    /// Records a failure; returns true when this failure opened the breaker.
    pub fn failure(&self, threshold: u32) -> bool {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        n >= threshold && !self.open.swap(true, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_closes_on_success() {
        let h = Health::default();
        assert!(h.is_available());
        assert!(!h.failure(3));
        assert!(!h.failure(3));
        assert!(h.failure(3), "third failure opens");
        assert!(!h.is_available());
        assert!(!h.failure(3), "already open");
        h.success();
        assert!(h.is_available());
        assert!(!h.failure(3), "count restarted");
    }
}
