//! The library every app server links to read sessions.
//!
//! Reads go to a small in-process cache bounded in bytes, then to the local
//! spoke over gRPC, then along the datacentre's failover chain (the hub, then
//! other datacentres), all within one read budget. A miss at the local spoke is
//! checked further along the chain before answering "not found" (the user may
//! have just logged in elsewhere). Concurrent misses for one key make one
//! upstream call. Targets that keep failing are skipped without paying their
//! deadline and probed in the background until they recover; a slow local
//! spoke can be hedged. A `Watch` stream from the local spoke evicts changed
//! sessions and vouches for what the cache holds.
//!
//! # When an entry may be served (the rule)
//!
//! An answer — cached or just fetched — is served only if **both** hold:
//!
//! 1. **It is not past the session's expiry** ([`Session::expires_at`], this
//!    host's clock), and **no delete this client has seen** supersedes it: its
//!    own deletes, and those its invalidation stream reported, are remembered
//!    for `delete_memory`; a copy of the deleted revision or older, read from
//!    any target, is answered [`ClientError::Deleted`]. A "deleted" answer from
//!    any target asked wins over a copy found elsewhere.
//! 2. **One of:**
//!    - *vouched*: it was read from the store the local invalidation stream
//!      follows, at a sequence (`GetResponse.update_seq`) that stream's
//!      gap-free history covers, and the stream is connected, caught up and was
//!      heard from within `watch_silence`. Any later change would have evicted
//!      it; a change the stream saw while the read was in flight keeps it out
//!      of the cache. A stream that comes back from another store, or from the
//!      same database deleted and created again (`WatchStart.incarnation`),
//!      vouches for nothing cached before: those entries are dropped.
//!    - *young*: it was fetched (the read was sent) less than `max_staleness`
//!      ago. This covers everything read from another store (a fallback, a
//!      hedge, a confirmation) and everything while the stream is down.
//!    - *stale-if-error*: it was fetched less than `max_staleness +
//!      stale_if_error` ago, and a refetch just found **every** target
//!      unreachable. It is marked [`Served::stale`]. Absences are never served
//!      stale.
//!
//! A "not found" is remembered for `negative_ttl`, and only when every target
//! asked to confirm it answered.
//!
//! **The staleness bound** this gives, relative to the store an answer came
//! from: a vouched entry lags it by at most `watch_silence` (a stream that dies
//! silently is noticed then); any other by at most `max_staleness`, or
//! `max_staleness + stale_if_error` during a full outage — and never past the
//! session's expiry or a delete the client has seen. Deletes made in another
//! datacentre reach the client through replication, which adds its lag.
//!
//! The rule is implemented in one place (the `rule` module); the read path
//! only asks it.
//!
//! # Failing in ways an app can act on
//!
//! [`Client::read`] returns [`ClientError::NotFound`], [`ClientError::Deleted`]
//! or [`ClientError::Expired`] when the user has no session
//! ([`ClientError::is_gone`]), and [`ClientError::Unavailable`] when the client
//! cannot tell — an app must not log the user out for that. Writes have their
//! own deadline (sent as `grpc-timeout`), are retried once at the same target
//! when unanswered, move on along the chain only when they certainly did not
//! happen, and otherwise return [`ClientError::WriteOutcomeUnknown`]: re-read
//! before writing again. [`ClientError::Conflict`] means the revision given is
//! not the current one.
//!
//! # Reading your own writes after roaming
//!
//! A write's revision, wrapped as a [`ReadToken`] ([`ReadToken::written`] for a
//! put, [`ReadToken::deleted`] for a delete), is what the app carries to later
//! reads: in its own session cookie beside the session id, say, as the token's
//! text. [`Client::read_after`] never answers with a revision older than the
//! token's. When the usual read (cache, local spoke) is behind — the user wrote in
//! another datacentre a moment ago — it asks the hubs directly, then keeps looking
//! for up to [`ClientBuilder::token_wait`], and returns [`Caught`] to say which it
//! did, or [`ClientError::Behind`]. "Not older" means: the token's revision, or a
//! later generation; for a delete, the session gone. The cost is nothing when the
//! local spoke is current, one hub round trip when it is not.
//!
//! It knows only the gRPC contract (`proto`) and the topology format — nothing
//! of the servers' insides.
//!
//! Layout: [`builder`] (configuration), `client` (the read and write paths),
//! `rule` (the serving rule), `error` (what callers see), `health` (per-target
//! circuit breakers), `watch` (invalidation and vouching), `cache` (entries
//! and their weight), `hedge` (the hedging budget), `token` (read-your-writes).
//!
//! ```no_run
//! # async fn demo() -> Result<(), edge_client::ClientError> {
//! use std::time::Duration;
//! use edge_client::ClientError;
//! let client = edge_client::Client::builder()
//!     .local("eu-west-1", "http://127.0.0.1:6985")
//!     .fallback("london", "http://127.0.0.1:6984")
//!     .deadline(Duration::from_millis(50))
//!     .build()?;
//! match client.read("sessions", "user-42").await {
//!     Ok(session) => println!("{} bytes at {}", session.body().len(), session.rev()),
//!     Err(e) if e.is_gone() => println!("logged out: {e}"),
//!     Err(e @ ClientError::Unavailable { .. }) => println!("try again later: {e}"),
//!     Err(e) => return Err(e),
//! }
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod builder;
mod cache;
mod client;
mod credentials;
mod error;
mod health;
mod hedge;
mod rule;
mod token;
mod watch;

pub use builder::ClientBuilder;
pub use client::{Caught, Client, Revoked, Served, Session, Source};
pub use credentials::Credentials;
pub use error::ClientError;
pub use token::ReadToken;
