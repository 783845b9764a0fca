//! Transport helpers: per-connection acceptors, reading a peer's identity, and the
//! rotating TLS connector for tonic channels.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::material::ClientAuth;
use super::reload::ReloadingTls;
use super::{Identity, TlsError, ALPN_GRPC, ALPN_H2};

impl ReloadingTls {
    /// An acceptor from the current server config. Call it per accepted connection so a
    /// rotation applies to the next handshake.
    pub fn acceptor(&self, client_auth: ClientAuth, alpn: &[&[u8]]) -> Result<TlsAcceptor, TlsError> {
        Ok(TlsAcceptor::from(self.current_server(client_auth, alpn)?))
    }

    /// A connector from the current client config (call it per connection, like
    /// [`ReloadingTls::acceptor`]).
    pub fn connector(&self, alpn: &[&[u8]]) -> Result<TlsConnector, TlsError> {
        Ok(TlsConnector::from(self.current_client(alpn)?))
    }
}

/// The identity of a verified peer from its certificate chain (leaf first), e.g.
/// `conn.peer_certificates()` of a rustls connection. `None` if the peer presented no
/// certificate or its leaf carries no single valid Sessionfleet identity.
pub fn peer_identity(certs: Option<&[CertificateDer<'_>]>) -> Option<Identity> {
    let leaf = certs?.first()?;
    match Identity::from_cert_der(leaf.as_ref()) {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::debug!(error = %e, "peer certificate carries no usable identity");
            None
        }
    }
}

/// The server name a client verifies for `host`: an IP address literal (with or without
/// IPv6 brackets) becomes `ServerName::IpAddress`, anything else a DNS name.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(bare.to_owned())
        .map_err(|_| TlsError::Config(format!("{host:?} is neither an IP address nor a DNS name")))
}

/// A `tower_service::Service<Uri>` for tonic's `Endpoint::connect_with_connector`: TCP
/// (no Nagle) to the URI's host and port, then TLS with the current client config
/// (ALPN h2), verifying the server against the fleet CA for the URI's host.
///
/// `Endpoint::connect_timeout` applies to the whole connect, TLS handshake included
/// (tonic wraps custom connectors in its timeout). Give the endpoint an `http://` URI:
/// this connector does the TLS, and a tonic built with its own TLS feature would try to
/// add TLS again for `https://`. Without a port, 443 is used.
#[derive(Clone, Debug)]
pub struct GrpcConnector {
    tls: Arc<ReloadingTls>,
}

impl GrpcConnector {
    /// A connector taking its client config from `tls` at every connect.
    pub fn new(tls: Arc<ReloadingTls>) -> GrpcConnector {
        GrpcConnector { tls }
    }
}

fn other(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::other(e)
}

impl tower_service::Service<Uri> for GrpcConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, io::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| other(format!("URI {uri} has no host")))?;
            let port = uri.port_u16().unwrap_or(443);
            let name = server_name(host).map_err(other)?;
            let connector = tls.connector(ALPN_GRPC).map_err(other)?;
            let bare = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            let tcp = TcpStream::connect((bare, port)).await?;
            tcp.set_nodelay(true)?;
            let stream = connector.connect(name, tcp).await?;
            if stream.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
                return Err(other(format!("{uri}: server did not negotiate ALPN h2")));
            }
            Ok(TokioIo::new(stream))
        })
    }
}

/// A lazily connecting tonic channel to `url`, over TLS when `url` is `https://`.
///
/// `https://` needs `tls` (the fleet CA, and the caller's certificate if it has one);
/// `http://` is plaintext whatever `tls` holds — the topology decides the scheme, so a
/// fleet with `[tls]` never produces one. `configure` sets timeouts and keep-alive.
///
/// ```
/// # use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let err = proto::tls::grpc_channel("https://10.0.0.1:6984", None, |e| e).unwrap_err();
/// assert!(err.to_string().contains("fleet CA"));
/// let plain = proto::tls::grpc_channel("http://127.0.0.1:6984", None, |e| {
///     e.connect_timeout(Duration::from_secs(1))
/// });
/// assert!(plain.is_ok());
/// # }
/// ```
pub fn grpc_channel(
    url: &str,
    tls: Option<&Arc<ReloadingTls>>,
    configure: impl FnOnce(tonic::transport::Endpoint) -> tonic::transport::Endpoint,
) -> Result<tonic::transport::Channel, TlsError> {
    let bad = |why: String| TlsError::Config(format!("gRPC URL {url:?}: {why}"));
    let (secure, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(bad("must start with https:// or http://".into()));
    };
    // The connector does the TLS; tonic itself is given the plain scheme.
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://{rest}")).map_err(|e| bad(e.to_string()))?;
    let endpoint = configure(endpoint);
    match (secure, tls) {
        (false, _) => Ok(endpoint.connect_lazy()),
        (true, Some(tls)) => Ok(endpoint.connect_with_connector_lazy(GrpcConnector::new(tls.clone()))),
        (true, None) => Err(bad(
            "https needs the fleet CA (a [tls] section or --tls-ca)".into()
        )),
    }
}
