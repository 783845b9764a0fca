//! The live state of a replication, for `_active_tasks`, the hub's status page
//! and Prometheus.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// What a replication is doing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicationState {
    /// Connecting and reading checkpoints.
    Starting,
    /// Moving changes.
    Running,
    /// Caught up, waiting for changes.
    Idle,
    /// Waiting to retry after an error.
    Backoff,
    /// A one-shot replication finished.
    Completed,
    /// A one-shot replication gave up.
    Failed,
    /// Stopped by shutdown.
    Stopped,
}

/// Counters and state of one replication. Cheap to update from the engine.
#[derive(Debug)]
pub struct ReplicationStatus {
    /// A label for metrics and logs, e.g. `push:sessions`.
    pub label: String,
    /// The source, as the peer describes itself.
    pub source: String,
    /// The target.
    pub target: String,
    /// Whether it runs until stopped.
    pub continuous: bool,
    docs_read: AtomicU64,
    docs_written: AtomicU64,
    write_failures: AtomicU64,
    bytes: AtomicU64,
    checkpointed_seq: AtomicU64,
    checkpoints: AtomicU64,
    source_seq: AtomicU64,
    seq_lag: AtomicU64,
    time_lag_ms: AtomicU64,
    last_progress_ms: AtomicU64,
    state: Mutex<(ReplicationState, Option<String>)>,
    started_ms: u64,
}

/// A snapshot of a [`ReplicationStatus`].
#[derive(Clone, Debug, Serialize)]
pub struct StatusSnapshot {
    /// Label.
    pub label: String,
    /// Source.
    pub source: String,
    /// Target.
    pub target: String,
    /// Continuous?
    pub continuous: bool,
    /// State.
    pub state: ReplicationState,
    /// Last error, while retrying or failed.
    pub last_error: Option<String>,
    /// Changes read from the source.
    pub docs_read: u64,
    /// Revisions written to the target.
    pub docs_written: u64,
    /// Revisions the target refused.
    pub doc_write_failures: u64,
    /// Body bytes moved.
    pub bytes: u64,
    /// Source sequence of the last checkpoint (integer sources).
    pub checkpointed_seq: u64,
    /// The source's sequence when last seen.
    pub source_seq: u64,
    /// Changes not yet read (source sequence minus position).
    pub seq_lag: u64,
    /// Now minus the source commit time of the newest change applied, ms.
    pub time_lag_ms: u64,
    /// When the replication last moved a change or confirmed it was caught up (unix ms).
    pub last_progress_ms: u64,
    /// When it started (unix ms).
    pub started_ms: u64,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ReplicationStatus {
    /// A fresh status.
    pub fn new(label: String, source: String, target: String, continuous: bool) -> ReplicationStatus {
        ReplicationStatus {
            label,
            source,
            target,
            continuous,
            docs_read: AtomicU64::new(0),
            docs_written: AtomicU64::new(0),
            write_failures: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            checkpointed_seq: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            source_seq: AtomicU64::new(0),
            seq_lag: AtomicU64::new(0),
            time_lag_ms: AtomicU64::new(0),
            last_progress_ms: AtomicU64::new(0),
            state: Mutex::new((ReplicationState::Starting, None)),
            started_ms: now_ms(),
        }
    }

    pub(crate) fn set_state(&self, state: ReplicationState, error: Option<String>) {
        let code = match state {
            ReplicationState::Starting => 0.0,
            ReplicationState::Running => 1.0,
            ReplicationState::Idle => 2.0,
            ReplicationState::Backoff => 3.0,
            ReplicationState::Completed => 4.0,
            ReplicationState::Failed => 5.0,
            ReplicationState::Stopped => 6.0,
        };
        metrics::gauge!("replication_state", "replication" => self.label.clone()).set(code);
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = (state, error);
    }

    /// The current state.
    pub fn state(&self) -> ReplicationState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    pub(crate) fn read(&self, n: u64) {
        self.docs_read.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("replication_docs_read_total", "replication" => self.label.clone()).increment(n);
    }

    pub(crate) fn wrote(&self, docs: u64, failures: u64, bytes: u64) {
        self.docs_written.fetch_add(docs, Ordering::Relaxed);
        self.write_failures.fetch_add(failures, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        metrics::counter!("replication_docs_written_total", "replication" => self.label.clone())
            .increment(docs);
        metrics::counter!("replication_doc_write_failures_total", "replication" => self.label.clone())
            .increment(failures);
        metrics::counter!("replication_bytes_total", "replication" => self.label.clone()).increment(bytes);
    }

    pub(crate) fn progress(&self, position: u64, pending: Option<u64>, newest_commit_ms: Option<u64>) {
        let now = now_ms();
        self.last_progress_ms.store(now, Ordering::Relaxed);
        if let Some(p) = pending {
            self.seq_lag.store(p, Ordering::Relaxed);
            self.source_seq.store(position + p, Ordering::Relaxed);
            metrics::gauge!("replication_seq_lag", "replication" => self.label.clone()).set(p as f64);
        }
        match newest_commit_ms {
            Some(ms) => {
                let lag = now.saturating_sub(ms);
                self.time_lag_ms.store(lag, Ordering::Relaxed);
                metrics::gauge!("replication_time_lag_seconds", "replication" => self.label.clone())
                    .set(lag as f64 / 1000.0);
            }
            // Caught up with nothing new: no lag.
            None if pending == Some(0) => {
                self.time_lag_ms.store(0, Ordering::Relaxed);
                metrics::gauge!("replication_time_lag_seconds", "replication" => self.label.clone()).set(0.0);
            }
            None => {}
        }
    }

    pub(crate) fn checkpointed(&self, seq: u64) {
        self.checkpointed_seq.store(seq, Ordering::Relaxed);
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
    }

    /// Checkpoints written so far: the replication's durable progress.
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints.load(Ordering::Relaxed)
    }

    /// Revisions written so far.
    pub fn docs_written(&self) -> u64 {
        self.docs_written.load(Ordering::Relaxed)
    }

    /// Changes read so far.
    pub fn docs_read(&self) -> u64 {
        self.docs_read.load(Ordering::Relaxed)
    }

    /// A consistent-enough copy for display.
    pub fn snapshot(&self) -> StatusSnapshot {
        let (state, last_error) = self.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        StatusSnapshot {
            label: self.label.clone(),
            source: self.source.clone(),
            target: self.target.clone(),
            continuous: self.continuous,
            state,
            last_error,
            docs_read: self.docs_read.load(Ordering::Relaxed),
            docs_written: self.docs_written.load(Ordering::Relaxed),
            doc_write_failures: self.write_failures.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            checkpointed_seq: self.checkpointed_seq.load(Ordering::Relaxed),
            source_seq: self.source_seq.load(Ordering::Relaxed),
            seq_lag: self.seq_lag.load(Ordering::Relaxed),
            time_lag_ms: self.time_lag_ms.load(Ordering::Relaxed),
            last_progress_ms: self.last_progress_ms.load(Ordering::Relaxed),
            started_ms: self.started_ms,
        }
    }
}
