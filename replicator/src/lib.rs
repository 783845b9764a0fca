//! CouchDB's replication algorithm, over any [`Peer`]: the local store, a fleet
//! node over gRPC, or any CouchDB-compatible server over HTTP.
//!
//! One replication: derive its id from (source, target, database); read the
//! checkpoints `_local/<id>` on both ends and start from the newest session they
//! share; then repeat — read changes, ask the target which revisions it lacks,
//! fetch only those with their ancestry, write them with `new_edits=false`
//! (durable when acknowledged), and only then checkpoint on both ends. Errors are
//! retried forever with jittered exponential backoff; a continuous replication
//! waits for new changes instead of ending.
//!
//! It must not know HTTP *serving* (the `server` crate does that) nor topology.
//!
//! Layout: [`peer`] (the trait and shared types), `local`, `grpc`, `http`
//! (the three peers), `checkpoint` (ids and histories), [`backoff`] (pure),
//! [`engine`] (the loop), [`status`] (progress and metrics), [`link`] (a role's
//! continuous replications with one remote node).

pub mod backoff;
mod checkpoint;
pub mod engine;
mod grpc;
mod http;
pub mod link;
mod local;
pub mod peer;
pub mod status;

pub use checkpoint::replication_id;
pub use engine::{Replication, ReplicationSpec};
pub use grpc::GrpcPeer;
pub use http::{redact_url, HttpPeer};
pub use local::LocalPeer;
pub use peer::{Fetched, Missing, Peer, PeerError, Seq};
pub use status::{ReplicationState, ReplicationStatus};
/// The connection type [`GrpcPeer::channel`] makes.
pub use tonic::transport::Channel;
