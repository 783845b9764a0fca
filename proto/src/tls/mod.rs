//! How a Sessionfleet link is secured: certificate identities, TLS material, rustls
//! configs, ALPN, rotation and the transport helpers servers and clients use.
//!
//! Layout:
//! - [`identity`]: [`Identity`] and [`ClientRole`], the `sessionfleet:` URI SAN of a certificate;
//! - [`material`]: [`TlsPaths`], [`TlsMaterial`] (CA bundle, own chain and key) and the
//!   server/client configs built from it (TLS 1.2+, the `ring` provider only);
//! - [`reload`]: [`ReloadingTls`], the current material behind an `ArcSwap`, re-read on change
//!   or SIGHUP, keeping the old material when the new files are invalid;
//! - [`transport`]: [`ReloadingTls::acceptor`], [`peer_identity`] and [`GrpcConnector`] for tonic.
//!
//! Nothing here decides what an identity may do (that is `security` and the server), nor
//! which identities the topology admits.

pub mod identity;
pub mod material;
pub mod reload;
pub mod transport;

use std::path::PathBuf;

pub use identity::{is_valid_label, ClientRole, Identity, UnknownRole};
pub use material::{ClientAuth, TlsMaterial, TlsPaths};
pub use reload::{ReloadingTls, CERT_EXPIRY_METRIC, RELOAD_FAILURES_METRIC};
pub use transport::{grpc_channel, peer_identity, server_name, GrpcConnector};

/// ALPN protocol id of HTTP/2 (gRPC, and HTTP servers that speak it).
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN protocol id of HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";
/// ALPN list of a gRPC server or client.
pub const ALPN_GRPC: &[&[u8]] = &[ALPN_H2];
/// ALPN list of an HTTP server (HTTP/2 preferred, HTTP/1.1 for curl, CouchDB and PouchDB clients).
pub const ALPN_HTTP_SERVER: &[&[u8]] = &[ALPN_H2, ALPN_HTTP11];
/// ALPN list of an HTTP client (replicator's CouchDB peers, CLI tools).
pub const ALPN_HTTP_CLIENT: &[&[u8]] = &[ALPN_HTTP11];

/// Why TLS material could not be loaded or used. Messages name files and what is
/// wrong with them, never key bytes.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not the PEM it should be.
    #[error("{}: {what}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the contents).
        what: String,
    },
    /// The private key does not belong to the certificate.
    #[error("private key {} does not match certificate {}: {why}", key.display(), cert.display())]
    KeyMismatch {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// What rustls said.
        why: String,
    },
    /// A certificate and a key must be given together.
    #[error("TLS certificate and key must be given together (got only the {0})")]
    HalfPair(&'static str),
    /// A certificate could not be parsed or is unusable.
    #[error("bad certificate: {0}")]
    BadCertificate(String),
    /// A certificate's or URI's identity is not a valid Sessionfleet identity.
    #[error("bad identity: {0}")]
    BadIdentity(String),
    /// A server config was asked of material without an own certificate.
    #[error("no own certificate and key configured (a server needs both)")]
    NoOwnCertificate,
    /// rustls refused to build a config.
    #[error("TLS configuration: {0}")]
    Config(String),
}
