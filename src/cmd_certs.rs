//! `sessionfleet certs`: mint the fleet's CA, its nodes' certificates and
//! clients' certificates, and show what a certificate says.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use proto::tls::{ClientRole, Identity};
use security::{Ca, Issued};

const DAY: Duration = Duration::from_secs(86_400);

/// `sessionfleet certs` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum CertsCommand {
    /// Create a fleet CA: `ca.pem` (give it to every node and client) and
    /// `ca.key` (mode 0600; keep it off the nodes).
    Ca(CaArgs),
    /// Issue a certificate for every node (hub and spokes) of a topology:
    /// `<node>.pem` and `<node>.key`, naming the node and its addresses.
    Nodes(NodesArgs),
    /// Issue a client certificate (an app server, a replicator, an admin or ops tool).
    Client(ClientArgs),
    /// Print each certificate's identity, subject, addresses and validity.
    Show(ShowArgs),
}

/// `certs ca` flags.
#[derive(Args, Debug)]
pub(crate) struct CaArgs {
    /// Directory to write `ca.pem` and `ca.key` into (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// The fleet's name, in the CA's subject [default: from --topology, else "sessionfleet"].
    #[arg(long)]
    fleet: Option<String>,
    /// Days the CA is valid.
    #[arg(long, default_value_t = 3650)]
    days: u64,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

/// `certs nodes` flags.
#[derive(Args, Debug)]
pub(crate) struct NodesArgs {
    /// The fleet's topology file.
    #[arg(long)]
    topology: PathBuf,
    /// Directory holding `ca.pem` and `ca.key`.
    #[arg(long)]
    ca_dir: PathBuf,
    /// Directory to write the nodes' files into (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Days each certificate is valid.
    #[arg(long, default_value_t = 365)]
    days: u64,
    /// Extra DNS name to put in every node certificate (repeatable).
    #[arg(long = "dns")]
    dns: Vec<String>,
    /// Replace existing files (rotation: nodes pick up the new files without a restart).
    #[arg(long)]
    force: bool,
}

/// `certs client` flags.
#[derive(Args, Debug)]
pub(crate) struct ClientArgs {
    /// Directory holding `ca.pem` and `ca.key`.
    #[arg(long)]
    ca_dir: PathBuf,
    /// The client's name (lower-case letters, digits, `-`), e.g. `app-eu-west-17`.
    #[arg(long)]
    name: String,
    /// What it may do: app, replicator, admin or ops.
    #[arg(long)]
    role: ClientRole,
    /// Directory to write `<name>.pem` and `<name>.key` into (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Days the certificate is valid.
    #[arg(long, default_value_t = 365)]
    days: u64,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

/// `certs show` flags.
#[derive(Args, Debug)]
pub(crate) struct ShowArgs {
    /// PEM files (a bundle shows every certificate in it).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub(crate) fn run(cmd: CertsCommand) -> anyhow::Result<()> {
    match cmd {
        CertsCommand::Ca(a) => {
            let fleet = a.fleet.unwrap_or_else(|| "sessionfleet".into());
            let ca = Ca::generate(&fleet, days(a.days)?)?;
            create_dir(&a.out)?;
            let (cert, key) = ca.write(&a.out, a.force)?;
            println!(
                "wrote {} and {} (keep the key off the nodes)",
                cert.display(),
                key.display()
            );
        }
        CertsCommand::Nodes(a) => {
            let topology = topology::Topology::load(&a.topology).map_err(|e| anyhow::anyhow!("{e}"))?;
            let ca = Ca::load(&a.ca_dir)?;
            create_dir(&a.out)?;
            let validity = days(a.days)?;
            for (identity, stem, addrs) in fleet_nodes(&topology)? {
                let issued = ca.issue(&identity, &addrs, &a.dns, validity)?;
                report(&issued, &a.out, &stem, a.force)?;
            }
            copy_ca(&a.ca_dir, &a.out)?;
        }
        CertsCommand::Client(a) => {
            let ca = Ca::load(&a.ca_dir)?;
            create_dir(&a.out)?;
            let identity = Identity::client(a.role, &a.name)?;
            let issued = ca.issue(&identity, &[], &[], days(a.days)?)?;
            report(&issued, &a.out, &a.name, a.force)?;
            copy_ca(&a.ca_dir, &a.out)?;
        }
        CertsCommand::Show(a) => {
            for f in &a.files {
                for info in security::describe_file(f)? {
                    println!("{}:\n{info}", f.display());
                }
            }
        }
    }
    Ok(())
}

/// Every node of `topology`: its identity, the file stem of its certificate (the node's
/// name, as the topology's `[tls]` `{node}` placeholder expects) and the addresses the
/// certificate must name.
pub(crate) fn fleet_nodes(
    topology: &topology::Topology,
) -> anyhow::Result<Vec<(Identity, String, Vec<IpAddr>)>> {
    let mut nodes = Vec::new();
    for h in &topology.hubs {
        nodes.push((
            Identity::hub(h.name.as_str())?,
            h.name.to_string(),
            ips(&[h.http, h.grpc]),
        ));
    }
    for dc in &topology.datacentres {
        for s in &dc.spokes {
            nodes.push((
                Identity::spoke(dc.name.as_str(), s.name.as_str())?,
                s.name.to_string(),
                ips(&[s.http, s.grpc]),
            ));
        }
    }
    Ok(nodes)
}

fn days(n: u64) -> anyhow::Result<Duration> {
    anyhow::ensure!((1..=36_500).contains(&n), "--days must be between 1 and 36500");
    Ok(DAY * n as u32)
}

/// The addresses a certificate should name: those a peer dials, not wildcards.
fn ips(addrs: &[std::net::SocketAddr]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = addrs
        .iter()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified())
        .collect();
    out.sort();
    out.dedup();
    out
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn report(issued: &Issued, dir: &Path, stem: &str, force: bool) -> anyhow::Result<()> {
    let (cert, key) = issued.write(dir, stem, force)?;
    let identity = security::describe(&issued.cert_pem)?
        .identity
        .map(|i| i.to_uri())
        .unwrap_or_default();
    println!("{identity}: {} {}", cert.display(), key.display());
    Ok(())
}

/// Puts `ca.pem` beside the issued files, so one directory is what a node needs. An
/// existing `ca.pem` there is kept: during a CA rotation it is the bundle of old and
/// new CAs, which the new CA alone must not replace.
fn copy_ca(ca_dir: &Path, out: &Path) -> anyhow::Result<()> {
    let (from, to) = (
        ca_dir.join(security::mint::CA_CERT_FILE),
        out.join(security::mint::CA_CERT_FILE),
    );
    if to.symlink_metadata().is_err() {
        let pem = std::fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
        security::files::write_file(&to, &pem, 0o644, true)
            .with_context(|| format!("writing {}", to.display()))?;
    }
    Ok(())
}
