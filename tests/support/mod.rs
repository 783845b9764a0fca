//! Real `sessionfleet` processes for multi-process tests: start on 127.0.0.x
//! ports with real data directories, wait for readiness, SIGTERM or SIGKILL.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use security::Role;

pub const BIN: &str = env!("CARGO_BIN_EXE_sessionfleet");

/// The credentials every test process shares: one secrets file that every node is
/// started with (`--secrets`), and the plaintext passwords and tokens it holds hashes of.
pub struct TestSecrets {
    /// The secrets file.
    pub path: PathBuf,
    /// User `admin` (role admin).
    pub admin_password: String,
    /// User `replicator` (role replicator).
    pub replicator_password: String,
    /// Token `admin-token` (admin).
    pub admin_token: String,
    /// Token `app-token` (app).
    pub app_token: String,
    /// Token `replicator-token` (replicator).
    pub replicator_token: String,
    /// Token `ops-token` (ops).
    pub ops_token: String,
}

/// The shared test secrets, made on first use. Password hashes use few PBKDF2
/// iterations: verification speed is not what these tests are about.
pub fn secrets() -> &'static TestSecrets {
    static SECRETS: OnceLock<TestSecrets> = OnceLock::new();
    SECRETS.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("sessionfleet-test-secrets-")
            .tempdir()
            .expect("secrets dir")
            .keep();
        let path = dir.join("secrets.toml");
        let mut f = security::compose::SecretsFile::new();
        let (admin_password, replicator_password) = (
            "admin-pw-for-tests".to_string(),
            "replicator-pw-for-tests".to_string(),
        );
        f.user("admin", &admin_password, &[Role::Admin], 1000);
        f.user("replicator", &replicator_password, &[Role::Replicator], 1000);
        let admin_token = f.token("admin-token", &[Role::Admin]);
        let app_token = f.token("app-token", &[Role::App]);
        let replicator_token = f.token("replicator-token", &[Role::Replicator]);
        let ops_token = f.token("ops-token", &[Role::Ops]);
        f.write(&path).expect("write test secrets");
        TestSecrets {
            path,
            admin_password,
            replicator_password,
            admin_token,
            app_token,
            replicator_token,
            ops_token,
        }
    })
}

/// The edge-client credentials of an app server in tests.
pub fn app_credentials() -> edge_client::Credentials {
    edge_client::Credentials::token(&secrets().app_token).expect("app token")
}

/// `authorization: Bearer <admin token>`, for raw HTTP clients in tests.
pub fn admin_headers() -> reqwest::header::HeaderMap {
    let mut h = reqwest::header::HeaderMap::new();
    let v = format!("Bearer {}", secrets().admin_token);
    h.insert(reqwest::header::AUTHORIZATION, v.parse().expect("header value"));
    h
}

/// A reqwest client sending the admin token.
pub fn admin_reqwest() -> reqwest::Client {
    reqwest::Client::builder()
        .default_headers(admin_headers())
        .build()
        .expect("reqwest client")
}

/// `http://admin:<password>@<addr>`: a CouchDB-style URL with credentials.
pub fn admin_url(addr: SocketAddr) -> String {
    format!("http://admin:{}@{addr}", secrets().admin_password)
}

/// A free port on 127.0.0.1 (bound then released), never one already given to this process.
pub fn free_addr() -> SocketAddr {
    // The kernel may hand the same ephemeral port out again once its listener is
    // closed: a fleet of 25 spokes asks for 50 and would sometimes get a repeat.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind ephemeral port");
        let addr = l.local_addr().expect("local addr");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&addr.port()) {
            given.push(addr.port());
            return addr;
        }
    }
}

/// A running `sessionfleet` process.
pub struct Proc {
    pub child: Child,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub data_dir: PathBuf,
    pub args: Vec<String>,
    /// Extra environment it was started with (replayed by [`Proc::must_restart`]).
    pub envs: Vec<(String, String)>,
    /// The last [`LOG_LINES`] lines the process wrote to stderr.
    pub log: Log,
}

/// How many stderr lines of a process are kept: enough to see why it failed.
pub const LOG_LINES: usize = 1000;

/// A process's recent stderr, kept out of the test output unless the test fails (when
/// [`Proc`]'s drop prints it), so a failing test's own message is not buried in other
/// processes' retry warnings.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<VecDeque<String>>>);

impl Log {
    fn follow(&self, stderr: impl std::io::Read + Send + 'static) {
        let log = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut lines = log.0.lock().unwrap_or_else(|e| e.into_inner());
                if lines.len() == LOG_LINES {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
        });
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

impl Proc {
    /// Starts `sessionfleet <args> --secrets <the shared test secrets>` (unless `args`
    /// name a secrets file) and waits for its `ready` line.
    pub fn must_start(mut args: Vec<String>, http: SocketAddr, grpc: SocketAddr, data_dir: &Path) -> Proc {
        if !args.iter().any(|a| a == "--secrets") {
            args.push("--secrets".into());
            args.push(secrets().path.display().to_string());
        }
        Proc::must_start_as_given(args, http, grpc, data_dir)
    }

    /// Starts `sessionfleet <args>` exactly as given and waits for its `ready` line.
    pub fn must_start_as_given(
        args: Vec<String>,
        http: SocketAddr,
        grpc: SocketAddr,
        data_dir: &Path,
    ) -> Proc {
        Proc::must_start_with_log(args, http, grpc, data_dir, "warn")
    }

    /// [`Proc::must_start_as_given`], logging at `level` (`SESSIONFLEET_LOG`).
    pub fn must_start_with_log(
        args: Vec<String>,
        http: SocketAddr,
        grpc: SocketAddr,
        data_dir: &Path,
        level: &str,
    ) -> Proc {
        Proc::must_start_with_env(args, http, grpc, data_dir, &[("SESSIONFLEET_LOG", level)])
    }

    /// [`Proc::must_start_as_given`] with extra environment variables (a preloaded
    /// libfaketime, say). `SESSIONFLEET_LOG` defaults to `warn`, or to
    /// `SESSIONFLEET_TEST_LOG` when the test run sets it (to debug a failing run).
    pub fn must_start_with_env(
        args: Vec<String>,
        http: SocketAddr,
        grpc: SocketAddr,
        data_dir: &Path,
        envs: &[(&str, &str)],
    ) -> Proc {
        let mut child = Command::new(BIN)
            .args(&args)
            .env(
                "SESSIONFLEET_LOG",
                std::env::var("SESSIONFLEET_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {BIN}: {e}"));
        let log = Log::default();
        log.follow(child.stderr.take().expect("piped stderr"));
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
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "sessionfleet {args:?} did not become ready: {other:?}\n{}",
                    log.lines().join("\n")
                );
            }
        }
        Proc {
            child,
            http,
            grpc,
            data_dir: data_dir.to_owned(),
            args,
            envs: envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            log,
        }
    }

    /// Starts a standalone hub.
    pub fn must_start_hub(data_dir: &Path) -> Proc {
        Proc::must_start_hub_with(data_dir, &[])
    }

    /// Starts a standalone hub with `extra` flags.
    pub fn must_start_hub_with(data_dir: &Path, extra: &[&str]) -> Proc {
        let (http, grpc) = (free_addr(), free_addr());
        let mut args: Vec<String> = vec![
            "hub".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--http".into(),
            http.to_string(),
            "--grpc".into(),
            grpc.to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
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
        let envs: Vec<(&str, &str)> = self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Proc::must_start_with_env(self.args.clone(), self.http, self.grpc, &self.data_dir, &envs)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- last stderr of sessionfleet {:?} ---", self.args);
            for line in self.log.lines() {
                eprintln!("{line}");
            }
        }
    }
}

/// Starts a spoke replicating `databases` with the hub at `hub_grpc`.
pub fn must_start_spoke(data_dir: &Path, hub_grpc: SocketAddr, datacentre: &str, extra: &[&str]) -> Proc {
    must_start_spoke_with_env(data_dir, hub_grpc, datacentre, extra, &[])
}

/// [`must_start_spoke`] with extra environment variables.
pub fn must_start_spoke_with_env(
    data_dir: &Path,
    hub_grpc: SocketAddr,
    datacentre: &str,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> Proc {
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
    if !args.iter().any(|a| a == "--secrets") {
        args.extend(["--secrets".to_string(), secrets().path.display().to_string()]);
    }
    Proc::must_start_with_env(args, http, grpc, data_dir, envs)
}

/// Starts the hub (`datacentre` `None`) or a spoke of `datacentre` from topology file
/// `topo`, which places it at `at` (http, grpc).
pub fn must_start_from_topology(
    topo: &Path,
    data: &Path,
    datacentre: Option<&str>,
    at: (SocketAddr, SocketAddr),
) -> Proc {
    must_start_from_topology_with(topo, data, datacentre, at, Vec::new())
}

/// [`must_start_from_topology`] with `extra` flags after the topology's (e.g.
/// [`hub_flags`], or a hub's `--name`).
pub fn must_start_from_topology_with(
    topo: &Path,
    data: &Path,
    datacentre: Option<&str>,
    at: (SocketAddr, SocketAddr),
    extra: Vec<String>,
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
    args.extend(extra);
    Proc::must_start(args, at.0, at.1, data)
}

/// `--hub` flags making a spoke dial `hubs` (gRPC, in order) instead of the topology's
/// hub addresses: how tests put a fault proxy on a spoke's uplink.
pub fn hub_flags(hubs: &[SocketAddr]) -> Vec<String> {
    hubs.iter()
        .flat_map(|h| ["--hub".to_string(), format!("http://{h}")])
        .collect()
}

/// A small JSON-over-HTTP client for tests. `Http::default()` sends the admin token;
/// [`Http::anonymous`] and [`Http::bearer`] send other credentials.
#[derive(Clone)]
pub struct Http(reqwest::Client, Option<String>);

impl Default for Http {
    fn default() -> Http {
        Http::bearer(&secrets().admin_token)
    }
}

impl Http {
    /// A client sending no credentials.
    pub fn anonymous() -> Http {
        Http(reqwest::Client::new(), None)
    }

    /// A client sending `authorization: Bearer <token>`.
    pub fn bearer(token: &str) -> Http {
        Http(reqwest::Client::new(), Some(format!("Bearer {token}")))
    }

    /// A client sending HTTP Basic credentials.
    pub fn basic(user: &str, password: &str) -> Http {
        use base64::Engine;
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Http(reqwest::Client::new(), Some(format!("Basic {v}")))
    }

    /// This client's connection settings with other credentials (`None`: anonymous).
    pub fn with_authorization(&self, value: Option<String>) -> Http {
        Http(self.0.clone(), value)
    }

    fn request(&self, method: &str, url: &str) -> reqwest::RequestBuilder {
        let r = self
            .0
            .request(method.parse().expect("method"), url)
            .timeout(Duration::from_secs(30));
        match &self.1 {
            Some(v) => r.header(reqwest::header::AUTHORIZATION, v),
            None => r,
        }
    }

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
        Http(
            b.build().expect("reqwest client"),
            Some(format!("Bearer {}", secrets().admin_token)),
        )
    }

    pub async fn req(
        &self,
        method: &str,
        url: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut r = self.request(method, url);
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
        match self.request("GET", url).send().await {
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

/// A gRPC request carrying `authorization` metadata (e.g. `Bearer …`) if given.
pub fn grpc_request<T>(msg: T, authorization: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(v) = authorization {
        r.metadata_mut()
            .insert("authorization", v.parse().expect("authorization is ASCII"));
    }
    r
}

/// A plaintext `Sessions` client of `node`.
pub async fn sessions(node: &Proc) -> proto::v1::sessions_client::SessionsClient<tonic::transport::Channel> {
    proto::v1::sessions_client::SessionsClient::connect(format!("http://{}", node.grpc))
        .await
        .expect("connect to the node's gRPC port")
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
    let text = Http::bearer(&secrets().ops_token)
        .text(&format!("{}/_metrics", node.base()))
        .await;
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
