//! What an app server does with the edge-client: build it from the fleet's
//! topology for its datacentre, then read (and write) sessions.
//!
//! Against the demo fleet: `cargo run --release -- demo --keep` leaves a secured
//! fleet running and prints this exact command, with its app token and the secured
//! topology file it wrote into its temporary directory; paste what it prints:
//!
//! ```sh
//! SESSIONFLEET_TOKEN=<app token> cargo run -p edge-client --example read_session -- \
//!     <demo directory>/topology.toml eu-west user-42
//! ```

use std::time::Duration;

use edge_client::{ClientBuilder, ClientError, Credentials, Source};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(file), Some(dc), Some(id)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: read_session TOPOLOGY_FILE DATACENTRE SESSION_ID");
        std::process::exit(2);
    };
    let topology = topology::Topology::load(&file)?;
    // The app server's credentials: a token with the app role (`sessionfleet
    // secrets token FILE NAME --role app`), or a client certificate.
    let credentials = match std::env::var("SESSIONFLEET_TOKEN") {
        Ok(token) => Credentials::token(&token)?,
        Err(_) => Credentials::none(),
    };
    // Local spokes first, then the datacentre's failover chain; TLS with the
    // fleet's CA from [tls]; the read budget, hedging, cache size and staleness
    // bound from the file's [client] section.
    let client = ClientBuilder::from_topology(&topology, &dc)?
        .credentials(credentials)
        .build()?;

    // What an app does on every request. The client serves an answer only if
    // its invalidation stream vouches for it, or it is younger than
    // max_staleness (or, when every server is unreachable, within the
    // stale-if-error window) — and never past the session's expiry or after a
    // delete it has seen.
    let rev = match client.read("sessions", &id).await {
        Ok(session) => session.rev().to_owned(),
        // Not found, deleted (logged out) or expired: the user must log in.
        // Here, the "login" creates the session.
        Err(e) if e.is_gone() => {
            println!("{e}: logging in");
            match client
                .put("sessions", &id, None, br#"{"user":"ada","roles":["reader"]}"#)
                .await
            {
                Ok(rev) => rev,
                // The write may have committed: re-read before writing again.
                Err(ClientError::WriteOutcomeUnknown { .. }) => {
                    client.read("sessions", &id).await?.rev().to_owned()
                }
                Err(e) => return Err(e.into()),
            }
        }
        // The client cannot tell whether the session exists: fail the request
        // (503), do not log the user out.
        Err(e @ ClientError::Unavailable { .. }) => {
            eprintln!("sessions unavailable, try again: {e}");
            std::process::exit(1);
        }
        Err(e) => return Err(e.into()),
    };
    println!("{id} at revision {rev}");
    // The first read went upstream; the next come from the cache.
    for _ in 0..3 {
        let (session, served) = client.read_traced("sessions", &id).await?;
        let from = match served.source {
            Source::Target(t) => format!("server {t}"),
            Source::Cache if served.stale => "the cache (stale: no server reachable)".into(),
            Source::Cache => "the cache".into(),
            Source::NegativeCache => "the negative cache".into(),
        };
        println!(
            "{} (rev {}, expires {:?}) from {from} in {:?}",
            String::from_utf8_lossy(session.body()),
            session.rev(),
            session.expires_at(),
            served.latency
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
