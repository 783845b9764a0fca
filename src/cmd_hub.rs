//! `sessionfleet hub`: run the central node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use server::{Limits, ServerConfig};
use store::{Durability, StoreOptions};

/// Flags of a serving node, shared by `hub` and `spoke`.
#[derive(Args, Clone, Debug)]
pub(crate) struct NodeArgs {
    /// The fleet's topology file: this node's addresses, data directory and
    /// (for spokes) what to replicate come from it; flags override. Re-read when
    /// it changes and on SIGHUP.
    #[arg(long, env = "SESSIONFLEET_TOPOLOGY")]
    pub topology: Option<PathBuf>,
    /// Directory of the node's RocksDB store (created if missing).
    #[arg(long, env = "SESSIONFLEET_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the CouchDB-compatible HTTP API [default: from the topology].
    #[arg(long, env = "SESSIONFLEET_HTTP")]
    pub http: Option<SocketAddr>,
    /// Address of the gRPC API (Sessions, Replication) [default: from the topology].
    #[arg(long, env = "SESSIONFLEET_GRPC")]
    pub grpc: Option<SocketAddr>,
    /// When writes are acknowledged: `sync` (after fsync; the default) or
    /// `buffered` (after the OS has them; tests only: loses writes on power loss).
    #[arg(long, env = "SESSIONFLEET_DURABILITY", value_enum, default_value_t = DurabilityArg::Sync)]
    pub durability: DurabilityArg,
    /// Largest request body, in bytes.
    #[arg(long, env = "SESSIONFLEET_MAX_BODY_BYTES", default_value_t = 8 << 20)]
    pub max_body_bytes: usize,
    /// Largest document, in bytes of JSON.
    #[arg(long, env = "SESSIONFLEET_MAX_DOCUMENT_BYTES", default_value_t = 1 << 20)]
    pub max_document_bytes: usize,
    /// Most documents or ids in one bulk request.
    #[arg(long, env = "SESSIONFLEET_MAX_BULK_DOCS", default_value_t = 10_000)]
    pub max_bulk_docs: usize,
    /// Most concurrent HTTP connections; beyond it a connection gets 503 and is
    /// closed. The open-files limit is raised to fit it at start.
    #[arg(long, env = "SESSIONFLEET_MAX_CONNECTIONS", default_value_t = 16_384)]
    pub max_connections: usize,
    /// Most requests worked on at once (HTTP and gRPC; feeds and streams do not
    /// count); beyond it requests get 503 + Retry-After or RESOURCE_EXHAUSTED at once.
    #[arg(long, env = "SESSIONFLEET_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,
    /// Seconds allowed for a client to send a request's headers; also how long an
    /// idle keep-alive connection waits for its next request.
    #[arg(long, env = "SESSIONFLEET_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Seconds allowed to receive a whole request body.
    #[arg(long, env = "SESSIONFLEET_BODY_TIMEOUT_SECS", default_value_t = 30)]
    pub body_timeout_secs: u64,
    /// Seconds between expiry sweeps (0 disables the sweeper).
    #[arg(long, env = "SESSIONFLEET_SWEEP_SECS", default_value_t = 60)]
    pub sweep_secs: u64,
    /// Free space (MiB) the data directory's disk keeps: below it writes get 507
    /// (deletions go on until half of it), and resume when space returns. 0 disables.
    #[arg(long, env = "SESSIONFLEET_MIN_FREE_MIB", default_value_t = 64)]
    pub min_free_mib: u64,
    /// RocksDB memory, in MiB: the block cache, memtables (up to a quarter) included.
    #[arg(long, env = "SESSIONFLEET_CACHE_MIB", default_value_t = 256)]
    pub cache_mib: usize,
    /// Seconds shutdown waits for in-flight requests.
    #[arg(long, env = "SESSIONFLEET_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
    #[command(flatten)]
    pub tls: crate::secure::TlsArgs,
    /// Serve plaintext even on non-loopback addresses (anyone on the network can
    /// then read and write sessions). Without it, a node without TLS refuses to start there.
    #[arg(long, env = "SESSIONFLEET_INSECURE_PLAINTEXT")]
    pub insecure_plaintext: bool,
    /// The secrets file (users, hashed tokens, cookie secret) [default: the
    /// topology's `[auth] secrets`, else `<data-dir>/secrets.toml`, generated with a
    /// random admin password at first start]. Re-read when it changes and on SIGHUP.
    #[arg(long, env = "SESSIONFLEET_SECRETS")]
    pub secrets: Option<PathBuf>,
}

/// `--durability` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum DurabilityArg {
    /// Acknowledge after the WAL is fsynced (group-committed).
    Sync,
    /// Acknowledge after the OS has the write (tests and benchmarks only).
    Buffered,
}

/// Where a node listens and keeps its data, once flags and topology are merged.
pub(crate) struct Placement {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub data_dir: PathBuf,
}

impl NodeArgs {
    /// Flags first, then the topology's entry for this node.
    pub fn place(
        &self,
        from_topology: Option<(SocketAddr, SocketAddr, Option<PathBuf>)>,
    ) -> anyhow::Result<Placement> {
        let (th, tg, td) = match from_topology {
            Some((h, g, d)) => (Some(h), Some(g), d),
            None => (None, None, None),
        };
        let (http, grpc, data_dir) = (self.http.or(th), self.grpc.or(tg), self.data_dir.clone().or(td));
        match (http, grpc, data_dir) {
            (Some(http), Some(grpc), Some(data_dir)) => Ok(Placement { http, grpc, data_dir }),
            (http, grpc, data_dir) => {
                let missing: Vec<&str> = [
                    ("--http", http.is_none()),
                    ("--grpc", grpc.is_none()),
                    ("--data-dir", data_dir.is_none()),
                ]
                .into_iter()
                .filter_map(|(flag, absent)| absent.then_some(flag))
                .collect();
                anyhow::bail!(
                    "missing {}: give them as flags, or a --topology that names this node's addresses and data_dir",
                    missing.join(", ")
                )
            }
        }
    }

    /// The node's TLS (see [`crate::secure::TlsArgs::for_node`]).
    pub fn node_tls(
        &self,
        topology: Option<&topology::Topology>,
        node: &str,
        placement: &Placement,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<Option<std::sync::Arc<proto::tls::ReloadingTls>>> {
        self.tls.for_node(
            topology,
            node,
            &[placement.http, placement.grpc],
            self.insecure_plaintext,
            shutdown,
        )
    }

    /// The node's authentication (see [`crate::secure::node_auth`]).
    pub fn node_auth(
        &self,
        topology: Option<&topology::Topology>,
        placement: &Placement,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<std::sync::Arc<server::Authenticator>> {
        crate::secure::node_auth(self.secrets.as_deref(), topology, &placement.data_dir, shutdown)
    }

    /// Raises the soft open-files limit to the hard one: every connection is a
    /// descriptor, and the usual soft default (1024) is far below `--max-connections`.
    pub fn raise_open_files_limit(&self) {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct passed.
        let raised = unsafe {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0
                && (lim.rlim_cur >= lim.rlim_max || {
                    let wanted = libc::rlimit {
                        rlim_cur: lim.rlim_max,
                        rlim_max: lim.rlim_max,
                    };
                    libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 && {
                        lim = wanted;
                        true
                    }
                })
        };
        // Descriptors besides client connections: RocksDB files, gRPC, replication.
        let needed = (self.max_connections as u64).saturating_add(1024);
        if !raised || lim.rlim_cur < needed {
            tracing::warn!(
                open_files = lim.rlim_cur,
                needed,
                "the open-files limit is below --max-connections plus a reserve; raise it (LimitNOFILE= in the unit) or lower --max-connections"
            );
        }
    }

    pub fn server_config(
        &self,
        placement: &Placement,
        node_name: String,
        tls: Option<std::sync::Arc<proto::tls::ReloadingTls>>,
        auth: std::sync::Arc<server::Authenticator>,
    ) -> ServerConfig {
        ServerConfig {
            tls,
            auth: Some(auth),
            http_addr: placement.http,
            grpc_addr: placement.grpc,
            limits: Limits {
                max_body_bytes: self.max_body_bytes,
                max_bulk_docs: self.max_bulk_docs,
                header_timeout: Duration::from_secs(self.header_timeout_secs.max(1)),
                body_timeout: Duration::from_secs(self.body_timeout_secs.max(1)),
                max_connections: self.max_connections.max(1),
                max_in_flight: self.max_in_flight.max(1),
                ..Limits::default()
            },
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            node_name,
        }
    }

    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            durability: match self.durability {
                DurabilityArg::Sync => Durability::Sync,
                DurabilityArg::Buffered => Durability::Buffered,
            },
            max_document_size: self.max_document_bytes,
            sweep_interval: (self.sweep_secs > 0).then(|| Duration::from_secs(self.sweep_secs)),
            cache_bytes: self.cache_mib << 20,
            min_free_bytes: self.min_free_mib.saturating_mul(1 << 20),
            ..StoreOptions::default()
        }
    }
}

/// `sessionfleet hub` flags.
#[derive(Args, Debug)]
pub(crate) struct HubArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// This hub's name: which `[[hub]]` of the topology it is, shown by `GET /`
    /// [default: the topology's first hub, else "hub"].
    #[arg(long, env = "SESSIONFLEET_NODE")]
    pub name: Option<String>,
}

pub(crate) async fn run(args: HubArgs) -> anyhow::Result<()> {
    let shutdown = crate::shutdown_on_signals()?;
    args.node.raise_open_files_limit();
    let watcher = args
        .node
        .topology
        .as_deref()
        .map(crate::topology_link::follow)
        .transpose()?;
    let topo = watcher.as_ref().map(|w| w.current());
    // This hub's entry: named by --name, or the topology's first hub.
    let entry = match (&topo, &args.name) {
        (Some(t), Some(n)) => Some(
            t.hub(n)
                .ok_or_else(|| anyhow::anyhow!("the topology has no hub {n:?}"))?
                .clone(),
        ),
        (Some(t), None) => Some(t.first_hub().clone()),
        (None, _) => None,
    };
    let placement = args
        .node
        .place(entry.as_ref().map(|h| (h.http, h.grpc, h.data_dir.clone())))?;
    let name = args
        .name
        .clone()
        .or(entry.as_ref().map(|h| h.name.to_string()))
        .unwrap_or_else(|| "hub".into());
    let tls = args
        .node
        .node_tls(topo.as_deref(), &name, &placement, &shutdown)?;
    let auth = args.node.node_auth(topo.as_deref(), &placement, &shutdown)?;
    let fleet = watcher
        .as_ref()
        .map(|w| crate::topology_link::derive(w, |t| Some(crate::topology_link::expected_spokes(t))))
        .transpose()?;
    let peers = match &watcher {
        Some(w) => {
            let me = name.clone();
            Some(crate::topology_link::derive(w, move |t| {
                crate::topology_link::hub_peers(t, &me)
            })?)
        }
        None => None,
    };
    // Without a certificate to show its peer hubs, the hub shows its node token.
    let peer_token = match &tls {
        Some(_) => None,
        None => {
            let me =
                proto::tls::Identity::hub(&name).map_err(|e| anyhow::anyhow!("hub identity {name}: {e}"))?;
            auth.secrets().node_token(&me)
        }
    };
    let config = hub::HubConfig {
        data_dir: placement.data_dir.clone(),
        server: args.node.server_config(&placement, name, tls.clone(), auth),
        store: args.node.store_options(),
        fleet,
        peers,
        tls,
        peer_token,
    };
    hub::run(config, shutdown, |http, grpc| {
        // One line on stdout that scripts and tests can wait for.
        println!("ready http={http} grpc={grpc}");
    })
    .await?;
    Ok(())
}
