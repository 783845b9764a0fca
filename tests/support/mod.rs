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

/// A small JSON-over-HTTP client for tests.
#[derive(Clone, Default)]
pub struct Http(reqwest::Client);

impl Http {
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

/// A TCP proxy in front of a server, for faults the server cannot make itself:
/// a blackholed target (connections accepted, nothing answered) and a slow
/// target (answers held back). Runs in the test's Tokio runtime.
pub struct Proxy {
    pub addr: SocketAddr,
    state: std::sync::Arc<ProxyState>,
    accept: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct ProxyState {
    blackholed: std::sync::atomic::AtomicBool,
    /// Milliseconds answers are held back on connections accepted from now on.
    delay_ms: std::sync::atomic::AtomicU64,
    /// Milliseconds answers are held back on every connection, from now on.
    slow_ms: std::sync::atomic::AtomicU64,
    accepted: std::sync::atomic::AtomicU64,
}

impl Proxy {
    /// Starts forwarding 127.0.0.1:<free port> to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let state = std::sync::Arc::new(ProxyState::default());
        let st = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                st.accepted.fetch_add(1, Ordering::Relaxed);
                let _ = client.set_nodelay(true);
                let delay = Duration::from_millis(st.delay_ms.load(Ordering::Relaxed));
                tokio::spawn(proxy_connection(client, upstream, st.clone(), delay));
            }
        });
        Proxy { addr, state, accept }
    }

    /// While on, nothing passes either way and new connections are accepted
    /// but never forwarded: a target that is there but never answers.
    pub fn blackhole(&self, on: bool) {
        self.state
            .blackholed
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Connections accepted from now on deliver the server's bytes `d` late.
    pub fn delay_new_connections(&self, d: Duration) {
        self.state
            .delay_ms
            .store(d.as_millis() as u64, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every connection delivers the server's bytes `d` late from now on
    /// (`Duration::ZERO` to stop).
    pub fn slow_all(&self, d: Duration) {
        self.state
            .slow_ms
            .store(d.as_millis() as u64, std::sync::atomic::Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.state.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn wait_while_blackholed(st: &ProxyState) {
    while st.blackholed.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn proxy_connection(
    client: tokio::net::TcpStream,
    upstream: SocketAddr,
    st: std::sync::Arc<ProxyState>,
    delay: Duration,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    wait_while_blackholed(&st).await;
    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let st_up = st.clone();
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 << 10];
        loop {
            wait_while_blackholed(&st_up).await;
            match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    wait_while_blackholed(&st_up).await;
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sw.shutdown().await;
    });
    // Server to client: each chunk is delivered `delay` after it was read, in order.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let st_down = st.clone();
    let st_read = st.clone();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 << 10];
        loop {
            match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let slow =
                        Duration::from_millis(st_read.slow_ms.load(std::sync::atomic::Ordering::SeqCst));
                    let at = tokio::time::Instant::now() + delay.max(slow);
                    if tx.send((at, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    });
    while let Some((at, bytes)) = rx.recv().await {
        tokio::time::sleep_until(at).await;
        wait_while_blackholed(&st_down).await;
        if cw.write_all(&bytes).await.is_err() {
            break;
        }
    }
    let _ = cw.shutdown().await;
    up.abort();
    reader.abort();
}
