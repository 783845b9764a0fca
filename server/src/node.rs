//! A serving node: the store behind HTTP and gRPC listeners, started and stopped together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;
use crate::fleet::Fleet;
use crate::replications::Replications;
use crate::transport::Transport;
use crate::{grpc, http};

/// What every handler can reach.
pub(crate) struct Shared {
    pub store: Store,
    pub config: ServerConfig,
    pub started: Instant,
    /// Cancelled on shutdown: long-lived feeds end themselves.
    pub shutdown: CancellationToken,
    /// Replications run on request (`_replicate`, `_replicator`).
    pub replications: Arc<Replications>,
    /// The spokes seen dialling in, and those expected.
    pub fleet: Arc<Fleet>,
    /// How both listeners secure their connections.
    pub transport: Arc<Transport>,
    /// The in-flight bound of both listeners.
    pub admission: crate::admission::Admission,
    /// The priority lane for revocations.
    pub revocations: Arc<crate::revocation::Revocations>,
}

/// A node about to serve: bind first (so callers learn the real ports), then run.
pub struct Node;

/// A running node.
pub struct NodeHandle {
    /// The bound HTTP address.
    pub http_addr: SocketAddr,
    /// The bound gRPC address.
    pub grpc_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    fleet: Arc<Fleet>,
    revocations: Arc<crate::revocation::Revocations>,
}

/// Failure to start serving.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl Node {
    /// Binds both listeners and starts serving `store`.
    pub async fn start(store: Store, config: ServerConfig) -> Result<NodeHandle, StartError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })
        };
        let http_listener = bind(config.http_addr).await?;
        let grpc_listener = bind(config.grpc_addr).await?;
        let local =
            |l: &TcpListener, addr| l.local_addr().map_err(|source| StartError::Bind { addr, source });
        let http_addr = local(&http_listener, config.http_addr)?;
        let grpc_addr = local(&grpc_listener, config.grpc_addr)?;
        crate::metrics::handle();
        let shutdown = CancellationToken::new();
        let replications = Arc::new(Replications::new(
            store.clone(),
            config.tls.clone(),
            shutdown.clone(),
        ));
        let fleet = Arc::new(Fleet::default());
        let revocations = Arc::new(crate::revocation::Revocations::default());
        let transport = Arc::new(Transport::new(config.tls.clone(), config.limits.header_timeout));
        let shared = Arc::new(Shared {
            admission: crate::admission::Admission::new(config.limits.max_in_flight),
            transport,
            store,
            config,
            started: Instant::now(),
            shutdown: shutdown.clone(),
            replications: replications.clone(),
            fleet: fleet.clone(),
            revocations: revocations.clone(),
        });
        let shared_tls = shared.transport.is_tls();
        let tasks = vec![
            tokio::spawn(http::serve(http_listener, shared.clone())),
            tokio::spawn(grpc::serve(grpc_listener, shared)),
            tokio::spawn(replications.follow_replicator_db()),
        ];
        tracing::info!(%http_addr, %grpc_addr, tls = shared_tls, "node serving");
        Ok(NodeHandle {
            http_addr,
            grpc_addr,
            shutdown,
            tasks,
            fleet,
            revocations,
        })
    }
}

impl NodeHandle {
    /// Stops accepting, lets in-flight requests finish (bounded by the grace
    /// period), ends open feeds, and returns when both listeners are closed.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        tracing::info!("node stopped");
    }

    /// The fleet view behind the status page; roles set the expected spokes.
    pub fn fleet(&self) -> Arc<Fleet> {
        self.fleet.clone()
    }

    /// The priority lane for revocations; a spoke's role sets its uplink to the hub.
    pub fn revocations(&self) -> Arc<crate::revocation::Revocations> {
        self.revocations.clone()
    }

    /// A token cancelled when the node shuts down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}
