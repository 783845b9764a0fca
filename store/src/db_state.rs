//! The in-memory state of an open database, shared by readers and the writer.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;

use tokio::sync::watch;

use crate::names::DbName;
use crate::records::{DbRecord, DbStats};

pub(crate) struct DbState {
    pub name: DbName,
    pub id: u64,
    pub expiry_field: Option<String>,
    pub revs_limit: AtomicU32,
    /// Counters as of the last commit; only the writer changes them.
    pub stats: Mutex<DbStats>,
    /// The last committed sequence, for subscribers to wake on.
    pub seq_tx: watch::Sender<u64>,
    pub dropped: AtomicBool,
}

impl DbState {
    pub fn new(name: DbName, record: &DbRecord, stats: DbStats) -> DbState {
        DbState {
            name,
            id: record.id,
            expiry_field: record.expiry_field.clone(),
            revs_limit: AtomicU32::new(record.revs_limit),
            stats: Mutex::new(stats),
            seq_tx: watch::Sender::new(stats.update_seq),
            dropped: AtomicBool::new(false),
        }
    }

    pub fn stats(&self) -> DbStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_stats(&self, stats: DbStats) {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner()) = stats;
    }

    pub fn revs_limit(&self) -> u32 {
        self.revs_limit.load(Ordering::Relaxed)
    }

    pub fn record(&self) -> DbRecord {
        DbRecord {
            id: self.id,
            revs_limit: self.revs_limit(),
            expiry_field: self.expiry_field.clone(),
        }
    }

    pub fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }
}
