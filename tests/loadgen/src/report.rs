//! Percentiles and throughput of a run.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::config::BenchConfig;

/// The outcome of a run.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The workload's name.
    pub workload: String,
    /// Connections used.
    pub connections: usize,
    /// Requests in flight per connection.
    pub streams: usize,
    /// Successful operations.
    pub ops: u64,
    /// Failed operations.
    pub errors: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Successful operations per second.
    pub ops_per_sec: f64,
    /// Median latency, microseconds.
    pub p50_us: u64,
    /// 99th percentile latency, microseconds.
    pub p99_us: u64,
    /// 99.9th percentile latency, microseconds.
    pub p999_us: u64,
    /// Worst latency, microseconds.
    pub max_us: u64,
}

impl BenchReport {
    pub(crate) fn new(
        cfg: &BenchConfig,
        ops: u64,
        errors: u64,
        elapsed: Duration,
        h: &Histogram<u64>,
    ) -> BenchReport {
        let seconds = elapsed.as_secs_f64();
        BenchReport {
            workload: cfg.workload.name().to_owned(),
            connections: cfg.connections,
            streams: cfg.effective_streams(),
            ops,
            errors,
            seconds,
            ops_per_sec: ops as f64 / seconds,
            p50_us: h.value_at_quantile(0.50),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}
