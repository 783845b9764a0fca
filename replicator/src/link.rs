//! A link: the continuous replications between this node's store and one remote
//! fleet node over gRPC, for a set of databases. A spoke runs a push and a pull
//! with its hub; a hub runs a pull from each of its peer hubs (each hub pulls from
//! the others, so a pair replicates both ways with each side dialling out).
//!
//! Each direction shares one HTTP/2 connection across databases, so a link is two
//! connections at most however many databases it carries.

use std::sync::Arc;
use std::time::Duration;

use store::{DbName, DbOptions, Store};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::{GrpcPeer, LocalPeer, Peer, PeerError, Replication, ReplicationSpec};

/// A database a link replicates, with the options it is created with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicatedDb {
    /// Its name.
    pub name: DbName,
    /// Its options (expiry field, revs limit), used where it is created.
    pub options: DbOptions,
}

/// How a link's replications run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkSettings {
    /// Changes per replication batch.
    pub batch_size: usize,
    /// Retry delays towards the remote.
    pub backoff: Backoff,
    /// Least time between checkpoints while changes flow.
    pub checkpoint_interval: Duration,
    /// Connection timeout towards the remote.
    pub connect_timeout: Duration,
}

/// Which way a replication of a link moves changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Local → remote.
    Push,
    /// Remote → local.
    Pull,
}

impl Direction {
    /// `push` or `pull`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Push => "push",
            Direction::Pull => "pull",
        }
    }
}

/// The remote end of a link and how this node proves who it is there.
#[derive(Clone, Debug)]
pub struct Remote<'a> {
    /// gRPC URL, `https://ip:port` (or `http://` on a loopback fleet).
    pub url: &'a str,
    /// How this node is named in the remote's fleet status, e.g. `eu-west/eu-west-1`.
    pub me: &'a str,
    /// This node's certificate and the fleet CA, for `https://`.
    pub tls: Option<&'a Arc<proto::tls::ReloadingTls>>,
    /// A bearer token, where there is no certificate to present (a loopback fleet).
    pub bearer: Option<&'a str>,
}

/// The label of the replication of `db` in `direction`: `push:sessions`, `pull:sessions`.
pub fn label(direction: Direction, db: &DbName) -> String {
    format!("{}:{db}", direction.as_str())
}

/// Creates `databases` in `store` if missing, then starts one continuous replication
/// per database and direction with `remote`, all of a direction over one connection.
/// They run until `shutdown` or [`Replication::stop`]; the remote's database is created
/// by whichever direction reaches it first.
pub async fn start(
    store: &Store,
    remote: &Remote<'_>,
    databases: &[ReplicatedDb],
    directions: &[Direction],
    settings: &LinkSettings,
    shutdown: &CancellationToken,
) -> Result<Vec<Replication>, PeerError> {
    for db in databases {
        match store.create_db(&db.name, db.options.clone()).await {
            Ok(()) | Err(store::Error::DbExists { .. }) => {}
            Err(e) => {
                return Err(PeerError::Store(e));
            }
        }
    }
    let mut replications = Vec::new();
    for &direction in directions {
        let channel = GrpcPeer::channel(remote.url, settings.connect_timeout, remote.tls)?;
        for db in databases {
            let local: Arc<dyn Peer> =
                Arc::new(LocalPeer::new(store.clone(), db.name.clone(), db.options.clone()));
            let mut peer = GrpcPeer::new(channel.clone(), remote.url, db.name.as_str(), remote.me)
                .with_create_options(db.options.clone());
            if let Some(token) = remote.bearer {
                peer = peer.with_bearer(token)?;
            }
            let peer: Arc<dyn Peer> = Arc::new(peer);
            let (source, target) = match direction {
                Direction::Push => (local, peer),
                Direction::Pull => (peer, local),
            };
            let mut spec = ReplicationSpec::new(source, target, label(direction, &db.name));
            spec.continuous = true;
            spec.create_target = direction == Direction::Push;
            spec.create_source = direction == Direction::Pull;
            spec.batch_size = settings.batch_size;
            spec.backoff = settings.backoff;
            spec.checkpoint_interval = settings.checkpoint_interval;
            replications.push(Replication::start(spec, shutdown.clone()));
        }
    }
    Ok(replications)
}

/// Stops `running`, each within 10 s (they write a last checkpoint first).
pub async fn stop(running: Vec<Replication>) {
    for r in running {
        if tokio::time::timeout(Duration::from_secs(10), r.stop())
            .await
            .is_err()
        {
            tracing::warn!("a replication did not stop within 10 s");
        }
    }
}
