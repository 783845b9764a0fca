//! `sessionfleet demo`: a hub and two spokes from a topology file, run as child
//! processes with temporary data directories, and a scripted tour: write in one
//! datacentre, read in the other, kill a spoke and fail over to the hub, bring it
//! back and watch it catch up, print the fleet status, clean up. Ctrl-C at any
//! point stops every child and removes the data.
//!
//! The fleet runs secured, as a real one does: the demo mints a CA and node
//! certificates and writes a secrets file (an admin with a fresh password, app and
//! ops tokens) into its temporary directory, and runs the nodes from a copy of the
//! topology with `[tls]` and `[auth]` added. It prints the `curl` lines to try.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use edge_client::{Client, ClientBuilder, Source};
use http_body_util::{BodyExt, Empty};
use topology::Topology;

/// `sessionfleet demo` flags.
#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// The topology to run: a hub and (at least) two datacentres on this machine.
    #[arg(long, default_value = "topology/examples/local.toml")]
    topology: PathBuf,
    /// Keep the fleet running after the tour (until Ctrl-C), to try the printed
    /// curl lines.
    #[arg(long)]
    keep: bool,
}

/// What the demo minted: the secured topology the nodes run from and the
/// credentials the tour and the printed curl lines use.
struct Secured {
    topology: PathBuf,
    ca: PathBuf,
    admin_password: String,
    app_token: String,
    ops_token: String,
}

/// Mints the CA, the nodes' certificates and the secrets file into `work`, and
/// writes the topology the nodes run from: `source`'s text plus `[tls]` and `[auth]`.
fn secure(source: &Path, t: &Topology, work: &Path) -> anyhow::Result<Secured> {
    anyhow::ensure!(
        t.tls.is_none() && t.auth.is_none(),
        "the demo secures the fleet itself: give it a topology without [tls] and [auth] ({})",
        source.display()
    );
    let tls = work.join("tls");
    std::fs::create_dir_all(&tls)?;
    let month = Duration::from_secs(30 * 86_400);
    let ca = security::Ca::generate(t.fleet.as_str(), month)?;
    ca.write(&tls, false)?;
    for (identity, stem, addrs) in crate::cmd_certs::fleet_nodes(t)? {
        ca.issue(&identity, &addrs, &[], month)?
            .write(&tls, &stem, false)?;
    }
    let admin_password = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 12]>())
    };
    let mut secrets = security::compose::SecretsFile::new();
    secrets.user(
        "admin",
        &admin_password,
        &[security::Role::Admin],
        security::secrets::DEFAULT_ITERATIONS,
    );
    let app_token = secrets.token("demo-app", &[security::Role::App]);
    let ops_token = secrets.token("demo-ops", &[security::Role::Ops]);
    secrets.write(&work.join("secrets.toml"))?;
    let mut text =
        std::fs::read_to_string(source).with_context(|| format!("reading {}", source.display()))?;
    text.push_str(
        "\n# Added by `sessionfleet demo`: files in this directory.\n\
         [tls]\nca = \"tls/ca.pem\"\ncert = \"tls/{node}.pem\"\nkey = \"tls/{node}.key\"\n\n\
         [auth]\nsecrets = \"secrets.toml\"\n",
    );
    let topology = work.join("topology.toml");
    std::fs::write(&topology, text)?;
    Ok(Secured {
        topology,
        ca: tls.join(security::mint::CA_CERT_FILE),
        admin_password,
        app_token,
        ops_token,
    })
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

/// `GET https://{addr}{path}` with a bearer token, verified against `tls`'s CA.
async fn get_json(
    tls: &proto::tls::ReloadingTls,
    addr: std::net::SocketAddr,
    path: &str,
    token: &str,
) -> anyhow::Result<serde_json::Value> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(tls.current_client(&[proto::tls::ALPN_HTTP11])?);
    let stream = connector
        .connect(proto::tls::server_name(&addr.ip().to_string())?, tcp)
        .await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<bytes::Bytes>>(hyper_util::rt::TokioIo::new(stream))
            .await?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::new())?;
    let resp = sender.send_request(req).await?;
    anyhow::ensure!(resp.status().is_success(), "GET {path}: HTTP {}", resp.status());
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&body)?)
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let stop = crate::shutdown_on_signals()?;
    let work = tempfile::Builder::new().prefix("sessionfleet-demo-").tempdir()?;
    let result = tokio::select! {
        r = tour(&args.topology, work.path(), args.keep.then_some(&stop)) => r,
        _ = stop.cancelled() => {
            println!("\ninterrupted: stopping every node and removing {}", work.path().display());
            Ok(())
        }
    };
    // Children are killed as `tour` unwinds; the directory goes with `work`.
    drop(work);
    result
}

async fn tour(
    source: &Path,
    work: &Path,
    keep: Option<&tokio_util::sync::CancellationToken>,
) -> anyhow::Result<()> {
    let plain = Topology::load(source).map_err(|e| anyhow::anyhow!("{e}"))?;
    let secured = secure(source, &plain, work)?;
    let topology_path = secured.topology.as_path();
    let t = Topology::load(topology_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ca_tls = proto::tls::ReloadingTls::load(proto::tls::TlsPaths {
        ca: secured.ca.clone(),
        cert: None,
        key: None,
    })?;
    let app = edge_client::Credentials::token(&secured.app_token)?;
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
        t.first_hub().name,
        spoke_a.name,
        dc_a.name,
        spoke_b.name,
        dc_b.name
    ));
    let dir = |n: &str| work.join(n).display().to_string();
    let log = work.join("nodes.log");
    let hub = Node::start(
        t.first_hub().name.as_str(),
        vec![
            "hub".into(),
            "--topology".into(),
            topo.clone(),
            "--data-dir".into(),
            dir(t.first_hub().name.as_str()),
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
        "   secured: TLS with a CA minted into {}, users and tokens in {}",
        secured.ca.display(),
        work.join("secrets.toml").display()
    );
    println!(
        "   hub https://{} , status page https://{}/_fleet (log in as admin)",
        t.first_hub().http,
        t.first_hub().http
    );

    let client = |dc: &str| -> anyhow::Result<Client> {
        Ok(ClientBuilder::from_topology(&t, dc)?
            .credentials(app.clone())
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
            String::from_utf8_lossy(s.body()),
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
        .local(spoke_a.name.as_str(), format!("https://{}", spoke_a.grpc))
        .tls(std::sync::Arc::new(proto::tls::ReloadingTls::load(
            ca_tls.paths().clone(),
        )?))
        .credentials(app.clone())
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
    let status = get_json(&ca_tls, t.first_hub().http, "/_fleet/status", &secured.ops_token).await?;
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

    say("try it (the fleet is secured: TLS, and no request without credentials)");
    let ca = secured.ca.display();
    println!(
        "   curl --cacert {ca} -u admin:{} https://{}/_fleet/status",
        secured.admin_password,
        t.first_hub().http
    );
    println!(
        "   curl --cacert {ca} -H 'Authorization: Bearer {}' https://{}/{db}/session-1",
        secured.app_token, spoke_b.http
    );
    println!(
        "   curl --cacert {ca} https://{}/{db}/session-1    # 401: no credentials",
        spoke_b.http
    );
    println!(
        "   SESSIONFLEET_TOKEN={} cargo run -p edge-client --example read_session -- {} {} user-42",
        secured.app_token,
        topology_path.display(),
        dc_b.name
    );
    match keep {
        Some(stop) => {
            println!("   The fleet keeps running (--keep); Ctrl-C stops it and removes {}.", work.display());
            stop.cancelled().await;
        }
        None => println!(
            "   (run `sessionfleet demo --keep` to keep the fleet up for these). Stopping the fleet and removing {}.",
            work.display()
        ),
    }
    drop((hub, a, b));
    Ok(())
}
