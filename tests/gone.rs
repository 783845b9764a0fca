//! A database deleted and created again on the hub, with real hub and spoke
//! processes: the spoke's replications notice the new incarnation and start
//! over, in both directions, instead of heartbeating from the dead database.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

const SPOKE_DB: &[&str] = &["--database", "sessions", "--expiry-field", "expires_at"];
const WAIT: Duration = Duration::from_secs(30);

async fn must_have(http: &Http, node: &Proc, id: &str) {
    let url = format!("{}/sessions/{id}", node.base());
    must_eventually(&format!("{id} at {}", node.base()), WAIT, || {
        let (http, url) = (http.clone(), url.clone());
        async move { http.req("GET", &url, None).await.0 == 200 }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_recreated_on_the_hub_is_replicated_from_scratch() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let spoke = must_start_spoke(dirs[1].path(), hub.grpc, "eu-west", SPOKE_DB);
    let http = Http::default();
    for i in 0..5 {
        http.must(
            "PUT",
            &format!("{}/sessions/old-{i}", spoke.base()),
            Some(json!({"n": i})),
            201,
        )
        .await;
    }
    must_have(&http, &hub, "old-4").await;

    http.must("DELETE", &format!("{}/sessions", hub.base()), None, 200)
        .await;
    // The spoke may recreate it first (its push creates a missing database).
    let (status, _) = http
        .req(
            "PUT",
            &format!("{}/sessions?expiry_field=expires_at", hub.base()),
            None,
        )
        .await;
    assert!(status == 201 || status == 412, "{status}");
    // Written on the hub into the new incarnation: the spoke's pull, which had
    // reached sequence 5 of the old one, must start over and see it.
    let url = format!("{}/sessions/after", hub.base());
    must_eventually("a write into the recreated database", WAIT, || {
        let (http, url) = (http.clone(), url.clone());
        async move { http.req("PUT", &url, Some(json!({"n": 99}))).await.0 == 201 }
    })
    .await;
    must_have(&http, &spoke, "after").await;
    // And the spoke's push starts over too: the new hub database gets the old sessions.
    for i in 0..5 {
        must_have(&http, &hub, &format!("old-{i}")).await;
    }
    http.must(
        "PUT",
        &format!("{}/sessions/new-1", spoke.base()),
        Some(json!({"n": 1})),
        201,
    )
    .await;
    must_have(&http, &hub, "new-1").await;
}
