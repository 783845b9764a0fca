//! The spoke role: a datacentre's node. It serves reads and writes locally
//! (whether or not the hub is reachable) and, for every replicated database,
//! runs a continuous push (local → hub) and pull (hub → local), each over one
//! long-lived HTTP/2 connection, resuming from checkpoints after any failure.
//!
//! It owns the role's wiring — including following topology changes, which
//! restart the replications (they resume from checkpoints) — and must not know
//! storage internals or the replication protocol's details.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use proto::tls::ReloadingTls;
use replicator::backoff::Backoff;
use replicator::{Channel, GrpcPeer, LocalPeer, Peer, Replication, ReplicationSpec, ReplicationStatus};
use server::{Node, ServerConfig};
use store::{DbName, DbOptions, Store, StoreOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A database the spoke replicates, with the options it is created with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicatedDb {
    /// Its name.
    pub name: DbName,
    /// Its options (expiry field, revs limit), used where it is created.
    pub options: DbOptions,
}

/// What the spoke replicates with the hub, and how. A new plan (a topology
/// reload) replaces the running replications; they resume from checkpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicationPlan {
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

/// Everything a spoke needs to run.
#[derive(Debug)]
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
    /// What to replicate.
    pub plan: ReplicationPlan,
    /// New plans, as the topology changes.
    pub plan_updates: Option<watch::Receiver<ReplicationPlan>>,
    /// The spoke's certificate and the fleet CA, for its own listeners (via
    /// `server.tls`) and for dialling the hub over `https://`, where the
    /// certificate is what the hub admits it by.
    pub tls: Option<Arc<ReloadingTls>>,
    /// The bearer token presented to the hub when there is no certificate to present
    /// (a loopback fleet: the node token of the shared secrets file).
    pub hub_token: Option<String>,
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
    mut config: SpokeConfig,
    shutdown: CancellationToken,
    ready: impl FnOnce(std::net::SocketAddr, std::net::SocketAddr, Vec<Arc<ReplicationStatus>>),
) -> Result<(), SpokeError> {
    let store = Store::open(&config.data_dir, config.store.clone()).map_err(|source| SpokeError::Store {
        path: config.data_dir.clone(),
        source,
    })?;
    let node = Node::start(store.clone(), config.server.clone()).await?;
    let me = format!("{}/{}", config.datacentre, config.node);
    let mut plan = config.plan.clone();
    // Replications get their own token, not the process's: at shutdown they must outlive the
    // serving node long enough to deliver what it acknowledged (see `deliver_pushes`).
    let replicating = CancellationToken::new();
    let mut running = start_replications(&store, &plan, &config, &me, &replicating).await?;
    tracing::info!(datacentre = %config.datacentre, node = %config.node, hub = %plan.hub_grpc, databases = plan.databases.len(), "spoke replicating");
    ready(
        node.http_addr,
        node.grpc_addr,
        running.iter().map(Replication::status).collect(),
    );
    loop {
        let next = async {
            match config.plan_updates.as_mut() {
                Some(rx) => match rx.changed().await {
                    Ok(()) => Some(rx.borrow_and_update().clone()),
                    Err(_) => std::future::pending().await,
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(new_plan) = next => {
                if new_plan == plan {
                    continue;
                }
                tracing::info!(hub = %new_plan.hub_grpc, databases = new_plan.databases.len(), "topology changed: restarting replications");
                stop_replications(running).await;
                plan = new_plan;
                running = start_replications(&store, &plan, &config, &me, &replicating).await?;
            }
        }
    }
    tracing::info!("shutting down");
    // A rolling restart must not strand acknowledged writes on a stopped spoke: the node stops
    // taking requests and finishes those in flight, the pushes deliver everything committed up
    // to then, the replications write a last checkpoint and stop, then the store closes.
    node.shutdown().await;
    deliver_pushes(&store, &plan, &running, FINAL_PUSH_TIMEOUT).await;
    stop_replications(running).await;
    replicating.cancel();
    if !store.close_within(Duration::from_secs(30)).await {
        tracing::error!("store did not close within 30 s");
    }
    Ok(())
}

/// How long a stopping spoke waits for its pushes to reach the hub (an unreachable hub costs
/// this much shutdown time; the writes stay local and are pushed after the restart).
const FINAL_PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until each database's push has delivered (the hub acknowledged) every change
/// committed locally so far, or `within` passes.
async fn deliver_pushes(store: &Store, plan: &ReplicationPlan, running: &[Replication], within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    for db in &plan.databases {
        let Ok(local) = store.db(&db.name) else { continue };
        let committed = local.info().update_seq;
        let label = push_label(&db.name);
        let Some(push) = running.iter().find(|r| r.status().snapshot().label == label) else {
            continue;
        };
        loop {
            let s = push.status().snapshot();
            // `progress` reports the position written to the hub as source_seq - seq_lag.
            let delivered = s.source_seq.saturating_sub(s.seq_lag);
            if delivered >= committed {
                break;
            }
            if tokio::time::Instant::now() >= deadline || push.is_finished() {
                tracing::warn!(database = %db.name, delivered, committed, "stopping with changes not yet pushed to the hub; they are pushed after the restart");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn push_label(db: &DbName) -> String {
    format!("push:{db}")
}

async fn stop_replications(running: Vec<Replication>) {
    for r in running {
        if tokio::time::timeout(Duration::from_secs(10), r.stop())
            .await
            .is_err()
        {
            tracing::warn!("a replication did not stop within 10 s");
        }
    }
}

/// Creates the plan's databases locally and starts a push and a pull for each,
/// all pushes over one connection to the hub and all pulls over another.
async fn start_replications(
    store: &Store,
    plan: &ReplicationPlan,
    config: &SpokeConfig,
    me: &str,
    shutdown: &CancellationToken,
) -> Result<Vec<Replication>, SpokeError> {
    for db in &plan.databases {
        match store.create_db(&db.name, db.options.clone()).await {
            Ok(()) | Err(store::Error::DbExists { .. }) => {}
            Err(source) => {
                return Err(SpokeError::Store {
                    path: PathBuf::new(),
                    source,
                })
            }
        }
    }
    let hub_err = |e: replicator::PeerError| SpokeError::Hub {
        url: plan.hub_grpc.clone(),
        reason: e.to_string(),
    };
    let tls = config.tls.as_ref();
    let push_channel = GrpcPeer::channel(&plan.hub_grpc, plan.connect_timeout, tls).map_err(hub_err)?;
    let pull_channel = GrpcPeer::channel(&plan.hub_grpc, plan.connect_timeout, tls).map_err(hub_err)?;
    let mut replications = Vec::new();
    for db in &plan.databases {
        let local: Arc<dyn Peer> =
            Arc::new(LocalPeer::new(store.clone(), db.name.clone(), db.options.clone()));
        let hub = |channel: &Channel| -> Result<Arc<dyn Peer>, SpokeError> {
            let mut peer = GrpcPeer::new(channel.clone(), &plan.hub_grpc, db.name.as_str(), me)
                .with_create_options(db.options.clone());
            if let Some(token) = &config.hub_token {
                peer = peer.with_bearer(token).map_err(hub_err)?;
            }
            Ok(Arc::new(peer))
        };
        for (direction, source, target) in [
            ("push", local.clone(), hub(&push_channel)?),
            ("pull", hub(&pull_channel)?, local.clone()),
        ] {
            let label = match direction {
                "push" => push_label(&db.name),
                _ => format!("{direction}:{}", db.name),
            };
            let mut spec = ReplicationSpec::new(source, target, label);
            spec.continuous = true;
            // Whichever direction reaches the hub first creates the database there.
            spec.create_target = direction == "push";
            spec.create_source = direction == "pull";
            spec.batch_size = plan.batch_size;
            spec.backoff = plan.backoff;
            spec.checkpoint_interval = plan.checkpoint_interval;
            replications.push(Replication::start(spec, shutdown.clone()));
        }
    }
    Ok(replications)
}
