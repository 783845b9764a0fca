//! A hub pair, with real processes: hub A SIGKILLed while spokes write, so that every
//! write reaches the other spoke through hub B; A restarted, catching up from B and
//! taking its spokes back; the hubs cut off from each other while the spokes are split
//! between them, then healed, leaving the same state on every node.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use faults::{FaultProxy, Faults, Link};
use serde_json::{json, Value};
use support::*;

type Addr = (SocketAddr, SocketAddr);

/// Hubs `london-a` and `london-b` (their gRPC as peers and spokes dial it: `hub_grpc`), and
/// datacentres `eu-west` and `us-east` with one spoke each, both preferring `london-a`.
fn pair_toml(a: Addr, b: Addr, hub_grpc: (SocketAddr, SocketAddr), eu: Addr, us: Addr) -> String {
    format!(
        r#"[fleet]
name = "pair"

[[hub]]
name = "london-a"
http = "{ah}"
grpc = "{ag}"

[[hub]]
name = "london-b"
http = "{bh}"
grpc = "{bg}"

[[datacentre]]
name = "eu-west"
hub = "london-a"
failover = ["us-east"]
  [[datacentre.spoke]]
  name = "eu-west-1"
  http = "{euh}"
  grpc = "{eug}"

[[datacentre]]
name = "us-east"
hub = "london-a"
  [[datacentre.spoke]]
  name = "us-east-1"
  http = "{ush}"
  grpc = "{usg}"

[[database]]
name = "sessions"
revs_limit = 10

[links]
backoff_initial_ms = 50
backoff_max_ms = 500
connect_timeout_ms = 500
checkpoint_interval_ms = 200
"#,
        ah = a.0,
        ag = hub_grpc.0,
        bh = b.0,
        bg = hub_grpc.1,
        euh = eu.0,
        eug = eu.1,
        ush = us.0,
        usg = us.1,
    )
}

fn addr() -> Addr {
    (free_addr(), free_addr())
}

/// Hub `name`, listening for gRPC on `at` rather than the topology's address (which
/// is a proxy in front of it).
fn hub(topo: &Path, data: &Path, name: &str, at: Addr) -> Proc {
    let extra = ["--name", name, "--grpc", &at.1.to_string()].map(String::from);
    must_start_from_topology_with(topo, data, None, at, extra.to_vec())
}

/// A spoke of `dc`; `hubs` (gRPC, in order) replaces the topology's hubs when given.
fn spoke(topo: &Path, data: &Path, dc: &str, at: Addr, hubs: &[SocketAddr]) -> Proc {
    must_start_from_topology_with(topo, data, Some(dc), at, hub_flags(hubs))
}

async fn put(http: &Http, node: &Proc, id: &str, body: Value) -> Value {
    http.must("PUT", &format!("{}/sessions/{id}", node.base()), Some(body), 201)
        .await
}

async fn has(http: &Http, node: &Proc, id: &str) -> bool {
    http.req("GET", &format!("{}/sessions/{id}", node.base()), None)
        .await
        .0
        == 200
}

async fn must_arrive(http: &Http, node: &Proc, id: &str, within: Duration) {
    let (h, base) = (http.clone(), node.base());
    must_eventually(&format!("{id} at {base}"), within, || {
        let (h, base) = (h.clone(), base.clone());
        async move { h.req("GET", &format!("{base}/sessions/{id}"), None).await.0 == 200 }
    })
    .await;
}

/// Every document's id → (winning rev, deleted, sorted conflicts), as `node` holds it.
async fn state(http: &Http, node: &Proc) -> BTreeMap<String, Value> {
    let changes = http
        .must(
            "GET",
            &format!("{}/sessions/_changes?style=all_docs", node.base()),
            None,
            200,
        )
        .await;
    let mut out = BTreeMap::new();
    for row in changes["results"].as_array().into_iter().flatten() {
        let id = row["id"].as_str().unwrap_or_default().to_string();
        let mut revs: Vec<String> = row["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["rev"].as_str().map(String::from))
            .collect();
        revs.sort();
        out.insert(id, json!({"revs": revs, "deleted": row["deleted"]}));
    }
    out
}

async fn fleet_status(http: &Http, hub: &Proc) -> Value {
    http.must("GET", &format!("{}/_fleet/status", hub.base()), None, 200)
        .await
}

/// The spokes `hub`'s status page shows as connected.
async fn attached(http: &Http, hub: &Proc) -> Vec<String> {
    let s = fleet_status(http, hub).await;
    let mut out: Vec<String> = s["datacentres"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|dc| dc["spokes"].as_array().into_iter().flatten())
        .filter(|sp| sp["connected"] == true)
        .filter_map(|sp| sp["node"].as_str().map(String::from))
        .collect();
    out.sort();
    out
}

async fn must_attach(http: &Http, hub: &Proc, spokes: &[&str], within: Duration) {
    let want: Vec<String> = spokes.iter().map(|s| s.to_string()).collect();
    let (h, base) = (http.clone(), hub.base());
    let start = Instant::now();
    loop {
        let got = attached(&h, hub).await;
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < within,
            "spokes attached at {base}: {got:?}, expected {want:?} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn must_converge(http: &Http, nodes: &[&Proc], within: Duration) -> BTreeMap<String, Value> {
    let start = Instant::now();
    loop {
        let mut states = Vec::new();
        for n in nodes {
            states.push(state(http, n).await);
        }
        if states.windows(2).all(|w| w[0] == w[1]) {
            return states.remove(0);
        }
        if start.elapsed() > within {
            for (n, s) in nodes.iter().zip(&states) {
                eprintln!("{}: {} docs", n.base(), s.len());
            }
            let first = &states[0];
            for (n, s) in nodes.iter().zip(&states).skip(1) {
                for (id, v) in s {
                    if first.get(id) != Some(v) {
                        eprintln!("{} differs on {id}: {v} vs {:?}", n.base(), first.get(id));
                    }
                }
            }
            panic!("the nodes did not converge within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_hub_is_replaced_by_its_pair_and_catches_up_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (a_at, b_at, eu_at, us_at) = (addr(), addr(), addr(), addr());
    let topo = dir.path().join("fleet.toml");
    std::fs::write(&topo, pair_toml(a_at, b_at, (a_at.1, b_at.1), eu_at, us_at)).unwrap();
    let a = hub(&topo, &dir.path().join("a"), "london-a", a_at);
    let b = hub(&topo, &dir.path().join("b"), "london-b", b_at);
    let eu = spoke(&topo, &dir.path().join("eu"), "eu-west", eu_at, &[]);
    let us = spoke(&topo, &dir.path().join("us"), "us-east", us_at, &[]);
    let http = Http::default();

    // Both spokes on their preferred hub; the hubs replicate with each other.
    must_attach(&http, &a, &["eu-west-1", "us-east-1"], Duration::from_secs(20)).await;
    put(&http, &eu, "before", json!({"user": 1})).await;
    must_arrive(&http, &us, "before", Duration::from_secs(20)).await;
    must_arrive(&http, &b, "before", Duration::from_secs(20)).await;
    let pair = fleet_status(&http, &a).await["hubs"].clone();
    assert_eq!(pair[1]["node"], "london-b", "{pair}");
    assert_eq!(pair[1]["pulled_from"], true, "{pair}");
    // The operator's page shows the pair too.
    let page = http.text(&format!("{}/_fleet", a.base())).await;
    let table = page.split("<table id=\"hubs\">").nth(1).unwrap_or_default();
    assert!(
        table.contains("london-b"),
        "no hub pair table naming london-b:\n{page}"
    );

    // Hub A dies. Writes go on at eu-west; each must reach us-east through hub B.
    let a_args = a.args.clone();
    a.kill();
    let killed = Instant::now();
    let mut first_delivery = None;
    for i in 0..20 {
        put(&http, &eu, &format!("during-{i}"), json!({"user": i})).await;
        if first_delivery.is_none() && has(&http, &us, "during-0").await {
            first_delivery = Some(killed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    must_arrive(&http, &us, "during-19", Duration::from_secs(30)).await;
    for i in 0..20 {
        assert!(has(&http, &us, &format!("during-{i}")).await, "during-{i} lost");
    }
    let first = first_delivery.unwrap_or_else(|| killed.elapsed());
    eprintln!("HUB-FAILOVER first write after the kill reached the other spoke {first:?} after the kill");
    must_attach(&http, &b, &["eu-west-1", "us-east-1"], Duration::from_secs(10)).await;
    let tasks = http
        .must("GET", &format!("{}/_active_tasks", eu.base()), None, 200)
        .await;
    assert!(
        tasks
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["remote"] == "london-b" && t["link"] == "hub"),
        "the spoke's own tasks do not show its move to london-b: {tasks}"
    );

    // A returns: it catches up from B, the spokes come back to it, and everything converges.
    let a = Proc::must_start(a_args, a_at.0, a_at.1, &dir.path().join("a"));
    must_arrive(&http, &a, "during-19", Duration::from_secs(30)).await;
    must_attach(&http, &a, &["eu-west-1", "us-east-1"], Duration::from_secs(30)).await;
    put(&http, &us, "after", json!({"user": 2})).await;
    must_arrive(&http, &eu, "after", Duration::from_secs(20)).await;
    let end = must_converge(&http, &[&a, &b, &eu, &us], Duration::from_secs(30)).await;
    assert_eq!(end.len(), 22, "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubs_cut_off_from_each_other_with_the_spokes_split_converge_when_healed() {
    let dir = tempfile::tempdir().unwrap();
    let (a_at, b_at, eu_at, us_at) = (addr(), addr(), addr(), addr());
    // The hubs reach each other only through proxies; spokes dial their hub directly.
    let to_a = FaultProxy::start(free_addr(), a_at.1).await.unwrap();
    let to_b = FaultProxy::start(free_addr(), b_at.1).await.unwrap();
    let topo = dir.path().join("fleet.toml");
    std::fs::write(
        &topo,
        pair_toml(a_at, b_at, (to_a.addr(), to_b.addr()), eu_at, us_at),
    )
    .unwrap();
    let a = hub(&topo, &dir.path().join("a"), "london-a", a_at);
    let b = hub(&topo, &dir.path().join("b"), "london-b", b_at);
    let eu = spoke(&topo, &dir.path().join("eu"), "eu-west", eu_at, &[a_at.1]);
    let us = spoke(&topo, &dir.path().join("us"), "us-east", us_at, &[b_at.1]);
    let http = Http::default();

    let shared = put(&http, &eu, "shared", json!({"v": 0})).await["rev"].clone();
    let doomed = put(&http, &eu, "doomed", json!({"v": 0})).await["rev"].clone();
    must_arrive(&http, &us, "doomed", Duration::from_secs(20)).await;
    must_arrive(&http, &us, "shared", Duration::from_secs(20)).await;

    for p in [&to_a, &to_b] {
        p.set(Faults::link(Link::Blackhole));
    }
    // Apart: new sessions on both sides, the same session edited on both, and one deleted
    // on one side while edited on the other.
    for i in 0..10 {
        put(&http, &eu, &format!("eu-{i}"), json!({"i": i})).await;
        put(&http, &us, &format!("us-{i}"), json!({"i": i})).await;
    }
    put(&http, &eu, "shared", json!({"v": "eu", "_rev": shared})).await;
    put(&http, &us, "shared", json!({"v": "us", "_rev": shared})).await;
    let url = format!("{}/sessions/doomed?rev={}", eu.base(), doomed.as_str().unwrap());
    http.must("DELETE", &url, None, 200).await;
    put(&http, &us, "doomed", json!({"v": "us", "_rev": doomed})).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!has(&http, &us, "eu-9").await, "the hubs were not cut off");
    assert!(!has(&http, &b, "eu-9").await, "the hubs were not cut off");

    for p in [&to_a, &to_b] {
        p.set(Faults::up());
    }
    let end = must_converge(&http, &[&a, &b, &eu, &us], Duration::from_secs(60)).await;
    assert_eq!(end.len(), 22, "{end:?}");
    assert_eq!(end["shared"]["revs"].as_array().map(Vec::len), Some(2), "{end:?}");

    // A revocation at eu-west (on hub A) reaches us-east (on hub B) on the priority lane:
    // A forwards it to B, which sends it down to its own spokes.
    let client = edge_client::Client::builder()
        .credentials(app_credentials())
        .local("eu-west-1", format!("http://{}", eu_at.1))
        .build()
        .unwrap();
    let revoked = client
        .revoke("sessions", "eu-0", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        revoked.applied,
        [
            "eu-west/eu-west-1",
            "hub/london-a",
            "hub/london-b",
            "us-east/us-east-1"
        ],
        "{revoked:?}"
    );
    assert!(revoked.not_applied.is_empty(), "{revoked:?}");
    assert!(
        !has(&http, &us, "eu-0").await,
        "applied means committed at us-east"
    );
}
