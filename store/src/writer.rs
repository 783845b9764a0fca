//! The single writer: every change to the store passes through one thread that
//! applies a group of requests to one `WriteBatch` and syncs the WAL once for all
//! of them (group commit). One writer also gives sequence numbers in commit order,
//! so a changes reader that saw sequence N has seen everything before N.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rocksdb::{WriteBatch, WriteOptions};
use tokio::sync::{mpsc, oneshot};

use crate::db_state::DbState;
use crate::error::{Error, Result};
use crate::keys::{self, CF_BODIES, CF_DOCS, CF_EXPIRY, CF_LOCAL, CF_META, CF_SEQ, DB_CFS};
use crate::names::{DbName, DocId, LocalId};
use crate::options::{DbOptions, Durability};
use crate::records::{self, ChangeRecord, DbRecord, DbStats, DocHeader, DocMeta, LocalRecord};
use crate::rev::Rev;
use crate::rev_tree::{EditError, EditOutcome, LeafData, RevTree};
use crate::store::Inner;

/// Most requests folded into one commit.
const MAX_BATCH_REQUESTS: usize = 512;

/// An interactive edit, ready for the writer.
pub(crate) struct EditReq {
    pub id: DocId,
    pub parent: Option<Rev>,
    pub leaf: LeafData,
    pub body: Vec<u8>,
}

/// A replicated revision (`new_edits=false`), ready for the writer.
pub(crate) struct MergeReq {
    pub id: DocId,
    pub path: Vec<Rev>,
    pub leaf: LeafData,
    pub body: Vec<u8>,
}

pub(crate) enum Command {
    Edit {
        db: Arc<DbState>,
        edits: Vec<EditReq>,
        reply: oneshot::Sender<Vec<Result<Rev>>>,
    },
    Merge {
        db: Arc<DbState>,
        docs: Vec<MergeReq>,
        reply: oneshot::Sender<Vec<Result<Rev>>>,
    },
    /// Purge these documents if they have expired (expiry index entries).
    PurgeExpired {
        db: Arc<DbState>,
        ids: Vec<(u64, String)>,
        reply: oneshot::Sender<Result<usize>>,
    },
    /// Compact these documents: re-stem, drop non-leaf bodies, purge expired.
    Compact {
        db: Arc<DbState>,
        ids: Vec<String>,
        reply: oneshot::Sender<Result<usize>>,
    },
    PutLocal {
        db: Arc<DbState>,
        id: LocalId,
        rev: u64,
        body: Option<Vec<u8>>,
        reply: oneshot::Sender<Result<u64>>,
    },
    CreateDb {
        name: DbName,
        opts: DbOptions,
        reply: oneshot::Sender<Result<()>>,
    },
    DeleteDb {
        name: DbName,
        reply: oneshot::Sender<Result<()>>,
    },
    SetRevsLimit {
        db: Arc<DbState>,
        limit: u32,
        reply: oneshot::Sender<Result<()>>,
    },
    Shutdown,
}

/// A reply to send once the batch it belongs to is durable (or has failed).
type Pending = Box<dyn FnOnce(Option<&str>) + Send>;

pub(crate) fn run(inner: Arc<Inner>, mut rx: mpsc::Receiver<Command>) {
    let mut shutting_down = false;
    while !shutting_down {
        let Some(first) = rx.blocking_recv() else { break };
        let mut batch = Batch::new(&inner);
        let mut pending: Vec<Pending> = Vec::new();
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Shutdown => shutting_down = true,
                Command::CreateDb { .. } | Command::DeleteDb { .. } | Command::SetRevsLimit { .. } => {
                    // Catalogue changes commit alone, after what came before them.
                    commit(
                        std::mem::replace(&mut batch, Batch::new(&inner)),
                        std::mem::take(&mut pending),
                    );
                    admin(&inner, cmd);
                }
                cmd => pending.push(batch.apply(cmd)),
            }
            if pending.len() >= MAX_BATCH_REQUESTS || shutting_down {
                break;
            }
            next = rx.try_recv().ok();
        }
        commit(batch, pending);
    }
    // Anything queued after shutdown is refused: dropping the receiver fails senders.
    rx.close();
    while let Ok(cmd) = rx.try_recv() {
        drop(cmd);
    }
}

fn commit(batch: Batch<'_>, pending: Vec<Pending>) {
    if pending.is_empty() {
        return;
    }
    let requests = pending.len();
    let result = batch.write();
    let err = result.as_ref().err().map(|e| e.to_string());
    if let Some(e) = &err {
        tracing::error!(error = %e, requests, "write batch failed; nothing of it was applied");
    }
    metrics::histogram!("store_write_batch_requests").record(requests as f64);
    for reply in pending {
        reply(err.as_deref());
    }
}

fn engine_err(msg: &str) -> Error {
    Error::Engine(msg.to_owned())
}

/// Builds the reply closure: per-request results stand only if the commit did.
fn reply_each(reply: oneshot::Sender<Vec<Result<Rev>>>, results: Vec<Result<Rev>>) -> Pending {
    Box::new(move |err| {
        let results = match err {
            None => results,
            Some(e) => results
                .into_iter()
                .map(|r| r.and_then(|_| Err(engine_err(e))))
                .collect(),
        };
        let _ = reply.send(results);
    })
}

fn reply_one<T: Send + 'static>(reply: oneshot::Sender<Result<T>>, result: Result<T>) -> Pending {
    Box::new(move |err| {
        let _ = reply.send(match err {
            None => result,
            Some(e) => result.and_then(|_| Err(engine_err(e))),
        });
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn is_expired(expires_at: Option<u64>, deleted: bool, now: u64) -> bool {
    !deleted && expires_at.is_some_and(|t| t <= now)
}

struct Batch<'a> {
    inner: &'a Inner,
    wb: WriteBatch,
    now: u64,
    now_ms: u64,
    /// Documents as this batch leaves them (`None`: gone).
    docs: HashMap<(u64, String), Option<DocMeta>>,
    locals: HashMap<(u64, String), Option<LocalRecord>>,
    /// Expiry index entries written (true) or deleted (false) by this batch.
    expiry_entries: HashMap<(u64, u64, String), bool>,
    /// Databases touched, with their counters as this batch leaves them.
    stats: HashMap<u64, (Arc<DbState>, DbStats)>,
}

impl<'a> Batch<'a> {
    fn new(inner: &'a Inner) -> Batch<'a> {
        Batch {
            inner,
            wb: WriteBatch::default(),
            now: inner.opts.clock.now(),
            now_ms: now_ms(),
            docs: HashMap::new(),
            locals: HashMap::new(),
            expiry_entries: HashMap::new(),
            stats: HashMap::new(),
        }
    }

    fn apply(&mut self, cmd: Command) -> Pending {
        match cmd {
            Command::Edit { db, edits, reply } => {
                let results = edits.into_iter().map(|e| self.edit(&db, e)).collect();
                reply_each(reply, results)
            }
            Command::Merge { db, docs, reply } => {
                let results = docs.into_iter().map(|d| self.merge(&db, d)).collect();
                reply_each(reply, results)
            }
            Command::PurgeExpired { db, ids, reply } => {
                let r = self.purge_expired(&db, &ids);
                reply_one(reply, r)
            }
            Command::Compact { db, ids, reply } => {
                let r = self.compact(&db, &ids);
                reply_one(reply, r)
            }
            Command::PutLocal {
                db,
                id,
                rev,
                body,
                reply,
            } => {
                let r = self.put_local(&db, id, rev, body);
                reply_one(reply, r)
            }
            Command::CreateDb { .. }
            | Command::DeleteDb { .. }
            | Command::SetRevsLimit { .. }
            | Command::Shutdown => unreachable!("handled by run()"),
        }
    }

    fn cf(&self, name: &str) -> &'a rocksdb::ColumnFamily {
        self.inner.cf(name)
    }

    fn stats_of(&mut self, db: &Arc<DbState>) -> &mut DbStats {
        &mut self
            .stats
            .entry(db.id)
            .or_insert_with(|| (db.clone(), db.stats()))
            .1
    }

    fn check_db(db: &DbState) -> Result<()> {
        if db.is_dropped() {
            return Err(Error::DbNotFound {
                name: db.name.to_string(),
            });
        }
        Ok(())
    }

    /// The document as it stands. An expired document keeps its tree (a stub,
    /// like a tombstone): its visibility is a function of the tree and the time,
    /// so dropping the tree would let an older revision arriving later decide.
    fn load(&mut self, db: &Arc<DbState>, id: &str) -> Result<Option<DocMeta>> {
        let key = (db.id, id.to_owned());
        match self.docs.get(&key) {
            Some(m) => Ok(m.clone()),
            None => match self
                .inner
                .db
                .get_pinned_cf(self.cf(CF_DOCS), keys::doc(db.id, id))?
            {
                None => Ok(None),
                Some(bytes) => Ok(Some(records::decode_doc(&bytes)?)),
            },
        }
    }

    fn edit(&mut self, db: &Arc<DbState>, req: EditReq) -> Result<Rev> {
        Self::check_db(db)?;
        let old = self.load(db, req.id.as_str())?;
        let mut tree = old.as_ref().map(|m| m.tree.clone()).unwrap_or_default();
        let conflict = || Error::Conflict {
            id: req.id.to_string(),
        };
        // An expired session is gone like a deleted one: creating it again
        // extends the expired winner (as a recreate extends a tombstone), and an
        // update naming an old revision is a conflict.
        let parent = match tree.winner() {
            Some(w) if is_expired(w.expires_at, w.deleted, self.now) => match &req.parent {
                Some(_) => return Err(conflict()),
                None => Some(w.rev),
            },
            _ => req.parent.clone(),
        };
        match tree.edit(parent.as_ref(), req.leaf, &req.body, db.revs_limit()) {
            Err(EditError::Conflict) => Err(conflict()),
            Err(EditError::GenerationLimit) => Err(Error::InvalidRev {
                rev: parent.map(|p| p.to_string()).unwrap_or_default(),
                reason: "the revision is at the highest generation and cannot be edited",
            }),
            Ok(EditOutcome::AlreadyApplied(rev)) => Ok(rev),
            Ok(EditOutcome::Added(rev)) => {
                self.put_body(db, req.id.as_str(), &rev, &req.body);
                self.save(db, req.id.as_str(), old, tree)?;
                Ok(rev)
            }
        }
    }

    fn merge(&mut self, db: &Arc<DbState>, req: MergeReq) -> Result<Rev> {
        Self::check_db(db)?;
        let head = req.path.first().cloned().ok_or_else(|| Error::InvalidRevisions {
            reason: "empty revision path".into(),
        })?;
        let old = self.load(db, req.id.as_str())?;
        let mut tree = old.as_ref().map(|m| m.tree.clone()).unwrap_or_default();
        let had_head = tree.contains(&head);
        if !tree.merge_path(&req.path, req.leaf, db.revs_limit())? {
            return Ok(head);
        }
        // An expired revision joins the tree (so every node has the same tree,
        // whenever it arrived) but its body is never needed: reads of an expired
        // session answer "expired", and replication sends a stub.
        let expired = is_expired(req.leaf.expires_at, req.leaf.deleted, self.now);
        if !had_head && tree.contains(&head) && !expired {
            self.put_body(db, req.id.as_str(), &head, &req.body);
        }
        self.save(db, req.id.as_str(), old, tree)?;
        Ok(head)
    }

    fn put_body(&mut self, db: &DbState, id: &str, rev: &Rev, body: &[u8]) {
        let key = keys::body(db.id, id, rev.generation(), rev.hash());
        self.wb.put_cf(self.cf(CF_BODIES), key, body);
    }

    fn delete_body(&mut self, db: &DbState, id: &str, rev: &Rev) {
        let key = keys::body(db.id, id, rev.generation(), rev.hash());
        self.wb.delete_cf(self.cf(CF_BODIES), key);
    }

    fn put_expiry_entry(&mut self, db: &DbState, at: u64, id: &str) {
        self.wb
            .put_cf(self.cf(CF_EXPIRY), keys::expiry(db.id, at, id), []);
        self.expiry_entries.insert((db.id, at, id.to_owned()), true);
    }

    fn delete_expiry_entry(&mut self, db: &DbState, at: u64, id: &str) {
        self.wb.delete_cf(self.cf(CF_EXPIRY), keys::expiry(db.id, at, id));
        self.expiry_entries.insert((db.id, at, id.to_owned()), false);
    }

    /// Whether a stored document counts as live (`doc_count`) rather than
    /// deleted (`doc_del_count`): its winner is no tombstone and, if it expires,
    /// has not been swept (its expiry entry still stands).
    fn counted_live(&self, db: &DbState, id: &str, h: &DocHeader) -> Result<bool> {
        if h.deleted {
            return Ok(false);
        }
        let Some(at) = h.expires_at else { return Ok(true) };
        if let Some(present) = self.expiry_entries.get(&(db.id, at, id.to_owned())) {
            return Ok(*present);
        }
        Ok(self
            .inner
            .db
            .get_pinned_cf(self.cf(CF_EXPIRY), keys::expiry(db.id, at, id))?
            .is_some())
    }

    /// Forgets a document's old index entries and counts.
    fn unindex(&mut self, db: &Arc<DbState>, id: &str, old: &DocMeta) -> Result<()> {
        let Some(h) = old.header() else { return Ok(()) };
        let live = self.counted_live(db, id, &h)?;
        self.wb.delete_cf(self.cf(CF_SEQ), keys::seq(db.id, old.seq));
        if let Some(at) = h.expires_at {
            self.delete_expiry_entry(db, at, id);
        }
        let stats = self.stats_of(db);
        if live {
            stats.doc_count = stats.doc_count.saturating_sub(1);
        } else {
            stats.doc_del_count = stats.doc_del_count.saturating_sub(1);
        }
        Ok(())
    }

    /// Stores a document's new tree under a new sequence number.
    fn save(&mut self, db: &Arc<DbState>, id: &str, old: Option<DocMeta>, tree: RevTree) -> Result<()> {
        if let Some(old) = &old {
            self.unindex(db, id, old)?;
            let removed: Vec<Rev> = old.tree.revs().filter(|r| !tree.contains(r)).cloned().collect();
            for rev in removed {
                self.delete_body(db, id, &rev);
            }
        }
        let Some(winner) = tree.winner() else {
            // Everything was ancient and dropped: nothing of the document is left.
            self.wb.delete_cf(self.cf(CF_DOCS), keys::doc(db.id, id));
            self.docs.insert((db.id, id.to_owned()), None);
            return Ok(());
        };
        let expired = is_expired(winner.expires_at, winner.deleted, self.now);
        let stats = self.stats_of(db);
        stats.update_seq += 1;
        // An expired stub counts as deleted, like a swept one.
        if winner.deleted || expired {
            stats.doc_del_count += 1;
        } else {
            stats.doc_count += 1;
        }
        let seq = stats.update_seq;
        let meta = DocMeta { seq, tree };
        let change = ChangeRecord {
            id: id.to_owned(),
            leaves: meta
                .tree
                .leaves_by_rank()
                .into_iter()
                .map(|l| (l.rev, l.deleted))
                .collect(),
            expires_at: winner.expires_at,
            committed_ms: self.now_ms,
        };
        self.wb.put_cf(
            self.cf(CF_SEQ),
            keys::seq(db.id, seq),
            records::encode_record(&change),
        );
        match winner.expires_at {
            // Already expired (a late replicated revision): swept at once.
            Some(_) if expired => self.drop_bodies(db, id, &meta),
            Some(at) => self.put_expiry_entry(db, at, id),
            None => {}
        }
        if let Some(bytes) = records::encode_doc(&meta) {
            self.wb.put_cf(self.cf(CF_DOCS), keys::doc(db.id, id), bytes);
        }
        self.docs.insert((db.id, id.to_owned()), Some(meta));
        Ok(())
    }

    /// Drops the bodies of a document's expired revisions; its tree stays (a
    /// stub). Only revisions that have expired themselves lose their body: that
    /// never changes back, whereas an unexpired conflict may be read again if
    /// a newer winner arrives.
    fn drop_bodies(&mut self, db: &Arc<DbState>, id: &str, meta: &DocMeta) {
        let now = self.now;
        let revs: Vec<Rev> = meta
            .tree
            .revs()
            .filter(|r| {
                meta.tree
                    .node(r)
                    .is_some_and(|n| is_expired(n.expires_at, n.deleted, now))
            })
            .cloned()
            .collect();
        for rev in &revs {
            self.delete_body(db, id, rev);
        }
        metrics::counter!("store_documents_purged_total").increment(1);
    }

    fn purge_expired(&mut self, db: &Arc<DbState>, entries: &[(u64, String)]) -> Result<usize> {
        Self::check_db(db)?;
        let mut purged = 0;
        for (at, id) in entries {
            if let Some(m) = self.load(db, id)? {
                let Some(h) = m.header() else { continue };
                if h.expires_at == Some(*at) && self.counted_live(db, id, &h)? {
                    if !is_expired(h.expires_at, h.deleted, self.now) {
                        // Not yet: the sweeper's clock read was ahead of ours.
                        continue;
                    }
                    self.drop_bodies(db, id, &m);
                    let stats = self.stats_of(db);
                    stats.doc_count = stats.doc_count.saturating_sub(1);
                    stats.doc_del_count += 1;
                    purged += 1;
                }
            }
            // Swept, or an entry no document stands behind any more: drop it, or
            // the sweeper would meet it forever.
            self.delete_expiry_entry(db, *at, id);
        }
        Ok(purged)
    }

    fn compact(&mut self, db: &Arc<DbState>, ids: &[String]) -> Result<usize> {
        Self::check_db(db)?;
        let mut dropped = 0;
        for id in ids {
            let Some(old) = self.load(db, id)? else { continue };
            let mut tree = old.tree.clone();
            tree.stem(db.revs_limit());
            let leaves: HashSet<Rev> = tree.leaves().into_iter().map(|l| l.rev).collect();
            for rev in old.tree.revs().filter(|r| !leaves.contains(r)) {
                let key = keys::body(db.id, id, rev.generation(), rev.hash());
                if self.inner.db.get_pinned_cf(self.cf(CF_BODIES), &key)?.is_some() {
                    self.wb.delete_cf(self.cf(CF_BODIES), key);
                    dropped += 1;
                }
            }
            if tree != old.tree {
                // Stemming is not a change a replicator needs to see: keep the sequence.
                let meta = DocMeta { seq: old.seq, tree };
                if let Some(bytes) = records::encode_doc(&meta) {
                    self.wb.put_cf(self.cf(CF_DOCS), keys::doc(db.id, id), bytes);
                }
                self.docs.insert((db.id, id.clone()), Some(meta));
            }
        }
        Ok(dropped)
    }

    fn put_local(&mut self, db: &Arc<DbState>, id: LocalId, rev: u64, body: Option<Vec<u8>>) -> Result<u64> {
        Self::check_db(db)?;
        let key = (db.id, id.as_str().to_owned());
        let current = match self.locals.get(&key) {
            Some(r) => r.clone(),
            None => match self
                .inner
                .db
                .get_pinned_cf(self.cf(CF_LOCAL), keys::doc(db.id, id.as_str()))?
            {
                None => None,
                Some(bytes) => Some(records::decode_record::<LocalRecord>(&bytes, "local document")?),
            },
        };
        let current_rev = current.as_ref().map_or(0, |r| r.rev);
        if body.is_none() && current.is_none() {
            return Err(Error::NotFound {
                id: format!("_local/{}", id.as_str()),
                reason: "missing",
            });
        }
        if rev != current_rev {
            return Err(Error::Conflict {
                id: format!("_local/{}", id.as_str()),
            });
        }
        let dbkey = keys::doc(db.id, id.as_str());
        match body {
            Some(body) => {
                let record = LocalRecord {
                    rev: current_rev + 1,
                    body,
                };
                self.wb
                    .put_cf(self.cf(CF_LOCAL), dbkey, records::encode_record(&record));
                self.locals.insert(key, Some(record));
                // Touch the database so its counters are written with the batch.
                self.stats_of(db);
                Ok(current_rev + 1)
            }
            None => {
                self.wb.delete_cf(self.cf(CF_LOCAL), dbkey);
                self.locals.insert(key, None);
                self.stats_of(db);
                Ok(0)
            }
        }
    }

    fn write(mut self) -> Result<()> {
        for (id, (_, stats)) in &self.stats {
            self.wb.put_cf(
                self.inner.cf(CF_META),
                keys::meta_stats(*id),
                records::encode_record(stats),
            );
        }
        let started = Instant::now();
        self.inner.write(std::mem::take(&mut self.wb))?;
        metrics::histogram!("store_commit_seconds").record(started.elapsed().as_secs_f64());
        for (db, stats) in self.stats.into_values() {
            db.set_stats(stats);
            db.seq_tx.send_replace(stats.update_seq);
        }
        Ok(())
    }
}

fn admin(inner: &Arc<Inner>, cmd: Command) {
    match cmd {
        Command::CreateDb { name, opts, reply } => {
            let _ = reply.send(create_db(inner, name, opts));
        }
        Command::DeleteDb { name, reply } => {
            let _ = reply.send(delete_db(inner, name));
        }
        Command::SetRevsLimit { db, limit, reply } => {
            let previous = db.revs_limit.swap(limit, Ordering::Relaxed);
            let mut wb = WriteBatch::default();
            wb.put_cf(
                inner.cf(CF_META),
                keys::meta_db(db.name.as_str()),
                records::encode_record(&db.record()),
            );
            let r = inner.write(wb);
            if r.is_err() {
                db.revs_limit.store(previous, Ordering::Relaxed);
            }
            let _ = reply.send(r);
        }
        _ => unreachable!("not an admin command"),
    }
}

fn create_db(inner: &Arc<Inner>, name: DbName, opts: DbOptions) -> Result<()> {
    if inner.dbs_read().contains_key(name.as_str()) {
        return Err(Error::DbExists {
            name: name.to_string(),
        });
    }
    let id = inner.next_db_id.fetch_add(1, Ordering::Relaxed);
    let record = DbRecord {
        id,
        revs_limit: opts.revs_limit.unwrap_or(inner.opts.default_revs_limit).max(1),
        expiry_field: opts.expiry_field,
    };
    let mut wb = WriteBatch::default();
    let meta = inner.cf(CF_META);
    wb.put_cf(meta, keys::META_NEXT_DB_ID, (id + 1).to_be_bytes());
    wb.put_cf(
        meta,
        keys::meta_db(name.as_str()),
        records::encode_record(&record),
    );
    wb.put_cf(
        meta,
        keys::meta_stats(id),
        records::encode_record(&DbStats::default()),
    );
    inner.write(wb)?;
    let state = Arc::new(DbState::new(name.clone(), &record, DbStats::default()));
    inner.dbs_write().insert(name.as_str().to_owned(), state);
    tracing::info!(db = %name, id, "created database");
    Ok(())
}

fn delete_db(inner: &Arc<Inner>, name: DbName) -> Result<()> {
    let Some(state) = inner.dbs_read().get(name.as_str()).cloned() else {
        return Err(Error::DbNotFound {
            name: name.to_string(),
        });
    };
    let mut wb = WriteBatch::default();
    wb.delete_cf(inner.cf(CF_META), keys::meta_db(name.as_str()));
    wb.delete_cf(inner.cf(CF_META), keys::meta_stats(state.id));
    for cf in DB_CFS {
        wb.delete_range_cf(inner.cf(cf), keys::db_start(state.id), keys::db_end(state.id));
    }
    inner.write(wb)?;
    state.dropped.store(true, Ordering::Release);
    // Wake every subscriber: their feeds end now, with "database deleted".
    state.seq_tx.send_modify(|_| {});
    inner.dbs_write().remove(name.as_str());
    tracing::info!(db = %name, "deleted database");
    Ok(())
}

/// Write options for the configured durability.
pub(crate) fn write_options(durability: Durability) -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(durability == Durability::Sync);
    wo
}
