//! What a benchmark run does.

use std::net::SocketAddr;
use std::time::Duration;

/// The operation every request performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// `GET /{db}/{id}` of a random pre-loaded session.
    HttpGet,
    /// `PUT /{db}/{id}` creating a new session (a durable write).
    HttpPut,
    /// gRPC `Sessions.Get` of a random pre-loaded session.
    GrpcGet,
    /// A reconnect storm: every connection is opened at the same instant (with its
    /// TLS handshake, if any) and sends one `GET`; latency is from the common start
    /// to that answer, so the maximum is the time until every client was served.
    ConnectStorm,
}

impl Workload {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::HttpGet => "http-get",
            Workload::HttpPut => "http-put",
            Workload::GrpcGet => "grpc-get",
            Workload::ConnectStorm => "connect-storm",
        }
    }

    /// Parses a command-line name.
    pub fn parse(s: &str) -> Option<Workload> {
        [
            Workload::HttpGet,
            Workload::HttpPut,
            Workload::GrpcGet,
            Workload::ConnectStorm,
        ]
        .into_iter()
        .find(|w| w.name() == s)
    }
}

/// A benchmark run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// The node's HTTP address.
    pub http: SocketAddr,
    /// The node's gRPC address.
    pub grpc: SocketAddr,
    /// The database the sessions live in.
    pub db: String,
    /// Concurrent connections (closed loop: `streams` requests in flight each).
    pub connections: usize,
    /// Requests in flight on each connection: gRPC only (HTTP/2 streams, as an
    /// edge-client multiplexes them); HTTP/1.1 workloads always use 1.
    pub streams: usize,
    /// How long to run.
    pub duration: Duration,
    /// Pre-loaded sessions to read.
    pub keys: usize,
    /// Size of each session body in bytes.
    pub value_size: usize,
    /// What each request does.
    pub workload: Workload,
    /// The bearer token sent with every request (an admin's when preloading).
    pub token: Option<String>,
    /// The fleet CA (and optionally a client certificate): connections use TLS.
    pub tls: Option<std::sync::Arc<proto::tls::ReloadingTls>>,
}

impl BenchConfig {
    /// Requests in flight per connection: `streams` for gRPC, 1 for HTTP/1.1.
    pub fn effective_streams(&self) -> usize {
        match self.workload {
            Workload::GrpcGet => self.streams.max(1),
            _ => 1,
        }
    }
}

/// The id of pre-loaded session `i`.
pub fn key(i: usize) -> String {
    format!("session-{i:08}")
}

/// A session body of about `size` bytes.
pub fn body(size: usize, tag: usize) -> Vec<u8> {
    let pad = size.saturating_sub(48);
    format!(
        r#"{{"user":"u{tag:08}","expires_at":4102444800,"pad":"{}"}}"#,
        "x".repeat(pad)
    )
    .into_bytes()
}
