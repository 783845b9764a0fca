//! `sessionfleet spoke`: run a datacentre's node, replicating with the hub.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use replicator::backoff::Backoff;
use replicator::link::LinkSettings;
use spoke::{HubAddr, ReplicatedDb, ReplicationPlan, SpokeConfig};
use store::{DbName, DbOptions};

use crate::cmd_hub::NodeArgs;

/// `sessionfleet spoke` flags.
#[derive(Args, Debug)]
pub(crate) struct SpokeArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// A hub's gRPC URL, e.g. http://10.0.0.1:6984; repeat for a hub pair, preferred
    /// first [default: from the topology].
    #[arg(long, env = "SESSIONFLEET_HUB", value_delimiter = ',')]
    pub hub: Vec<String>,
    /// This spoke's datacentre.
    #[arg(long, env = "SESSIONFLEET_DATACENTRE")]
    pub datacentre: String,
    /// This spoke's node name [default: the datacentre's first spoke in the
    /// topology, else the datacentre's name].
    #[arg(long = "node", env = "SESSIONFLEET_NODE")]
    pub node_name: Option<String>,
    /// A database to replicate with the hub (repeat for several) [default: the
    /// topology's databases, else "sessions"].
    #[arg(long = "database")]
    pub databases: Vec<String>,
    /// Body member holding each session's expiry time (unix seconds), for
    /// databases this spoke creates.
    #[arg(long, env = "SESSIONFLEET_EXPIRY_FIELD")]
    pub expiry_field: Option<String>,
    /// revs_limit for databases this spoke creates.
    #[arg(long)]
    pub revs_limit: Option<u32>,
    /// Changes per replication batch.
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// First retry delay after a replication error, in ms (doubles up to --backoff-max-ms).
    #[arg(long, default_value_t = 100)]
    pub backoff_initial_ms: u64,
    /// Largest retry delay, in ms.
    #[arg(long, default_value_t = 30_000)]
    pub backoff_max_ms: u64,
    /// Least time between replication checkpoints while changes flow, in ms.
    #[arg(long, default_value_t = 1000)]
    pub checkpoint_interval_ms: u64,
}

pub(crate) async fn run(args: SpokeArgs) -> anyhow::Result<()> {
    let shutdown = crate::shutdown_on_signals()?;
    args.node.raise_open_files_limit();
    let watcher = args
        .node
        .topology
        .as_deref()
        .map(crate::topology_link::follow)
        .transpose()?;
    let topo = watcher.as_ref().map(|w| w.current());
    // This spoke's entry: named by --node, or the datacentre's first spoke.
    let entry = match &topo {
        Some(t) => {
            let dc = t
                .datacentre(&args.datacentre)
                .ok_or_else(|| anyhow::anyhow!("the topology has no datacentre {:?}", args.datacentre))?;
            let spoke = match &args.node_name {
                Some(n) => dc.spokes.iter().find(|s| s.name.as_str() == n),
                None => dc.spokes.first(),
            }
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "datacentre {} has no spoke {:?} in the topology",
                    args.datacentre,
                    args.node_name
                )
            })?;
            Some(spoke.clone())
        }
        None => None,
    };
    let placement = args
        .node
        .place(entry.as_ref().map(|s| (s.http, s.grpc, s.data_dir.clone())))?;
    let node_name = args
        .node_name
        .clone()
        .or(entry.as_ref().map(|s| s.name.to_string()))
        .unwrap_or_else(|| args.datacentre.clone());
    anyhow::ensure!(args.batch_size > 0, "--batch-size must be at least 1");
    let tls = args
        .node
        .node_tls(topo.as_deref(), &node_name, &placement, &shutdown)?;

    // Flags override the topology's plan; without a topology they are the plan.
    let overrides = PlanOverrides::from(&args)?;
    let (plan, plan_updates) = match &watcher {
        Some(w) => {
            let dc = args.datacentre.clone();
            let o = overrides.clone();
            let rx = crate::topology_link::derive(w, move |t| {
                crate::topology_link::spoke_plan(t, &dc).map(|p| o.apply(p))
            })?;
            let first = rx.borrow().clone();
            (first, Some(rx))
        }
        None => (overrides.apply(overrides.standalone_plan()?), None),
    };
    let auth = args.node.node_auth(topo.as_deref(), &placement, &shutdown)?;
    // Without a certificate to show the hub, the spoke shows its node token.
    let hub_token = match &tls {
        Some(_) => None,
        None => {
            let me = proto::tls::Identity::spoke(&args.datacentre, &node_name)
                .map_err(|e| anyhow::anyhow!("spoke identity {}/{node_name}: {e}", args.datacentre))?;
            let token = auth.secrets().node_token(&me);
            if token.is_none() {
                tracing::warn!("the secrets file has no [cookie] secret: without TLS the hub cannot tell this spoke from anyone, and will refuse to replicate with it");
            }
            token
        }
    };
    let config = SpokeConfig {
        hub_token,
        datacentre: args.datacentre.clone(),
        node: node_name.clone(),
        data_dir: placement.data_dir.clone(),
        server: args.node.server_config(
            &placement,
            format!("spoke {}/{node_name}", args.datacentre),
            tls.clone(),
            auth,
        ),
        tls,
        store: args.node.store_options(),
        plan,
        plan_updates,
    };
    spoke::run(config, shutdown, |http, grpc| {
        println!("ready http={http} grpc={grpc}")
    })
    .await?;
    Ok(())
}

/// What the flags say about replication, to lay over the topology's plan.
#[derive(Clone, Debug)]
struct PlanOverrides {
    hubs: Vec<String>,
    databases: Vec<ReplicatedDb>,
    batch_size: usize,
    backoff: Backoff,
    checkpoint_interval: Duration,
}

impl PlanOverrides {
    fn from(args: &SpokeArgs) -> anyhow::Result<PlanOverrides> {
        let databases = args
            .databases
            .iter()
            .map(|name| {
                Ok(ReplicatedDb {
                    name: DbName::new(name).with_context(|| format!("--database {name}"))?,
                    options: DbOptions {
                        revs_limit: args.revs_limit,
                        expiry_field: args.expiry_field.clone(),
                    },
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(PlanOverrides {
            hubs: args.hub.clone(),
            databases,
            batch_size: args.batch_size,
            backoff: Backoff {
                initial: Duration::from_millis(args.backoff_initial_ms.max(1)),
                max: Duration::from_millis(args.backoff_max_ms.max(args.backoff_initial_ms.max(1))),
            },
            checkpoint_interval: Duration::from_millis(args.checkpoint_interval_ms),
        })
    }

    fn standalone_plan(&self) -> anyhow::Result<ReplicationPlan> {
        anyhow::ensure!(!self.hubs.is_empty(), "--hub is required without --topology");
        let databases = if self.databases.is_empty() {
            vec![ReplicatedDb {
                name: DbName::new("sessions")?,
                options: DbOptions::default(),
            }]
        } else {
            self.databases.clone()
        };
        Ok(ReplicationPlan {
            hubs: Vec::new(),
            databases,
            link: LinkSettings {
                batch_size: self.batch_size,
                backoff: self.backoff,
                checkpoint_interval: self.checkpoint_interval,
                connect_timeout: Duration::from_secs(2),
            },
        })
    }

    fn apply(&self, mut plan: ReplicationPlan) -> ReplicationPlan {
        if !self.hubs.is_empty() {
            // Named by their URLs: flags carry no node names.
            plan.hubs = self
                .hubs
                .iter()
                .map(|url| HubAddr {
                    name: url.clone(),
                    grpc: url.clone(),
                })
                .collect();
        }
        if !self.databases.is_empty() {
            plan.databases = self.databases.clone();
        }
        plan
    }
}
