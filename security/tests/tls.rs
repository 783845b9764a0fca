//! Real TLS handshakes over 127.0.0.1 between proto's TLS configs, with certificates
//! minted by `security::mint`: server auth, mutual TLS and identities, refusals (wrong
//! CA, expired, missing client certificate), rotation and the gRPC connector.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use proto::tls::{
    peer_identity, server_name, ClientAuth, ClientRole, GrpcConnector, Identity, ReloadingTls, TlsMaterial,
    TlsPaths, ALPN_GRPC, ALPN_HTTP11, ALPN_HTTP_CLIENT, ALPN_HTTP_SERVER,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use security::Ca;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const DAY: Duration = Duration::from_secs(86_400);
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct Fleet {
    dir: tempfile::TempDir,
    ca: Ca,
}

impl Fleet {
    fn new(name: &str) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate(name, 30 * DAY).unwrap();
        ca.write(dir.path(), false).unwrap();
        Fleet { dir, ca }
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    fn ca_only(&self) -> TlsPaths {
        TlsPaths {
            ca: self.path("ca.pem"),
            cert: None,
            key: None,
        }
    }

    /// Issues `id` as `<stem>.pem/.key` (replacing) and returns its paths.
    fn issue(&self, stem: &str, id: &Identity) -> TlsPaths {
        let issued = self
            .ca
            .issue(id, &[LOCALHOST], &["localhost".into()], DAY)
            .unwrap();
        self.write(stem, &issued)
    }

    fn issue_expired(&self, stem: &str, id: &Identity) -> TlsPaths {
        let now = SystemTime::now();
        let issued = self
            .ca
            .issue_with_validity(id, &[LOCALHOST], &[], now - 3 * DAY, now - DAY)
            .unwrap();
        self.write(stem, &issued)
    }

    fn write(&self, stem: &str, issued: &security::Issued) -> TlsPaths {
        issued.write(self.dir.path(), stem, true).unwrap();
        TlsPaths {
            ca: self.path("ca.pem"),
            cert: Some(self.path(&format!("{stem}.pem"))),
            key: Some(self.path(&format!("{stem}.key"))),
        }
    }
}

fn hub() -> Identity {
    Identity::hub("hub-1").unwrap()
}

fn tls(paths: TlsPaths) -> Arc<ReloadingTls> {
    Arc::new(ReloadingTls::load(paths).unwrap())
}

fn leaf_of(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

/// What the server saw of one connection.
#[derive(Debug)]
struct Seen {
    peer: Option<Identity>,
    alpn: Option<Vec<u8>>,
}

/// Accepts `n` connections, each with a fresh acceptor (as servers do), answering "ok".
async fn serve(
    tls: Arc<ReloadingTls>,
    auth: ClientAuth,
    alpn: &'static [&'static [u8]],
    n: usize,
) -> (SocketAddr, tokio::task::JoinHandle<Vec<Result<Seen, String>>>) {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut out = Vec::new();
        for _ in 0..n {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = tls.acceptor(auth, alpn).unwrap();
            let r = match acceptor.accept(tcp).await {
                Ok(mut s) => {
                    let (_, conn) = s.get_ref();
                    let seen = Seen {
                        peer: peer_identity(conn.peer_certificates()),
                        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
                    };
                    let _ = s.write_all(b"ok").await;
                    let _ = s.flush().await;
                    let _ = s.shutdown().await;
                    Ok(seen)
                }
                Err(e) => Err(e.to_string()),
            };
            out.push(r);
        }
        out
    });
    (addr, task)
}

/// Connects, reads the server's "ok", and returns the server's leaf certificate.
async fn connect(
    tls: &ReloadingTls,
    addr: SocketAddr,
    alpn: &[&[u8]],
) -> Result<CertificateDer<'static>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut s = tls
        .connector(alpn)
        .unwrap()
        .connect(server_name("127.0.0.1").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 2];
    s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    assert_eq!(&buf, b"ok");
    let leaf = s.get_ref().1.peer_certificates().unwrap()[0].clone();
    Ok(leaf)
}

#[tokio::test]
async fn server_auth_and_alpn() {
    let f = Fleet::new("t");
    let server = tls(f.issue("hub", &hub()));
    let client = tls(f.ca_only());
    assert_eq!(server.material().identity(), Some(&hub()));
    assert!(client.material().identity().is_none());
    let (addr, task) = serve(server.clone(), ClientAuth::Optional, ALPN_HTTP_SERVER, 2).await;
    let leaf = connect(&client, addr, ALPN_GRPC).await.unwrap();
    assert_eq!(Identity::from_cert_der(&leaf).unwrap(), hub());
    connect(&client, addr, ALPN_HTTP_CLIENT).await.unwrap();
    let seen = task.await.unwrap();
    let seen: Vec<Seen> = seen.into_iter().map(Result::unwrap).collect();
    assert!(
        seen.iter().all(|s| s.peer.is_none()),
        "anonymous client: {seen:?}"
    );
    assert_eq!(seen[0].alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(seen[1].alpn.as_deref(), Some(ALPN_HTTP11));
}

#[tokio::test]
async fn mutual_tls_carries_the_client_identity() {
    let f = Fleet::new("t");
    let server = tls(f.issue("hub", &hub()));
    let spoke = Identity::spoke("eu-west", "n1").unwrap();
    let app = Identity::client(ClientRole::App, "web-1").unwrap();
    let spoke_tls = tls(f.issue("spoke", &spoke));
    let app_tls = tls(f.issue("app", &app));
    let (addr, task) = serve(server, ClientAuth::Required, ALPN_GRPC, 2).await;
    connect(&spoke_tls, addr, ALPN_GRPC).await.unwrap();
    connect(&app_tls, addr, ALPN_GRPC).await.unwrap();
    let seen = task.await.unwrap();
    assert_eq!(seen[0].as_ref().unwrap().peer, Some(spoke));
    assert_eq!(seen[1].as_ref().unwrap().peer, Some(app));
}

#[tokio::test]
async fn refusals() {
    let f = Fleet::new("t");
    let other = Fleet::new("other");
    let server = tls(f.issue("hub", &hub()));

    // Wrong CA: the client trusts another fleet's CA.
    let (addr, task) = serve(server.clone(), ClientAuth::Optional, ALPN_GRPC, 1).await;
    let e = connect(&tls(other.ca_only()), addr, ALPN_GRPC).await.unwrap_err();
    assert!(e.contains("UnknownIssuer") || e.contains("unknown issuer"), "{e}");
    assert!(task.await.unwrap()[0].is_err());

    // A client certificate of another fleet is refused by the server.
    let (addr, task) = serve(server.clone(), ClientAuth::Optional, ALPN_GRPC, 1).await;
    let foreign = tls(TlsPaths {
        ca: f.path("ca.pem"),
        ..other.issue("foreign", &Identity::client(ClientRole::Admin, "x").unwrap())
    });
    assert!(connect(&foreign, addr, ALPN_GRPC).await.is_err());
    assert!(task.await.unwrap()[0].is_err());

    // Required client auth without a client certificate.
    let (addr, task) = serve(server.clone(), ClientAuth::Required, ALPN_GRPC, 1).await;
    assert!(connect(&tls(f.ca_only()), addr, ALPN_GRPC).await.is_err());
    let e = task.await.unwrap().remove(0).unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");

    // Expired server certificate.
    let expired = tls(f.issue_expired("old-hub", &hub()));
    assert!(
        expired.material().not_after().unwrap()
            < 1 + SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64
    );
    let (addr, task) = serve(expired, ClientAuth::Optional, ALPN_GRPC, 1).await;
    let e = connect(&tls(f.ca_only()), addr, ALPN_GRPC).await.unwrap_err();
    assert!(e.contains("Expired") || e.contains("expired"), "{e}");
    let _ = task.await;

    // Expired client certificate.
    let (addr, task) = serve(server, ClientAuth::Required, ALPN_GRPC, 1).await;
    let old_app = tls(f.issue_expired("old-app", &Identity::client(ClientRole::App, "a").unwrap()));
    assert!(connect(&old_app, addr, ALPN_GRPC).await.is_err());
    let e = task.await.unwrap().remove(0).unwrap_err();
    assert!(e.to_lowercase().contains("expired"), "{e}");
}

#[test]
fn material_errors_name_files_and_hide_keys() {
    let f = Fleet::new("t");
    let paths = f.issue("hub", &hub());
    let key_text = std::fs::read_to_string(paths.key.as_ref().unwrap()).unwrap();
    let key_body: String = key_text.lines().filter(|l| !l.starts_with("-----")).collect();

    // Key of another certificate.
    let other = f.issue("other", &hub());
    let mismatched = TlsPaths {
        key: other.key.clone(),
        ..paths.clone()
    };
    let e = TlsMaterial::load(&mismatched).unwrap_err().to_string();
    assert!(e.contains("other.key") && e.contains("hub.pem"), "{e}");

    // A key file that is not a key.
    std::fs::write(
        f.path("junk.key"),
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}!!\n-----END PRIVATE KEY-----\n",
            &key_body[..20]
        ),
    )
    .unwrap();
    let e = TlsMaterial::load(&TlsPaths {
        key: Some(f.path("junk.key")),
        ..paths.clone()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("junk.key") && !e.contains(&key_body[..20]), "{e}");

    // A CA file with no certificate, a missing file, half a pair.
    std::fs::write(f.path("empty.pem"), "nothing here\n").unwrap();
    let e = TlsMaterial::load(&TlsPaths {
        ca: f.path("empty.pem"),
        ..paths.clone()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("empty.pem") && e.contains("no PEM CERTIFICATE"), "{e}");
    let e = TlsMaterial::load(&TlsPaths {
        ca: f.path("missing.pem"),
        ..paths.clone()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("missing.pem"), "{e}");
    assert!(TlsMaterial::load(&TlsPaths {
        key: None,
        ..paths.clone()
    })
    .is_err());

    // A certificate without a sessionfleet identity (the CA's own) is refused as own cert.
    let e = TlsMaterial::load(&TlsPaths {
        cert: Some(f.path("ca.pem")),
        key: Some(f.path("ca.key")),
        ..paths.clone()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("sessionfleet: URI"), "{e}");

    // Debug never shows key material.
    let m = TlsMaterial::load(&paths).unwrap();
    let d = format!("{m:?} {:?}", ReloadingTls::load(paths).unwrap());
    assert!(
        !d.contains(&key_body[..40]) && d.contains("sessionfleet:hub/hub-1"),
        "{d}"
    );
    assert!(m.server_config(ClientAuth::Required, ALPN_GRPC).is_ok());
    assert!(TlsMaterial::load(&f.ca_only())
        .unwrap()
        .server_config(ClientAuth::Optional, ALPN_GRPC)
        .is_err());
}

#[tokio::test]
async fn rotation_applies_to_new_handshakes_and_keeps_old_on_bad_files() {
    let f = Fleet::new("t");
    let paths = f.issue("hub", &hub());
    let server = tls(paths.clone());
    let client = tls(f.ca_only());
    let first = leaf_of(paths.cert.as_ref().unwrap());
    let a = server.current_server(ClientAuth::Required, ALPN_GRPC).unwrap();
    let b = server.current_server(ClientAuth::Required, ALPN_GRPC).unwrap();
    assert!(Arc::ptr_eq(&a, &b), "configs are cached per generation");

    let (addr, task) = serve(server.clone(), ClientAuth::Optional, ALPN_GRPC, 3).await;
    assert_eq!(connect(&client, addr, ALPN_GRPC).await.unwrap(), first);

    // A connection made before the rotation, used after it.
    let echo_listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let echo_addr = echo_listener.local_addr().unwrap();
    let echo_tls = server.clone();
    let echo = tokio::spawn(async move {
        let (tcp, _) = echo_listener.accept().await.unwrap();
        let mut s = echo_tls
            .acceptor(ClientAuth::Optional, ALPN_GRPC)
            .unwrap()
            .accept(tcp)
            .await
            .unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(&buf).await.unwrap();
        s.flush().await.unwrap();
    });
    let tcp = TcpStream::connect(echo_addr).await.unwrap();
    let mut early = client
        .connector(ALPN_GRPC)
        .unwrap()
        .connect(server_name("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();

    // New certificate on disk, reload: new handshakes present it.
    f.issue("hub", &hub());
    let second = leaf_of(paths.cert.as_ref().unwrap());
    assert_ne!(first, second);
    server.reload().unwrap();
    assert_eq!(server.generation(), 1);
    assert!(!Arc::ptr_eq(
        &a,
        &server.current_server(ClientAuth::Required, ALPN_GRPC).unwrap()
    ));
    assert_eq!(connect(&client, addr, ALPN_GRPC).await.unwrap(), second);
    early.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    early.read_exact(&mut buf).await.unwrap();
    assert_eq!(
        &buf, b"ping",
        "the connection made before the rotation still works"
    );
    assert_eq!(early.get_ref().1.peer_certificates().unwrap()[0], first);
    echo.await.unwrap();

    // Invalid new files: the reload fails and the previous certificate stays.
    std::fs::write(paths.cert.as_ref().unwrap(), "not a certificate").unwrap();
    assert!(server.reload().is_err());
    assert_eq!(server.generation(), 1);
    assert_eq!(connect(&client, addr, ALPN_GRPC).await.unwrap(), second);
    assert!(task.await.unwrap().iter().all(Result::is_ok));
}

#[tokio::test]
async fn ca_bundle_rotation() {
    // Clients trusting old+new CA bundles accept servers of either CA.
    let old = Fleet::new("old");
    let new = Fleet::new("new");
    let bundle = format!("{}{}", old.ca.cert_pem(), new.ca.cert_pem());
    std::fs::write(old.path("bundle.pem"), bundle).unwrap();
    let client = tls(TlsPaths {
        ca: old.path("bundle.pem"),
        cert: None,
        key: None,
    });
    for f in [&old, &new] {
        let (addr, task) = serve(tls(f.issue("hub", &hub())), ClientAuth::Optional, ALPN_GRPC, 1).await;
        connect(&client, addr, ALPN_GRPC).await.unwrap();
        task.await.unwrap().remove(0).unwrap();
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn watcher_follows_file_changes_and_sighup() {
    let f = Fleet::new("t");
    let paths = f.issue("hub", &hub());
    let server = tls(paths.clone());
    let cancel = CancellationToken::new();
    let watcher = server.spawn_watcher(Duration::from_millis(50), cancel.clone());

    // Unchanged files: no reload.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.generation(), 0);

    f.issue("hub", &hub());
    wait_for("reload after file change", || server.generation() == 1).await;
    assert!(server.current_server(ClientAuth::Optional, ALPN_GRPC).is_ok());

    // Touching a file without changing its contents does not reload.
    let cert = paths.cert.clone().unwrap();
    let text = std::fs::read(&cert).unwrap();
    std::fs::write(&cert, &text).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.generation(), 1);

    cancel.cancel();
    watcher.await.unwrap();

    // SIGHUP reloads even without a change (poll interval far away).
    let cancel = CancellationToken::new();
    let watcher = server.spawn_watcher(Duration::from_secs(3600), cancel.clone());
    tokio::time::sleep(Duration::from_millis(300)).await; // let it register the handler
                                                          // SAFETY: kill(2) on our own pid with a signal tokio handles.
    unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
    wait_for("reload after SIGHUP", || server.generation() == 2).await;
    cancel.cancel();
    watcher.await.unwrap();
}

#[tokio::test]
async fn grpc_connector_negotiates_h2_and_honours_tonic_timeouts() {
    use tower_service::Service;
    let f = Fleet::new("t");
    let server = tls(f.issue("hub", &hub()));
    let client = tls(f.issue("spoke", &Identity::spoke("eu", "n1").unwrap()));
    let mut connector = GrpcConnector::new(client.clone());

    let (addr, task) = serve(server.clone(), ClientAuth::Required, ALPN_GRPC, 1).await;
    let uri: http::Uri = format!("http://127.0.0.1:{}", addr.port()).parse().unwrap();
    let io = connector.call(uri).await.unwrap();
    let (_, conn) = io.inner().get_ref();
    assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
    drop(io);
    assert_eq!(
        task.await.unwrap().remove(0).unwrap().peer,
        Some(Identity::spoke("eu", "n1").unwrap())
    );

    // A server that does not speak h2 is refused: by rustls when it offers other
    // protocols, by the connector when it negotiates none.
    let (addr, task) = serve(server.clone(), ClientAuth::Optional, &[ALPN_HTTP11], 1).await;
    let uri: http::Uri = format!("http://127.0.0.1:{}", addr.port()).parse().unwrap();
    let e = connector.call(uri).await.unwrap_err().to_string();
    assert!(e.contains("NoApplicationProtocol"), "{e}");
    let _ = task.await;
    let (addr, task) = serve(server, ClientAuth::Optional, &[], 1).await;
    let uri: http::Uri = format!("http://127.0.0.1:{}", addr.port()).parse().unwrap();
    let e = connector.call(uri).await.unwrap_err().to_string();
    assert!(e.contains("did not negotiate ALPN h2"), "{e}");
    let _ = task.await;

    // A peer that accepts TCP but never answers the handshake: tonic's connect_timeout
    // applies to the custom connector, TLS included.
    let silent = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            if let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        }
    });
    let started = Instant::now();
    let r = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_millis(300))
        .connect_with_connector(GrpcConnector::new(client))
        .await;
    assert!(r.is_err());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "{took:?}"
    );
    hold.abort();
}

/// A recorder keeping counters and gauges by name, for the metric assertions.
#[derive(Default)]
struct Recorder {
    values: std::sync::Mutex<std::collections::HashMap<String, Arc<std::sync::atomic::AtomicU64>>>,
}

impl Recorder {
    fn slot(&self, key: &metrics::Key) -> Arc<std::sync::atomic::AtomicU64> {
        self.values
            .lock()
            .unwrap()
            .entry(key.name().to_owned())
            .or_default()
            .clone()
    }

    fn get(&self, name: &str) -> Option<u64> {
        self.values
            .lock()
            .unwrap()
            .get(name)
            .map(|v| v.load(std::sync::atomic::Ordering::SeqCst))
    }
}

impl metrics::Recorder for Recorder {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(self.slot(key))
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(self.slot(key))
    }
    fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

#[test]
fn reload_failures_are_counted_and_expiry_is_a_gauge() {
    let f = Fleet::new("t");
    let paths = f.issue("hub", &hub());
    let rec = Recorder::default();
    metrics::with_local_recorder(&rec, || {
        let server = ReloadingTls::load(paths.clone()).unwrap();
        let expiry = f64::from_bits(rec.get(proto::tls::CERT_EXPIRY_METRIC).unwrap());
        assert!(
            expiry > (DAY.as_secs() - 600) as f64 && expiry <= DAY.as_secs() as f64,
            "{expiry}"
        );
        std::fs::write(paths.key.as_ref().unwrap(), "garbage").unwrap();
        assert!(server.reload().is_err());
        assert!(server.reload().is_err());
        assert_eq!(rec.get(proto::tls::RELOAD_FAILURES_METRIC), Some(2));
        assert_eq!(server.generation(), 0);
    });
}
