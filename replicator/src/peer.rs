//! What replication needs from either end.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use store::{DocId, Replicated, Rev};

/// A position in a source's changes feed. Ours are integers; CouchDB 3's are
/// opaque strings; both are echoed back as received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Seq {
    /// An integer sequence (Sessionfleet, CouchDB 1.x, PouchDB).
    Num(u64),
    /// An opaque sequence (CouchDB 2+).
    Opaque(String),
}

impl Seq {
    /// The start of every feed.
    pub const ZERO: Seq = Seq::Num(0);

    /// The integer value, if it has one.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Seq::Num(n) => Some(*n),
            Seq::Opaque(s) => s.split('-').next().and_then(|n| n.parse().ok()),
        }
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seq::Num(n) => write!(f, "{n}"),
            Seq::Opaque(s) => f.write_str(s),
        }
    }
}

/// Identity and position of one end's database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// A stable id of the server (its uuid), part of the replication id.
    pub uuid: String,
    /// The database's current sequence.
    pub update_seq: Seq,
    /// This incarnation of the database (`instance_start_time`), if the peer
    /// tells: it changes when the database is deleted and created again.
    pub incarnation: Option<String>,
}

/// One document's latest change at the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeRow {
    /// Its sequence.
    pub seq: Seq,
    /// The document.
    pub id: DocId,
    /// Every leaf revision.
    pub revs: Vec<Rev>,
    /// Commit time at the source (unix ms), when the source says.
    pub committed_ms: Option<u64>,
}

/// A batch of changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangesBatch {
    /// The changes, in sequence order.
    pub rows: Vec<ChangeRow>,
    /// Where the next read starts.
    pub last_seq: Seq,
    /// How far behind the reader is (source sequence minus `last_seq`), if known.
    pub pending: Option<u64>,
}

/// A write the target refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteFailure {
    /// The document.
    pub id: String,
    /// The revision.
    pub rev: String,
    /// The target's error and reason.
    pub error: String,
}

/// Revisions of one document a target lacks, as its `_revs_diff` reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    /// The document.
    pub id: DocId,
    /// The revisions the target lacks.
    pub revs: Vec<Rev>,
    /// Leaves the target holds that may be their ancestors (`possible_ancestors`).
    /// The source sends each revision's history down to one of them when it can,
    /// so that an old leaf is joined to the new history instead of staying behind
    /// as a live conflict (which would outrank a later tombstone).
    pub ancestors: Vec<Rev>,
}

impl Missing {
    /// Revisions asked about with no ancestors known (a peer that reports none).
    pub fn revs(id: DocId, revs: Vec<Rev>) -> Missing {
        Missing {
            id,
            revs,
            ancestors: Vec::new(),
        }
    }
}

/// What a fetch brought: the revisions, and those the source has but could not
/// give in a form the target can store (counted as write failures, as CouchDB
/// does, instead of failing the batch).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fetched {
    /// The revisions, with bodies and ancestry.
    pub docs: Vec<Replicated>,
    /// Revisions that could not be read.
    pub failures: Vec<WriteFailure>,
}

/// A `_local` checkpoint document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointDoc {
    /// Its `_local` revision (`0-N`), to update it.
    pub rev: String,
    /// Its body.
    pub body: serde_json::Value,
}

/// Why a peer call failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The peer could not be reached or the connection broke: retry.
    #[error("{peer} unreachable: {reason}")]
    Unreachable {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// The peer answered with an error.
    #[error("{peer} answered {status}: {reason}")]
    Refused {
        /// The peer.
        peer: String,
        /// Its status (HTTP code or gRPC code).
        status: String,
        /// Its reason.
        reason: String,
    },
    /// A checkpoint write found another revision than the one read (someone
    /// else wrote it, or the database was recreated): the session must start
    /// over from what both ends' checkpoints say now.
    #[error("{peer}: checkpoint conflict: {reason}")]
    Conflict {
        /// The peer.
        peer: String,
        /// Its reason.
        reason: String,
    },
    /// The peer refused a request as too large (HTTP 413, gRPC message
    /// limit): split it.
    #[error("{peer}: request too large: {reason}")]
    TooLarge {
        /// The peer.
        peer: String,
        /// Its reason.
        reason: String,
    },
    /// One end's database is not the incarnation the session started with.
    #[error("{peer}: the database was deleted and created again")]
    Recreated {
        /// The peer.
        peer: String,
    },
    /// The peer answered something we cannot read.
    #[error("{peer} sent something unreadable: {reason}")]
    Protocol {
        /// The peer.
        peer: String,
        /// What was wrong.
        reason: String,
    },
    /// The local store failed.
    #[error("local store: {0}")]
    Store(#[from] store::Error),
}

impl PeerError {
    /// Whether the peer refused our credentials (HTTP 401/403, gRPC
    /// `UNAUTHENTICATED`/`PERMISSION_DENIED`): retrying cannot help until they change.
    pub fn is_auth_refusal(&self) -> bool {
        matches!(self, PeerError::Refused { status, .. }
            if status.starts_with("401 ") || status.starts_with("403 ")
                || status == "Unauthenticated" || status == "PermissionDenied")
    }
}

/// One end of a replication.
#[async_trait]
pub trait Peer: Send + Sync {
    /// A name for logs and status, e.g. `grpc://127.0.0.1:6984/sessions`.
    fn describe(&self) -> String;

    /// The database's name on its server (part of the replication id).
    fn db_name(&self) -> String;

    /// The server's identity and the database's sequence; `create` makes the
    /// database if it does not exist (a target of a push).
    async fn info(&self, create: bool) -> Result<PeerInfo, PeerError>;

    /// Up to `limit` changes after `since`. With `wait`, an empty answer is
    /// given only after waiting that long for a change.
    async fn changes(
        &self,
        since: &Seq,
        limit: usize,
        wait: Option<Duration>,
    ) -> Result<ChangesBatch, PeerError>;

    /// Which of these revisions the peer lacks (only documents lacking some).
    async fn revs_diff(&self, revs: Vec<(DocId, Vec<Rev>)>) -> Result<Vec<Missing>, PeerError>;

    /// These revisions with bodies and ancestry (newer leaves replace
    /// revisions that are no longer leaves), the ancestry reaching down to one
    /// of the target's possible ancestors where this peer can.
    async fn fetch(&self, wanted: Vec<Missing>) -> Result<Fetched, PeerError>;

    /// Stores revisions as they are; returns once they are durable.
    async fn write(&self, docs: Vec<Replicated>) -> Result<Vec<WriteFailure>, PeerError>;

    /// Reads `_local/<id>`.
    async fn get_checkpoint(&self, id: &str) -> Result<Option<CheckpointDoc>, PeerError>;

    /// Writes `_local/<id>` over revision `rev` (None to create); returns the new revision.
    async fn put_checkpoint(
        &self,
        id: &str,
        rev: Option<&str>,
        body: &serde_json::Value,
    ) -> Result<String, PeerError>;
}
