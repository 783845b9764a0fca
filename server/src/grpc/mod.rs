//! The gRPC API: `Sessions` for edge-clients, `Replication` for fleet nodes.

mod replication;
mod sessions;
mod status;

use std::sync::Arc;

use proto::v1::replication_server::ReplicationServer;
use proto::v1::sessions_server::SessionsServer;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;

use crate::node::Shared;

pub(crate) use status::to_status;

/// Serves gRPC until shutdown.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let shutdown = shared.shutdown.clone();
    let sessions = SessionsServer::new(sessions::SessionsService::new(shared.clone()))
        .max_decoding_message_size(shared.config.limits.max_body_bytes);
    let result = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)))
        .add_service(sessions)
        .add_service(InterceptedService::new(
            ReplicationServer::new(replication::ReplicationService::new(shared.clone()))
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
            {
                let shared = shared.clone();
                move |req| replication::admit(&shared, req)
            },
        ))
        .serve_with_incoming_shutdown(
            shared
                .transport
                .clone()
                .incoming(listener, proto::tls::ALPN_GRPC, "grpc", shutdown.clone()),
            shutdown.cancelled_owned(),
        )
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "gRPC server failed");
    }
}
