//! Sessionfleet's protobuf contracts and the tonic/prost code generated from them.
//!
//! Owns the wire format of the `Sessions` service (edge-client reads and writes,
//! and the `Watch` invalidation stream) and the `Replication` service (CouchDB's
//! replication protocol between fleet nodes). It must not know anything else:
//! no storage, no HTTP, no topology.
//!
//! Layout: `proto/sessions.proto`, `proto/replication.proto`; generated code in [`v1`].
#![deny(missing_docs)]

/// Generated code for package `sessionfleet.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("sessionfleet.v1");
}
