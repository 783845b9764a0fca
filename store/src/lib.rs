//! Sessionfleet's embedded MVCC document store, on RocksDB.
//!
//! The store owns databases of JSON documents with CouchDB's semantics:
//! revision trees with deterministic revision ids and winners, conflicts kept,
//! tombstones, `new_edits=false` merges for replication, a per-database changes
//! sequence with commit subscriptions, `_local` documents, session expiry and
//! online compaction. A write is acknowledged only once its WAL is synced; the
//! single writer thread group-commits concurrent writes under one sync.
//!
//! It must not know HTTP, gRPC or the fleet's topology, and no RocksDB type
//! appears in its public API (save the hidden benchmark hook).
//!
//! Layout:
//! - [`store`]: opening, closing, the catalogue of databases;
//! - `database`: the per-database handle (reads; writes via the writer);
//! - `writer`: the group-commit writer thread, the only mutator;
//! - `rev`, `rev_tree`: revision ids and CouchDB's tree rules (pure);
//! - `document`: JSON in (special members) and out (rendering);
//! - `changes`: the changes feed and subscriptions;
//! - `sweeper`, `compaction`: background reclamation;
//! - `space`: the free-space reserve that refuses writes before the disk is full;
//! - `keys`, `records`, `engine`: the on-disk layout (private).
#![deny(missing_docs)]

mod changes;
mod compaction;
mod database;
mod db_state;
mod document;
mod engine;
mod error;
mod keys;
mod names;
mod options;
mod records;
mod rev;
mod rev_tree;
mod space;
pub mod store;
mod sweeper;
mod writer;

pub use changes::{Change, ChangesPage, ChangesQuery, Subscription};
pub use compaction::CompactionReport;
pub use database::{
    AllDocsQuery, AllDocsRow, Database, DbInfo, Edit, LocalDoc, MergeFailure, OpenRev, OpenRevs, ReadOptions,
    Replicated, RevsDiff,
};
pub use document::{Doc, DocInput, LocalInput};
#[doc(hidden)]
pub use engine::engine_options;
pub use error::{Error, Result};
pub use names::{DbName, DocId, LocalId, MAX_DOC_ID};
pub use options::{Clock, DbOptions, Durability, StoreOptions};
pub use rev::{Rev, MAX_GENERATION};
pub use rev_tree::{EditError, EditOutcome, Leaf, LeafData, RevNode, RevTree};
pub use store::Store;
