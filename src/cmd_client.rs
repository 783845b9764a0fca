//! `sessionfleet get|put|delete`: the edge-client from the command line,
//! printing which target answered and how long it took.

use std::time::{Duration, Instant};

use clap::Args;
use edge_client::{Client, Source};

/// Where the client reads and writes.
#[derive(Args, Debug)]
pub(crate) struct ClientArgs {
    /// The local spoke's gRPC URL.
    #[arg(long, env = "SESSIONFLEET_SPOKE", default_value = "http://127.0.0.1:6985")]
    spoke: String,
    /// The hub's gRPC URL (the fallback).
    #[arg(long, env = "SESSIONFLEET_HUB", default_value = "http://127.0.0.1:6984")]
    hub: String,
    /// More fallbacks after the hub (other datacentres' spokes), in order.
    #[arg(long = "fallback")]
    fallbacks: Vec<String>,
    /// The database.
    #[arg(long, default_value = "sessions")]
    db: String,
    /// Deadline of a call to the local spoke, in ms.
    #[arg(long, default_value_t = 200)]
    deadline_ms: u64,
    /// The fleet CA (for https:// URLs) and, optionally, a client certificate.
    #[command(flatten)]
    tls: crate::secure::TlsArgs,
    /// A bearer token (role app) for fleets with authentication.
    #[arg(long, env = "SESSIONFLEET_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl ClientArgs {
    fn client(&self) -> anyhow::Result<Client> {
        let mut b = Client::builder()
            .local("spoke", &self.spoke)
            .fallback("hub", &self.hub)
            .deadline(Duration::from_millis(self.deadline_ms))
            .fallback_deadline(Duration::from_secs(2));
        for (i, f) in self.fallbacks.iter().enumerate() {
            b = b.fallback(format!("fallback-{}", i + 1), f);
        }
        let mut credentials = match self.tls.for_client(None)? {
            Some(tls) => edge_client::Credentials::certificate(tls),
            None => edge_client::Credentials::none(),
        };
        if let Some(t) = &self.token {
            credentials = credentials.with_token(t)?;
        }
        b = b.credentials(credentials);
        Ok(b.build()?)
    }
}

/// `sessionfleet get` flags.
#[derive(Args, Debug)]
pub(crate) struct GetArgs {
    #[command(flatten)]
    target: ClientArgs,
    /// The session id.
    id: String,
}

/// `sessionfleet put` flags.
#[derive(Args, Debug)]
pub(crate) struct PutArgs {
    #[command(flatten)]
    target: ClientArgs,
    /// The session id.
    id: String,
    /// The JSON body.
    body: String,
    /// The revision being replaced (omit to create).
    #[arg(long)]
    rev: Option<String>,
}

/// `sessionfleet delete` flags.
#[derive(Args, Debug)]
pub(crate) struct DeleteArgs {
    #[command(flatten)]
    target: ClientArgs,
    /// The session id.
    id: String,
    /// The revision being deleted.
    #[arg(long)]
    rev: String,
}

pub(crate) async fn get(args: GetArgs) -> anyhow::Result<()> {
    let client = args.target.client()?;
    let (session, served) = client.get_traced(&args.target.db, &args.id).await?;
    let by = match served.source {
        Source::Target(t) => t,
        other => format!("{other:?}"),
    };
    match session {
        Some(s) => {
            println!("{}", String::from_utf8_lossy(s.body()));
            eprintln!(
                "rev {} served by {by} in {:.1} ms",
                s.rev(),
                served.latency.as_secs_f64() * 1000.0
            );
        }
        None => {
            eprintln!(
                "not found (answered by {by} in {:.1} ms)",
                served.latency.as_secs_f64() * 1000.0
            );
            std::process::exit(1);
        }
    }
    Ok(())
}

pub(crate) async fn put(args: PutArgs) -> anyhow::Result<()> {
    let client = args.target.client()?;
    let started = Instant::now();
    let rev = client
        .put(
            &args.target.db,
            &args.id,
            args.rev.as_deref(),
            args.body.as_bytes(),
        )
        .await?;
    println!("{rev}");
    eprintln!("written in {:.1} ms", started.elapsed().as_secs_f64() * 1000.0);
    Ok(())
}

pub(crate) async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let client = args.target.client()?;
    let started = Instant::now();
    let rev = client.delete(&args.target.db, &args.id, &args.rev).await?;
    println!("{rev}");
    eprintln!("deleted in {:.1} ms", started.elapsed().as_secs_f64() * 1000.0);
    Ok(())
}
