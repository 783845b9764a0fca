//! The spoke role: a datacentre's node. It serves reads and writes locally
//! (whether or not a hub is reachable) and, for every replicated database,
//! runs a continuous push (local → hub) and pull (hub → local), each over one
//! long-lived HTTP/2 connection, resuming from checkpoints after any failure.
//! With a hub pair it replicates with one hub at a time: its preferred one
//! while that answers, the next while it does not ([`failover`]), keeping a
//! checkpoint with each so that moving costs no re-copy.
//!
//! It owns the role's wiring — including following topology changes, which
//! restart the replications (they resume from checkpoints) — and must not know
//! storage internals or the replication protocol's details.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use proto::tls::ReloadingTls;
use replicator::link::{self, Direction, LinkSettings, Remote};
use replicator::{GrpcPeer, Peer, PeerError, Replication};
use server::fleet::OwnLink;
use server::{Node, ServerConfig};
use store::{Store, StoreOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub mod failover;
mod lane;

pub use replicator::link::ReplicatedDb;

use failover::HubChoice;

/// A hub the spoke may replicate with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubAddr {
    /// Its node name, for logs and status.
    pub name: String,
    /// Its gRPC URL, e.g. `https://10.0.0.1:6984`.
    pub grpc: String,
}

/// What the spoke replicates, with which hubs, and how. A new plan (a topology
/// reload) replaces the running replications; they resume from checkpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicationPlan {
    /// The hubs in this spoke's order, at least one: it replicates with the first that
    /// answers (see [`failover`]) and returns to the first when it answers again.
    pub hubs: Vec<HubAddr>,
    /// The databases to replicate.
    pub databases: Vec<ReplicatedDb>,
    /// Batch size, retry delays, checkpoint period and dial timeout of the link.
    pub link: LinkSettings,
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

/// Runs a spoke until `shutdown`; `ready` receives the bound addresses once serving.
pub async fn run(
    mut config: SpokeConfig,
    shutdown: CancellationToken,
    ready: impl FnOnce(std::net::SocketAddr, std::net::SocketAddr),
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
    let mut choice = HubChoice::new(plan.hubs.len());
    let mut running = attach(&store, &plan, choice.current(), &config, &me, &replicating, &node).await?;
    let mut probes = Probes::start(&plan, &config, &me)?;
    tracing::info!(datacentre = %config.datacentre, node = %config.node, hub = %plan.hubs[choice.current()].name, hubs = plan.hubs.len(), databases = plan.databases.len(), "spoke replicating");
    ready(node.http_addr, node.grpc_addr);
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
                tracing::info!(hubs = new_plan.hubs.len(), databases = new_plan.databases.len(), "topology changed: restarting replications");
                running.stop().await;
                probes.stop();
                plan = new_plan;
                choice = HubChoice::new(plan.hubs.len());
                running = attach(&store, &plan, choice.current(), &config, &me, &replicating, &node).await?;
                probes = Probes::start(&plan, &config, &me)?;
            }
            Some(answered) = probes.round.recv() => {
                let from = choice.current();
                if let Some(to) = choice.observe(&answered) {
                    let (from, to_hub) = (&plan.hubs[from].name, &plan.hubs[to].name);
                    if to == 0 {
                        tracing::info!(from = %from, to = %to_hub, "the preferred hub answers again: replicating with it");
                    } else {
                        tracing::warn!(from = %from, to = %to_hub, "hub not answering: replicating with the next");
                    }
                    metrics::counter!("spoke_hub_switches_total", "to" => to_hub.clone()).increment(1);
                    running.stop().await;
                    running = attach(&store, &plan, to, &config, &me, &replicating, &node).await?;
                }
            }
        }
    }
    tracing::info!("shutting down");
    probes.stop();
    // A rolling restart must not strand acknowledged writes on a stopped spoke: the node stops
    // taking requests and finishes those in flight, the pushes deliver everything committed up
    // to then, the replications write a last checkpoint and stop, then the store closes.
    node.shutdown().await;
    deliver_pushes(&store, &plan, &running.replications, FINAL_PUSH_TIMEOUT).await;
    running.stop().await;
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
        let label = link::label(Direction::Push, &db.name);
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

/// How the spoke proves who it is to a hub.
fn remote<'a>(hub: &'a HubAddr, config: &'a SpokeConfig, me: &'a str) -> Remote<'a> {
    Remote {
        url: &hub.grpc,
        me,
        tls: config.tls.as_ref(),
        bearer: config.hub_token.as_deref(),
    }
}

fn hub_error(hub: &HubAddr, e: PeerError) -> SpokeError {
    SpokeError::Hub {
        url: hub.grpc.clone(),
        reason: e.to_string(),
    }
}

/// The spoke's running link with one hub: the bulk replications and the priority lane.
struct Attached {
    replications: Vec<Replication>,
    lane: CancellationToken,
}

impl Attached {
    async fn stop(self) {
        self.lane.cancel();
        link::stop(self.replications).await;
    }
}

/// Starts a push and a pull per database with hub `index` of the plan and the
/// revocation lane to it, and shows the replications on the node's `_active_tasks`.
async fn attach(
    store: &Store,
    plan: &ReplicationPlan,
    index: usize,
    config: &SpokeConfig,
    me: &str,
    shutdown: &CancellationToken,
    node: &server::NodeHandle,
) -> Result<Attached, SpokeError> {
    let hub = plan.hubs.get(index).ok_or_else(|| SpokeError::Hub {
        url: String::new(),
        reason: "the replication plan names no hub".into(),
    })?;
    let running = link::start(
        store,
        &remote(hub, config, me),
        &plan.databases,
        &[Direction::Push, Direction::Pull],
        &plan.link,
        shutdown,
    )
    .await
    .map_err(|e| hub_error(hub, e))?;
    node.fleet().set_links(vec![OwnLink {
        remote: hub.name.clone(),
        url: hub.grpc.clone(),
        role: "hub".into(),
        replications: running.iter().map(Replication::status).collect(),
    }]);
    let lane = shutdown.child_token();
    lane::start(
        lane::LaneTo {
            hub,
            me,
            tls: config.tls.as_ref(),
            bearer: config.hub_token.as_deref(),
            connect_timeout: plan.link.connect_timeout,
            backoff: plan.link.backoff,
        },
        store.clone(),
        &node.revocations(),
        lane.clone(),
    )?;
    Ok(Attached {
        replications: running,
        lane,
    })
}

/// A task asking every hub of the plan, each [`failover::PROBE_INTERVAL`], whether it
/// answers (a `DbInfo` call on the first database within the dial timeout), and sending
/// each round's answers. Not started for a single hub: there is nowhere to move to.
struct Probes {
    round: tokio::sync::mpsc::Receiver<Vec<bool>>,
    stop: CancellationToken,
}

impl Probes {
    fn start(plan: &ReplicationPlan, config: &SpokeConfig, me: &str) -> Result<Probes, SpokeError> {
        let (tx, round) = tokio::sync::mpsc::channel(1);
        let stop = CancellationToken::new();
        let Some(db) = plan.databases.first().filter(|_| plan.hubs.len() > 1) else {
            return Ok(Probes { round, stop });
        };
        let mut peers = Vec::new();
        for hub in &plan.hubs {
            let r = remote(hub, config, me);
            let channel =
                GrpcPeer::channel(r.url, plan.link.connect_timeout, r.tls).map_err(|e| hub_error(hub, e))?;
            let mut peer = GrpcPeer::new(channel, r.url, db.name.as_str(), "")
                .with_call_timeout(plan.link.connect_timeout);
            if let Some(token) = r.bearer {
                peer = peer.with_bearer(token).map_err(|e| hub_error(hub, e))?;
            }
            peers.push(Arc::new(peer));
        }
        let token = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(failover::PROBE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let asks = peers.iter().map(|p| async move {
                    // Any answer, even a refusal, means the hub is up; only silence is not.
                    !matches!(p.info(false).await, Err(PeerError::Unreachable { .. }))
                });
                let answered = futures_util::future::join_all(asks).await;
                if tx.send(answered).await.is_err() {
                    return;
                }
            }
        });
        Ok(Probes { round, stop })
    }

    fn stop(&self) {
        self.stop.cancel();
    }
}
