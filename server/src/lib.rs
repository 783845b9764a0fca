//! Serves a Sessionfleet [`store::Store`] over a CouchDB-compatible HTTP API
//! (hyper) and the gRPC `Sessions` API (tonic), with input bounds and metrics.
//!
//! It must not know RocksDB keys (it only calls the store's API) nor the syntax
//! of topology files (roles hand it a [`ServerConfig`]).
//!
//! Layout:
//! - [`config`]: listen addresses and input bounds;
//! - [`auth`]: credentials to principals, and the roles endpoints need (the
//!   secrets, tokens and roles themselves are the `security` crate's);
//! - [`node`]: starting and stopping a serving node;
//! - `http`: the CouchDB API — `router` parses a request into an `Endpoint`,
//!   then one module per resource handles it (`server_info`, `db`, `doc`,
//!   `bulk`, `changes`, `local`); `error` maps errors to CouchDB bodies;
//! - `grpc`: the `Sessions` service and the error-to-`Status` mapping;
//! - [`fleet`]: the hub's view of the spokes, behind `/_fleet`;
//! - `replications`: `_replicate` and `_replicator` jobs (the engine is the
//!   `replicator` crate's) and their `_active_tasks` progress;
//! - [`revocation`]: the priority lane that carries revocations ahead of bulk
//!   replication, and who has acknowledged them;
//! - [`transport`]: plaintext or TLS connections and the [`transport::Peer`]
//!   (address, certificate identity) handlers see;
//! - `metrics`: the Prometheus recorder behind `GET /_metrics`;
//! - `fuzzing`: the parsers behind the listeners, for the fuzz targets in `fuzz/`.

mod admission;
pub mod auth;
pub mod config;
pub mod fleet;
#[doc(hidden)]
pub mod fuzzing;
mod grpc;
mod http;
mod metrics;
pub mod node;
mod replications;
pub mod revocation;
pub mod transport;

pub use auth::Authenticator;
pub use config::{Limits, ServerConfig};
pub use node::{Node, NodeHandle};
