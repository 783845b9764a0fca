//! The expiry sweeper: a background thread that purges expired sessions.
//!
//! Reads already treat an expired session as absent; the sweeper reclaims its
//! space and drops it from the changes feed's storage.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rocksdb::{Direction, IteratorMode, ReadOptions as RocksReadOptions};

use crate::db_state::DbState;
use crate::error::{Error, Result};
use crate::keys::{self, CF_EXPIRY};
use crate::store::Inner;
use crate::writer::Command;

/// Ids handed to the writer at a time, so a sweep never holds writes up for long.
const SWEEP_CHUNK: usize = 500;

pub(crate) struct Sweeper {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Sweeper {
    pub fn start(inner: Arc<Inner>, every: Duration) -> Result<Sweeper> {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("store-sweeper".into())
            .spawn(move || loop {
                match stopped.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let dbs: Vec<Arc<DbState>> = inner.dbs_read().values().cloned().collect();
                for db in dbs.iter().filter(|d| d.expiry_field.is_some()) {
                    match sweep(&inner, db) {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(db = %db.name, purged = n, "swept expired sessions"),
                        Err(Error::Closed) => return,
                        Err(e) => tracing::warn!(db = %db.name, error = %e, "expiry sweep failed"),
                    }
                }
            })
            .map_err(|e| Error::Engine(format!("spawning sweeper thread: {e}")))?;
        Ok(Sweeper { stop, thread })
    }

    pub fn stop(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            tracing::error!("store sweeper thread panicked");
        }
    }
}

/// Purges every session of `db` that expired by now; returns how many.
pub(crate) fn sweep(inner: &Inner, db: &Arc<DbState>) -> Result<usize> {
    let now = inner.opts.clock.now();
    let mut purged = 0;
    let mut from = keys::expiry(db.id, 0, "");
    loop {
        let mut ro = RocksReadOptions::default();
        ro.set_iterate_upper_bound(keys::expiry(db.id, now.saturating_add(1), ""));
        let iter = inner.db.iterator_cf_opt(
            inner.cf(CF_EXPIRY),
            ro,
            IteratorMode::From(&from, Direction::Forward),
        );
        let mut ids = Vec::new();
        for item in iter.take(SWEEP_CHUNK) {
            let (key, _) = item?;
            if let Some((at, id)) = keys::parse_expiry_key(&key) {
                ids.push((at, id.to_owned()));
            }
            from = key.to_vec();
            from.push(0);
        }
        if ids.is_empty() {
            return Ok(purged);
        }
        let db2 = db.clone();
        let done = ids.len() < SWEEP_CHUNK;
        purged += inner.call_blocking(|reply| Command::PurgeExpired { db: db2, ids, reply })??;
        if done {
            return Ok(purged);
        }
    }
}
