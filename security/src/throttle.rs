//! Slowing down repeated failed logins from one address.
//!
//! After [`FREE_FAILURES`] failures from an IP, each further attempt from it waits
//! `min(100 ms × 2^(n-5), 5 s)` where n is its failure count. Failures are forgotten
//! [`WINDOW`] after an address's last failure, and on a successful login. At most
//! `capacity` addresses are tracked; when full, the one whose last failure is oldest
//! is evicted. The server counts `sessionfleet_auth_failures_total`; this only times.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failures allowed without delay.
pub const FREE_FAILURES: u32 = 5;
/// An address's failures are forgotten this long after its last one.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Delay after the first failure beyond the free ones.
pub const BASE_DELAY: Duration = Duration::from_millis(100);
/// Longest delay.
pub const MAX_DELAY: Duration = Duration::from_secs(5);
/// Default number of addresses tracked.
pub const DEFAULT_CAPACITY: usize = 10_000;

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    last: Instant,
}

/// Per-IP failed-login throttle with bounded memory.
#[derive(Debug)]
pub struct LoginThrottle {
    capacity: usize,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle::new()
    }
}

impl LoginThrottle {
    /// A throttle tracking up to [`DEFAULT_CAPACITY`] addresses.
    pub fn new() -> LoginThrottle {
        LoginThrottle::with_capacity(DEFAULT_CAPACITY)
    }

    /// A throttle tracking up to `capacity` addresses (at least 1).
    pub fn with_capacity(capacity: usize) -> LoginThrottle {
        LoginThrottle {
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// How long an attempt from `ip` should wait before its credentials are checked.
    pub fn delay_for(&self, ip: IpAddr) -> Duration {
        self.delay_for_at(ip, Instant::now())
    }

    /// [`LoginThrottle::delay_for`] at a given instant.
    pub fn delay_for_at(&self, ip: IpAddr, now: Instant) -> Duration {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.get(&ip) {
            Some(e) if now.saturating_duration_since(e.last) < WINDOW && e.failures >= FREE_FAILURES => {
                let exp = (e.failures - FREE_FAILURES).min(16);
                (BASE_DELAY * 2u32.pow(exp)).min(MAX_DELAY)
            }
            _ => Duration::ZERO,
        }
    }

    /// Records a failed login from `ip`.
    pub fn record_failure(&self, ip: IpAddr) {
        self.record_failure_at(ip, Instant::now())
    }

    /// [`LoginThrottle::record_failure`] at a given instant.
    pub fn record_failure_at(&self, ip: IpAddr, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if !entries.contains_key(&ip) && entries.len() >= self.capacity {
            entries.retain(|_, e| now.saturating_duration_since(e.last) < WINDOW);
            if entries.len() >= self.capacity {
                if let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.last).map(|(k, _)| *k) {
                    entries.remove(&oldest);
                }
            }
        }
        let e = entries.entry(ip).or_insert(Entry {
            failures: 0,
            last: now,
        });
        if now.saturating_duration_since(e.last) >= WINDOW {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last = now;
    }

    /// Records a successful login from `ip`: its failures are forgotten.
    pub fn record_success(&self, ip: IpAddr) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&ip);
    }

    /// How many addresses are tracked.
    pub fn tracked(&self) -> usize {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn delays_grow_and_cap() {
        let t = LoginThrottle::new();
        let t0 = Instant::now();
        let a = ip(1);
        for i in 0..5 {
            assert_eq!(t.delay_for_at(a, t0), Duration::ZERO, "after {i} failures");
            t.record_failure_at(a, t0);
        }
        let expect = [100, 200, 400, 800, 1600, 3200, 5000, 5000];
        for ms in expect {
            assert_eq!(t.delay_for_at(a, t0), Duration::from_millis(ms));
            t.record_failure_at(a, t0);
        }
        for _ in 0..100 {
            t.record_failure_at(a, t0);
        }
        assert_eq!(t.delay_for_at(a, t0), MAX_DELAY);
        assert_eq!(
            t.delay_for_at(ip(2), t0),
            Duration::ZERO,
            "other addresses are not slowed"
        );
    }

    #[test]
    fn success_and_quiet_clear() {
        let t = LoginThrottle::new();
        let t0 = Instant::now();
        for _ in 0..6 {
            t.record_failure_at(ip(1), t0);
            t.record_failure_at(ip(2), t0);
        }
        t.record_success(ip(1));
        assert_eq!(t.delay_for_at(ip(1), t0), Duration::ZERO);
        assert!(t.delay_for_at(ip(2), t0) > Duration::ZERO);
        let later = t0 + WINDOW;
        assert_eq!(t.delay_for_at(ip(2), later), Duration::ZERO);
        t.record_failure_at(ip(2), later);
        assert_eq!(t.delay_for_at(ip(2), later), Duration::ZERO, "count restarted");
    }

    #[test]
    fn memory_is_bounded_and_oldest_evicted() {
        let t = LoginThrottle::with_capacity(100);
        let t0 = Instant::now();
        for _ in 0..6 {
            t.record_failure_at(ip(0), t0);
        }
        for n in 1..1000 {
            t.record_failure_at(ip(n), t0 + Duration::from_millis(n as u64));
        }
        assert_eq!(t.tracked(), 100);
        assert_eq!(t.delay_for_at(ip(0), t0), Duration::ZERO, "oldest was evicted");
        assert_eq!(LoginThrottle::new().capacity, DEFAULT_CAPACITY);
    }
}
