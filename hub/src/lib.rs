//! The hub role: the central London node that holds a full replica of every
//! database, is the fan-out point of replication and the fallback for reads.
//!
//! It owns the role's wiring — open the store, serve it, stop cleanly — and
//! must not know storage internals or HTTP details (the `server` crate serves).

use std::path::PathBuf;
use std::time::Duration;

use server::fleet::ExpectedSpoke;
use server::{Node, ServerConfig};
use store::{Store, StoreOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Everything a hub needs to run.
#[derive(Debug)]
pub struct HubConfig {
    /// The RocksDB directory.
    pub data_dir: PathBuf,
    /// Listen addresses and input limits.
    pub server: ServerConfig,
    /// Store options (durability, limits, sweeper).
    pub store: StoreOptions,
    /// The fleet's name and the spokes it should have, kept current as the
    /// topology changes (for the status page); `None` when standalone.
    pub fleet: Option<watch::Receiver<(String, Vec<ExpectedSpoke>)>>,
}

/// Why a hub could not run.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
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
}

/// Runs a hub until `shutdown` is cancelled, then stops gracefully: in-flight
/// requests finish (within the grace period) and the store closes cleanly.
/// `ready` receives the bound addresses once serving.
pub async fn run(
    config: HubConfig,
    shutdown: CancellationToken,
    ready: impl FnOnce(std::net::SocketAddr, std::net::SocketAddr),
) -> Result<(), HubError> {
    let store = Store::open(&config.data_dir, config.store.clone()).map_err(|source| HubError::Store {
        path: config.data_dir.clone(),
        source,
    })?;
    let node = Node::start(store.clone(), config.server.clone()).await?;
    ready(node.http_addr, node.grpc_addr);
    if let Some(mut rx) = config.fleet.clone() {
        let fleet = node.fleet();
        let (name, spokes) = rx.borrow_and_update().clone();
        fleet.set_expected(name, spokes);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = rx.changed() => {
                        if r.is_err() { return; }
                        let (name, spokes) = rx.borrow_and_update().clone();
                        tracing::info!(spokes = spokes.len(), "topology changed: expected spokes updated");
                        fleet.set_expected(name, spokes);
                    }
                    _ = stop.cancelled() => return,
                }
            }
        });
    }
    shutdown.cancelled().await;
    tracing::info!("shutting down");
    node.shutdown().await;
    if !store.close_within(Duration::from_secs(30)).await {
        tracing::error!("store did not close within 30 s");
    }
    Ok(())
}
