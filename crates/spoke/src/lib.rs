//! The spoke role: a datacentre's node. It serves reads and writes locally
//! (whether or not the hub is reachable) and, for every replicated database,
//! runs a continuous push (local → hub) and pull (hub → local), each over one
//! long-lived HTTP/2 connection, resuming from checkpoints after any failure.
//!
//! It owns the role's wiring and must not know storage internals or the
//! replication protocol's details.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use replicator::backoff::Backoff;
use replicator::{GrpcPeer, LocalPeer, Replication, ReplicationSpec, ReplicationStatus};
use server::{Node, ServerConfig};
use store::{DbName, DbOptions, Store, StoreOptions};
use tokio_util::sync::CancellationToken;

/// A database the spoke replicates, with the options it is created with.
#[derive(Clone, Debug)]
pub struct ReplicatedDb {
    /// Its name.
    pub name: DbName,
    /// Its options (expiry field, revs limit), used where it is created.
    pub options: DbOptions,
}

/// Everything a spoke needs to run.
#[derive(Clone, Debug)]
pub struct SpokeConfig {
    /// This spoke's datacentre.
    pub datacentre: String,
    /// This spoke's name within the fleet.
    pub node: String,
    /// The RocksDB directory.
    pub data_dir: PathBuf,
    /// Listen addresses and limits.
    pub server: ServerConfig,
    /// Store options.
    pub store: StoreOptions,
    /// The hub's gRPC URL, e.g. `http://10.0.0.1:6984`.
    pub hub_grpc: String,
    /// The databases to replicate.
    pub databases: Vec<ReplicatedDb>,
    /// Changes per replication batch.
    pub batch_size: usize,
    /// Retry delays towards the hub.
    pub backoff: Backoff,
    /// Least time between checkpoints while changes flow.
    pub checkpoint_interval: Duration,
    /// Connection timeout towards the hub.
    pub connect_timeout: Duration,
}

/// Why a spoke could not run.
#[derive(Debug, thiserror::Error)]
pub enum SpokeError {
    /// The store could not be opened.
    #[error("opening the store in {path}: {source}")]
    Store {
        /// The data directory.
        path: PathBuf,
        /// Why.
        source: store::Error,
    },
    /// A listener could not start.
    #[error(transparent)]
    Start(#[from] server::node::StartError),
    /// The hub URL is unusable.
    #[error("hub address {url}: {reason}")]
    Hub {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// Runs a spoke until `shutdown`; `ready` receives the bound addresses and the
/// replications' statuses once serving.
pub async fn run(
    config: SpokeConfig,
    shutdown: CancellationToken,
    ready: impl FnOnce(std::net::SocketAddr, std::net::SocketAddr, Vec<Arc<ReplicationStatus>>),
) -> Result<(), SpokeError> {
    let store = Store::open(&config.data_dir, config.store.clone()).map_err(|source| SpokeError::Store {
        path: config.data_dir.clone(),
        source,
    })?;
    for db in &config.databases {
        match store.create_db(&db.name, db.options.clone()).await {
            Ok(()) | Err(store::Error::DbExists { .. }) => {}
            Err(source) => {
                return Err(SpokeError::Store {
                    path: config.data_dir.clone(),
                    source,
                })
            }
        }
    }
    let node = Node::start(store.clone(), config.server.clone()).await?;
    let hub_err = |e: replicator::PeerError| SpokeError::Hub {
        url: config.hub_grpc.clone(),
        reason: e.to_string(),
    };
    // One connection for all pushes and one for all pulls.
    let push_channel = GrpcPeer::channel(&config.hub_grpc, config.connect_timeout).map_err(hub_err)?;
    let pull_channel = GrpcPeer::channel(&config.hub_grpc, config.connect_timeout).map_err(hub_err)?;
    let me = format!("{}/{}", config.datacentre, config.node);
    let stop = shutdown.child_token();
    let mut replications = Vec::new();
    for db in &config.databases {
        let local: Arc<LocalPeer> =
            Arc::new(LocalPeer::new(store.clone(), db.name.clone(), db.options.clone()));
        let hub_push = Arc::new(
            GrpcPeer::new(push_channel.clone(), &config.hub_grpc, db.name.as_str(), &me)
                .with_create_options(db.options.clone()),
        );
        let hub_pull = Arc::new(
            GrpcPeer::new(pull_channel.clone(), &config.hub_grpc, db.name.as_str(), &me)
                .with_create_options(db.options.clone()),
        );
        for (direction, source, target) in [
            (
                "push",
                local.clone() as Arc<dyn replicator::Peer>,
                hub_push as Arc<dyn replicator::Peer>,
            ),
            (
                "pull",
                hub_pull as Arc<dyn replicator::Peer>,
                local.clone() as Arc<dyn replicator::Peer>,
            ),
        ] {
            let mut spec = ReplicationSpec::new(source, target, format!("{direction}:{}", db.name));
            spec.continuous = true;
            // Whichever direction reaches the hub first creates the database there.
            spec.create_target = direction == "push";
            spec.create_source = direction == "pull";
            spec.batch_size = config.batch_size;
            spec.backoff = config.backoff;
            spec.checkpoint_interval = config.checkpoint_interval;
            replications.push(Replication::start(spec, stop.clone()));
        }
    }
    tracing::info!(datacentre = %config.datacentre, node = %config.node, hub = %config.hub_grpc, databases = config.databases.len(), "spoke replicating");
    ready(
        node.http_addr,
        node.grpc_addr,
        replications.iter().map(Replication::status).collect(),
    );
    shutdown.cancelled().await;
    tracing::info!("shutting down");
    // Replications write a last checkpoint, then the node drains, then the store closes.
    for r in replications {
        if tokio::time::timeout(Duration::from_secs(10), r.stop())
            .await
            .is_err()
        {
            tracing::warn!("a replication did not stop within 10 s");
        }
    }
    node.shutdown().await;
    let closing = tokio::task::spawn_blocking(move || store.close());
    if tokio::time::timeout(Duration::from_secs(30), closing)
        .await
        .is_err()
    {
        tracing::error!("store did not close within 30 s");
    }
    Ok(())
}
