//! A handle on one database: reads go straight to RocksDB, writes to the writer.

use std::sync::Arc;

use rocksdb::{Direction, IteratorMode, ReadOptions as RocksReadOptions, Snapshot};

use crate::db_state::DbState;
use crate::document::{check_body, read_expiry, Doc, DocInput};
use crate::error::{Error, Result};
use crate::keys::{self, CF_BODIES, CF_DOCS, CF_LOCAL, DB_CFS};
use crate::names::{DbName, DocId, LocalId};
use crate::records::{self, DocMeta, LocalRecord};
use crate::rev::Rev;
use crate::rev_tree::{check_path, LeafData};
use crate::store::Inner;
use crate::writer::{is_expired, Command, EditReq, MergeReq};

/// An interactive edit: a new revision whose parent is `parent` (`None` to create).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edit {
    /// The document edited.
    pub id: DocId,
    /// The revision edited; `None` creates the document (or recreates a deleted one).
    pub parent: Option<Rev>,
    /// Whether the edit deletes the document (writes a tombstone).
    pub deleted: bool,
    /// The new body: a JSON object without special members.
    pub body: Vec<u8>,
}

impl Edit {
    /// An update (or, with `parent: None`, a creation) with a new body.
    /// The body must be a canonical body such as [`DocInput::body`]; anything else is
    /// refused with [`Error::InvalidDocument`] when the edit is applied.
    pub fn new(id: DocId, parent: Option<Rev>, body: Vec<u8>) -> Edit {
        Edit {
            id,
            parent,
            deleted: false,
            body,
        }
    }

    /// A deletion of revision `parent`.
    pub fn delete(id: DocId, parent: Rev) -> Edit {
        Edit {
            id,
            parent: Some(parent),
            deleted: true,
            body: b"{}".to_vec(),
        }
    }

    /// An edit from a parsed client document and its id.
    pub fn from_input(id: DocId, input: DocInput) -> Edit {
        Edit {
            id,
            parent: input.rev,
            deleted: input.deleted,
            body: input.body,
        }
    }
}

/// A revision arriving by replication (`new_edits=false`): it is merged into the
/// tree as it is, with its history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replicated {
    /// The document.
    pub id: DocId,
    /// The revision and its ancestors, newest first, consecutive generations.
    pub path: Vec<Rev>,
    /// Whether the revision is a tombstone.
    pub deleted: bool,
    /// The revision's body.
    pub body: Vec<u8>,
}

impl Replicated {
    /// A replicated revision from a parsed document, which must carry `_id` and
    /// `_revisions` or `_rev`.
    pub fn from_input(input: DocInput) -> Result<Replicated> {
        let id = DocId::new(input.id.as_deref().ok_or_else(|| Error::InvalidDocument {
            reason: "a replicated document needs an _id".into(),
        })?)?;
        let path = match (input.revisions, input.rev) {
            (Some(path), _) => path,
            (None, Some(rev)) => vec![rev],
            (None, None) => {
                return Err(Error::InvalidRevisions {
                    reason: "a replicated document needs _rev or _revisions".into(),
                })
            }
        };
        Ok(Replicated {
            id,
            path,
            deleted: input.deleted,
            body: input.body,
        })
    }
}

/// A replicated revision the database refused.
#[derive(Debug)]
pub struct MergeFailure {
    /// The document.
    pub id: DocId,
    /// The revision refused (the head of its path), if it had one.
    pub rev: Option<Rev>,
    /// Why.
    pub error: Error,
}

/// What to read with a document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// A specific revision instead of the winner.
    pub rev: Option<Rev>,
    /// Include `_conflicts` (and `_deleted_conflicts`).
    pub conflicts: bool,
    /// Include `_revisions`.
    pub revs: bool,
}

/// Which revisions `open_revs` reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenRevs {
    /// Every leaf.
    All,
    /// These revisions.
    Revs(Vec<Rev>),
}

/// One answer of `open_revs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenRev {
    /// The revision, with its body.
    Ok(Doc),
    /// The revision (or its body) is not stored here.
    Missing(Rev),
}

/// `_revs_diff` for one document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevsDiff {
    /// Revisions this database lacks.
    pub missing: Vec<Rev>,
    /// Leaves it has that could be their ancestors.
    pub possible_ancestors: Vec<Rev>,
}

/// A query over documents in id order (`_all_docs`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllDocsQuery {
    /// First id (last, when descending).
    pub start_key: Option<String>,
    /// Last id (first, when descending).
    pub end_key: Option<String>,
    /// Whether `end_key` itself is included (CouchDB's default: yes).
    pub exclusive_end: bool,
    /// Exactly these ids, in this order, instead of a range.
    pub keys: Option<Vec<String>>,
    /// At most this many rows.
    pub limit: Option<usize>,
    /// Skip this many rows first.
    pub skip: usize,
    /// Newest id first.
    pub descending: bool,
}

/// A row of `_all_docs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllDocsRow {
    /// A document and its winning revision (deleted ones appear only when asked by key).
    Doc {
        /// The id.
        id: DocId,
        /// The winning revision.
        rev: Rev,
        /// Whether the winner is a tombstone.
        deleted: bool,
    },
    /// A key asked for that names no document.
    Missing(String),
}

/// Counters and sizes of a database (`GET /{db}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbInfo {
    /// The name.
    pub name: DbName,
    /// Live documents (expired ones count until swept).
    pub doc_count: u64,
    /// Deleted documents (tombstones).
    pub doc_del_count: u64,
    /// The sequence of the last change.
    pub update_seq: u64,
    /// Approximate bytes on disk (flushed data only).
    pub disk_size: u64,
    /// The database's `revs_limit`.
    pub revs_limit: u32,
    /// The body member holding expiry times, if the database expires sessions.
    pub expiry_field: Option<String>,
    /// This incarnation of the database (see [`Database::incarnation`]).
    pub incarnation: String,
}

/// A `_local` document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalDoc {
    /// Its id, without `_local/`.
    pub id: LocalId,
    /// Its revision number (rendered `0-N`).
    pub rev: u64,
    /// Its body (canonical JSON object without special members).
    pub body: Vec<u8>,
}

/// A handle on one database. Cheap to clone.
#[derive(Clone)]
pub struct Database {
    pub(crate) inner: Arc<Inner>,
    pub(crate) state: Arc<DbState>,
}

impl Database {
    pub(crate) fn new(inner: Arc<Inner>, state: Arc<DbState>) -> Database {
        Database { inner, state }
    }

    /// The database's name.
    pub fn name(&self) -> &DbName {
        &self.state.name
    }

    /// The sequence of the last committed change.
    pub fn update_seq(&self) -> u64 {
        self.state.stats().update_seq
    }

    /// Counters and sizes.
    pub fn info(&self) -> DbInfo {
        let stats = self.state.stats();
        let start = keys::db_start(self.state.id);
        let end = keys::db_end(self.state.id);
        let disk_size = DB_CFS
            .iter()
            .map(|cf| {
                self.inner
                    .db
                    .get_approximate_sizes_cf(self.inner.cf(cf), &[rocksdb::Range::new(&start, &end)])
                    .iter()
                    .sum::<u64>()
            })
            .sum();
        DbInfo {
            name: self.state.name.clone(),
            doc_count: stats.doc_count,
            doc_del_count: stats.doc_del_count,
            update_seq: stats.update_seq,
            disk_size,
            revs_limit: self.state.revs_limit(),
            expiry_field: self.state.expiry_field.clone(),
            incarnation: self.incarnation(),
        }
    }

    pub(crate) fn now(&self) -> u64 {
        self.inner.opts.clock.now()
    }

    /// This incarnation of the database: it changes when the database is
    /// deleted and created again under the same name (and differs between
    /// stores), so a peer holding a position in the old one can tell. Served as
    /// CouchDB's `instance_start_time`.
    pub fn incarnation(&self) -> String {
        use md5::{Digest, Md5};
        let mut h = Md5::new();
        h.update(self.inner.uuid.as_bytes());
        h.update(self.state.id.to_be_bytes());
        hex::encode(&h.finalize()[..8])
    }

    /// Whether the database has been deleted since this handle was taken.
    pub fn is_dropped(&self) -> bool {
        self.state.is_dropped()
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.state.is_dropped() {
            return Err(Error::DbNotFound {
                name: self.state.name.to_string(),
            });
        }
        Ok(())
    }

    /// Validates a body and reads its expiry (a tombstone never expires).
    fn leaf_data(&self, deleted: bool, body: &[u8]) -> Result<LeafData> {
        let field = self.state.expiry_field.as_deref().filter(|_| !deleted);
        let expires_at = check_body(body, field)?;
        Ok(LeafData { deleted, expires_at })
    }

    /// When a session with this body expires (unix seconds), by the database's
    /// expiry field; `None` if the database does not expire sessions or the body
    /// names no valid expiry (a stored body was validated when written).
    pub fn expiry_of(&self, body: &[u8]) -> Option<u64> {
        let field = self.state.expiry_field.as_ref()?;
        read_expiry(body, field).ok().flatten()
    }

    fn check_size(&self, body: &[u8]) -> Result<()> {
        let limit = self.inner.opts.max_document_size;
        if body.len() > limit {
            return Err(Error::DocumentTooLarge {
                size: body.len(),
                limit,
            });
        }
        Ok(())
    }

    /// Applies one interactive edit and returns the new revision once durable.
    pub async fn put(&self, edit: Edit) -> Result<Rev> {
        self.update(vec![edit]).await.pop().unwrap_or(Err(Error::Closed))
    }

    /// Applies interactive edits (each may fail alone, as in `_bulk_docs`).
    /// Returns once all of them are durable.
    pub async fn update(&self, edits: Vec<Edit>) -> Vec<Result<Rev>> {
        self.submit(
            edits,
            |e| {
                self.inner.space.check(e.deleted)?;
                self.check_size(&e.body)?;
                let leaf = self.leaf_data(e.deleted, &e.body)?;
                Ok(EditReq {
                    id: e.id,
                    parent: e.parent,
                    leaf,
                    body: e.body,
                })
            },
            |db, edits, reply| Command::Edit { db, edits, reply },
        )
        .await
    }

    /// Merges replicated revisions (`new_edits=false`). Idempotent; a revision
    /// that has already expired is not stored.
    pub async fn merge(&self, docs: Vec<Replicated>) -> Vec<Result<Rev>> {
        self.submit(
            docs,
            |d| {
                self.inner.space.check(d.deleted)?;
                self.check_size(&d.body)?;
                check_path(&d.path)?;
                let leaf = self.leaf_data(d.deleted, &d.body)?;
                Ok(MergeReq {
                    id: d.id,
                    path: d.path,
                    leaf,
                    body: d.body,
                })
            },
            |db, docs, reply| Command::Merge { db, docs, reply },
        )
        .await
    }

    /// Validates each item here (off the writer thread), sends the valid ones to
    /// the writer as one command, and answers in the original order.
    async fn submit<I, R>(
        &self,
        items: Vec<I>,
        prepare: impl Fn(I) -> Result<R>,
        command: impl FnOnce(Arc<DbState>, Vec<R>, tokio::sync::oneshot::Sender<Vec<Result<Rev>>>) -> Command,
    ) -> Vec<Result<Rev>> {
        let mut results: Vec<Option<Result<Rev>>> = Vec::with_capacity(items.len());
        let mut reqs = Vec::with_capacity(items.len());
        for item in items {
            match prepare(item) {
                Ok(req) => {
                    results.push(None);
                    reqs.push(req);
                }
                Err(err) => results.push(Some(Err(err))),
            }
        }
        let db = self.state.clone();
        let answers = self.inner.call(|reply| command(db, reqs, reply)).await;
        merge_answers(results, answers)
    }

    /// [`Database::merge`] for replication writers, which report refusals only:
    /// `Err` when nothing of the batch is durable (the engine failed or the store
    /// is closed — retry it all), otherwise the revisions refused one by one.
    pub async fn merge_reporting(&self, docs: Vec<Replicated>) -> Result<Vec<MergeFailure>> {
        let keys: Vec<(DocId, Option<Rev>)> = docs
            .iter()
            .map(|d| (d.id.clone(), d.path.first().cloned()))
            .collect();
        let mut failures = Vec::new();
        for ((id, rev), result) in keys.into_iter().zip(self.merge(docs).await) {
            match result {
                Ok(_) => {}
                // The whole batch failed, not one document: the caller must not
                // count it as refusals and go on (a dropped database stays dropped).
                // A full disk refuses the batch too: it is retried, not skipped.
                Err(
                    e @ (Error::Closed
                    | Error::Engine(_)
                    | Error::DbNotFound { .. }
                    | Error::InsufficientStorage { .. }),
                ) => return Err(e),
                Err(error) => failures.push(MergeFailure { id, rev, error }),
            }
        }
        Ok(failures)
    }

    /// Changes the database's `revs_limit` (applies to new writes and compaction).
    pub async fn set_revs_limit(&self, limit: u32) -> Result<()> {
        if limit == 0 {
            return Err(Error::InvalidRevisions {
                reason: "revs_limit must be at least 1".into(),
            });
        }
        let db = self.state.clone();
        self.inner
            .call(|reply| Command::SetRevsLimit { db, limit, reply })
            .await?
    }

    pub(crate) fn load_meta(&self, id: &str) -> Result<Option<DocMeta>> {
        match self
            .inner
            .db
            .get_pinned_cf(self.inner.cf(CF_DOCS), keys::doc(self.state.id, id))?
        {
            None => Ok(None),
            Some(bytes) => Ok(Some(records::decode_doc(&bytes)?)),
        }
    }

    fn load_meta_in(&self, snap: &Snapshot<'_>, id: &str) -> Result<Option<DocMeta>> {
        match snap.get_pinned_cf(self.inner.cf(CF_DOCS), keys::doc(self.state.id, id))? {
            None => Ok(None),
            Some(bytes) => Ok(Some(records::decode_doc(&bytes)?)),
        }
    }

    fn load_body(&self, id: &str, rev: &Rev) -> Result<Option<Vec<u8>>> {
        let key = keys::body(self.state.id, id, rev.generation(), rev.hash());
        let cf = self.inner.cf(CF_BODIES);
        Ok(self.inner.db.get_cf_opt(cf, key, &self.inner.point_read)?)
    }

    fn load_body_in(&self, snap: &Snapshot<'_>, id: &str, rev: &Rev) -> Result<Option<Vec<u8>>> {
        let key = keys::body(self.state.id, id, rev.generation(), rev.hash());
        Ok(snap.get_cf(self.inner.cf(CF_BODIES), key)?)
    }

    fn not_found(id: &DocId, reason: &'static str) -> Error {
        Error::NotFound {
            id: id.to_string(),
            reason,
        }
    }

    /// Reads the winning revision (or `opts.rev`). Deleted winners and expired
    /// sessions read as not found. The tree and the body come from one snapshot,
    /// so a concurrent update cannot make a present document read as missing.
    pub fn get(&self, id: &DocId, opts: &ReadOptions) -> Result<Doc> {
        self.check_open()?;
        if opts.rev.is_none() && !opts.conflicts && !opts.revs {
            return self.get_winner(id);
        }
        let snap = self.inner.db.snapshot();
        let meta = self
            .load_meta_in(&snap, id.as_str())?
            .ok_or_else(|| Self::not_found(id, "missing"))?;
        let winner = meta.tree.winner().ok_or_else(|| Self::not_found(id, "missing"))?;
        let now = self.now();
        if is_expired(winner.expires_at, winner.deleted, now) {
            return Err(Self::not_found(id, "expired"));
        }
        let (rev, deleted) = match &opts.rev {
            Some(rev) => {
                let node = meta
                    .tree
                    .node(rev)
                    .ok_or_else(|| Self::not_found(id, "missing"))?;
                if is_expired(node.expires_at, node.deleted, now) {
                    return Err(Self::not_found(id, "expired"));
                }
                (rev.clone(), node.deleted)
            }
            None if winner.deleted => return Err(Self::not_found(id, "deleted")),
            None => (winner.rev.clone(), false),
        };
        let body = self
            .load_body_in(&snap, id.as_str(), &rev)?
            .ok_or_else(|| Self::not_found(id, "missing"))?;
        Ok(Doc {
            id: id.clone(),
            deleted,
            body,
            conflicts: opts.conflicts.then(|| meta.tree.conflicts()),
            deleted_conflicts: opts.conflicts.then(|| meta.tree.deleted_conflicts()),
            revisions: opts.revs.then(|| meta.tree.ancestry(&rev)),
            rev,
        })
    }

    /// The hot path: header only, then the body.
    fn get_winner(&self, id: &DocId) -> Result<Doc> {
        for _ in 0..3 {
            let (cf, key) = (self.inner.cf(CF_DOCS), keys::doc(self.state.id, id.as_str()));
            let Some(bytes) = self.inner.db.get_pinned_cf_opt(cf, key, &self.inner.point_read)? else {
                return Err(Self::not_found(id, "missing"));
            };
            let h = records::decode_doc_header(&bytes)?;
            if h.deleted {
                return Err(Self::not_found(id, "deleted"));
            }
            if is_expired(h.expires_at, h.deleted, self.now()) {
                return Err(Self::not_found(id, "expired"));
            }
            // The body can vanish between the two reads if a purge or compaction
            // commits in between; then read again.
            if let Some(body) = self.load_body(id.as_str(), &h.winner)? {
                return Ok(Doc {
                    id: id.clone(),
                    rev: h.winner,
                    deleted: false,
                    body,
                    conflicts: None,
                    deleted_conflicts: None,
                    revisions: None,
                });
            }
        }
        Err(Self::not_found(id, "missing"))
    }

    /// Reads several revisions of a document, with their history when `revs`.
    /// With `latest`, a revision that is not a leaf is replaced by its leaves.
    ///
    /// An expired revision is answered with a *stub*: its place in the tree and
    /// a body holding only the expiry member, never the session's data.
    /// Replication needs it so that every node ends with the same tree, whenever
    /// the revisions arrive. (`OpenRevs::All` of an expired session is not found.)
    pub fn open_revs(&self, id: &DocId, which: &OpenRevs, latest: bool, revs: bool) -> Result<Vec<OpenRev>> {
        self.read_revs(id, which, latest, revs.then_some(&[]))
    }

    /// Revisions to send by replication: `revs` (or the newer leaves that replaced
    /// them), each with its history reaching down to one of `known` when this tree
    /// still remembers the way there, through stemmed revisions too. `known` are
    /// the receiver's leaves that may be ancestors (its `_revs_diff` says which).
    ///
    /// Without that, a receiver that last saw a session more than `revs_limit`
    /// edits ago cannot join the new history to its old leaf, keeps that leaf as a
    /// live conflict, and the live conflict outranks a later tombstone: a deleted
    /// session would be served again.
    pub fn replication_revs(&self, id: &DocId, revs: Vec<Rev>, known: &[Rev]) -> Result<Vec<OpenRev>> {
        self.read_revs(id, &OpenRevs::Revs(revs), true, Some(known))
    }

    /// `open_revs`; `history` asks for `_revisions`, joined to those revisions if it can.
    fn read_revs(
        &self,
        id: &DocId,
        which: &OpenRevs,
        latest: bool,
        history: Option<&[Rev]>,
    ) -> Result<Vec<OpenRev>> {
        self.check_open()?;
        let snap = self.inner.db.snapshot();
        let meta = self.load_meta_in(&snap, id.as_str())?;
        let now = self.now();
        let tree = meta.as_ref().map(|m| &m.tree);
        let doc_expired = tree
            .and_then(|t| t.winner())
            .is_some_and(|w| is_expired(w.expires_at, w.deleted, now));
        let wanted: Vec<Rev> = match (which, tree) {
            (OpenRevs::All, _) if doc_expired => return Err(Self::not_found(id, "expired")),
            (OpenRevs::All, Some(t)) => t.leaves_by_rank().into_iter().map(|l| l.rev).collect(),
            (OpenRevs::All, None) => return Err(Self::not_found(id, "missing")),
            (OpenRevs::Revs(list), _) => list.clone(),
        };
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for rev in wanted {
            let Some(tree) = tree else {
                out.push(OpenRev::Missing(rev));
                continue;
            };
            let targets: Vec<Rev> = if latest && tree.contains(&rev) && !tree.is_leaf(&rev) {
                tree.leaves()
                    .into_iter()
                    .filter(|l| tree.ancestry(&l.rev).contains(&rev))
                    .map(|l| l.rev)
                    .collect()
            } else {
                vec![rev]
            };
            for rev in targets {
                if !seen.insert(rev.clone()) {
                    continue;
                }
                let Some(node) = tree.node(&rev) else {
                    out.push(OpenRev::Missing(rev));
                    continue;
                };
                let body = if is_expired(node.expires_at, node.deleted, now) {
                    Some(self.stub_body(node.deleted, node.expires_at))
                } else {
                    self.load_body_in(&snap, id.as_str(), &rev)?
                };
                match body {
                    Some(body) => out.push(OpenRev::Ok(Doc {
                        id: id.clone(),
                        deleted: node.deleted,
                        body,
                        conflicts: None,
                        deleted_conflicts: None,
                        revisions: history.map(|known| tree.ancestry_joining(&rev, known)),
                        rev,
                    })),
                    None => out.push(OpenRev::Missing(rev)),
                }
            }
        }
        Ok(out)
    }

    /// The body sent for a revision whose session has expired: only the expiry
    /// member, so the receiver files the revision as expired too.
    fn stub_body(&self, deleted: bool, expires_at: Option<u64>) -> Vec<u8> {
        match (&self.state.expiry_field, expires_at, deleted) {
            (Some(field), Some(at), false) => {
                let mut out = b"{".to_vec();
                // Serialising a &str cannot fail.
                let _ = serde_json::to_writer(&mut out, field);
                out.extend_from_slice(format!(":{at}}}").as_bytes());
                out
            }
            _ => b"{}".to_vec(),
        }
    }

    /// Which of `revs` this database lacks (`_revs_diff` for one document). A
    /// revision the tree holds is never missing, expired or not: resending it
    /// could only make nodes disagree.
    pub fn revs_diff(&self, id: &DocId, revs: &[Rev]) -> Result<RevsDiff> {
        self.check_open()?;
        let meta = self.load_meta(id.as_str())?;
        let (missing, possible_ancestors) = match &meta {
            Some(m) => m.tree.revs_diff(revs, self.state.revs_limit()),
            None => {
                let mut all = revs.to_vec();
                all.sort();
                all.dedup();
                (all, Vec::new())
            }
        };
        Ok(RevsDiff {
            missing,
            possible_ancestors,
        })
    }

    /// Documents in id order; deleted and expired ones are skipped, except that a
    /// deleted document asked for by key is reported as deleted.
    pub fn all_docs(&self, q: &AllDocsQuery) -> Result<Vec<AllDocsRow>> {
        self.check_open()?;
        let now = self.now();
        let limit = q.limit.unwrap_or(usize::MAX);
        let mut rows = Vec::new();
        if let Some(keys) = &q.keys {
            for key in keys.iter().skip(q.skip) {
                if rows.len() >= limit {
                    break;
                }
                let header = match self
                    .inner
                    .db
                    .get_pinned_cf(self.inner.cf(CF_DOCS), keys::doc(self.state.id, key))?
                {
                    Some(bytes) => Some(records::decode_doc_header(&bytes)?),
                    None => None,
                };
                match (header, DocId::new(key)) {
                    (Some(h), Ok(id)) if !is_expired(h.expires_at, h.deleted, now) => {
                        rows.push(AllDocsRow::Doc {
                            id,
                            rev: h.winner,
                            deleted: h.deleted,
                        })
                    }
                    _ => rows.push(AllDocsRow::Missing(key.clone())),
                }
            }
            return Ok(rows);
        }
        let db = self.state.id;
        let mut ro = RocksReadOptions::default();
        ro.set_iterate_lower_bound(keys::db_start(db).to_vec());
        ro.set_iterate_upper_bound(keys::db_end(db).to_vec());
        let (first, direction) = match (q.descending, &q.start_key) {
            (false, Some(k)) => (keys::doc(db, k), Direction::Forward),
            (false, None) => (keys::db_start(db).to_vec(), Direction::Forward),
            (true, Some(k)) => (keys::doc(db, k), Direction::Reverse),
            (true, None) => (keys::db_end(db).to_vec(), Direction::Reverse),
        };
        let iter =
            self.inner
                .db
                .iterator_cf_opt(self.inner.cf(CF_DOCS), ro, IteratorMode::From(&first, direction));
        let mut skipped = 0;
        for item in iter {
            let (key, value) = item?;
            let Some(id) = keys::id_of_doc_key(&key) else {
                continue;
            };
            if let Some(end) = &q.end_key {
                let past = if q.descending {
                    id < end.as_str() || (q.exclusive_end && id == end.as_str())
                } else {
                    id > end.as_str() || (q.exclusive_end && id == end.as_str())
                };
                if past {
                    break;
                }
            }
            let h = records::decode_doc_header(&value)?;
            if h.deleted || is_expired(h.expires_at, h.deleted, now) {
                continue;
            }
            if skipped < q.skip {
                skipped += 1;
                continue;
            }
            if rows.len() >= limit {
                break;
            }
            if let Ok(id) = DocId::new(id) {
                rows.push(AllDocsRow::Doc {
                    id,
                    rev: h.winner,
                    deleted: false,
                });
            }
        }
        Ok(rows)
    }

    /// Reads a `_local` document.
    pub fn get_local(&self, id: &LocalId) -> Result<LocalDoc> {
        self.check_open()?;
        let key = keys::doc(self.state.id, id.as_str());
        let bytes = self
            .inner
            .db
            .get_pinned_cf(self.inner.cf(CF_LOCAL), key)?
            .ok_or_else(|| Error::NotFound {
                id: format!("_local/{}", id.as_str()),
                reason: "missing",
            })?;
        let record: LocalRecord = records::decode_record(&bytes, "local document")?;
        Ok(LocalDoc {
            id: id.clone(),
            rev: record.rev,
            body: record.body,
        })
    }

    /// Writes a `_local` document; `rev` must be its current revision number
    /// (0 when creating). Returns the new revision number.
    pub async fn put_local(&self, id: &LocalId, rev: u64, body: Vec<u8>) -> Result<u64> {
        self.inner.space.check(false)?;
        self.check_size(&body)?;
        let (db, id) = (self.state.clone(), id.clone());
        self.inner
            .call(|reply| Command::PutLocal {
                db,
                id,
                rev,
                body: Some(body),
                reply,
            })
            .await?
    }

    /// Deletes a `_local` document at revision `rev`.
    pub async fn delete_local(&self, id: &LocalId, rev: u64) -> Result<()> {
        let (db, id) = (self.state.clone(), id.clone());
        self.inner
            .call(|reply| Command::PutLocal {
                db,
                id,
                rev,
                body: None,
                reply,
            })
            .await?
            .map(|_| ())
    }
}

/// Puts the writer's answers into the places left for them by validation.
fn merge_answers(
    mut results: Vec<Option<Result<Rev>>>,
    answers: Result<Vec<Result<Rev>>>,
) -> Vec<Result<Rev>> {
    let mut answers = match answers {
        Ok(a) => a.into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    results
        .iter_mut()
        .map(|slot| match slot.take() {
            Some(r) => r,
            None => answers.next().unwrap_or(Err(Error::Closed)),
        })
        .collect()
}
