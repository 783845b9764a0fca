//! A closed-loop load generator for Sessionfleet nodes: N connections (for gRPC,
//! each carrying M concurrent streams), each stream sending its next request as
//! soon as the previous one is answered, over a keyspace of pre-loaded sessions;
//! latencies go into an HDR histogram.
//!
//! It knows the public HTTP and gRPC APIs only — nothing of the server's insides.
//!
//! Layout: [`config`] (what to run), `http` and `grpc` (one worker loop per
//! transport), [`report`] (percentiles), [`preload`] (the keyspace), [`ceiling`]
//! (bare servers to measure the real ones against).

pub mod ceiling;
pub mod config;
mod grpc;
mod http;
pub mod preload;
pub mod propagation;
pub mod report;

use std::time::{Duration, Instant};

pub use config::{BenchConfig, Workload};
use hdrhistogram::Histogram;
pub use report::BenchReport;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The target refused or broke a connection.
    #[error("connecting to {addr}: {reason}")]
    Connect {
        /// The address dialled.
        addr: String,
        /// Why.
        reason: String,
    },
    /// Setting up the keyspace failed.
    #[error("preloading: {0}")]
    Preload(String),
    /// A ceiling server could not listen or stopped serving.
    #[error("ceiling server: {0}")]
    Serve(String),
}

/// What one worker brings back.
pub(crate) struct WorkerResult {
    pub histogram: Histogram<u64>,
    pub ops: u64,
    pub errors: u64,
}

/// `builder` with `authorization: Bearer <token>` when there is a token.
pub(crate) fn authorized(
    builder: hyper::http::request::Builder,
    token: Option<&str>,
) -> hyper::http::request::Builder {
    match token {
        Some(t) => builder.header("authorization", format!("Bearer {t}")),
        None => builder,
    }
}

pub(crate) fn new_histogram() -> Histogram<u64> {
    // 1 µs to 60 s, 3 significant digits: fixed bounds cannot fail.
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Records one operation's latency in microseconds.
pub(crate) fn record(h: &mut Histogram<u64>, started: Instant) {
    let us = started.elapsed().as_micros().clamp(1, 60_000_000) as u64;
    let _ = h.record(us);
}

/// Runs the configured workload for its duration and reports.
pub async fn run(cfg: &BenchConfig) -> Result<BenchReport, BenchError> {
    let started = Instant::now();
    let deadline = started + cfg.duration;
    let mut tasks = Vec::with_capacity(cfg.connections.saturating_mul(cfg.effective_streams()));
    for worker in 0..cfg.connections {
        // gRPC: the connection's streams share one channel, as an edge-client's calls do.
        let channel = (cfg.workload == Workload::GrpcGet)
            .then(|| grpc::channel(cfg))
            .transpose()?;
        for _ in 0..cfg.effective_streams() {
            let cfg = cfg.clone();
            let channel = channel.clone();
            tasks.push(tokio::spawn(async move {
                match (cfg.workload, channel) {
                    (_, Some(channel)) => grpc::worker(&cfg, channel, deadline).await,
                    (Workload::ConnectStorm, None) => http::storm_client(&cfg, started).await,
                    (_, None) => http::worker(&cfg, worker, deadline).await,
                }
            }));
        }
    }
    let mut histogram = new_histogram();
    let (mut ops, mut errors) = (0, 0);
    for t in tasks {
        let r = t.await.map_err(|e| BenchError::Connect {
            addr: "worker".into(),
            reason: e.to_string(),
        })??;
        let _ = histogram.add(&r.histogram);
        ops += r.ops;
        errors += r.errors;
    }
    let elapsed = started.elapsed().max(Duration::from_millis(1));
    Ok(BenchReport::new(cfg, ops, errors, elapsed, &histogram))
}
