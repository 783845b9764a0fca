//! Turning a topology file into each role's configuration, and keeping it
//! current: the file is polled and re-read on SIGHUP; an invalid edit is
//! rejected (logged, counted) and the last good topology stays in force.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use replicator::backoff::Backoff;
use replicator::link::LinkSettings;
use server::fleet::ExpectedSpoke;
use spoke::{HubAddr, ReplicatedDb, ReplicationPlan};
use store::{DbName, DbOptions};
use tokio::sync::watch;
use topology::{Topology, TopologyWatcher};

/// How often the topology file is checked for changes.
const POLL: Duration = Duration::from_secs(1);

/// Loads `path` and follows it; SIGHUP forces a reload.
pub(crate) fn follow(path: &Path) -> anyhow::Result<Arc<TopologyWatcher>> {
    let watcher = Arc::new(TopologyWatcher::start(path, POLL).map_err(|e| anyhow::anyhow!("{e}"))?);
    let w = watcher.clone();
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match w.reload_now() {
                Ok(_) => tracing::info!(path = %w.path().display(), "topology reloaded on SIGHUP"),
                Err(e) => {
                    tracing::error!(errors = %e, "topology rejected on SIGHUP; keeping the previous one")
                }
            }
        }
    });
    Ok(watcher)
}

/// A watch channel of `f(topology)`, updated on every accepted reload.
pub(crate) fn derive<T: Clone + Send + Sync + 'static>(
    watcher: &Arc<TopologyWatcher>,
    f: impl Fn(&Topology) -> Option<T> + Send + 'static,
) -> anyhow::Result<watch::Receiver<T>> {
    let first = f(&watcher.current()).context("the topology does not describe this node")?;
    let (tx, rx) = watch::channel(first);
    let mut topo = watcher.subscribe();
    tokio::spawn(async move {
        while topo.changed().await.is_ok() {
            let t = topo.borrow_and_update().clone();
            match f(&t) {
                Some(v) => {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
                None => tracing::error!(
                    "the new topology no longer describes this node; keeping the previous configuration"
                ),
            }
        }
    });
    Ok(rx)
}

/// The hub's view: the fleet's name and every spoke it should hear from.
pub(crate) fn expected_spokes(t: &Topology) -> (String, Vec<ExpectedSpoke>) {
    let spokes = t
        .datacentres
        .iter()
        .flat_map(|dc| {
            dc.spokes.iter().map(move |s| ExpectedSpoke {
                datacentre: dc.name.to_string(),
                node: s.name.to_string(),
            })
        })
        .collect();
    (t.fleet.to_string(), spokes)
}

/// The databases of the topology, as links replicate them.
fn replicated_dbs(t: &Topology) -> Vec<ReplicatedDb> {
    t.databases()
        .iter()
        .filter_map(|d| {
            Some(ReplicatedDb {
                name: DbName::new(&d.name).ok()?,
                options: DbOptions {
                    revs_limit: Some(d.revs_limit),
                    expiry_field: d.expiry_field.clone(),
                },
            })
        })
        .collect()
}

/// A spoke's replication plan from the topology: its hubs in its order, the
/// databases, and the datacentre's link settings.
pub(crate) fn spoke_plan(t: &Topology, datacentre: &str) -> Option<ReplicationPlan> {
    let dc = t.datacentre(datacentre)?;
    let link = t.link_settings_for(&dc.name);
    let hubs = t
        .hubs_for(&dc.name)
        .into_iter()
        .map(|h| HubAddr {
            name: h.name.to_string(),
            grpc: grpc_url(t, h.grpc),
        })
        .collect();
    Some(ReplicationPlan {
        hubs,
        databases: replicated_dbs(t),
        link: link_settings(&link),
    })
}

/// A hub's view of its peer hubs: each other hub of the topology, the databases, and
/// the link defaults.
pub(crate) fn hub_peers(t: &Topology, me: &str) -> Option<hub::PeerPlan> {
    t.hub(me)?;
    Some(hub::PeerPlan {
        peers: t
            .peer_hubs(me)
            .into_iter()
            .map(|h| hub::PeerHub {
                name: h.name.to_string(),
                grpc: grpc_url(t, h.grpc),
            })
            .collect(),
        databases: replicated_dbs(t),
        link: link_settings(&t.links.defaults),
    })
}

fn grpc_url(t: &Topology, addr: std::net::SocketAddr) -> String {
    format!("{}://{addr}", if t.tls.is_some() { "https" } else { "http" })
}

fn link_settings(link: &topology::LinkSettings) -> LinkSettings {
    LinkSettings {
        batch_size: link.batch_size as usize,
        backoff: Backoff {
            initial: link.backoff_initial(),
            max: link.backoff_max(),
        },
        checkpoint_interval: link.checkpoint_interval(),
        connect_timeout: link.connect_timeout(),
    }
}
