//! What an app server does with the edge-client: build it from the fleet's
//! topology for its datacentre, then read (and write) sessions.
//!
//! Against the demo fleet (`cargo run --release -p sessionfleet -- demo` keeps
//! one running while it tours; or start `sessionfleet hub`/`spoke` from
//! `topology/examples/local.toml` yourself):
//!
//! ```sh
//! cargo run -p edge-client --example read_session -- topology/examples/local.toml eu-west user-42
//! ```

use std::time::Duration;

use edge_client::{ClientBuilder, Source};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(file), Some(dc), Some(id)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: read_session TOPOLOGY_FILE DATACENTRE SESSION_ID");
        std::process::exit(2);
    };
    let topology = topology::Topology::load(&file)?;
    // Local spokes first, then the datacentre's failover chain; deadlines,
    // hedging, cache size and staleness bound from the file's [client] section.
    let client = ClientBuilder::from_topology(&topology, &dc)?.build()?;

    // Create the session if it does not exist yet, as a login would.
    if client.get("sessions", &id).await?.is_none() {
        let rev = client
            .put("sessions", &id, None, br#"{"user":"ada","roles":["reader"]}"#)
            .await?;
        println!("created {id} at revision {rev}");
    }
    // Every request reads the session: the first read goes upstream, the next come from the cache.
    for _ in 0..3 {
        let (session, served) = client.get_traced("sessions", &id).await?;
        let from = match served.source {
            Source::Target(t) => format!("server {t}"),
            Source::Cache => "the cache".into(),
            Source::NegativeCache => "the negative cache".into(),
        };
        match session {
            Some(s) => println!(
                "{} (rev {}) from {from} in {:?}",
                String::from_utf8_lossy(&s.body),
                s.rev,
                served.latency
            ),
            None => println!("no session {id} (from {from})"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
