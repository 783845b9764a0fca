//! `sessionfleet demo`: a hub and two spokes from a topology file, run as child
//! processes with temporary data directories, and a scripted tour: write in one
//! datacentre, read in the other, kill a spoke and fail over to the hub, bring it
//! back and watch it catch up, print the fleet status, clean up. Ctrl-C at any
//! point stops every child and removes the data.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use edge_client::{Client, ClientBuilder, Source};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use topology::Topology;

/// `sessionfleet demo` flags.
#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// The topology to run: a hub and (at least) two datacentres on this machine.
    #[arg(long, default_value = "topology/examples/local.toml")]
    topology: PathBuf,
}

/// A child node, killed when dropped.
struct Node {
    name: String,
    child: Child,
    args: Vec<String>,
    log: PathBuf,
}

impl Node {
    fn start(name: &str, args: Vec<String>, log: &Path) -> anyhow::Result<Node> {
        let exe = std::env::current_exe()?;
        let err = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let mut child = Command::new(exe)
            .args(&args)
            .env("SESSIONFLEET_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.starts_with("ready") => {}
            _ => {
                let _ = child.kill();
                anyhow::bail!("{name} did not start; see {}", log.display());
            }
        }
        Ok(Node {
            name: name.into(),
            child,
            args,
            log: log.to_owned(),
        })
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let again = Node::start(&self.name, self.args.clone(), &self.log)?;
        *self = again;
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn say(step: &str) {
    println!("\n== {step}");
}

fn served(source: &Source) -> String {
    match source {
        Source::Target(t) => format!("from {t}"),
        Source::Cache => "from the client's cache".into(),
        Source::NegativeCache => "from the client's negative cache".into(),
    }
}

async fn get_json(url: &str) -> anyhow::Result<serde_json::Value> {
    let client = HttpClient::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let resp = client.get(url.parse()?).await?;
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&body)?)
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let stop = crate::shutdown_on_signals()?;
    let work = tempfile::Builder::new().prefix("sessionfleet-demo-").tempdir()?;
    let result = tokio::select! {
        r = tour(&args.topology, work.path()) => r,
        _ = stop.cancelled() => {
            println!("\ninterrupted: stopping every node and removing {}", work.path().display());
            Ok(())
        }
    };
    // Children are killed as `tour` unwinds; the directory goes with `work`.
    drop(work);
    result
}

async fn tour(topology_path: &Path, work: &Path) -> anyhow::Result<()> {
    let t = Topology::load(topology_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        t.datacentres.len() >= 2,
        "the demo needs two datacentres in {}",
        topology_path.display()
    );
    let topo = topology_path.display().to_string();
    let (dc_a, dc_b) = (&t.datacentres[0], &t.datacentres[1]);
    let (spoke_a, spoke_b) = (&dc_a.spokes[0], &dc_b.spokes[0]);
    let db = t
        .databases()
        .first()
        .map(|d| d.name.clone())
        .unwrap_or_else(|| "sessions".into());
    println!(
        "Sessionfleet demo: fleet {:?}, data in {}",
        t.fleet.to_string(),
        work.display()
    );

    say(&format!(
        "starting hub {} and spokes {} ({}) and {} ({})",
        t.hub.name, spoke_a.name, dc_a.name, spoke_b.name, dc_b.name
    ));
    let dir = |n: &str| work.join(n).display().to_string();
    let log = work.join("nodes.log");
    let hub = Node::start(
        t.hub.name.as_str(),
        vec![
            "hub".into(),
            "--topology".into(),
            topo.clone(),
            "--data-dir".into(),
            dir(t.hub.name.as_str()),
        ],
        &log,
    )?;
    let spoke_args = |dc: &str, node: &str| {
        vec![
            "spoke".into(),
            "--topology".into(),
            topo.clone(),
            "--datacentre".into(),
            dc.into(),
            "--node".into(),
            node.into(),
            "--data-dir".into(),
            dir(node),
        ]
    };
    let mut a = Node::start(
        spoke_a.name.as_str(),
        spoke_args(dc_a.name.as_str(), spoke_a.name.as_str()),
        &log,
    )?;
    let b = Node::start(
        spoke_b.name.as_str(),
        spoke_args(dc_b.name.as_str(), spoke_b.name.as_str()),
        &log,
    )?;
    println!(
        "   hub http://{} , status page http://{}/_fleet",
        t.hub.http, t.hub.http
    );

    let client = |dc: &str| -> anyhow::Result<Client> {
        Ok(ClientBuilder::from_topology(&t, dc)?
            .deadline(Duration::from_millis(200))
            .read_budget(Duration::from_secs(1))
            .probe_interval(Duration::from_millis(200))
            .build()?)
    };
    let (client_a, client_b) = (client(dc_a.name.as_str())?, client(dc_b.name.as_str())?);

    say(&format!("an app server in {} writes 5 sessions", dc_a.name));
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 3600;
    for i in 1..=5 {
        let body = format!(r#"{{"user":"user-{i}","expires_at":{expires}}}"#);
        let rev = client_a
            .put(&db, &format!("session-{i}"), None, body.as_bytes())
            .await?;
        println!("   session-{i} written at {} (rev {rev})", spoke_a.name);
    }

    say(&format!(
        "an app server in {} reads them (the users roamed)",
        dc_b.name
    ));
    for i in 1..=5 {
        let (s, how) = client_b.get_traced(&db, &format!("session-{i}")).await?;
        let s = s.context("a session written in the other datacentre was not found")?;
        println!(
            "   session-{i}: {} — {} in {:.1} ms",
            String::from_utf8_lossy(&s.body),
            served(&how.source),
            how.latency.as_secs_f64() * 1000.0
        );
    }

    say(&format!(
        "{} dies (SIGKILL); its app servers fail over",
        spoke_a.name
    ));
    a.kill();
    let fresh_a = client(dc_a.name.as_str())?;
    for i in 1..=5 {
        let (s, how) = fresh_a.get_traced(&db, &format!("session-{i}")).await?;
        anyhow::ensure!(s.is_some(), "session-{i} unreadable during the outage");
        println!(
            "   session-{i}: {} in {:.1} ms",
            served(&how.source),
            how.latency.as_secs_f64() * 1000.0
        );
    }
    println!(
        "   ({} marked down after its first failures: later reads skip it at no cost)",
        spoke_a.name
    );

    say(&format!("meanwhile {} keeps taking writes", dc_b.name));
    for i in 6..=8 {
        let body = format!(r#"{{"user":"user-{i}","expires_at":{expires}}}"#);
        client_b
            .put(&db, &format!("session-{i}"), None, body.as_bytes())
            .await?;
        println!("   session-{i} written at {}", spoke_b.name);
    }

    say(&format!(
        "{} comes back and catches up from its checkpoints",
        spoke_a.name
    ));
    a.restart()?;
    let local_only = Client::builder()
        .local(spoke_a.name.as_str(), format!("http://{}", spoke_a.grpc))
        .build()?;
    let started = Instant::now();
    for i in 6..=8 {
        loop {
            if local_only
                .get(&db, &format!("session-{i}"))
                .await
                .ok()
                .flatten()
                .is_some()
            {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "{} did not catch up",
                spoke_a.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    println!(
        "   sessions written during the outage readable at {} after {:.0} ms",
        spoke_a.name,
        started.elapsed().as_secs_f64() * 1000.0
    );
    // The client's background probe notices the spoke is back.
    while fresh_a.is_healthy(spoke_a.name.as_str()) != Some(true) {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the client never saw {} again",
            spoke_a.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 6..=8 {
        let (_, how) = fresh_a.get_traced(&db, &format!("session-{i}")).await?;
        println!(
            "   {} reads session-{i} {} in {:.1} ms",
            dc_a.name,
            served(&how.source),
            how.latency.as_secs_f64() * 1000.0
        );
    }

    say("fleet status (GET /_fleet/status on the hub)");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = get_json(&format!("http://{}/_fleet/status", t.hub.http)).await?;
    for dc in status["datacentres"].as_array().into_iter().flatten() {
        for s in dc["spokes"].as_array().into_iter().flatten() {
            println!(
                "   {:<10} {:<12} {:<13} pull lag {} changes",
                dc["name"].as_str().unwrap_or("?"),
                s["node"].as_str().unwrap_or("?"),
                if s["connected"] == true {
                    "connected"
                } else {
                    "DISCONNECTED"
                },
                s["seq_lag"]
            );
        }
    }
    let user_dbs = status["hub"]["databases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| !d["name"].as_str().unwrap_or("_").starts_with('_'));
    for d in user_dbs {
        println!(
            "   hub database {:<12} {} documents",
            d["name"].as_str().unwrap_or("?"),
            d["doc_count"]
        );
    }

    say("summary");
    println!("   8 sessions written in two datacentres, every one readable everywhere;");
    println!("   a spoke killed and restarted without losing a write or a read.");
    println!("   Stopping the fleet and removing {}.", work.display());
    drop((hub, a, b));
    Ok(())
}
