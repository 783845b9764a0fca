//! `sessionfleet`: the one executable ops deploy. It parses arguments and calls
//! the libraries; nothing else lives here.

mod cmd_bench;
mod cmd_certs;
mod cmd_client;
mod cmd_demo;
mod cmd_hub;
mod cmd_secrets;
mod cmd_spoke;
mod secure;
mod topology_link;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Sessionfleet: a geo-distributed session store (hub, spokes, CLI tools).
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a local demo fleet (hub + two spokes) and a scripted tour of it.
    Demo(cmd_demo::DemoArgs),
    /// Run a hub: the central node (standalone when no spokes connect).
    Hub(cmd_hub::HubArgs),
    /// Run a spoke: a datacentre's node, replicating continuously with the hub.
    Spoke(cmd_spoke::SpokeArgs),
    /// Read a session through the edge-client (local spoke, then the hub).
    Get(cmd_client::GetArgs),
    /// Create or update a session through the edge-client.
    Put(cmd_client::PutArgs),
    /// Delete a session through the edge-client.
    Delete(cmd_client::DeleteArgs),
    /// Check, show or render (ansible inventory) a topology file.
    #[command(subcommand)]
    Topology(topology::cli::TopologyCommand),
    /// Mint the fleet's CA and certificates, or show a certificate.
    #[command(subcommand)]
    Certs(cmd_certs::CertsCommand),
    /// Create the secrets file, add users and tokens (only hashes are stored).
    #[command(subcommand)]
    Secrets(cmd_secrets::SecretsCommand),
    /// Load-test a running node (closed loop, HDR latency percentiles).
    Bench(cmd_bench::BenchArgs),
    /// Serve the benchmark's ceilings: bare hyper and tonic servers answering GET and
    /// Sessions.Get with one fixed session.
    BenchCeiling(cmd_bench::CeilingArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Servers log what they do; the demo and the client tools keep the terminal
    // for their own output.
    let default = match cli.command {
        Command::Hub(_) | Command::Spoke(_) => "info",
        _ => "error",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SESSIONFLEET_LOG").unwrap_or_else(|_| EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Hub(args) => cmd_hub::run(args).await,
            Command::Demo(args) => cmd_demo::run(args).await,
            Command::Spoke(args) => cmd_spoke::run(args).await,
            Command::Bench(args) => cmd_bench::run(args).await,
            Command::BenchCeiling(args) => cmd_bench::ceiling(args).await,
            Command::Certs(cmd) => cmd_certs::run(cmd),
            Command::Secrets(cmd) => cmd_secrets::run(cmd),
            Command::Topology(cmd) => match topology::cli::run(&cmd) {
                Ok(text) => {
                    println!("{text}");
                    Ok(())
                }
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            },
            Command::Get(args) => cmd_client::get(args).await,
            Command::Put(args) => cmd_client::put(args).await,
            Command::Delete(args) => cmd_client::delete(args).await,
        }
    })
}

/// A token cancelled on SIGTERM or SIGINT (Ctrl-C).
pub(crate) fn shutdown_on_signals() -> anyhow::Result<tokio_util::sync::CancellationToken> {
    use tokio::signal::unix::{signal, SignalKind};
    let token = tokio_util::sync::CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let t = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        t.cancel();
    });
    Ok(token)
}
