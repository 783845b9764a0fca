//! `sessionfleet spoke`: run a datacentre's node, replicating with the hub.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use replicator::backoff::Backoff;
use spoke::{ReplicatedDb, SpokeConfig};
use store::{DbName, DbOptions};

use crate::cmd_hub::NodeArgs;

/// `sessionfleet spoke` flags.
#[derive(Args, Debug)]
pub(crate) struct SpokeArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// The hub's gRPC URL, e.g. http://10.0.0.1:6984.
    #[arg(long, env = "SESSIONFLEET_HUB")]
    pub hub: String,
    /// This spoke's datacentre.
    #[arg(long, env = "SESSIONFLEET_DATACENTRE")]
    pub datacentre: String,
    /// This spoke's node name (defaults to the datacentre's name).
    #[arg(long = "node", env = "SESSIONFLEET_NODE")]
    pub node_name: Option<String>,
    /// A database to replicate with the hub (repeat for several).
    #[arg(long = "database", default_value = "sessions")]
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
    let node_name = args.node_name.clone().unwrap_or_else(|| args.datacentre.clone());
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
    anyhow::ensure!(args.batch_size > 0, "--batch-size must be at least 1");
    let config = SpokeConfig {
        datacentre: args.datacentre.clone(),
        node: node_name.clone(),
        data_dir: args.node.data_dir.clone(),
        server: args
            .node
            .server_config(format!("spoke {}/{node_name}", args.datacentre)),
        store: args.node.store_options(),
        hub_grpc: args.hub.clone(),
        databases,
        batch_size: args.batch_size,
        backoff: Backoff {
            initial: Duration::from_millis(args.backoff_initial_ms.max(1)),
            max: Duration::from_millis(args.backoff_max_ms.max(args.backoff_initial_ms.max(1))),
        },
        checkpoint_interval: Duration::from_millis(args.checkpoint_interval_ms),
        connect_timeout: Duration::from_secs(2),
    };
    spoke::run(config, shutdown, |http, grpc, _| {
        println!("ready http={http} grpc={grpc}")
    })
    .await?;
    Ok(())
}
