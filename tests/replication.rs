//! Hub-and-spoke replication with real processes on 127.0.0.1, real data
//! directories, and SIGKILL.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::*;

const SPOKE_DB: &[&str] = &["--database", "sessions", "--expiry-field", "expires_at"];
const WAIT: Duration = Duration::from_secs(30);

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

async fn doc(http: &Http, node: &Proc, id: &str) -> (u16, Value) {
    http.req(
        "GET",
        &format!("{}/sessions/{id}?conflicts=true", node.base()),
        None,
    )
    .await
}

async fn must_see(http: &Http, nodes: &[&Proc], id: &str, check: impl Fn(&Value) -> bool) {
    for n in nodes {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let (s, v) = http
                .req("GET", &format!("{}/sessions/{id}?conflicts=true", n.base()), None)
                .await;
            if s == 200 && check(&v) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {id} at {}: last {s} {v}",
                n.base()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn must_be_gone(http: &Http, nodes: &[&Proc], id: &str) {
    for n in nodes {
        let (http2, base) = (http.clone(), n.base());
        let id = id.to_owned();
        must_eventually(&format!("{id} gone at {base}"), WAIT, || {
            let (http2, base, id) = (http2.clone(), base.clone(), id.clone());
            async move { http2.req("GET", &format!("{base}/sessions/{id}"), None).await.0 == 404 }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_deletes_and_expiry_reach_every_spoke() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let spokes: Vec<Proc> = ["eu-west", "us-east", "ap-south"]
        .iter()
        .enumerate()
        .map(|(i, dc)| must_start_spoke(dirs[i + 1].path(), hub.grpc, dc, SPOKE_DB))
        .collect();
    let all: Vec<&Proc> = spokes.iter().chain([&hub]).collect();
    let http = Http::default();
    let far = now() + 3600;
    for (i, s) in spokes.iter().enumerate() {
        http.must(
            "PUT",
            &format!("{}/sessions/user-{i}", s.base()),
            Some(json!({"user": i, "expires_at": far})),
            201,
        )
        .await;
    }
    for i in 0..3 {
        must_see(&http, &all, &format!("user-{i}"), |v| v["expires_at"] == far).await;
    }
    // An update and a delete made at one spoke reach the others.
    let (_, v) = doc(&http, &spokes[1], "user-0").await;
    let rev = v["_rev"].as_str().unwrap().to_owned();
    http.must(
        "PUT",
        &format!("{}/sessions/user-0", spokes[1].base()),
        Some(json!({"_rev": rev, "user": "moved", "expires_at": far})),
        201,
    )
    .await;
    must_see(&http, &all, "user-0", |v| v["user"] == "moved").await;
    let (_, v) = doc(&http, &spokes[2], "user-1").await;
    let rev = v["_rev"].as_str().unwrap().to_owned();
    http.must(
        "DELETE",
        &format!("{}/sessions/user-1?rev={rev}", spokes[2].base()),
        None,
        200,
    )
    .await;
    must_be_gone(&http, &all, "user-1").await;

    // A session that expires: replicated while alive, gone everywhere after.
    let soon = now() + 3;
    http.must(
        "PUT",
        &format!("{}/sessions/short", spokes[0].base()),
        Some(json!({"expires_at": soon})),
        201,
    )
    .await;
    must_see(&http, &all, "short", |_| true).await;
    tokio::time::sleep(Duration::from_secs(soon + 1 - now().min(soon + 1))).await;
    must_be_gone(&http, &all, "short").await;
    // Nothing brings it back: not replication, not a second look later.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for n in &all {
        assert_eq!(
            doc(&http, n, "short").await.0,
            404,
            "expired session came back at {}",
            n.base()
        );
        let changes = http
            .must("GET", &format!("{}/sessions/_changes", n.base()), None, 200)
            .await;
        assert!(
            !changes.to_string().contains("\"short\""),
            "expired session in changes at {}",
            n.base()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_edits_converge_to_one_winner_everywhere_and_hub_outage_is_survived() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let a = must_start_spoke(dirs[1].path(), hub.grpc, "eu-west", SPOKE_DB);
    let b = must_start_spoke(dirs[2].path(), hub.grpc, "us-east", SPOKE_DB);
    let c = must_start_spoke(dirs[3].path(), hub.grpc, "ap-south", SPOKE_DB);
    let http = Http::default();
    let r = http
        .must(
            "PUT",
            &format!("{}/sessions/shared", a.base()),
            Some(json!({"v": "original"})),
            201,
        )
        .await;
    let rev1 = r["rev"].as_str().unwrap().to_owned();
    must_see(&http, &[&b, &hub], "shared", |v| v["_rev"] == rev1.as_str()).await;

    // The hub goes down: both spokes keep taking reads and writes, and edit the
    // same revision concurrently.
    let (hub_args, hub_http, hub_grpc) = (hub.args.clone(), hub.http, hub.grpc);
    hub.kill();
    http.must(
        "PUT",
        &format!("{}/sessions/shared", a.base()),
        Some(json!({"_rev": rev1, "v": "from-a"})),
        201,
    )
    .await;
    http.must(
        "PUT",
        &format!("{}/sessions/shared", b.base()),
        Some(json!({"_rev": rev1, "v": "from-b"})),
        201,
    )
    .await;
    http.must(
        "PUT",
        &format!("{}/sessions/during-outage", a.base()),
        Some(json!({"v": 1})),
        201,
    )
    .await;
    assert_eq!(doc(&http, &a, "during-outage").await.0, 200);
    assert_eq!(
        doc(&http, &b, "during-outage").await.0,
        404,
        "cannot have replicated without the hub"
    );

    // The hub returns (same data, same addresses): everything converges.
    let hub = Proc::must_start(hub_args, hub_http, hub_grpc, dirs[0].path());
    let nodes = [&a, &b, &c, &hub];
    must_see(&http, &nodes, "during-outage", |_| true).await;
    must_see(&http, &nodes, "shared", |v| {
        v["_conflicts"].as_array().is_some_and(|c| c.len() == 1)
    })
    .await;
    let states: Vec<(Value, Value, Value)> = {
        let mut out = Vec::new();
        for n in nodes {
            let (_, v) = doc(&http, n, "shared").await;
            out.push((v["_rev"].clone(), v["v"].clone(), v["_conflicts"].clone()));
        }
        out
    };
    assert!(
        states.windows(2).all(|w| w[0] == w[1]),
        "nodes disagree: {states:?}"
    );
    assert!(states[0].1 == "from-a" || states[0].1 == "from-b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_spoke_resumes_from_its_checkpoint() {
    const N: usize = 4000;
    const BATCH: usize = 100;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let http = Http::default();
    http.must("PUT", &format!("{}/sessions", hub.base()), None, 201)
        .await;
    for chunk in (0..N).collect::<Vec<_>>().chunks(500) {
        let docs: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"_id": format!("s{i:05}"), "pad": "x".repeat(200)}))
            .collect();
        http.must(
            "POST",
            &format!("{}/sessions/_bulk_docs", hub.base()),
            Some(json!({"docs": docs})),
            201,
        )
        .await;
    }
    let args = [
        "--database",
        "sessions",
        "--batch-size",
        "100",
        "--checkpoint-interval-ms",
        "0",
    ];
    let spoke = must_start_spoke(dirs[1].path(), hub.grpc, "eu-west", &args);
    // Kill it mid-way through the pull.
    let base = spoke.base();
    let http2 = http.clone();
    must_eventually("spoke half-way", WAIT, || {
        let (http2, base) = (http2.clone(), base.clone());
        async move {
            let (_, v) = http2.req("GET", &format!("{base}/sessions"), None).await;
            v["doc_count"].as_u64().unwrap_or(0) >= (N / 4) as u64
        }
    })
    .await;
    let restart_args = spoke.args.clone();
    let (http_addr, grpc_addr) = (spoke.http, spoke.grpc);
    spoke.kill();
    // What survived the kill, read from the data directory itself.
    let present = {
        let opts = store::StoreOptions {
            sweep_interval: None,
            ..Default::default()
        };
        let s = store::Store::open(dirs[1].path(), opts).expect("reopen killed spoke's store");
        let n = s
            .db(&store::DbName::new("sessions").unwrap())
            .unwrap()
            .info()
            .doc_count;
        s.close();
        n
    };
    assert!(
        present < N as u64,
        "killed too late to test anything ({present} of {N})"
    );
    let survivor = Proc::must_start(restart_args.clone(), http_addr, grpc_addr, dirs[1].path());
    let base = survivor.base();
    must_eventually("spoke complete", WAIT, || {
        let (http2, base) = (http.clone(), base.clone());
        async move { http2.req("GET", &format!("{base}/sessions"), None).await.1["doc_count"] == N }
    })
    .await;
    // The restarted process re-read only the tail after its last checkpoint,
    // at most one batch more than what it was missing.
    let reread = metric_sum(&survivor, "replication_docs_read_total", "pull:sessions").await;
    let missing = N as u64 - present;
    assert!(reread >= missing, "read {reread} < missing {missing}");
    assert!(
        reread <= missing + BATCH as u64,
        "restarted from too far back: re-read {reread} changes for {missing} missing (batch {BATCH})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicate_endpoint_and_replicator_db() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = Proc::must_start_hub(dirs[0].path());
    let b = Proc::must_start_hub(dirs[1].path());
    let http = Http::default();
    http.must("PUT", &format!("{}/src", a.base()), None, 201).await;
    for i in 0..50 {
        http.must(
            "PUT",
            &format!("{}/src/d{i}", a.base()),
            Some(json!({"i": i})),
            201,
        )
        .await;
    }
    // One-shot, CouchDB's older form: a URL source (with the replicator user's
    // credentials, as against a CouchDB 3 server) and a local name target.
    let source = format!(
        "http://replicator:{}@{}/src",
        secrets().replicator_password,
        a.http
    );
    let without_credentials = http
        .must(
            "POST",
            &format!("{}/_replicate", b.base()),
            Some(json!({"source": format!("{}/src", a.base()), "target": "copy", "create_target": true})),
            401,
        )
        .await;
    assert!(
        without_credentials["reason"]
            .as_str()
            .unwrap_or("")
            .contains("401"),
        "{without_credentials}"
    );
    let r = http
        .must(
            "POST",
            &format!("{}/_replicate", b.base()),
            Some(json!({"source": source, "target": "copy", "create_target": true})),
            200,
        )
        .await;
    assert_eq!(r["history"][0]["docs_written"], 50, "{r}");
    assert_eq!(
        http.must("GET", &format!("{}/copy", b.base()), None, 200).await["doc_count"],
        50
    );
    // Continuous, persistent: a _replicator document; it shows in _active_tasks.
    http.must(
        "PUT",
        &format!("{}/_replicator/follow", b.base()),
        Some(json!({"source": source, "target": "copy"})),
        201,
    )
    .await;
    http.must(
        "PUT",
        &format!("{}/src/late", a.base()),
        Some(json!({"late": true})),
        201,
    )
    .await;
    let base = b.base();
    must_eventually("late doc replicated", WAIT, || {
        let (h, base) = (http.clone(), base.clone());
        async move { h.req("GET", &format!("{base}/copy/late"), None).await.0 == 200 }
    })
    .await;
    let tasks = http
        .must("GET", &format!("{}/_active_tasks", b.base()), None, 200)
        .await;
    assert_eq!(tasks[0]["type"], "replication", "{tasks}");
    assert_eq!(tasks[0]["doc_id"], "follow");
    let shown = tasks.to_string();
    assert!(
        !shown.contains(&secrets().replicator_password) && shown.contains("replicator:*****@"),
        "credentials in _active_tasks: {shown}"
    );
    // The job survives a restart of its node.
    let (args, ha, ga) = (b.args.clone(), b.http, b.grpc);
    b.kill();
    let b = Proc::must_start(args, ha, ga, dirs[1].path());
    http.must(
        "PUT",
        &format!("{}/src/after-restart", a.base()),
        Some(json!({})),
        201,
    )
    .await;
    let base = b.base();
    must_eventually("replication resumed after restart", WAIT, || {
        let (h, base) = (http.clone(), base.clone());
        async move { h.req("GET", &format!("{base}/copy/after-restart"), None).await.0 == 200 }
    })
    .await;
    http.must(
        "POST",
        &format!("{}/_replicate", b.base()),
        Some(json!({"source": "nope", "target": "copy"})),
        404,
    )
    .await;
    http.must(
        "POST",
        &format!("{}/_replicate", b.base()),
        Some(json!({"source": 5})),
        400,
    )
    .await;
}
