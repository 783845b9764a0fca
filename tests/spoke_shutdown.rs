//! A spoke stopped with SIGTERM (what a rolling restart or an upgrade does) delivers every write
//! it acknowledged to the hub before it exits, so the session stays readable elsewhere while
//! the spoke is down. Found by the deployment test: a write acknowledged just before the spoke
//! stopped was on no other node until the spoke came back, and a roaming read said "not found".

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const SPOKE_DB: &[&str] = &["--database", "sessions"];
const DOCS: usize = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_pushes_every_acknowledged_write_to_the_hub_before_exit() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let spoke = must_start_spoke(dirs[1].path(), hub.grpc, "eu-west", SPOKE_DB);
    let http = Http::default();
    let hub_db = format!("{}/sessions", hub.base());
    must_eventually(
        "the spoke creates its database at the hub",
        Duration::from_secs(30),
        || {
            let (http, url) = (http.clone(), hub_db.clone());
            async move { http.req("GET", &url, None).await.0 == 200 }
        },
    )
    .await;

    // Acknowledged (durably, by the spoke), then SIGTERM at once: several push batches behind.
    let docs: Vec<Value> = (0..DOCS)
        .map(|i| json!({"_id": format!("s-{i:05}"), "n": i}))
        .collect();
    let results = http
        .must(
            "POST",
            &format!("{}/sessions/_bulk_docs", spoke.base()),
            Some(json!({ "docs": docs })),
            201,
        )
        .await;
    let acked = results
        .as_array()
        .map(|rows| rows.iter().filter(|r| r["ok"] == json!(true)).count())
        .unwrap_or(0);
    assert_eq!(acked, DOCS, "every write acknowledged: {results}");
    let status = spoke.terminate();
    assert!(status.success(), "the spoke exits cleanly on SIGTERM: {status:?}");

    // The spoke is gone: the hub alone must have every acknowledged write.
    let (s, info) = http.req("GET", &hub_db, None).await;
    assert_eq!(s, 200, "{info}");
    assert_eq!(
        info["doc_count"],
        json!(DOCS),
        "documents the spoke acknowledged but did not deliver before exiting: hub has {info}"
    );
}
