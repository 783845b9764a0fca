//! The gRPC API: `Sessions` for edge-clients, `Replication` for fleet nodes.

mod replication;
mod sessions;
mod status;

use std::sync::Arc;

use proto::v1::replication_server::ReplicationServer;
use proto::v1::sessions_server::SessionsServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;

use crate::node::Shared;

pub(crate) use status::to_status;

/// Accepted connections with Nagle's algorithm off: tonic's own `tcp_nodelay`
/// applies only to listeners it binds itself, and small gRPC responses held
/// back by Nagle against the client's delayed ACK cost ~40 ms each.
fn incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|s| {
            if let Err(e) = s.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
        })
    })
}

/// Serves gRPC until shutdown.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let shutdown = shared.shutdown.clone();
    let sessions = SessionsServer::new(sessions::SessionsService::new(shared.clone()))
        .max_decoding_message_size(shared.config.limits.max_body_bytes);
    let result = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)))
        .add_service(sessions)
        .add_service(
            ReplicationServer::new(replication::ReplicationService::new(shared.clone()))
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
        )
        .serve_with_incoming_shutdown(incoming(listener), shutdown.cancelled_owned())
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "gRPC server failed");
    }
}
