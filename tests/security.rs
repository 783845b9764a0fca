//! A fleet secured with TLS, as an operator sets it up: `sessionfleet certs` mints the
//! CA and node certificates, the topology's `[tls]` names them, and real hub and spoke
//! processes serve HTTPS and gRPC over TLS. Every refusal the design promises is
//! exercised: plaintext to a TLS port, a wrong CA, an expired certificate, a spoke
//! certificate the topology does not name (before and after a reload), a spoke
//! claiming another's name; and certificates rotate mid-run with no failed request.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use proto::tls::{ClientRole, Identity, ReloadingTls, TlsPaths};
use proto::v1::replication_client::ReplicationClient;
use proto::v1::{ChangesRequest, DbInfoRequest};
use serde_json::json;
use support::*;
use tonic::Code;

type Addr = (std::net::SocketAddr, std::net::SocketAddr);

const TLS_SECTION: &str = "[tls]\nca = \"tls/ca.pem\"\ncert = \"tls/{node}.pem\"\nkey = \"tls/{node}.key\"\n";

/// A fleet directory: `topology.toml`, and `tls/` with the CA and every node's files.
struct Fleet {
    dir: tempfile::TempDir,
    hub: Addr,
    a: Addr,
    b: Addr,
}

fn certs(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("certs")
        .args(args)
        .output()
        .expect("run certs");
    assert!(
        out.status.success(),
        "sessionfleet certs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Fleet {
    fn mint() -> Fleet {
        let f = Fleet {
            dir: tempfile::tempdir().unwrap(),
            hub: (free_addr(), free_addr()),
            a: (free_addr(), free_addr()),
            b: (free_addr(), free_addr()),
        };
        f.write_topology(true);
        let tls = f.tls_dir();
        let tls = tls.to_str().unwrap();
        certs(&["ca", "--out", tls]);
        let minted = certs(&[
            "nodes",
            "--topology",
            f.topology().to_str().unwrap(),
            "--ca-dir",
            tls,
            "--out",
            tls,
        ]);
        for id in [
            "sessionfleet:hub/london",
            "sessionfleet:spoke/eu-west/eu-west-1",
            "sessionfleet:spoke/us-east/us-east-1",
        ] {
            assert!(minted.contains(id), "certs nodes did not mint {id}: {minted}");
        }
        f
    }

    /// The topology, with both datacentres or only eu-west.
    fn write_topology(&self, with_us_east: bool) {
        let mut spokes = vec![("eu-west", "eu-west-1", self.a)];
        if with_us_east {
            spokes.push(("us-east", "us-east-1", self.b));
        }
        let text = fleet_toml(self.hub, &spokes, TLS_SECTION);
        // Replace atomically: the nodes poll the file.
        let tmp = self.dir.path().join("topology.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.topology()).unwrap();
    }

    fn topology(&self) -> PathBuf {
        self.dir.path().join("topology.toml")
    }

    fn tls_dir(&self) -> PathBuf {
        self.dir.path().join("tls")
    }

    fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.tls_dir().join("ca.pem")).unwrap()
    }

    fn start(&self, datacentre: Option<&str>, at: Addr) -> (tempfile::TempDir, Proc) {
        let data = tempfile::tempdir().unwrap();
        let p = must_start_from_topology(&self.topology(), data.path(), datacentre, at);
        (data, p)
    }

    /// A certificate for `identity` from the fleet CA, valid until `not_after`, written
    /// beside the others; returns TLS material presenting it.
    fn client_tls(&self, identity: &Identity, not_after: SystemTime) -> Arc<ReloadingTls> {
        let ca = security::Ca::load(&self.tls_dir()).unwrap();
        let now = SystemTime::now();
        let not_before = now.min(not_after) - Duration::from_secs(3600);
        let issued = ca
            .issue_with_validity(identity, &[], &[], not_before, not_after)
            .unwrap();
        let stem = identity.to_uri().replace([':', '/'], "-");
        let (cert, key) = issued.write(&self.tls_dir(), &stem, true).unwrap();
        Arc::new(
            ReloadingTls::load(TlsPaths {
                ca: self.tls_dir().join("ca.pem"),
                cert: Some(cert),
                key: Some(key),
            })
            .unwrap(),
        )
    }

    fn ca_only_tls(&self) -> Arc<ReloadingTls> {
        Arc::new(
            ReloadingTls::load(TlsPaths {
                ca: self.tls_dir().join("ca.pem"),
                cert: None,
                key: None,
            })
            .unwrap(),
        )
    }
}

fn https(addr: std::net::SocketAddr) -> String {
    format!("https://{addr}")
}

fn replication(
    grpc: std::net::SocketAddr,
    tls: &Arc<ReloadingTls>,
) -> ReplicationClient<tonic::transport::Channel> {
    let channel = proto::tls::grpc_channel(&https(grpc), Some(tls), |e| {
        e.connect_timeout(Duration::from_secs(5))
    })
    .unwrap();
    ReplicationClient::new(channel)
}

async fn db_info(client: &mut ReplicationClient<tonic::transport::Channel>) -> Result<(), tonic::Status> {
    client
        .db_info(DbInfoRequest {
            db: "sessions".into(),
            create: true,
            expiry_field: "expires_at".into(),
            revs_limit: 10,
        })
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_fleet_serves_replicates_and_shows_who_is_connected() {
    let fleet = Fleet::mint();
    let (_h, hub) = fleet.start(None, fleet.hub);
    let (_a, a) = fleet.start(Some("eu-west"), fleet.a);
    let (_b, b) = fleet.start(Some("us-east"), fleet.b);
    let http = Http::tls(&fleet.ca_pem(), None);

    // Written over HTTPS in eu-west, replicated over mutual TLS, read in us-east.
    http.must(
        "PUT",
        &format!("{}/sessions/s1", https(a.http)),
        Some(json!({"user": "ada"})),
        201,
    )
    .await;
    must_eventually("s1 reaches us-east over TLS", Duration::from_secs(20), || async {
        http.req("GET", &format!("{}/sessions/s1", https(b.http)), None)
            .await
            .0
            == 200
    })
    .await;

    // The hub knows its spokes by their certificates.
    let status = http
        .must("GET", &format!("{}/_fleet/status", https(hub.http)), None, 200)
        .await;
    let text = status.to_string();
    for id in [
        "sessionfleet:spoke/eu-west/eu-west-1",
        "sessionfleet:spoke/us-east/us-east-1",
    ] {
        assert!(text.contains(id), "/_fleet/status lacks {id}: {text}");
    }

    // The edge-client dials the topology's https:// chain, verified against its CA.
    let client =
        edge_client::Client::from_topology_file(fleet.topology(), "us-east", app_credentials()).unwrap();
    let session = client.read("sessions", "s1").await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(session.body()).unwrap();
    assert_eq!(body["user"], "ada");

    // Plaintext to a TLS port gets no answer, nor does a client trusting another CA.
    let (status, _) = Http::default()
        .req("GET", &format!("http://{}/", a.http), None)
        .await;
    assert_eq!(status, 0, "plaintext HTTP to a TLS port was answered");
    let other = tempfile::tempdir().unwrap();
    certs(&[
        "ca",
        "--out",
        other.path().to_str().unwrap(),
        "--fleet",
        "impostor",
    ]);
    let stranger = Http::tls(&std::fs::read(other.path().join("ca.pem")).unwrap(), None);
    let (status, _) = stranger.req("GET", &format!("{}/", https(a.http)), None).await;
    assert_eq!(status, 0, "a client trusting another CA completed a handshake");
    let metrics = http.text(&format!("{}/_metrics", https(a.http))).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sessionfleet_tls_handshake_failures_total") && l.contains("http")),
        "handshake failures not counted:\n{metrics}"
    );

    // One node replicates from another's HTTPS API, with a replicator's credentials in
    // the URL as a CouchDB 3 migration does, verifying the peer against the fleet CA.
    let source = format!(
        "https://replicator:{}@{}/sessions",
        secrets().replicator_password,
        hub.http
    );
    let r = http
        .must(
            "POST",
            &format!("{}/_replicate", https(b.http)),
            Some(json!({"source": source, "target": "copy", "create_target": true})),
            200,
        )
        .await;
    assert!(r["history"][0]["docs_written"].as_u64().unwrap() >= 1, "{r}");
    http.must("GET", &format!("{}/copy/s1", https(b.http)), None, 200)
        .await;

    // An app server's certificate (`sessionfleet certs client`) authenticates it as an
    // app: it reads sessions, and may not touch databases.
    let tls = fleet.tls_dir();
    let apps = tempfile::tempdir().unwrap();
    let out = certs(&[
        "client",
        "--role",
        "app",
        "--name",
        "web-1",
        "--ca-dir",
        tls.to_str().unwrap(),
        "--out",
        apps.path().to_str().unwrap(),
    ]);
    assert!(out.contains("sessionfleet:client/app/web-1"), "{out}");
    let (cert, key) = (apps.path().join("web-1.pem"), apps.path().join("web-1.key"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let shown = certs(&["show", cert.to_str().unwrap()]);
    assert!(
        shown.contains("sessionfleet:client/app/web-1") && shown.to_lowercase().contains("not after"),
        "{shown}"
    );
    let web = Http::tls(
        &fleet.ca_pem(),
        Some((&std::fs::read(&cert).unwrap(), &std::fs::read(&key).unwrap())),
    )
    .with_authorization(None);
    web.must("GET", &format!("{}/sessions/s1", https(a.http)), None, 200)
        .await;
    let v = web
        .must("DELETE", &format!("{}/sessions", https(a.http)), None, 403)
        .await;
    assert!(v["reason"].as_str().unwrap().contains("web-1"), "{v}");
    Http::tls(&fleet.ca_pem(), None)
        .with_authorization(None)
        .must("GET", &format!("{}/sessions/s1", https(a.http)), None, 401)
        .await;
}

#[test]
fn a_node_refuses_plaintext_on_a_non_loopback_address() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args(["hub", "--data-dir", dir.path().to_str().unwrap()])
            .args(["--http", "192.0.2.1:5984", "--grpc", "127.0.0.1:0"])
            .args(["--secrets", secrets().path.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("refusing to serve plaintext on 192.0.2.1:5984"),
        "{stderr}"
    );
    // With --insecure-plaintext it goes on (and fails only to bind an address this
    // machine does not have).
    let out = run(&["--insecure-plaintext"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stderr.contains("refusing to serve plaintext"), "{stderr}");
    assert!(stderr.contains("cannot listen on 192.0.2.1:5984"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_admits_only_spokes_the_topology_names() {
    let fleet = Fleet::mint();
    let (_h, hub) = fleet.start(None, fleet.hub);
    let year = SystemTime::now() + Duration::from_secs(365 * 86_400);

    // No client certificate: unauthenticated.
    let err = db_info(&mut replication(hub.grpc, &fleet.ca_only_tls()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");

    // A certificate from the fleet CA for a spoke the topology does not name.
    let rogue = fleet.client_tls(&Identity::spoke("eu-west", "rogue-1").unwrap(), year);
    let err = db_info(&mut replication(hub.grpc, &rogue)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(err.message().contains("not in the topology"), "{err}");

    // An app's certificate may not replicate.
    let app = fleet.client_tls(&Identity::client(ClientRole::App, "app-1").unwrap(), year);
    let err = db_info(&mut replication(hub.grpc, &app)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");

    // An expired certificate of a named spoke fails the handshake.
    let expired = fleet.client_tls(
        &Identity::spoke("eu-west", "eu-west-1").unwrap(),
        SystemTime::now() - Duration::from_secs(60),
    );
    let err = db_info(&mut replication(hub.grpc, &expired)).await.unwrap_err();
    // With TLS 1.3 the client's side of the handshake is done before the server
    // checks its certificate: the refusal arrives as a closed connection.
    assert!(
        matches!(err.code(), Code::Unavailable | Code::Cancelled | Code::Unknown),
        "{err}"
    );
    let metrics = Http::tls(&fleet.ca_pem(), None)
        .text(&format!("{}/_metrics", https(hub.http)))
        .await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sessionfleet_tls_handshake_failures_total") && l.contains("grpc")),
        "the expired certificate's handshake was not counted:\n{metrics}"
    );

    // The real us-east-1 is admitted, but may not claim to be another spoke.
    let us_east = fleet.client_tls(&Identity::spoke("us-east", "us-east-1").unwrap(), year);
    let mut client = replication(hub.grpc, &us_east);
    db_info(&mut client).await.unwrap();
    let changes = |peer: &str| ChangesRequest {
        db: "sessions".into(),
        since: 0,
        continuous: true,
        batch_size: 100,
        peer: peer.into(),
        ..Default::default()
    };
    let err = client.changes(changes("eu-west/eu-west-1")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(err.message().contains("us-east/us-east-1"), "{err}");
    let mut stream = client
        .changes(changes("us-east/us-east-1"))
        .await
        .unwrap()
        .into_inner();

    // The topology drops us-east: its open stream is cut and new calls are refused.
    fleet.write_topology(false);
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(e) => return Some(e),
            }
        }
    })
    .await
    .expect("the dropped spoke's stream was not cut within 30 s");
    let err = ended.expect("the stream ended without saying why");
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    let err = db_info(&mut client).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(err.message().contains("not in the topology"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_and_the_ca_bundle_rotate_without_a_failed_request() {
    let fleet = Fleet::mint();
    let (_h, hub) = fleet.start(None, fleet.hub);
    let tls = fleet.tls_dir();

    // Step 1 of a CA rotation: everyone trusts the bundle of the old and the new CA.
    let new_ca = fleet.dir.path().join("new-ca");
    certs(&["ca", "--out", new_ca.to_str().unwrap()]);
    let bundle = [fleet.ca_pem(), std::fs::read(new_ca.join("ca.pem")).unwrap()].concat();
    let client = Http::tls(&bundle, None);

    // Traffic on fresh connections (every request a new handshake) throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let traffic = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let url = format!("{}/", https(hub.http));
        let bundle = bundle.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let fresh = Http::tls(&bundle, None);
                match fresh.req("GET", &url, None).await.0 {
                    200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    let served = |n: u64| {
        let ok = ok.clone();
        async move {
            let target = ok.load(Ordering::Relaxed) + n;
            must_eventually("requests keep being served", Duration::from_secs(20), || {
                let ok = ok.clone();
                async move { ok.load(Ordering::Relaxed) >= target }
            })
            .await;
        }
    };
    served(20).await;

    // The hub's CA file becomes the bundle, then its certificate one from the new CA
    // (minted elsewhere and moved into place, key first, as an operator would).
    replace(&tls.join("ca.pem"), &bundle);
    served(20).await;
    let staging = fleet.dir.path().join("staging");
    certs(&[
        "nodes",
        "--topology",
        fleet.topology().to_str().unwrap(),
        "--ca-dir",
        new_ca.to_str().unwrap(),
        "--out",
        staging.to_str().unwrap(),
    ]);
    for f in ["london.key", "london.pem"] {
        std::fs::rename(staging.join(f), tls.join(f)).unwrap();
    }

    // The hub now presents the new CA's certificate: a client trusting only it connects.
    let only_new = Http::tls(&std::fs::read(new_ca.join("ca.pem")).unwrap(), None);
    must_eventually(
        "the hub presents its new certificate",
        Duration::from_secs(20),
        || async {
            only_new
                .req("GET", &format!("{}/", https(hub.http)), None)
                .await
                .0
                == 200
        },
    )
    .await;

    // A broken key is refused (and counted); the hub keeps serving with what it had.
    std::fs::write(tls.join("london.key"), b"not a key").unwrap();
    must_eventually(
        "the broken key is refused and counted",
        Duration::from_secs(20),
        || async {
            client
                .text(&format!("{}/_metrics", https(hub.http)))
                .await
                .lines()
                .any(|l| l.starts_with("sessionfleet_tls_reload_failures_total") && !l.ends_with(" 0"))
        },
    )
    .await;
    served(20).await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during rotation ({} served)",
        ok.load(Ordering::Relaxed)
    );
}

/// Replaces `path` atomically (a watcher never sees half a file).
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
