//! The hub role: a central London node that holds a full replica of every
//! database, is the fan-out point of replication and the fallback for reads.
//! A fleet may run a pair (or more): each hub pulls every database from each
//! other hub continuously, so a change written to either reaches the other
//! however the spokes are split between them, and each side dials out itself.
//!
//! It owns the role's wiring — open the store, serve it, replicate with its
//! peer hubs, stop cleanly — and must not know storage internals or HTTP
//! details (the `server` crate serves).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use proto::tls::ReloadingTls;
use replicator::link::{self, Direction, LinkSettings, Remote, ReplicatedDb};
use replicator::Replication;
use server::fleet::{ExpectedSpoke, Fleet, OwnLink, HUB_PEER_PREFIX};
use server::{Node, ServerConfig};
use store::{Store, StoreOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Another hub of the pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerHub {
    /// Its node name.
    pub name: String,
    /// Its gRPC URL.
    pub grpc: String,
}

/// What a hub replicates with its peer hubs: a pull of every database from each.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerPlan {
    /// The other hubs (empty for a single hub).
    pub peers: Vec<PeerHub>,
    /// The databases.
    pub databases: Vec<ReplicatedDb>,
    /// Batch size, retry delays, checkpoint period and dial timeout.
    pub link: LinkSettings,
}

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
    /// The peer hubs to pull from, kept current as the topology changes; `None`
    /// when standalone.
    pub peers: Option<watch::Receiver<PeerPlan>>,
    /// The hub's certificate and the fleet CA, for dialling its peers over `https://`.
    pub tls: Option<Arc<ReloadingTls>>,
    /// The bearer token shown to peer hubs when there is no certificate (a loopback fleet).
    pub peer_token: Option<String>,
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
    let pulling = CancellationToken::new();
    let peers = config.peers.clone().map(|rx| {
        let this = ThisHub {
            store: store.clone(),
            fleet: node.fleet(),
            revocations: node.revocations(),
            me: config.server.node_name.clone(),
            tls: config.tls.clone(),
            token: config.peer_token.clone(),
        };
        tokio::spawn(pull_from_peers(rx, this, pulling.clone()))
    });
    shutdown.cancelled().await;
    tracing::info!("shutting down");
    node.shutdown().await;
    pulling.cancel();
    if let Some(task) = peers {
        let _ = task.await;
    }
    if !store.close_within(Duration::from_secs(30)).await {
        tracing::error!("store did not close within 30 s");
    }
    Ok(())
}

/// What the peer links of this hub work with.
struct ThisHub {
    store: Store,
    fleet: Arc<Fleet>,
    revocations: Arc<server::revocation::Revocations>,
    me: String,
    tls: Option<Arc<ReloadingTls>>,
    token: Option<String>,
}

/// Revocations fanned out here go to every peer hub too, each on a connection of its own.
fn forwards(
    plan: &PeerPlan,
    me: &str,
    tls: Option<&Arc<ReloadingTls>>,
    token: Option<&str>,
) -> Option<server::revocation::Uplink> {
    let mut each = Vec::new();
    for peer in &plan.peers {
        let client = replicator::GrpcPeer::channel(&peer.grpc, plan.link.connect_timeout, tls)
            .map_err(|e| e.to_string())
            .and_then(|c| server::revocation::lane_client(c, token));
        match client {
            Ok(c) => each.push(server::revocation::uplink(c, me, &peer.name)),
            Err(e) => {
                tracing::error!(peer = %peer.name, error = %e, "cannot forward revocations to the peer hub")
            }
        }
    }
    (!each.is_empty()).then(|| server::revocation::all_of(each))
}

/// Pulls every database from each peer hub of the current plan until `stop`,
/// restarting the pulls (they resume from checkpoints) when the plan changes.
async fn pull_from_peers(mut plan: watch::Receiver<PeerPlan>, this: ThisHub, stop: CancellationToken) {
    let ThisHub {
        store,
        fleet,
        revocations,
        me,
        tls,
        token,
    } = this;
    let me_there = format!("{HUB_PEER_PREFIX}{me}");
    loop {
        let current = plan.borrow_and_update().clone();
        fleet.set_peer_hubs(current.peers.iter().map(|p| p.name.clone()).collect());
        let replications = CancellationToken::new();
        let mut running: Vec<Replication> = Vec::new();
        let mut links = Vec::new();
        for peer in &current.peers {
            let remote = Remote {
                url: &peer.grpc,
                me: &me_there,
                tls: tls.as_ref(),
                bearer: token.as_deref(),
            };
            match link::start(
                &store,
                &remote,
                &current.databases,
                &[Direction::Pull],
                &current.link,
                &replications,
            )
            .await
            {
                Ok(started) => {
                    links.push(OwnLink {
                        remote: peer.name.clone(),
                        url: peer.grpc.clone(),
                        role: "peer-hub".into(),
                        replications: started.iter().map(Replication::status).collect(),
                    });
                    running.extend(started);
                }
                Err(e) => {
                    tracing::error!(peer = %peer.name, error = %e, "cannot replicate with the peer hub")
                }
            }
        }
        if !current.peers.is_empty() {
            tracing::info!(
                peers = current.peers.len(),
                databases = current.databases.len(),
                "pulling from the peer hubs"
            );
        }
        fleet.set_links(links);
        revocations.set_forwards(forwards(&current, &me_there, tls.as_ref(), token.as_deref()));
        let changed = tokio::select! {
            _ = stop.cancelled() => false,
            r = plan.changed() => r.is_ok(),
        };
        link::stop(running).await;
        replications.cancel();
        if !changed {
            return;
        }
        tracing::info!("topology changed: restarting the pulls from the peer hubs");
    }
}
