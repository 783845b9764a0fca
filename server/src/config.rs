//! What a node listens on and the bounds it puts on every input.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proto::tls::ReloadingTls;

use crate::auth::Authenticator;

/// Bounds on every input a client can send.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body; larger ones get 413 without being read whole.
    pub max_body_bytes: usize,
    /// Most documents (or ids) in one bulk request.
    pub max_bulk_docs: usize,
    /// Time allowed for a client to send a request's headers (and, with TLS, to
    /// finish its handshake).
    pub header_timeout: Duration,
    /// Time allowed to receive a whole request body.
    pub body_timeout: Duration,
    /// Most concurrent client connections (HTTP); beyond it a connection is answered
    /// 503 and closed.
    pub max_connections: usize,
    /// Most requests worked on at once, HTTP and gRPC together; beyond it requests get
    /// 503 + `Retry-After` / `RESOURCE_EXHAUSTED` at once. Feeds and streams do not count.
    pub max_in_flight: usize,
    /// Longest a changes feed may stay open without a change (`timeout` cap).
    pub max_feed_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: 8 << 20,
            max_bulk_docs: 10_000,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 16_384,
            max_in_flight: 1024,
            max_feed_timeout: Duration::from_secs(3600),
        }
    }
}

/// Where a node listens, and its limits.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// CouchDB-compatible HTTP API.
    pub http_addr: SocketAddr,
    /// gRPC API.
    pub grpc_addr: SocketAddr,
    /// Input bounds.
    pub limits: Limits,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Shown as `vendor.name` of `GET /`, e.g. "hub london".
    pub node_name: String,
    /// The node's certificate, key and the fleet CA: both listeners speak TLS
    /// with it (and follow its rotation). `None`: plaintext, for loopback only.
    pub tls: Option<Arc<ReloadingTls>>,
    /// Who may do what. `None` serves everyone as admin: only for a node embedded in
    /// a test or a tool; the `sessionfleet` binary always gives one.
    pub auth: Option<Arc<Authenticator>>,
}

impl ServerConfig {
    /// A config with default limits.
    pub fn new(http_addr: SocketAddr, grpc_addr: SocketAddr) -> ServerConfig {
        ServerConfig {
            http_addr,
            grpc_addr,
            limits: Limits::default(),
            shutdown_grace: Duration::from_secs(10),
            node_name: "sessionfleet".into(),
            tls: None,
            auth: None,
        }
    }
}
