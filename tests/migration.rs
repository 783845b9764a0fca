//! Migration: a spoke pulls a database from a CouchDB-compatible server
//! (PouchDB's express-pouchdb, the engine of pouchdb-server) while that server
//! keeps taking writes, then pushes back; both sides end identical.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

struct NodeServer(std::process::Child);

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn must_start_pouchdb_server(port: u16) -> NodeServer {
    let dir = interop_dir();
    if !dir.join("node_modules/express-pouchdb").exists() {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm");
        assert!(ok.success(), "npm ci failed");
    }
    let mut child = Command::new("node")
        .arg(dir.join("pouchdb_server.js"))
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    NodeServer(child)
}

async fn revs(http: &Http, base: &str) -> BTreeMap<String, String> {
    let v = http.must("GET", &format!("{base}/_all_docs"), None, 200).await;
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["value"]["rev"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_from_a_live_couchdb_compatible_server_then_push_back() {
    let port = free_addr().port();
    let _pouch = must_start_pouchdb_server(port);
    let pouch = format!("http://127.0.0.1:{port}/demo-db");
    let http = Http::default();
    // The old server (PouchDB Server) runs without authentication, as many did.
    let old = Http::anonymous();
    old.must("PUT", &pouch, None, 201).await;
    let docs: Vec<Value> = (0..500)
        .map(|i| json!({"_id": format!("old-{i:04}"), "i": i}))
        .collect();
    old.must(
        "POST",
        &format!("{pouch}/_bulk_docs"),
        Some(json!({"docs": docs})),
        201,
    )
    .await;

    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let spoke = must_start_spoke(dirs[1].path(), hub.grpc, "eu-west", &["--database", "sessions"]);
    // The older CouchDB form ops' scripts use: a URL source, a local name target.
    http.must(
        "POST",
        &format!("{}/_replicate", spoke.base()),
        Some(json!({"source": pouch, "target": "demo-db", "continuous": true, "create_target": true})),
        202,
    )
    .await;
    // The old server keeps taking writes meanwhile.
    for i in 0..200 {
        old.must("PUT", &format!("{pouch}/new-{i:04}"), Some(json!({"i": i})), 201)
            .await;
        if i % 50 == 0 {
            let (_, d) = old.req("GET", &format!("{pouch}/old-{i:04}"), None).await;
            old.must(
                "PUT",
                &format!("{pouch}/old-{i:04}"),
                Some(json!({"_rev": d["_rev"], "i": -1})),
                201,
            )
            .await;
        }
    }
    let local = format!("{}/demo-db", spoke.base());
    let (h, o, p, l) = (http.clone(), old.clone(), pouch.clone(), local.clone());
    must_eventually(
        "spoke caught up with the live server",
        Duration::from_secs(60),
        || {
            let (h, o, p, l) = (h.clone(), o.clone(), p.clone(), l.clone());
            async move {
                h.req("GET", &l, None).await.1["doc_count"] == 700 && revs(&o, &p).await == revs(&h, &l).await
            }
        },
    )
    .await;

    // Push back what was written on the new side.
    http.must(
        "PUT",
        &format!("{local}/written-on-spoke"),
        Some(json!({"new": true})),
        201,
    )
    .await;
    let r = http
        .must(
            "POST",
            &format!("{}/_replicate", spoke.base()),
            Some(json!({"source": "demo-db", "target": pouch})),
            200,
        )
        .await;
    assert!(r["history"][0]["docs_written"].as_u64().unwrap() >= 1, "{r}");
    let (a, b) = (revs(&old, &pouch).await, revs(&http, &local).await);
    assert_eq!(a.len(), 701);
    assert_eq!(a, b, "both sides identical");
}
