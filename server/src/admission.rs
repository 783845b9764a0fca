//! Load shedding: a bound on the requests a node works on at once.
//!
//! Beyond capacity a node that queues every request makes every caller wait, until
//! timeouts fire everywhere and nobody is served. Shedding the excess at once, with an
//! answer a caller can act on (HTTP 503 with `Retry-After`, gRPC `RESOURCE_EXHAUSTED`),
//! keeps the admitted requests fast; edge-clients then read from their next target.
//! The bound is on requests in flight (by Little's law, throughput × latency), so it
//! follows whatever makes the node slow: fsyncs, compaction, a saturated CPU.
//!
//! Long-lived calls (changes feeds, Watch and replication streams) are not counted: they
//! hold no worker while they wait.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The in-flight bound shared by the HTTP and gRPC listeners of one node.
#[derive(Debug)]
pub(crate) struct Admission {
    permits: Arc<Semaphore>,
    limit: usize,
}

/// A request admitted; dropping it makes room for the next.
#[must_use]
pub(crate) struct Admitted(#[allow(dead_code)] OwnedSemaphorePermit);

/// A request refused because `limit` requests are already in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overloaded {
    pub limit: usize,
}

impl Overloaded {
    /// Seconds a client should wait before trying this node again: short, because
    /// shedding is for bursts; a node overloaded for long is a capacity problem.
    pub const RETRY_AFTER_SECS: u64 = 1;

    pub fn reason(&self) -> String {
        format!(
            "the node is at capacity ({} requests in flight); retry after {} s or read from another node",
            self.limit,
            Self::RETRY_AFTER_SECS
        )
    }
}

impl Admission {
    /// At most `limit` (at least 1) requests in flight.
    pub fn new(limit: usize) -> Admission {
        let limit = limit.max(1);
        Admission {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// Admits a request of `api` ("http" or "grpc") now, or refuses it; never waits.
    pub fn try_admit(&self, api: &'static str) -> Result<Admitted, Overloaded> {
        match self.permits.clone().try_acquire_owned() {
            Ok(p) => Ok(Admitted(p)),
            Err(_) => {
                metrics::counter!("requests_shed_total", "api" => api).increment(1);
                Err(Overloaded { limit: self.limit })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_then_sheds_until_one_finishes() {
        let a = Admission::new(2);
        let first = a.try_admit("http").unwrap();
        let _second = a.try_admit("grpc").unwrap();
        assert_eq!(a.try_admit("http").err(), Some(Overloaded { limit: 2 }));
        drop(first);
        assert!(a.try_admit("http").is_ok());
    }

    #[test]
    fn a_zero_limit_still_admits_one() {
        let a = Admission::new(0);
        let _one = a.try_admit("http").unwrap();
        assert!(a.try_admit("http").is_err());
    }
}
