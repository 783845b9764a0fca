//! Accepted connections, plaintext or TLS, and who is on the other end.
//!
//! Both listeners take connections through [`Transport`]: with TLS material it runs
//! the handshake (in the connection's own task, bounded by a timeout, so a slow or
//! silent client holds up nobody else) and reads the client certificate's identity;
//! without it the stream passes through. Handlers find the [`Peer`] in the request's
//! extensions, which is how the hub knows a spoke from its certificate rather than
//! from what the spoke says about itself.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use proto::tls::{ClientAuth, Identity, ReloadingTls};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

/// Counts TLS handshakes that failed (wrong CA, expired or missing certificate,
/// plaintext spoken to a TLS port, timeouts), by listener.
pub const HANDSHAKE_FAILURES_METRIC: &str = "sessionfleet_tls_handshake_failures_total";

/// The other end of a connection.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Its address.
    pub addr: SocketAddr,
    /// The identity its verified client certificate names; `None` on plaintext or
    /// when it presented no certificate.
    pub identity: Option<Identity>,
}

/// How a listener secures what it accepts.
#[derive(Clone, Debug)]
pub(crate) struct Transport {
    tls: Option<Arc<ReloadingTls>>,
    handshake_timeout: Duration,
}

/// An accepted (and, with TLS, handshaken) connection.
pub(crate) struct Conn {
    io: Io,
    peer: Peer,
}

enum Io {
    Plain(TcpStream),
    // Boxed: a rustls connection is ~1 KiB, a TcpStream a few words.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Transport {
    pub fn new(tls: Option<Arc<ReloadingTls>>, handshake_timeout: Duration) -> Transport {
        Transport {
            tls,
            handshake_timeout,
        }
    }

    /// Whether connections are encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Secures one accepted stream. The acceptor is taken from the current
    /// material, so a rotated certificate applies from the next handshake on.
    pub async fn secure(&self, stream: TcpStream, addr: SocketAddr, alpn: &[&[u8]]) -> io::Result<Conn> {
        // Small responses held back by Nagle against a delayed ACK cost ~40 ms each.
        let _ = stream.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(Conn {
                io: Io::Plain(stream),
                peer: Peer { addr, identity: None },
            });
        };
        // Client certificates are optional at the handshake: apps may present a
        // bearer token or password instead; what each caller may do is decided per request.
        let acceptor = tls
            .acceptor(ClientAuth::Optional, alpn)
            .map_err(io::Error::other)?;
        let tls_stream = tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        let identity = proto::tls::peer_identity(tls_stream.get_ref().1.peer_certificates());
        Ok(Conn {
            io: Io::Tls(Box::new(tls_stream)),
            peer: Peer { addr, identity },
        })
    }

    /// Accepts from `listener` until `shutdown`, securing each connection in a task
    /// of its own, and yields those that completed their handshake.
    pub fn incoming(
        self: Arc<Self>,
        listener: TcpListener,
        alpn: &'static [&'static [u8]],
        listener_name: &'static str,
        shutdown: CancellationToken,
    ) -> ReceiverStream<io::Result<Conn>> {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, addr) = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = listener.accept() => match r {
                        Ok(s) => s,
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            tracing::warn!(listener = listener_name, error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let (transport, tx) = (self.clone(), tx.clone());
                tokio::spawn(async move {
                    match transport.secure(stream, addr, alpn).await {
                        Ok(conn) => {
                            let _ = tx.send(Ok(conn)).await;
                        }
                        Err(e) => handshake_failed(listener_name, addr, &e),
                    }
                });
            }
        });
        ReceiverStream::new(rx)
    }
}

/// Logs and counts a failed handshake. Not a warning: port scanners and load
/// balancer probes fail handshakes all day; the counter is what to alert on.
pub(crate) fn handshake_failed(listener: &'static str, addr: SocketAddr, e: &io::Error) {
    tracing::info!(listener, peer = %addr, error = %e, "TLS handshake failed");
    metrics::counter!(HANDSHAKE_FAILURES_METRIC, "listener" => listener).increment(1);
}

impl Conn {
    /// Who is on the other end.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            // rustls seals every slice of a vectored write as a record of its own, so
            // a response written as headers + body costs two records (two AEAD passes,
            // two socket writes). Saying "not vectored" makes hyper flatten the
            // response into one buffer first: one record per response.
            Io::Tls(_) => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
