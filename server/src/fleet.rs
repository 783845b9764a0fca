//! What the hub knows of the spokes that dial it, for the status page: who is
//! connected, when each was last heard from, and how far behind its pull is.
//! Expected spokes come from the role (the topology); the server knows no file
//! syntax.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use proto::tls::{ClientRole, Identity};
use serde::Serialize;

/// A spoke the fleet is expected to have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExpectedSpoke {
    /// Its datacentre.
    pub datacentre: String,
    /// Its name.
    pub node: String,
}

/// What the hub has seen of one peer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PeerState {
    /// The certificate identity it authenticated with, e.g.
    /// `sessionfleet:spoke/eu-west/eu-west-1`; `None` on a plaintext fleet, where
    /// the name is what the peer says it is.
    pub identity: Option<String>,
    /// Open pull streams (a connected spoke has one per database).
    pub open_streams: u32,
    /// Last time anything arrived from or was sent to it (unix ms).
    pub last_contact_ms: u64,
    /// Last replicated write it pushed (unix ms).
    pub last_push_ms: u64,
    /// Per database: the hub's sequence minus what its pull has been sent.
    pub pull_seq_lag: BTreeMap<String, u64>,
    /// Per database: when its pull was last caught up (unix ms).
    pub caught_up_ms: BTreeMap<String, u64>,
}

/// One of this node's own links: the replications it runs with another fleet node
/// (a spoke's with its hub, a hub's with a peer hub), set by the role.
#[derive(Clone, Debug)]
pub struct OwnLink {
    /// The remote node's name.
    pub remote: String,
    /// Its gRPC URL.
    pub url: String,
    /// What the remote is to this node: `hub` (a spoke's hub) or `peer-hub`.
    pub role: String,
    /// The link's replications.
    pub replications: Vec<Arc<replicator::ReplicationStatus>>,
}

/// The node's view of the fleet: on a hub, the spokes and peer hubs that dial it;
/// on any node, its own links.
#[derive(Default)]
pub struct Fleet {
    /// The fleet's name, when known.
    pub name: ArcSwap<String>,
    /// The spokes the topology names (empty: standalone).
    pub expected: ArcSwap<Vec<ExpectedSpoke>>,
    /// The other hubs the topology names (empty: a single hub, or standalone).
    pub peer_hubs: ArcSwap<Vec<String>>,
    peers: Mutex<BTreeMap<String, PeerState>>,
    links: ArcSwap<Vec<OwnLink>>,
}

/// How a peer hub is named among the peers: `hub/<node>` (spokes are `<datacentre>/<node>`,
/// and no datacentre may share a hub's name, so the two cannot collide).
pub const HUB_PEER_PREFIX: &str = "hub/";

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Fleet {
    /// Replaces the expected spokes (on topology reload).
    pub fn set_expected(&self, fleet_name: String, spokes: Vec<ExpectedSpoke>) {
        self.name.store(Arc::new(fleet_name));
        self.expected.store(Arc::new(spokes));
    }

    /// Replaces the peer hubs this hub admits and shows (on topology reload).
    pub fn set_peer_hubs(&self, hubs: Vec<String>) {
        self.peer_hubs.store(Arc::new(hubs));
    }

    /// Replaces this node's own links (when its replications start or move).
    pub fn set_links(&self, links: Vec<OwnLink>) {
        self.links.store(Arc::new(links));
    }

    /// This node's own links.
    pub fn links(&self) -> Arc<Vec<OwnLink>> {
        self.links.load_full()
    }

    fn with(&self, peer: &str, f: impl FnOnce(&mut PeerState)) {
        if peer.is_empty() {
            return;
        }
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let state = peers.entry(peer.to_owned()).or_default();
        state.last_contact_ms = now_ms();
        f(state);
    }

    pub(crate) fn stream_opened(&self, peer: &str, identity: Option<&Identity>) {
        self.with(peer, |s| {
            s.open_streams += 1;
            s.identity = identity.map(Identity::to_uri);
        });
    }

    pub(crate) fn stream_closed(&self, peer: &str) {
        self.with(peer, |s| s.open_streams = s.open_streams.saturating_sub(1));
    }

    pub(crate) fn pulled(&self, peer: &str, db: &str, sent_seq: u64, update_seq: u64) {
        self.with(peer, |s| {
            let lag = update_seq.saturating_sub(sent_seq);
            s.pull_seq_lag.insert(db.to_owned(), lag);
            if lag == 0 {
                s.caught_up_ms.insert(db.to_owned(), now_ms());
            }
        });
    }

    pub(crate) fn pushed(&self, peer: &str) {
        self.with(peer, |s| s.last_push_ms = now_ms());
    }

    /// Whether a caller with certificate `identity` may replicate with this node,
    /// and under which name it appears on the status page. Spokes and other hubs
    /// must be named by the current topology (any of the fleet's CA when the node
    /// runs without one); replicator and admin clients may replicate; nobody else may.
    pub fn admit(&self, identity: &Identity) -> Result<String, String> {
        match identity {
            Identity::Spoke { datacentre, node } => {
                let expected = self.expected.load();
                let named = expected
                    .iter()
                    .any(|s| &s.datacentre == datacentre && &s.node == node);
                if expected.is_empty() || named {
                    Ok(format!("{datacentre}/{node}"))
                } else {
                    Err(format!(
                        "spoke {datacentre}/{node} is not in the topology of fleet {:?}",
                        self.name.load().as_str()
                    ))
                }
            }
            Identity::Hub { node } => {
                let expected = self.expected.load();
                let hubs = self.peer_hubs.load();
                if (expected.is_empty() && hubs.is_empty()) || hubs.iter().any(|h| h == node) {
                    Ok(format!("{HUB_PEER_PREFIX}{node}"))
                } else {
                    Err(format!(
                        "hub {node} is not a peer hub in the topology of fleet {:?}",
                        self.name.load().as_str()
                    ))
                }
            }
            Identity::Client {
                role: role @ (ClientRole::Replicator | ClientRole::Admin),
                name,
            } => Ok(format!("{}/{name}", role.as_str())),
            other => Err(format!("{} may not replicate", other.to_uri())),
        }
    }

    /// A copy of every peer's state.
    pub fn peers(&self) -> BTreeMap<String, PeerState> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
