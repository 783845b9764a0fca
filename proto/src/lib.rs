//! Sessionfleet's wire contract: the protobuf services and how a link is secured.
//!
//! Owns the wire format of the `Sessions` service (edge-client reads and writes,
//! and the `Watch` invalidation stream) and the `Replication` service (CouchDB's
//! replication protocol between fleet nodes), and, in [`tls`], how a link is secured:
//! certificate identities, TLS material and rustls configs, ALPN, rotation, and the
//! TLS transport for tonic clients. The edge-client depends only on this crate and
//! topology, which is why client TLS lives here.
//!
//! It must not know anything else: no storage, no HTTP routing, no topology, and no
//! policy about what an identity may do.
//!
//! Layout: `proto/sessions.proto`, `proto/replication.proto`; generated code in [`v1`];
//! TLS in [`tls`].
#![deny(missing_docs)]

pub mod tls;

/// Generated code for package `sessionfleet.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("sessionfleet.v1");
}
