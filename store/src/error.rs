//! The store's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in the store, with what the caller needs to say why.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A database name breaks CouchDB's rule `^[a-z][a-z0-9_$()+/-]*$`.
    #[error("invalid database name {name:?}: {reason}")]
    InvalidDbName {
        /// The offending name (truncated).
        name: String,
        /// Which part of the rule it breaks.
        reason: &'static str,
    },
    /// A document id is empty, too long, or uses a reserved `_` prefix.
    #[error("invalid document id {id:?}: {reason}")]
    InvalidDocId {
        /// The offending id (truncated).
        id: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A revision id is not of the form `N-hash`.
    #[error("invalid revision {rev:?}: {reason}")]
    InvalidRev {
        /// The offending revision (truncated).
        rev: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A `_revisions` history is malformed or inconsistent with `_rev`.
    #[error("invalid revision history: {reason}")]
    InvalidRevisions {
        /// What is wrong with it.
        reason: String,
    },
    /// The document body is not a JSON object, or a special member is wrong.
    #[error("invalid document: {reason}")]
    InvalidDocument {
        /// What is wrong with it.
        reason: String,
    },
    /// The document is larger than the store accepts.
    #[error("document of {size} bytes exceeds the limit of {limit} bytes")]
    DocumentTooLarge {
        /// The document's size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The database does not exist.
    #[error("database {name:?} does not exist")]
    DbNotFound {
        /// The database asked for.
        name: String,
    },
    /// A changes read asked for a position the database has not reached: it
    /// came from another incarnation of the database (deleted and recreated) or
    /// from another store.
    #[error("since {since} is ahead of the database's sequence {update_seq} (was the database deleted and recreated?)")]
    SinceAhead {
        /// The position asked for.
        since: u64,
        /// The database's committed sequence.
        update_seq: u64,
    },
    /// The database already exists.
    #[error("database {name:?} already exists")]
    DbExists {
        /// The database asked for.
        name: String,
    },
    /// The document (or the revision asked for) does not exist, or is deleted or expired.
    #[error("document {id:?} not found ({reason})")]
    NotFound {
        /// The document asked for.
        id: String,
        /// `missing` or `deleted`, as CouchDB says.
        reason: &'static str,
    },
    /// The edit's `_rev` is missing, stale or not a leaf.
    #[error("document update conflict on {id:?}")]
    Conflict {
        /// The document edited.
        id: String,
    },
    /// Another process holds the data directory.
    #[error("data directory {path} is in use by another process")]
    Locked {
        /// The data directory.
        path: PathBuf,
    },
    /// The data directory was written by a newer, unknown format.
    #[error("data directory {path} has format version {found}; this build reads up to {supported}")]
    UnsupportedFormat {
        /// The data directory.
        path: PathBuf,
        /// The version found on disk.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
    /// Stored metadata could not be decoded: the data directory is damaged.
    #[error("corrupt record in {what}: {reason}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// RocksDB failed (I/O error, disk full, ...). Nothing of the request was applied.
    #[error("storage engine error: {0}")]
    Engine(String),
    /// The store is shutting down and takes no more writes.
    #[error("the store is closed")]
    Closed,
    /// The data directory's disk is (nearly) full: the write was refused before it
    /// reached the engine, and writes resume by themselves once space returns.
    #[error(
        "the node's disk is nearly full: {} MiB free, writes need {} MiB; they resume when space returns",
        free >> 20,
        reserve >> 20
    )]
    InsufficientStorage {
        /// Free bytes at the last sample.
        free: u64,
        /// Free bytes this write needs.
        reserve: u64,
    },
}

impl From<rocksdb::Error> for Error {
    fn from(e: rocksdb::Error) -> Error {
        let text = e.into_string();
        // Past the reserve anyway (a burst between samples): say what it is.
        if text.contains("No space left on device") {
            return Error::InsufficientStorage { free: 0, reserve: 0 };
        }
        Error::Engine(text)
    }
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
