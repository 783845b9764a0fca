//! Online compaction of one database: drop bodies of non-leaf revisions, re-stem
//! trees to the current `revs_limit`, purge expired sessions, then let RocksDB
//! rewrite the database's key ranges. Writes go on meanwhile: the work is handed
//! to the writer a chunk of documents at a time.

use rocksdb::{Direction, IteratorMode, ReadOptions as RocksReadOptions};

use crate::database::Database;
use crate::error::Result;
use crate::keys::{self, CF_DOCS, DB_CFS};
use crate::sweeper;
use crate::writer::Command;

/// Documents handed to the writer at a time.
const COMPACT_CHUNK: usize = 256;

/// What a compaction did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Documents examined.
    pub documents: usize,
    /// Non-leaf revision bodies dropped.
    pub bodies_dropped: usize,
    /// Expired sessions purged.
    pub expired_purged: usize,
}

impl Database {
    /// Compacts the database online. Blocks the calling thread on RocksDB work:
    /// call from a blocking context (`spawn_blocking`).
    pub fn compact_blocking(&self) -> Result<CompactionReport> {
        let mut report = CompactionReport::default();
        if self.state.expiry_field.is_some() {
            report.expired_purged = sweeper::sweep(&self.inner, &self.state)?;
        }
        let db = self.state.id;
        let mut from = keys::db_start(db).to_vec();
        loop {
            let mut ro = RocksReadOptions::default();
            ro.set_iterate_upper_bound(keys::db_end(db).to_vec());
            let iter = self.inner.db.iterator_cf_opt(
                self.inner.cf(CF_DOCS),
                ro,
                IteratorMode::From(&from, Direction::Forward),
            );
            let mut ids = Vec::new();
            for item in iter.take(COMPACT_CHUNK) {
                let (key, _) = item?;
                if let Some(id) = keys::id_of_doc_key(&key) {
                    ids.push(id.to_owned());
                }
                from = key.to_vec();
                from.push(0);
            }
            if ids.is_empty() {
                break;
            }
            report.documents += ids.len();
            let last = ids.len() < COMPACT_CHUNK;
            let state = self.state.clone();
            report.bodies_dropped += self.inner.call_blocking(|reply| Command::Compact {
                db: state,
                ids,
                reply,
            })??;
            if last {
                break;
            }
        }
        let (start, end) = (keys::db_start(db), keys::db_end(db));
        for cf in DB_CFS {
            self.inner
                .db
                .compact_range_cf(self.inner.cf(cf), Some(&start[..]), Some(&end[..]));
        }
        tracing::info!(db = %self.state.name, ?report, "compaction finished");
        Ok(report)
    }

    /// Compacts the database online, on a blocking thread.
    pub async fn compact(&self) -> Result<CompactionReport> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.compact_blocking())
            .await
            .unwrap_or(Err(crate::Error::Closed))
    }

    /// Purges expired sessions now (the sweeper does this periodically).
    pub async fn sweep_expired(&self) -> Result<usize> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || sweeper::sweep(&db.inner, &db.state))
            .await
            .unwrap_or(Err(crate::Error::Closed))
    }
}
