//! Real `sessionfleet` processes for multi-process tests: start on 127.0.0.x
//! ports with real data directories, wait for readiness, SIGTERM or SIGKILL.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_sessionfleet");

/// A free port on 127.0.0.1 (bound then released; good enough for tests).
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind ephemeral port");
    l.local_addr().expect("local addr")
}

/// A running `sessionfleet` process.
pub struct Proc {
    pub child: Child,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub data_dir: PathBuf,
    pub args: Vec<String>,
}

impl Proc {
    /// Starts `sessionfleet <args>` and waits for its `ready` line.
    pub fn must_start(args: Vec<String>, http: SocketAddr, grpc: SocketAddr, data_dir: &Path) -> Proc {
        let mut child = Command::new(BIN)
            .args(&args)
            .env("SESSIONFLEET_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {BIN}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let ready = rx.recv_timeout(Duration::from_secs(30));
        match ready {
            Ok(line) if line.starts_with("ready ") => {}
            other => {
                let _ = child.kill();
                panic!("sessionfleet {args:?} did not become ready: {other:?}");
            }
        }
        Proc {
            child,
            http,
            grpc,
            data_dir: data_dir.to_owned(),
            args,
        }
    }

    /// Starts a standalone hub.
    pub fn must_start_hub(data_dir: &Path) -> Proc {
        let (http, grpc) = (free_addr(), free_addr());
        let args = vec![
            "hub".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--http".into(),
            http.to_string(),
            "--grpc".into(),
            grpc.to_string(),
        ];
        Proc::must_start(args, http, grpc, data_dir)
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.http)
    }

    /// SIGTERM, then wait for exit; returns the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        self.child.wait().expect("wait for child")
    }

    /// SIGKILL, then reap.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the same command again (same ports, same data directory).
    pub fn must_restart(&self) -> Proc {
        Proc::must_start(self.args.clone(), self.http, self.grpc, &self.data_dir)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a spoke replicating `databases` with the hub at `hub_grpc`.
pub fn must_start_spoke(data_dir: &Path, hub_grpc: SocketAddr, datacentre: &str, extra: &[&str]) -> Proc {
    let (http, grpc) = (free_addr(), free_addr());
    let mut args: Vec<String> = vec![
        "spoke".into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--http".into(),
        http.to_string(),
        "--grpc".into(),
        grpc.to_string(),
        "--hub".into(),
        format!("http://{hub_grpc}"),
        "--datacentre".into(),
        datacentre.into(),
        "--backoff-initial-ms".into(),
        "50".into(),
        "--backoff-max-ms".into(),
        "500".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Proc::must_start(args, http, grpc, data_dir)
}

/// Starts the hub (`datacentre` `None`) or a spoke of `datacentre` from topology file
/// `topo`, which places it at `at` (http, grpc).
pub fn must_start_from_topology(
    topo: &Path,
    data: &Path,
    datacentre: Option<&str>,
    at: (SocketAddr, SocketAddr),
) -> Proc {
    let mut args: Vec<String> = match datacentre {
        None => vec!["hub".into()],
        Some(dc) => vec!["spoke".into(), "--datacentre".into(), dc.into()],
    };
    args.extend([
        "--topology".into(),
        topo.display().to_string(),
        "--data-dir".into(),
        data.display().to_string(),
    ]);
    Proc::must_start(args, at.0, at.1, data)
}

/// A small JSON-over-HTTP client for tests.
#[derive(Clone, Default)]
pub struct Http(reqwest::Client);

impl Http {
    /// A client for `https://` nodes: trusts only the CAs of `ca_pem` (a bundle) and
    /// presents `identity` (certificate and key PEM) when given.
    pub fn tls(ca_pem: &[u8], identity: Option<(&[u8], &[u8])>) -> Http {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false);
        for ca in reqwest::Certificate::from_pem_bundle(ca_pem).expect("CA PEM") {
            b = b.add_root_certificate(ca);
        }
        if let Some((cert, key)) = identity {
            let pem = [cert, key].concat();
            b = b.identity(reqwest::Identity::from_pem(&pem).expect("identity PEM"));
        }
        Http(b.build().expect("reqwest client"))
    }

    pub async fn req(
        &self,
        method: &str,
        url: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut r = self
            .0
            .request(method.parse().expect("method"), url)
            .timeout(Duration::from_secs(30));
        if let Some(b) = body {
            r = r.json(&b);
        }
        match r.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                (
                    status,
                    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
                )
            }
            Err(_) => (0, serde_json::Value::Null),
        }
    }

    /// The body of a GET as text ("" on any failure), for `/_metrics`.
    pub async fn text(&self, url: &str) -> String {
        match self.0.get(url).timeout(Duration::from_secs(30)).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    pub async fn must(
        &self,
        method: &str,
        url: &str,
        body: Option<serde_json::Value>,
        want: u16,
    ) -> serde_json::Value {
        let (status, v) = self.req(method, url, body).await;
        assert_eq!(status, want, "{method} {url} -> {v}");
        v
    }
}

/// Polls `check` until it returns true or `within` passes; panics with `what`.
pub async fn must_eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Proc {
    /// Sends a signal (SIGSTOP/SIGCONT to freeze and thaw, say).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

/// The sum of a Prometheus metric's samples at `node` whose line contains `label`.
pub async fn metric_sum(node: &Proc, name: &str, label: &str) -> u64 {
    let text = reqwest::get(format!("{}/_metrics", node.base()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A test fleet's topology file: hub `london` at `hub` (http, grpc), then one datacentre per
/// entry of `spokes` (datacentre, spoke name, (http, grpc)) in order, the first failing over to
/// the second; the `sessions` database expiring on `expires_at`; then `extra` (`[client]`,
/// `[tls]`, ...) verbatim.
pub fn fleet_toml(
    hub: (SocketAddr, SocketAddr),
    spokes: &[(&str, &str, (SocketAddr, SocketAddr))],
    extra: &str,
) -> String {
    use std::fmt::Write;
    let mut t = format!(
        "[fleet]\nname = \"test-fleet\"\n\n[hub]\nname = \"london\"\nhttp = \"{}\"\ngrpc = \"{}\"\n",
        hub.0, hub.1
    );
    for (i, (dc, spoke, (http, grpc))) in spokes.iter().enumerate() {
        let failover = match (i, spokes.get(1)) {
            (0, Some((next, ..))) => format!("[\"london\", \"{next}\"]"),
            _ => "[\"london\"]".to_string(),
        };
        let _ = write!(
            t,
            "\n[[datacentre]]\nname = \"{dc}\"\nfailover = {failover}\n  [[datacentre.spoke]]\n  name = \"{spoke}\"\n  http = \"{http}\"\n  grpc = \"{grpc}\"\n"
        );
    }
    t.push_str("\n[[database]]\nname = \"sessions\"\nexpiry_field = \"expires_at\"\nrevs_limit = 10\n");
    if !extra.is_empty() {
        t.push('\n');
        t.push_str(extra);
    }
    t
}
