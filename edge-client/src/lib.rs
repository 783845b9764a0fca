//! The library every app server links to read sessions.
//!
//! Reads go to a small in-process cache bounded in bytes, then to the local
//! spoke over gRPC with a tight deadline, then along the datacentre's failover
//! chain (the hub, then other datacentres). A miss at the local spoke is
//! checked further along the chain before answering "not found" (the user may
//! have just logged in elsewhere), and a not-found answer is cached briefly.
//! Concurrent misses for one key make one upstream call. Targets that keep
//! failing are skipped without paying their deadline and probed in the
//! background until they recover; a slow local spoke can be hedged. A `Watch`
//! stream from the local spoke evicts changed sessions; while it is down, no
//! entry older than `max_staleness` is served.
//!
//! It knows only the gRPC contract (`proto`) and the topology format — nothing
//! of the servers' insides.
//!
//! Layout: [`builder`] (configuration), `client` (the read and write paths),
//! `health` (per-target circuit breakers), `watch` (invalidation), `cache`
//! (entries and their weight), `hedge` (the hedging budget).
//!
//! ```no_run
//! # async fn demo() -> Result<(), edge_client::ClientError> {
//! use std::time::Duration;
//! let client = edge_client::Client::builder()
//!     .local("eu-west-1", "http://127.0.0.1:6985")
//!     .fallback("london", "http://127.0.0.1:6984")
//!     .deadline(Duration::from_millis(50))
//!     .build()?;
//! if let Some(session) = client.get("sessions", "user-42").await? {
//!     println!("{} bytes at {}", session.body.len(), session.rev);
//! }
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod builder;
mod cache;
mod client;
mod health;
mod hedge;
mod watch;

pub use builder::ClientBuilder;
pub use client::{Client, ClientError, Served, Session, Source};
