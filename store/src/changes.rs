//! The changes feed: every document once, at its latest change, in commit order.

use std::sync::Arc;

use rocksdb::{Direction, IteratorMode, ReadOptions as RocksReadOptions};
use tokio::sync::watch;

use crate::database::{Database, ReadOptions};
use crate::db_state::DbState;
use crate::document::Doc;
use crate::error::{Error, Result};
use crate::keys::{self, CF_SEQ};
use crate::names::DocId;
use crate::records::{self, ChangeRecord};
use crate::rev::Rev;
use crate::writer::is_expired;

/// What a changes read returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangesQuery {
    /// Changes after this sequence.
    pub since: u64,
    /// At most this many changes.
    pub limit: Option<usize>,
    /// All leaves of each document (`style=all_docs`), not only the winner.
    pub all_leaves: bool,
    /// The winning revision's body with each change.
    pub include_docs: bool,
    /// Only these documents.
    pub doc_ids: Option<Vec<String>>,
    /// Include documents whose session has expired (replication does: every
    /// node must end with the same trees; readers do not).
    pub include_expired: bool,
}

/// One document's latest change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The change's sequence number.
    pub seq: u64,
    /// The document.
    pub id: DocId,
    /// The winner first, then (with `all_leaves`) the other leaves.
    pub revs: Vec<Rev>,
    /// Whether the winner is a tombstone.
    pub deleted: bool,
    /// When the change was committed (unix milliseconds).
    pub committed_ms: u64,
    /// The winning revision, with `include_docs`.
    pub doc: Option<Doc>,
}

/// A page of changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangesPage {
    /// The changes, in sequence order.
    pub changes: Vec<Change>,
    /// Where the next read should start (`since`).
    pub last_seq: u64,
    /// An upper bound on the changes after `last_seq` at the time of reading.
    pub pending: u64,
}

/// A subscription to a database's commits; see [`Database::subscribe`].
pub struct Subscription {
    rx: watch::Receiver<u64>,
    state: Arc<DbState>,
}

impl Subscription {
    /// The last committed sequence.
    pub fn current(&self) -> u64 {
        *self.rx.borrow()
    }

    /// Waits until the committed sequence passes `since` and returns it. Fails
    /// with [`Error::DbNotFound`] as soon as the database is deleted, so feeds of
    /// a dropped database end instead of heartbeating from it forever.
    pub async fn wait_past(&mut self, since: u64) -> Result<u64> {
        let state = self.state.clone();
        let seen = self
            .rx
            .wait_for(|seq| *seq > since || state.is_dropped())
            .await
            .map(|seq| *seq);
        if self.state.is_dropped() {
            return Err(Error::DbNotFound {
                name: self.state.name.to_string(),
            });
        }
        seen.map_err(|_| Error::Closed)
    }
}

impl Database {
    /// Reads changes after `q.since`. Expired sessions are left out unless
    /// `q.include_expired`. A `since` beyond the committed sequence is refused:
    /// it was read from another incarnation of the database (deleted and
    /// recreated) or another store, and answering would skip changes.
    pub fn changes(&self, q: &ChangesQuery) -> Result<ChangesPage> {
        self.check_open()?;
        // Read the committed sequence before iterating: every change up to it is
        // then visible to the iterator.
        let committed = self.update_seq();
        if q.since > committed {
            return Err(Error::SinceAhead {
                since: q.since,
                update_seq: committed,
            });
        }
        let now = self.now();
        let db = self.state.id;
        let limit = q.limit.unwrap_or(usize::MAX);
        let mut ro = RocksReadOptions::default();
        ro.set_iterate_upper_bound(keys::db_end(db).to_vec());
        let start = keys::seq(db, q.since.saturating_add(1));
        let iter = self.inner.db.iterator_cf_opt(
            self.inner.cf(CF_SEQ),
            ro,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut page = ChangesPage {
            last_seq: q.since,
            ..ChangesPage::default()
        };
        let mut reached_end = true;
        for item in iter {
            let (key, value) = item?;
            let Some(seq) = keys::seq_of_key(&key) else {
                continue;
            };
            if page.changes.len() >= limit {
                reached_end = false;
                break;
            }
            page.last_seq = seq;
            let record: ChangeRecord = records::decode_record(&value, "change")?;
            let Some((winner, deleted)) = record.leaves.first().cloned() else {
                continue;
            };
            if !q.include_expired && is_expired(record.expires_at, deleted, now) {
                continue;
            }
            if let Some(ids) = &q.doc_ids {
                if !ids.contains(&record.id) {
                    continue;
                }
            }
            let Ok(id) = DocId::new(&record.id) else { continue };
            let doc = if q.include_docs {
                let opts = ReadOptions {
                    rev: Some(winner.clone()),
                    ..ReadOptions::default()
                };
                self.get(&id, &opts).ok()
            } else {
                None
            };
            let revs = if q.all_leaves {
                record.leaves.into_iter().map(|(r, _)| r).collect()
            } else {
                vec![winner]
            };
            page.changes.push(Change {
                seq,
                id,
                revs,
                deleted,
                committed_ms: record.committed_ms,
                doc,
            });
        }
        if reached_end {
            page.last_seq = page.last_seq.max(committed);
        }
        page.pending = committed.saturating_sub(page.last_seq);
        Ok(page)
    }

    /// A subscription to commits: it wakes on every commit that changes this
    /// database, and when the database is deleted. No polling.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            rx: self.state.seq_tx.subscribe(),
            state: self.state.clone(),
        }
    }

    /// Waits until the committed sequence passes `since` or `timeout` elapses;
    /// returns the committed sequence. Fails once the database is deleted.
    pub async fn wait_for_change(&self, since: u64, timeout: std::time::Duration) -> Result<u64> {
        let mut sub = self.subscribe();
        // Timing out is an answer too: the caller sees the sequence unchanged.
        if let Ok(r) = tokio::time::timeout(timeout, sub.wait_past(since)).await {
            r?;
        }
        self.check_open()?;
        Ok(self.update_seq())
    }
}
