//! The typed topology: what a valid topology file says, with addresses parsed and defaults filled.
//!
//! Values of these types come from [`Topology::parse`] / [`Topology::load`], which check every
//! cross-reference (unique names and addresses, known failover targets) before handing one out.
//! Fields are public so that servers can read them directly; code that builds a `Topology` by
//! hand takes on the checking itself.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// The whole fleet as one topology file describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Topology {
    /// The fleet's name, shown on status pages and passed to ansible as `fleet_name`.
    pub fleet: FleetName,
    /// The hubs in file order, at least one: each a full replica. They replicate with each
    /// other continuously; every spoke replicates with one of them at a time (see
    /// [`Topology::hubs_for`]).
    pub hubs: Vec<Hub>,
    /// Datacentres in file order; the order is kept because ops read `show` output against the file.
    pub datacentres: Vec<Datacentre>,
    /// The databases that exist on every node and replicate between spokes and the hub.
    pub databases: Vec<DatabaseSpec>,
    /// Replication link settings: defaults and per-datacentre overrides.
    pub links: Links,
    /// Defaults for edge-clients in app servers.
    pub client: ClientSettings,
    /// TLS material for every link; `None` means plaintext, which a topology allows only when
    /// every address is loopback.
    pub tls: Option<TlsFiles>,
    /// Where the fleet's credentials are; `None` lets each node generate its own admin.
    pub auth: Option<AuthFiles>,
}

// Node, datacentre and fleet names share one shape: a string checked by `check_label`.
macro_rules! label_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Checks `name` against the label rule (see [`check_label`]).
            pub fn new(name: impl Into<String>) -> Result<Self, String> {
                let name = name.into();
                check_label(&name)?;
                Ok($name(name))
            }

            /// The name as written in the topology file.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // `pad`, not `write_str`, so that width and alignment in format strings apply.
                f.pad(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

label_type!(
    /// The name of a node: the hub or a spoke. Unique across the whole fleet.
    NodeName
);
label_type!(
    /// The name of a datacentre. Unique across the fleet and distinct from the hub's name, since a
    /// failover list may name either.
    DatacentreName
);
label_type!(
    /// The name of the fleet, for humans and for deployment tooling.
    FleetName
);

/// Checks the rule shared by node, datacentre and fleet names: 1 to 63 characters of `a-z`, `0-9`
/// and `-`, not starting or ending with `-`. The error says what is wrong.
///
/// It is a DNS label's rule because node names become host names in the ansible inventory and
/// datacentre names become group names with `-` turned into `_` (which, with no `_` allowed in
/// names, cannot make two groups collide).
pub fn check_label(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name must not be empty".to_string());
    }
    if name.len() > 63 {
        return Err(format!(
            "name `{name}` is {} characters long; at most 63 are allowed",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "name `{name}` contains {bad:?}; use lowercase letters a-z, digits 0-9 and `-` (names become host \
             and group names)"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!("name `{name}` must not start or end with `-`"));
    }
    Ok(())
}

/// A hub: a full replica of every database, a fan-out point and a last-resort read target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hub {
    /// Unique among all nodes; failover lists may name it.
    pub name: NodeName,
    /// CouchDB-compatible HTTP API, status page and metrics.
    pub http: SocketAddr,
    /// gRPC: Sessions and Replication.
    pub grpc: SocketAddr,
    /// Where the hub keeps its store; `None` lets the binary choose.
    pub data_dir: Option<PathBuf>,
}

/// One datacentre: its spokes, and where its app servers go when those spokes fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Datacentre {
    /// Unique among datacentres and distinct from every hub's name.
    pub name: DatacentreName,
    /// The hub this datacentre's spokes replicate with while it is reachable; `None` means the
    /// first hub. Validation guarantees it names a hub.
    pub hub: Option<NodeName>,
    /// Failover after this datacentre's own spokes, as written in the file (see
    /// [`Topology::failover_chain`] for the expanded chain, which always includes the hub).
    pub failover: Vec<FailoverStep>,
    /// At least one, in file order: edge-clients try them in this order.
    pub spokes: Vec<Spoke>,
}

/// One entry of a datacentre's `failover` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailoverStep {
    /// A hub (named by its node name in the file).
    Hub(NodeName),
    /// Another datacentre: all of its spokes, in their file order.
    Datacentre(DatacentreName),
}

/// A spoke: a node in a datacentre that serves reads and writes and replicates with the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Spoke {
    /// Unique among all nodes (the hub accepts replication only from spokes it knows by name).
    pub name: NodeName,
    /// CouchDB-compatible HTTP API, status page and metrics.
    pub http: SocketAddr,
    /// gRPC: Sessions and Replication.
    pub grpc: SocketAddr,
    /// Where the spoke keeps its store; `None` lets the binary choose.
    pub data_dir: Option<PathBuf>,
}

/// CouchDB's default, used when a database does not set `revs_limit`.
pub const DEFAULT_REVS_LIMIT: u32 = 1000;

/// A database that exists on every node and replicates through the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseSpec {
    /// Follows CouchDB's rule `^[a-z][a-z0-9_$()+/-]*$`, at most 238 characters.
    pub name: String,
    /// A body field holding the document's expiry time; `None` means documents never expire.
    pub expiry_field: Option<String>,
    /// How many revisions of each document's history are kept (at least 1).
    pub revs_limit: u32,
}

/// Settings of one spoke<->hub replication link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LinkSettings {
    /// Changes fetched and written per batch.
    pub batch_size: u32,
    /// First retry delay after a link error; doubles (with jitter) up to `backoff_max_ms`.
    pub backoff_initial_ms: u64,
    /// Ceiling of the retry delay.
    pub backoff_max_ms: u64,
    /// How often a running replication writes its checkpoint.
    pub checkpoint_interval_ms: u64,
    /// How long dialling the hub may take before it counts as a failure.
    pub connect_timeout_ms: u64,
}

impl LinkSettings {
    /// First retry delay.
    pub fn backoff_initial(&self) -> Duration {
        Duration::from_millis(self.backoff_initial_ms)
    }
    /// Ceiling of the retry delay.
    pub fn backoff_max(&self) -> Duration {
        Duration::from_millis(self.backoff_max_ms)
    }
    /// Checkpoint period.
    pub fn checkpoint_interval(&self) -> Duration {
        Duration::from_millis(self.checkpoint_interval_ms)
    }
    /// Dial timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

impl Default for LinkSettings {
    /// Defaults for links whose `[links]` section leaves a value out.
    fn default() -> Self {
        LinkSettings {
            batch_size: 500,
            backoff_initial_ms: 100,
            backoff_max_ms: 30_000,
            checkpoint_interval_ms: 5_000,
            connect_timeout_ms: 2_000,
        }
    }
}

/// Per-datacentre changes to the link defaults; `None` keeps the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LinkOverride {
    /// Overrides [`LinkSettings::batch_size`].
    pub batch_size: Option<u32>,
    /// Overrides [`LinkSettings::backoff_initial_ms`].
    pub backoff_initial_ms: Option<u64>,
    /// Overrides [`LinkSettings::backoff_max_ms`].
    pub backoff_max_ms: Option<u64>,
    /// Overrides [`LinkSettings::checkpoint_interval_ms`].
    pub checkpoint_interval_ms: Option<u64>,
    /// Overrides [`LinkSettings::connect_timeout_ms`].
    pub connect_timeout_ms: Option<u64>,
}

impl LinkOverride {
    /// `base` with this override's values put in.
    pub fn apply(&self, base: LinkSettings) -> LinkSettings {
        LinkSettings {
            batch_size: self.batch_size.unwrap_or(base.batch_size),
            backoff_initial_ms: self.backoff_initial_ms.unwrap_or(base.backoff_initial_ms),
            backoff_max_ms: self.backoff_max_ms.unwrap_or(base.backoff_max_ms),
            checkpoint_interval_ms: self.checkpoint_interval_ms.unwrap_or(base.checkpoint_interval_ms),
            connect_timeout_ms: self.connect_timeout_ms.unwrap_or(base.connect_timeout_ms),
        }
    }
}

/// The `[links]` section: defaults for every link, and overrides by datacentre.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Links {
    /// Applies to every datacentre's links unless overridden.
    pub defaults: LinkSettings,
    /// Keyed by datacentre; every key names a datacentre of the topology.
    pub overrides: BTreeMap<DatacentreName, LinkOverride>,
}

/// Edge-client defaults; app servers may still override them in their own configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClientSettings {
    /// Budget for one read across the whole chain.
    pub deadline_ms: u64,
    /// Start a second request to the next target if the first has not answered after this long;
    /// `None` disables hedging. Always below `deadline_ms`.
    pub hedge_after_ms: Option<u64>,
    /// While the invalidation stream is down, cached entries older than this are not served;
    /// 0 means nothing cached is served then.
    pub max_staleness_ms: u64,
    /// Byte bound of the in-process LRU; 0 disables the cache.
    pub cache_bytes: u64,
    /// How long a "not found" is remembered; 0 disables negative caching.
    pub negative_ttl_ms: u64,
}

impl ClientSettings {
    /// Read deadline.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
    /// Hedging delay, if hedging is on.
    pub fn hedge_after(&self) -> Option<Duration> {
        self.hedge_after_ms.map(Duration::from_millis)
    }
    /// Staleness bound while invalidation is down.
    pub fn max_staleness(&self) -> Duration {
        Duration::from_millis(self.max_staleness_ms)
    }
    /// Negative-cache lifetime.
    pub fn negative_ttl(&self) -> Duration {
        Duration::from_millis(self.negative_ttl_ms)
    }
}

impl Default for ClientSettings {
    /// Defaults for values the `[client]` section leaves out.
    fn default() -> Self {
        ClientSettings {
            deadline_ms: 50,
            hedge_after_ms: None,
            max_staleness_ms: 2_000,
            cache_bytes: 32 * 1024 * 1024,
            negative_ttl_ms: 500,
        }
    }
}

/// What `[tls]` file names put a node's name in place of.
pub const NODE_PLACEHOLDER: &str = "{node}";

/// PEM files for mutual TLS on every link.
///
/// [`Topology::load`] resolves relative paths against the topology file's directory, so a file
/// and its certificates can be checked in side by side; [`Topology::parse`] keeps them as written.
/// `cert` and `key` may contain [`NODE_PLACEHOLDER`] (one directory holding every node's files);
/// without it each host has its own file at that path. [`TlsFiles::for_node`] fills it in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsFiles {
    /// CA bundle that peers' certificates must chain to.
    pub ca: PathBuf,
    /// Each node's certificate chain; `{node}`, if present, stands for the node's name.
    pub cert: String,
    /// Each node's private key; `{node}`, if present, stands for the node's name.
    pub key: String,
}

/// One node's TLS files, with its name filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTlsFiles {
    /// CA bundle.
    pub ca: PathBuf,
    /// The node's certificate chain.
    pub cert: PathBuf,
    /// The node's private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files of node `name`.
    ///
    /// ```
    /// # use topology::{NodeName, TlsFiles};
    /// let tls = TlsFiles { ca: "tls/ca.pem".into(), cert: "tls/{node}.pem".into(), key: "tls/{node}.key".into() };
    /// let files = tls.for_node(&NodeName::new("eu-west-1").unwrap());
    /// assert_eq!(files.cert, std::path::Path::new("tls/eu-west-1.pem"));
    /// ```
    pub fn for_node(&self, name: &NodeName) -> NodeTlsFiles {
        NodeTlsFiles {
            ca: self.ca.clone(),
            cert: PathBuf::from(self.cert.replace(NODE_PLACEHOLDER, name.as_str())),
            key: PathBuf::from(self.key.replace(NODE_PLACEHOLDER, name.as_str())),
        }
    }
}

/// The `[auth]` section: files holding credentials (never the credentials themselves).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthFiles {
    /// The secrets file: users with password hashes, hashed app tokens, the cookie key.
    pub secrets: PathBuf,
}
