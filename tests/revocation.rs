//! Priority revocation with real processes: a hub and three spokes, one of them cut
//! off with a bulk backlog queued for it. A revocation deletes every live revision,
//! is committed at the connected spokes before the call returns (which says so),
//! names the cut-off datacentre as not applied, and reaches it on reconnect ahead
//! of the backlog queued before it.

mod support;

use std::time::{Duration, Instant};

use edge_client::Client;
use faults::{FaultProxy, Faults, Link};
use serde_json::{json, Value};
use support::*;

type Addr = (std::net::SocketAddr, std::net::SocketAddr);

const LINKS: &str = "[links]\nbackoff_initial_ms = 50\nbackoff_max_ms = 500\nconnect_timeout_ms = 500\n";

async fn leaves(http: &Http, node: &Proc, id: &str) -> Vec<(String, bool)> {
    let url = format!("{}/sessions/{id}?open_revs=all", node.base());
    let (status, body) = http.req("GET", &url, None).await;
    if status != 200 {
        return Vec::new();
    }
    let mut out: Vec<(String, bool)> = body
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let d = &r["ok"];
            Some((d["_rev"].as_str()?.to_string(), d["_deleted"] == true))
        })
        .collect();
    out.sort();
    out
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < Duration::from_secs(30), "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A hub and `n` spokes, `dc-NN`/`spoke-NN`, started from one topology; `flags(i)`
/// are spoke `i`'s extra flags (e.g. [`hub_flags`] through a fault proxy).
struct LargeFleet {
    _hub: Proc,
    names: Vec<(String, String)>,
    addrs: Vec<Addr>,
    nodes: Vec<Proc>,
}

impl LargeFleet {
    fn start(
        dir: &std::path::Path,
        n: usize,
        hub_at: Addr,
        flags: impl Fn(usize) -> Vec<String>,
    ) -> LargeFleet {
        let names: Vec<(String, String)> = (0..n)
            .map(|i| (format!("dc-{i:02}"), format!("spoke-{i:02}")))
            .collect();
        let addrs: Vec<Addr> = (0..n).map(|_| (free_addr(), free_addr())).collect();
        let spokes: Vec<(&str, &str, Addr)> = names
            .iter()
            .zip(&addrs)
            .map(|((dc, s), a)| (dc.as_str(), s.as_str(), *a))
            .collect();
        let topo = dir.join("fleet.toml");
        std::fs::write(&topo, fleet_toml(hub_at, &spokes, LINKS)).unwrap();
        let hub = must_start_from_topology(&topo, &dir.join("hub"), None, hub_at);
        let nodes = spokes
            .iter()
            .enumerate()
            .map(|(i, (dc, s, at))| {
                must_start_from_topology_with(&topo, &dir.join(s), Some(dc), *at, flags(i))
            })
            .collect();
        LargeFleet {
            _hub: hub,
            names,
            addrs,
            nodes,
        }
    }
}

/// The sequence at which `node`'s `_changes` lists `id`.
async fn seq_of(http: &Http, node: &Proc, id: &str) -> Option<u64> {
    let url = format!("{}/sessions/_changes", node.base());
    let body = http.must("GET", &url, None, 200).await;
    body["results"]
        .as_array()?
        .iter()
        .find(|r| r["id"] == id)
        .and_then(|r| {
            r["seq"]
                .as_u64()
                .or_else(|| r["seq"].as_str()?.split('-').next()?.parse().ok())
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_outruns_the_backlog_and_says_who_has_applied_it() {
    let dir = tempfile::tempdir().unwrap();
    let (hub_at, eu_at, us_at, ap_at): (Addr, Addr, Addr, Addr) = (
        (free_addr(), free_addr()),
        (free_addr(), free_addr()),
        (free_addr(), free_addr()),
        (free_addr(), free_addr()),
    );
    let topo = dir.path().join("fleet.toml");
    let spokes = [
        ("eu-west", "eu-west-1", eu_at),
        ("us-east", "us-east-1", us_at),
        ("ap-south", "ap-south-1", ap_at),
    ];
    std::fs::write(&topo, fleet_toml(hub_at, &spokes, LINKS)).unwrap();
    let hub = must_start_from_topology(&topo, &dir.path().join("hub"), None, hub_at);
    let eu = must_start_from_topology(&topo, &dir.path().join("eu"), Some("eu-west"), eu_at);
    let us = must_start_from_topology(&topo, &dir.path().join("us"), Some("us-east"), us_at);
    let ap_link = FaultProxy::start(free_addr(), hub_at.1).await.unwrap();
    let ap = must_start_from_topology_with(
        &topo,
        &dir.path().join("ap"),
        Some("ap-south"),
        ap_at,
        hub_flags(&[ap_link.addr()]),
    );
    let http = Http::default();
    let client = Client::builder()
        .credentials(app_credentials())
        .local("eu-west-1", format!("http://{}", eu_at.1))
        .build()
        .unwrap();

    // A session with two live branches: a revocation must kill both.
    http.must(
        "PUT",
        &format!("{}/sessions/victim", eu.base()),
        Some(json!({"user": 1})),
        201,
    )
    .await;
    let branch = json!({"new_edits": false, "docs": [{"_id": "victim", "_rev": "1-ffff", "user": 2}]});
    http.must(
        "POST",
        &format!("{}/sessions/_bulk_docs", eu.base()),
        Some(branch),
        201,
    )
    .await;
    for node in [&us, &ap] {
        eventually("both branches everywhere", async || {
            leaves(&http, node, "victim").await.len() == 2
        })
        .await;
    }

    // ap-south is cut off; a backlog of 3,000 changes queues for it behind the hub.
    ap_link.set(Faults::link(Link::Blackhole));
    for batch in 0..6 {
        let docs: Vec<Value> = (0..500)
            .map(|i| json!({"_id": format!("bulk-{:04}", batch * 500 + i), "n": i}))
            .collect();
        http.must(
            "POST",
            &format!("{}/sessions/_bulk_docs", eu.base()),
            Some(json!({"docs": docs})),
            201,
        )
        .await;
    }
    eventually("the backlog at the hub", async || {
        http.req("GET", &format!("{}/sessions/bulk-2999", hub.base()), None)
            .await
            .0
            == 200
    })
    .await;

    // An app server in us-east has the session cached, vouched for by its Watch stream.
    let app_us = Client::builder()
        .credentials(app_credentials())
        .local("us-east-1", format!("http://{}", us_at.1))
        .max_staleness(Duration::from_secs(600))
        .build()
        .unwrap();
    app_us.watch("sessions");
    eventually("the us-east app's watch", async || {
        app_us.watch_connected("sessions")
    })
    .await;
    assert!(app_us.get("sessions", "victim").await.unwrap().is_some());
    let (_, served) = app_us.get_traced("sessions", "victim").await.unwrap();
    assert_eq!(
        served.source,
        edge_client::Source::Cache,
        "not cached before the revocation"
    );

    let started = Instant::now();
    let revoked = client
        .revoke("sessions", "victim", Duration::from_secs(2))
        .await
        .unwrap();
    eprintln!("REVOKE answered in {:?}: {revoked:?}", started.elapsed());
    assert_eq!(
        revoked.applied,
        ["eu-west/eu-west-1", "hub/london", "us-east/us-east-1"],
        "{revoked:?}"
    );
    assert_eq!(revoked.not_applied, ["ap-south/ap-south-1"], "{revoked:?}");
    // Applied means committed: us-east holds only tombstones now.
    let at_us = leaves(&http, &us, "victim").await;
    assert!(
        at_us.len() == 2 && at_us.iter().all(|(_, deleted)| *deleted),
        "{at_us:?}"
    );
    assert_eq!(
        http.req("GET", &format!("{}/sessions/victim", us.base()), None)
            .await
            .0,
        404
    );
    // ... and the us-east app's cached copy is evicted by its Watch stream, not served
    // until it would have gone stale (10 minutes here).
    eventually("the cached session evicted in us-east", async || {
        app_us.get("sessions", "victim").await.is_ok_and(|s| s.is_none())
    })
    .await;

    // ap-south reconnects: the revocation arrives ahead of the backlog queued before it.
    ap_link.set(Faults::up());
    eventually("the revocation at ap-south", async || {
        http.req("GET", &format!("{}/sessions/victim", ap.base()), None)
            .await
            .0
            == 404
    })
    .await;
    eventually("the backlog at ap-south", async || {
        http.req("GET", &format!("{}/sessions/bulk-2999", ap.base()), None)
            .await
            .0
            == 200
    })
    .await;
    let (victim, last) = (
        seq_of(&http, &ap, "victim").await,
        seq_of(&http, &ap, "bulk-2999").await,
    );
    assert!(
        victim.zip(last).is_some_and(|(v, l)| v < l),
        "the revocation (seq {victim:?}) came after the backlog (last at seq {last:?})"
    );

    // Over HTTP too, and a session this node has never seen is a clear 404.
    http.must(
        "PUT",
        &format!("{}/sessions/second", us.base()),
        Some(json!({"user": 3})),
        201,
    )
    .await;
    let url = format!("{}/sessions/_revoke/second?timeout_ms=2000", us.base());
    let body = http.must("POST", &url, None, 200).await;
    assert_eq!(body["applied"].as_array().map(Vec::len), Some(4), "{body}");
    assert_eq!(body["not_applied"], json!([]), "{body}");
    for node in [&eu, &ap, &hub] {
        assert_eq!(
            http.req("GET", &format!("{}/sessions/second", node.base()), None)
                .await
                .0,
            404
        );
    }
    let (status, body) = http
        .req(
            "POST",
            &format!("{}/sessions/_revoke/never-seen", us.base()),
            None,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "not_found", "{body}");
}

/// The fleet's real shape: 25 spokes on one hub, a steady background write load, and
/// one datacentre cut off. The revocation is applied at the 24 others before the call
/// returns, the cut-off one is named, and on reconnect it gets the revocation ahead of
/// the load queued for it before the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_25_spokes_under_load_names_the_one_cut_off() {
    const N: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let hub_at: Addr = (free_addr(), free_addr());
    // The last datacentre reaches the hub through a proxy that can cut it off.
    let cut_link = FaultProxy::start(free_addr(), hub_at.1).await.unwrap();
    let fleet = LargeFleet::start(dir.path(), N, hub_at, |i| {
        if i == N - 1 {
            hub_flags(&[cut_link.addr()])
        } else {
            Vec::new()
        }
    });
    let (names, addrs, nodes) = (&fleet.names, &fleet.addrs, &fleet.nodes);
    let (first, cut) = (&nodes[0], &nodes[N - 1]);
    let http = Http::default();
    http.must(
        "PUT",
        &format!("{}/sessions/victim", first.base()),
        Some(json!({"user": 1})),
        201,
    )
    .await;
    for node in nodes {
        eventually("the session on every spoke", async || {
            !leaves(&http, node, "victim").await.is_empty()
        })
        .await;
    }

    // 200 writes/s at the first spoke, in batches of 20, counted as they are acknowledged.
    let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let load = {
        let bulk = format!("{}/sessions/_bulk_docs", first.base());
        let (http, stop, written) = (http.clone(), stop.clone(), written.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while !stop.is_cancelled() {
                tick.tick().await;
                let k = written.load(std::sync::atomic::Ordering::SeqCst);
                let docs: Vec<Value> = (0..20)
                    .map(|i| json!({"_id": format!("load-{k:05}-{i:02}")}))
                    .collect();
                http.must("POST", &bulk, Some(json!({"docs": docs})), 201).await;
                written.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    let batches = || written.load(std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The last datacentre is cut off while the load goes on, so changes queue for it.
    cut_link.set(Faults::link(Link::Blackhole));
    let cut_at = batches();
    eventually("load queued behind the cut", async || batches() >= cut_at + 10).await;
    let before = batches() - 1;

    let client = Client::builder()
        .credentials(app_credentials())
        .local("spoke-00", format!("http://{}", addrs[0].1))
        .build()
        .unwrap();
    let started = Instant::now();
    let revoked = client
        .revoke("sessions", "victim", Duration::from_secs(5))
        .await
        .unwrap();
    eprintln!("REVOKE on {N} spokes answered in {:?}", started.elapsed());
    let mut expected: Vec<String> = names[..N - 1].iter().map(|(dc, s)| format!("{dc}/{s}")).collect();
    expected.push("hub/london".into());
    expected.sort();
    assert_eq!(revoked.applied, expected, "{revoked:?}");
    assert_eq!(revoked.not_applied, ["dc-24/spoke-24"], "{revoked:?}");
    // Applied means committed, on every spoke it names.
    for node in &nodes[..N - 1] {
        let here = leaves(&http, node, "victim").await;
        assert!(here.len() == 1 && here[0].1, "{here:?} at {}", node.base());
    }
    assert!(!leaves(&http, cut, "victim").await[0].1, "revoked behind the cut");

    // Healed: the revocation comes before the load that was queued before it.
    cut_link.set(Faults::up());
    eventually("the revocation at the cut-off spoke", async || {
        let here = leaves(&http, cut, "victim").await;
        here.len() == 1 && here[0].1
    })
    .await;
    let queued = format!("load-{before:05}-19");
    let queued_url = format!("{}/sessions/{queued}", cut.base());
    eventually("the queued load at the cut-off spoke", async || {
        http.req("GET", &queued_url, None).await.0 == 200
    })
    .await;
    stop.cancel();
    load.await.unwrap();
    let (victim, last) = (
        seq_of(&http, cut, "victim").await,
        seq_of(&http, cut, &queued).await,
    );
    assert!(
        victim.zip(last).is_some_and(|(v, l)| v < l),
        "the revocation (seq {victim:?}) came after the queued load (seq {last:?})"
    );
}

/// The revocation figures (BENCHMARKS.md), not a CI test: `scripts/bench-revocation.sh`
/// runs it in release mode. `REVOKE_SPOKES` spokes (default 25) on one hub; a backlog
/// of `REVOKE_BACKLOG` changes (default 100,000) is written at the first spoke just
/// before, and a steady 2,000 writes/s goes on during the revocations. Each
/// revocation is timed from the call until every spoke has acknowledged it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: scripts/bench-revocation.sh"]
async fn revocation_figures_on_a_large_fleet() {
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (n, backlog, revocations) = (
        env("REVOKE_SPOKES", 25),
        env("REVOKE_BACKLOG", 100_000),
        env("REVOKE_COUNT", 50),
    );
    let dir = tempfile::tempdir().unwrap();
    let fleet = LargeFleet::start(dir.path(), n, (free_addr(), free_addr()), |_| Vec::new());
    let (addrs, nodes) = (&fleet.addrs, &fleet.nodes);
    let http = Http::default();
    let first = &nodes[0];
    let client = Client::builder()
        .credentials(app_credentials())
        .local("spoke-00", format!("http://{}", addrs[0].1))
        .build()
        .unwrap();
    for i in 0..revocations {
        http.must(
            "PUT",
            &format!("{}/sessions/victim-{i}", first.base()),
            Some(json!({"u": i})),
            201,
        )
        .await;
    }
    let last = &nodes[n - 1];
    let last_victim = format!("{}/sessions/victim-{}", last.base(), revocations - 1);
    eventually("the victims everywhere", async || {
        http.req("GET", &last_victim, None).await.0 == 200
    })
    .await;

    let bulk = format!("{}/sessions/_bulk_docs", first.base());
    for b in 0..backlog.div_ceil(500) {
        let docs: Vec<Value> = (0..500)
            .map(|i| json!({"_id": format!("backlog-{b}-{i}"), "i": i}))
            .collect();
        http.must("POST", &bulk, Some(json!({"docs": docs})), 201).await;
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let load = {
        let (http, bulk, stop) = (http.clone(), bulk.clone(), stop.clone());
        tokio::spawn(async move {
            // 20 writes every 10 ms: 2,000 writes/s.
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut k = 0u64;
            while !stop.is_cancelled() {
                tick.tick().await;
                let docs: Vec<Value> = (0..20).map(|i| json!({"_id": format!("load-{k}-{i}")})).collect();
                http.req("POST", &bulk, Some(json!({"docs": docs}))).await;
                k += 1;
            }
            k * 20
        })
    };
    let mut times = Vec::new();
    let mut missed = 0;
    for i in 0..revocations {
        let started = Instant::now();
        let r = client
            .revoke("sessions", &format!("victim-{i}"), Duration::from_secs(10))
            .await
            .unwrap();
        times.push(started.elapsed());
        missed += r.not_applied.len();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    let written = load.await.unwrap();
    times.sort();
    let pick = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    eprintln!(
        "REVOKE-FIGURES {{\"spokes\":{n},\"backlog\":{backlog},\"revocations\":{revocations},\"background_writes\":{written},\"not_applied\":{missed},\"p50_ms\":{:.1},\"p99_ms\":{:.1},\"max_ms\":{:.1}}}",
        pick(0.5).as_secs_f64() * 1e3,
        pick(0.99).as_secs_f64() * 1e3,
        pick(1.0).as_secs_f64() * 1e3,
    );
    assert_eq!(missed, 0, "some spoke did not acknowledge within 10 s");
}
