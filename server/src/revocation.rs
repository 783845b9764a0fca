//! The priority lane for revocations. A revocation deletes every live revision of
//! a session and sends the tombstones ahead of bulk replication: the spoke where it
//! was asked hands them to its hub on the lane's own connection (its [`Uplink`]);
//! the hub commits them and sends them down the priority stream every spoke holds
//! open; each spoke commits them and acknowledges. The hub answers the revoking
//! spoke with who acknowledged within the caller's timeout.
//!
//! The hub keeps what each expected spoke has not acknowledged (bounded), and sends
//! that first when the spoke's priority stream connects again, so a datacentre cut
//! off during a revocation gets it before the bulk backlog.
//!
//! This module holds the hub's bookkeeping and the handlers' shared steps; the
//! transport is the `grpc` module's, and dialling the hub is the spoke role's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use futures_util::future::BoxFuture;
use proto::v1::{FanoutResponse, PriorityRevocation, Revision};
use store::{Database, DocId, Edit, OpenRev, OpenRevs, Rev};
use tokio::sync::{mpsc, Notify};

use crate::fleet::HUB_PEER_PREFIX;
use crate::node::Shared;

/// Most revocations kept per spoke while it does not acknowledge them (a spoke cut
/// off for longer than this many revocations gets the older ones by bulk replication).
pub const MAX_PENDING_PER_PEER: usize = 10_000;

/// How a spoke hands a revocation to its hub: `(database, tombstones, timeout)` to
/// who has applied it. The spoke's role makes it; when the hub cannot be asked, the
/// answer names the spoke as applied and the hub (standing for everything behind
/// it) as not.
pub type Uplink =
    Arc<dyn Fn(String, Vec<Revision>, Duration) -> BoxFuture<'static, FanoutResponse> + Send + Sync>;

/// A revocation's wait when the caller gives none, and the most it may ask for.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// See [`DEFAULT_TIMEOUT`].
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// The wait a caller's `timeout_ms` asks for (0: the default), at most [`MAX_TIMEOUT`].
pub(crate) fn timeout(ms: u32) -> Duration {
    match ms {
        0 => DEFAULT_TIMEOUT,
        ms => Duration::from_millis(u64::from(ms)).min(MAX_TIMEOUT),
    }
}

/// What a revocation did.
#[derive(Debug)]
pub(crate) struct Revoked {
    /// The winning tombstone.
    pub rev: Rev,
    /// Nodes that committed it.
    pub applied: Vec<String>,
    /// Nodes that had not acknowledged it when the wait ended.
    pub not_applied: Vec<String>,
}

/// Revokes `id` in `db` where the request arrived: deletes every live leaf here,
/// then hands the tombstones to the hub on the priority lane (a spoke), or fans them
/// out itself (a hub). `Ok(None)` if this node has never seen `id`.
pub(crate) async fn revoke(
    shared: &Shared,
    db: &Database,
    id: &DocId,
    wait: Duration,
) -> Result<Option<Revoked>, tonic::Status> {
    let Some((rev, revisions)) = revoke_locally(db, id).await.map_err(crate::grpc::to_status)? else {
        return Ok(None);
    };
    let answer = match shared.revocations.uplink() {
        Some(up) => up(db.name().to_string(), revisions, wait).await,
        None => fan_out_here(shared, db, revisions, "", wait).await?,
    };
    metrics::counter!("revocations_total").increment(1);
    tracing::info!(database = %db.name(), applied = answer.applied.len(), not_applied = ?answer.not_applied, "session revoked");
    Ok(Some(Revoked {
        rev,
        applied: answer.applied,
        not_applied: answer.not_applied,
    }))
}

/// The hub's step of a revocation: commit the tombstones, send them down every
/// spoke's priority stream (the expected spokes and any other streaming peer, but
/// not `origin`), and say who acknowledged within `timeout`. This hub and `origin`
/// count as applied.
pub(crate) async fn fan_out_here(
    shared: &Shared,
    db: &Database,
    revisions: Vec<Revision>,
    origin: &str,
    timeout: Duration,
) -> Result<FanoutResponse, tonic::Status> {
    let errors = crate::grpc::merge_revisions(db, revisions.clone())
        .await
        .map_err(crate::grpc::to_status)?;
    if let Some(e) = errors.first() {
        return Err(tonic::Status::invalid_argument(format!(
            "revocation of {} refused: {}: {}",
            e.id, e.error, e.reason
        )));
    }
    // A revocation that did not come from another hub goes to the peer hubs too, for
    // the spokes attached to them; one that did stops here (no loops).
    let forward = match shared.revocations.forwards() {
        Some(f) if !origin.starts_with(HUB_PEER_PREFIX) => Some(f),
        _ => None,
    };
    let expected: Vec<String> = shared
        .fleet
        .expected
        .load()
        .iter()
        .map(|s| format!("{}/{}", s.datacentre, s.node))
        .filter(|p| p != origin)
        .collect();
    let streaming: Vec<String> = shared
        .revocations
        .streaming()
        .into_iter()
        .filter(|p| p != origin)
        .collect();
    // A single hub waits for every expected spoke. A hub of a pair waits only for the
    // spokes attached to it (the others acknowledge to the other hub) and keeps the
    // revocation queued for the rest, in case they attach here next.
    let pair = forward.is_some() || origin.starts_with(HUB_PEER_PREFIX);
    let (wait_for, queue_only): (Vec<String>, Vec<String>) = if pair {
        let rest = expected
            .iter()
            .filter(|p| !streaming.contains(p))
            .cloned()
            .collect();
        (streaming, rest)
    } else {
        let mut all: Vec<String> = expected.iter().cloned().chain(streaming).collect();
        all.sort();
        all.dedup();
        (all, Vec::new())
    };
    let db_name = db.name().to_string();
    let here = shared
        .revocations
        .fan_out(&db_name, revisions.clone(), wait_for, queue_only, timeout);
    let there = async {
        match forward {
            Some(f) => Some(f(db_name.clone(), revisions, timeout).await),
            None => None,
        }
    };
    let ((mut applied, mut not_applied), there) = tokio::join!(here, there);
    applied.push(format!("{HUB_PEER_PREFIX}{}", shared.config.node_name));
    if !origin.is_empty() {
        applied.push(origin.to_owned());
    }
    if let Some(r) = there {
        applied.extend(r.applied);
        not_applied.extend(r.not_applied);
        // Expected spokes no hub of the pair heard from: cut off from both, or attached
        // to a hub that did not answer.
        not_applied.extend(expected.iter().filter(|p| !applied.contains(p)).cloned());
    }
    applied.sort();
    applied.dedup();
    // A spoke attached to the other hub is "not applied" here and applied there.
    not_applied.retain(|n| !applied.contains(n));
    not_applied.sort();
    not_applied.dedup();
    Ok(FanoutResponse { applied, not_applied })
}

/// A fan-out waiting for acknowledgements.
struct Wait {
    remaining: HashSet<String>,
    applied: Vec<String>,
    done: Arc<Notify>,
}

#[derive(Default)]
struct State {
    streams: HashMap<String, mpsc::UnboundedSender<PriorityRevocation>>,
    pending: HashMap<String, BTreeMap<u64, PriorityRevocation>>,
    waits: HashMap<u64, Wait>,
}

/// A node's side of the lane: the hub's streams, pending revocations and waits, and
/// (on a spoke) the uplink to its hub.
#[derive(Default)]
pub struct Revocations {
    next: AtomicU64,
    state: Mutex<State>,
    uplink: ArcSwapOption<Uplink>,
    forwards: ArcSwapOption<Uplink>,
}

impl Revocations {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets (or clears) how this node hands revocations to its hub: a spoke's role sets
    /// it when it attaches to a hub.
    pub fn set_uplink(&self, uplink: Option<Uplink>) {
        self.uplink.store(uplink.map(Arc::new));
    }

    pub(crate) fn uplink(&self) -> Option<Uplink> {
        self.uplink.load_full().map(|u| (*u).clone())
    }

    /// Sets (or clears) how this hub hands revocations to its peer hubs (a pair's
    /// role sets it): their answers are merged into this hub's.
    pub fn set_forwards(&self, forwards: Option<Uplink>) {
        self.forwards.store(forwards.map(Arc::new));
    }

    fn forwards(&self) -> Option<Uplink> {
        self.forwards.load_full().map(|u| (*u).clone())
    }

    /// Sends `revisions` of `db` to every one of `peers` and `queue_only` (queued for
    /// those without an open stream) and waits up to `timeout` for the acknowledgements
    /// of `peers`. Returns (acknowledged, not acknowledged) among `peers`, each sorted.
    pub(crate) async fn fan_out(
        &self,
        db: &str,
        revisions: Vec<Revision>,
        peers: Vec<String>,
        queue_only: Vec<String>,
        timeout: Duration,
    ) -> (Vec<String>, Vec<String>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let msg = PriorityRevocation {
            id,
            db: db.to_owned(),
            revisions,
        };
        let done = Arc::new(Notify::new());
        {
            let mut st = self.state();
            for peer in peers.iter().chain(&queue_only) {
                let queue = st.pending.entry(peer.clone()).or_default();
                queue.insert(id, msg.clone());
                while queue.len() > MAX_PENDING_PER_PEER {
                    queue.pop_first();
                }
                let closed = st
                    .streams
                    .get(peer)
                    .is_some_and(|tx| tx.send(msg.clone()).is_err());
                if closed {
                    st.streams.remove(peer);
                }
            }
            st.waits.insert(
                id,
                Wait {
                    remaining: peers.iter().cloned().collect(),
                    applied: Vec::new(),
                    done: done.clone(),
                },
            );
        }
        if !peers.is_empty() {
            let _ = tokio::time::timeout(timeout, done.notified()).await;
        }
        let wait = self.state().waits.remove(&id);
        let (mut applied, mut missing): (Vec<String>, Vec<String>) = match wait {
            Some(w) => (w.applied, w.remaining.into_iter().collect()),
            None => (Vec::new(), peers),
        };
        applied.sort();
        missing.sort();
        metrics::counter!("revocations_fanned_out_total").increment(1);
        metrics::counter!("revocation_peers_missed_total").increment(missing.len() as u64);
        (applied, missing)
    }

    /// Opens `peer`'s priority stream: what it has not acknowledged comes first, in
    /// order. Replaces an older stream of the same peer.
    pub(crate) fn subscribe(&self, peer: &str) -> mpsc::UnboundedReceiver<PriorityRevocation> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut st = self.state();
        for msg in st.pending.get(peer).into_iter().flat_map(|q| q.values()) {
            let _ = tx.send(msg.clone());
        }
        st.streams.insert(peer.to_owned(), tx);
        rx
    }

    /// `peer` committed revocation `id`.
    pub(crate) fn acknowledge(&self, id: u64, peer: &str) {
        let mut st = self.state();
        if let Some(q) = st.pending.get_mut(peer) {
            q.remove(&id);
        }
        if let Some(w) = st.waits.get_mut(&id) {
            if w.remaining.remove(peer) {
                w.applied.push(peer.to_owned());
            }
            if w.remaining.is_empty() {
                w.done.notify_one();
            }
        }
    }

    /// Peers with an open priority stream.
    pub(crate) fn streaming(&self) -> Vec<String> {
        let mut st = self.state();
        st.streams.retain(|_, tx| !tx.is_closed());
        st.streams.keys().cloned().collect()
    }
}

/// Deletes every live leaf of `id` in `db` (a conflict left alive would keep the
/// session served) and returns the winning tombstone and every leaf with its path,
/// to send on the lane. `None` if `db` has never seen `id`.
pub async fn revoke_locally(db: &Database, id: &DocId) -> store::Result<Option<(Rev, Vec<Revision>)>> {
    let leaves = match db.open_revs(id, &OpenRevs::All, false, false) {
        Ok(l) => l,
        Err(store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let live: Vec<Edit> = leaves
        .iter()
        .filter_map(|l| match l {
            OpenRev::Ok(d) if !d.deleted => Some(Edit::delete(id.clone(), d.rev.clone())),
            _ => None,
        })
        .collect();
    if leaves.is_empty() {
        return Ok(None);
    }
    for r in db.update(live).await {
        // A leaf deleted concurrently is just as gone.
        match r {
            Ok(_) | Err(store::Error::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let leaves: Vec<Rev> = db
        .open_revs(id, &OpenRevs::All, false, false)?
        .into_iter()
        .filter_map(|l| match l {
            OpenRev::Ok(d) => Some(d.rev),
            OpenRev::Missing(_) => None,
        })
        .collect();
    let mut revisions = Vec::new();
    for r in db.replication_revs(id, leaves, &[])? {
        if let OpenRev::Ok(doc) = r {
            revisions.push(Revision {
                id: doc.id.to_string(),
                path: doc
                    .revisions
                    .as_deref()
                    .unwrap_or(std::slice::from_ref(&doc.rev))
                    .iter()
                    .map(Rev::to_string)
                    .collect(),
                deleted: doc.deleted,
                body: doc.body.into(),
            });
        }
    }
    // Every leaf is a tombstone now; the winner among tombstones is the highest revision.
    let rev = revisions
        .iter()
        .filter_map(|r| r.path.first()?.parse::<Rev>().ok())
        .max()
        .ok_or_else(|| store::Error::NotFound {
            id: id.to_string(),
            reason: "deleted",
        })?;
    Ok(Some((rev, revisions)))
}

/// Commits tombstones received on the priority lane, as replication would.
pub async fn apply(db: &Database, revisions: Vec<Revision>) -> Result<(), String> {
    let errors = crate::grpc::merge_revisions(db, revisions)
        .await
        .map_err(|e| e.to_string())?;
    match errors.first() {
        None => Ok(()),
        Some(e) => Err(format!("{} {}: {}: {}", e.id, e.rev, e.error, e.reason)),
    }
}

/// A gRPC client of the lane's own connection to a hub, sending a bearer token if given.
pub type LaneClient = proto::v1::replication_client::ReplicationClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Authorize>,
>;

/// Adds a bearer token (if any) to every call of a [`LaneClient`].
#[derive(Clone)]
pub struct Authorize(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Authorize {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            r.metadata_mut().insert("authorization", v.clone());
        }
        Ok(r)
    }
}

/// A lane client on `channel` (its own connection: nothing else queues on it).
pub fn lane_client(channel: tonic::transport::Channel, bearer: Option<&str>) -> Result<LaneClient, String> {
    let auth = match bearer {
        Some(t) => Some(
            format!("Bearer {t}")
                .parse()
                .map_err(|_| "the token cannot be sent as metadata".to_string())?,
        ),
        None => None,
    };
    Ok(proto::v1::replication_client::ReplicationClient::with_interceptor(channel, Authorize(auth)))
}

/// An uplink handing revocations to the hub `hub` (a name, for answers) over `client`
/// as `me`. When the hub does not answer, `me` counts as applied and `hub/<hub>`,
/// standing for everything behind it, as not.
pub fn uplink(client: LaneClient, me: &str, hub: &str) -> Uplink {
    let (me, hub) = (me.to_owned(), format!("{HUB_PEER_PREFIX}{hub}"));
    Arc::new(move |db, revisions, wait: Duration| {
        let (mut client, me, hub) = (client.clone(), me.clone(), hub.clone());
        Box::pin(async move {
            let mut req = tonic::Request::new(proto::v1::FanoutRequest {
                db,
                revisions,
                origin: me.clone(),
                timeout_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
            });
            // The hub waits `wait` for acknowledgements; the call allows for the trip.
            let allowed = wait.saturating_add(Duration::from_secs(2));
            req.set_timeout(allowed);
            match tokio::time::timeout(allowed, client.fanout(req)).await {
                Ok(Ok(r)) => r.into_inner(),
                failed => {
                    let reason = match failed {
                        Ok(Err(s)) => s.message().to_owned(),
                        _ => format!("no answer within {allowed:?}"),
                    };
                    tracing::warn!(%hub, %reason, "revocation not handed to the hub; bulk replication carries it");
                    FanoutResponse {
                        applied: vec![me],
                        not_applied: vec![hub],
                    }
                }
            }
        })
    })
}

/// Hands a revocation to every uplink of `each` at once and merges the answers.
pub fn all_of(each: Vec<Uplink>) -> Uplink {
    Arc::new(move |db: String, revisions: Vec<Revision>, wait: Duration| {
        let calls: Vec<_> = each
            .iter()
            .map(|u| u(db.clone(), revisions.clone(), wait))
            .collect();
        Box::pin(async move {
            let mut out = FanoutResponse::default();
            for r in futures_util::future::join_all(calls).await {
                out.applied.extend(r.applied);
                out.not_applied.extend(r.not_applied);
            }
            out
        })
    })
}
