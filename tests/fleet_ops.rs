//! Operating the fleet from a topology file: nodes take their place from it,
//! reload it on change (rejecting a bad edit), the hub's status page renders in
//! a real browser, and the README's demo runs end to end.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

struct Addrs {
    hub: (SocketAddr, SocketAddr),
    a: (SocketAddr, SocketAddr),
    b: (SocketAddr, SocketAddr),
}

fn topology_text(x: &Addrs, extra_dc: bool) -> String {
    let mut spokes = vec![("eu-west", "eu-west-1", x.a), ("us-east", "us-east-1", x.b)];
    if extra_dc {
        spokes.push(("ap-south", "ap-south-1", (free_addr(), free_addr())));
    }
    fleet_toml(x.hub, &spokes, "")
}

fn addrs() -> Addrs {
    Addrs {
        hub: (free_addr(), free_addr()),
        a: (free_addr(), free_addr()),
        b: (free_addr(), free_addr()),
    }
}

fn hub_from(topo: &Path, data: &Path, x: &Addrs) -> Proc {
    must_start_from_topology(topo, data, None, x.hub)
}

fn spoke_from(topo: &Path, data: &Path, dc: &str, at: (SocketAddr, SocketAddr)) -> Proc {
    must_start_from_topology(topo, data, Some(dc), at)
}

async fn status(http: &Http, hub: &Proc) -> serde_json::Value {
    http.must("GET", &format!("{}/_fleet/status", hub.base()), None, 200)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_take_their_place_from_the_topology_and_reload_it() {
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("fleet.toml");
    let x = addrs();
    std::fs::write(&topo, topology_text(&x, false)).unwrap();
    let hub = hub_from(&topo, &dir.path().join("hub"), &x);
    let a = spoke_from(&topo, &dir.path().join("a"), "eu-west", x.a);
    let http = Http::default();
    // The spoke took its addresses, its databases (with their options) and the hub from the file.
    let info = http
        .must("GET", &format!("{}/sessions", a.base()), None, 200)
        .await;
    assert_eq!(
        (info["expiry_field"].as_str(), info["revs_limit"].as_u64()),
        (Some("expires_at"), Some(10))
    );
    http.must(
        "PUT",
        &format!("{}/sessions/x", a.base()),
        Some(serde_json::json!({"v": 1})),
        201,
    )
    .await;
    let base = hub.base();
    must_eventually(
        "replicated to the hub named by the topology",
        Duration::from_secs(20),
        || {
            let (h, b) = (http.clone(), base.clone());
            async move { h.req("GET", &format!("{b}/sessions/x"), None).await.0 == 200 }
        },
    )
    .await;
    let s = status(&http, &hub).await;
    assert_eq!(s["fleet"], "test-fleet");
    assert_eq!(s["expected_spokes"], 2);

    // A valid edit (a new datacentre) is applied without a restart.
    std::fs::write(&topo, topology_text(&x, true)).unwrap();
    let (h2, b2) = (http.clone(), hub.base());
    must_eventually("reloaded topology", Duration::from_secs(10), || {
        let (h, b) = (h2.clone(), b2.clone());
        async move { h.req("GET", &format!("{b}/_fleet/status"), None).await.1["expected_spokes"] == 3 }
    })
    .await;
    // An invalid edit is rejected, counted, and the last good topology stays.
    std::fs::write(&topo, "[fleet]\nname = \"test-fleet\"\nbogus = 1\n").unwrap();
    hub.signal(libc::SIGHUP);
    let (h3, b3) = (http.clone(), hub.base());
    must_eventually("rejected reload counted", Duration::from_secs(10), || {
        let (h, b) = (h3.clone(), b3.clone());
        async move {
            let text = h.text(&format!("{b}/_metrics")).await;
            text.lines()
                .any(|l| l.starts_with("topology_reload_failures_total") && !l.ends_with(" 0"))
        }
    })
    .await;
    assert_eq!(
        status(&http, &hub).await["expected_spokes"],
        3,
        "last good topology kept"
    );
    assert_eq!(
        http.req("GET", &format!("{}/_up", a.base()), None).await.0,
        200,
        "spoke unaffected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("fleet.toml");
    let x = addrs();
    std::fs::write(&topo, topology_text(&x, false)).unwrap();
    let hub = hub_from(&topo, &dir.path().join("hub"), &x);
    let _a = spoke_from(&topo, &dir.path().join("a"), "eu-west", x.a);
    let http = Http::default();
    let (h, b) = (http.clone(), hub.base());
    must_eventually("eu-west-1 connected", Duration::from_secs(20), || {
        let (h, b) = (h.clone(), b.clone());
        async move { h.req("GET", &format!("{b}/_fleet/status"), None).await.1["connected_spokes"] == 1 }
    })
    .await;
    let s = status(&http, &hub).await;
    let dcs = s["datacentres"].as_array().unwrap();
    let spoke = |name: &str| {
        dcs.iter()
            .flat_map(|d| d["spokes"].as_array().unwrap())
            .find(|s| s["node"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(spoke("eu-west-1")["connected"], true);
    assert_eq!(spoke("us-east-1")["connected"], false, "never started");
    assert_eq!(s["hub"]["healthy"], true);

    // An operator's browser logs in with HTTP Basic (the page needs the ops role).
    let url = format!("{}/_fleet", admin_url(hub.http));
    let chromium = |extra: &[&str]| {
        let profile = tempfile::tempdir().unwrap();
        let out = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
            ])
            .args([
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium is installed (Debian package chromium)");
        assert!(
            out.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let dom = String::from_utf8(chromium(&["--dump-dom"]).stdout).unwrap();
    for needle in [
        "eu-west-1",
        "us-east-1",
        "DISCONNECTED",
        "connected",
        "1 of 2 expected spokes connected",
        "sessions",
    ] {
        assert!(dom.contains(needle), "status page lacks {needle:?}:\n{dom}");
    }
    let shot = dir.path().join("fleet.png");
    chromium(&[
        "--window-size=1200,700",
        &format!("--screenshot={}", shot.display()),
    ]);
    let png = std::fs::read(&shot).expect("screenshot written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    assert!(
        png.len() > 10_000,
        "a rendered page, not a blank one ({} bytes)",
        png.len()
    );
}

#[test]
fn demo_runs_to_a_clean_exit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(BIN)
        .args(["demo", "--topology"])
        .arg(root.join("topology/examples/local.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "writes 5 sessions",
        "fail over",
        "catches up",
        "fleet status",
        "summary",
        "secured: TLS",
        "curl --cacert",
        "-u admin:",
        "Authorization: Bearer sft_",
    ] {
        assert!(text.contains(needle), "demo output lacks {needle:?}:\n{text}");
    }
    // Nothing left running: the demo's ports are free again.
    for port in [5984, 5985, 5986, 6984, 6985, 6986] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still served after the demo"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_client_follows_topology_changes() {
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("fleet.toml");
    let x = addrs();
    std::fs::write(&topo, topology_text(&x, false)).unwrap();
    let client = edge_client::Client::from_topology_file(&topo, "eu-west", app_credentials()).unwrap();
    assert_eq!(client.targets(), ["eu-west-1", "london", "us-east-1"]);
    // Ops reorder eu-west's failover: the client's chain follows without a restart.
    std::fs::write(
        &topo,
        topology_text(&x, false).replace(
            r#"failover = ["london", "us-east"]"#,
            r#"failover = ["us-east", "london"]"#,
        ),
    )
    .unwrap();
    let c = client.clone();
    must_eventually("client chain reordered", Duration::from_secs(10), || {
        let c = c.clone();
        async move { c.targets() == ["eu-west-1", "us-east-1", "london"] }
    })
    .await;
    // A broken edit changes nothing.
    std::fs::write(&topo, "not toml [").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(client.targets(), ["eu-west-1", "us-east-1", "london"]);
    assert!(
        edge_client::Client::from_topology_file(&topo, "eu-west", app_credentials()).is_err(),
        "a bad file at start is an error"
    );
}
