//! Priority revocation with real processes: a hub and three spokes, one of them cut
//! off with a bulk backlog queued for it. A revocation deletes every live revision,
//! is committed at the connected spokes before the call returns (which says so),
//! names the cut-off datacentre as not applied, and reaches it on reconnect ahead
//! of the backlog queued before it.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use edge_client::Client;
use faults::{FaultProxy, Faults, Link};
use serde_json::{json, Value};
use support::*;

type Addr = (std::net::SocketAddr, std::net::SocketAddr);

const LINKS: &str = "[links]\nbackoff_initial_ms = 50\nbackoff_max_ms = 500\nconnect_timeout_ms = 500\n";

fn spoke_via(topo: &Path, data: &Path, dc: &str, at: Addr, hub: std::net::SocketAddr) -> Proc {
    let args = [
        "spoke",
        "--topology",
        &topo.display().to_string(),
        "--datacentre",
        dc,
        "--data-dir",
        &data.display().to_string(),
        "--hub",
        &format!("http://{hub}"),
    ]
    .map(String::from)
    .to_vec();
    Proc::must_start(args, at.0, at.1, data)
}

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
    let ap = spoke_via(&topo, &dir.path().join("ap"), "ap-south", ap_at, ap_link.addr());
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
