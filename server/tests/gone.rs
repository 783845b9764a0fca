//! A node against hostile revisions, recreated databases and CouchDB's own
//! replicator; the replicator's progress, splitting and failure accounting.

mod support;

use std::sync::Arc;
use std::time::Duration;

use proto::v1::replication_client::ReplicationClient;
use proto::v1::sessions_client::SessionsClient;
use proto::v1::{watch_event, ChangesRequest, DbInfoRequest, PutCheckpointRequest, WatchRequest};
use replicator::{HttpPeer, LocalPeer, Peer, PeerError, Replication, ReplicationSpec, ReplicationState};
use serde_json::{json, Value};
use support::*;
use tokio_util::sync::CancellationToken;
use tonic::Code;

#[tokio::test]
async fn a_poison_revision_is_refused_with_a_couchdb_error() {
    let dir = tempfile::tempdir().unwrap();
    let n = must_start(dir.path()).await;
    n.must("PUT", "/db", None, 201).await;
    for start in ["10000000000000000000", "18446744073709551615"] {
        let body = format!(
            r#"{{"new_edits":false,"docs":[{{"_id":"x","_revisions":{{"start":{start},"ids":["a"]}}}}]}}"#
        );
        let resp = n
            .http
            .post(n.url("/db/_bulk_docs"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let rows: Value = resp.json().await.unwrap();
        assert_eq!(rows[0]["error"], "bad_request", "start {start}: {rows}");
        assert!(rows[0]["reason"].as_str().unwrap().contains("revision"), "{rows}");
        let single = format!(r#"{{"_revisions":{{"start":{start},"ids":["a"]}}}}"#);
        let resp = n
            .http
            .put(n.url("/db/y?new_edits=false"))
            .header("content-type", "application/json")
            .body(single)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400);
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"], "bad_request", "{err}");
    }
    n.must("GET", "/db/x", None, 404).await;
    // Nothing was stored and the writer is alive.
    n.must("PUT", "/db/z", Some(json!({"a": 1})), 201).await;
    assert_eq!(n.must("GET", "/db", None, 200).await["doc_count"], 1);
    n.stop().await;
}

/// The request sequence Apache CouchDB 3.4.3's replicator performs pulling from
/// a node (captured), three times over: each run reads the checkpoint, the
/// changes since it, fetches with `_bulk_get`, writes the target, and updates
/// the checkpoint on both ends with a `_revisions` member for the `0-N`
/// revision. The second and later checkpoint updates are what used to fail.
#[tokio::test]
async fn couchdb_replicator_pulls_repeatedly_with_its_checkpoints() {
    let (ds, dt) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = must_start(ds.path()).await;
    let target = must_start(dt.path()).await;
    source.must("PUT", "/db", None, 201).await;
    target.must("PUT", "/db", None, 201).await;
    let rep_id = "a1d6b0c3e5f7091b2d4f6a8c0e2b4d6f";
    let local = format!("/db/_local/{rep_id}");
    for run in 0..3u64 {
        for i in 0..2 {
            source
                .must(
                    "PUT",
                    &format!("/db/doc-{run}-{i}"),
                    Some(json!({"run": run})),
                    201,
                )
                .await;
        }
        source.must("GET", "/db/", None, 200).await;
        target.must("GET", "/db/", None, 200).await;
        let (cp_status, cp) = source.req("GET", &local, None).await;
        let (tcp_status, tcp) = target.req("GET", &local, None).await;
        assert_eq!(
            (cp_status, tcp_status),
            if run == 0 { (404, 404) } else { (200, 200) }
        );
        let since = if run == 0 {
            json!(0)
        } else {
            cp["source_last_seq"].clone()
        };
        let changes = source
            .must(
                "GET",
                &format!("/db/_changes?feed=normal&style=all_docs&since={since}&timeout=10000"),
                None,
                200,
            )
            .await;
        let rows = changes["results"].as_array().unwrap();
        assert_eq!(rows.len(), 2, "run {run}: only the new changes: {changes}");
        let docs: Vec<Value> = rows
            .iter()
            .map(|r| json!({"id": r["id"], "rev": r["changes"][0]["rev"]}))
            .collect();
        let got = source
            .must(
                "POST",
                "/db/_bulk_get?latest=true&revs=true&attachments=false",
                Some(json!({ "docs": docs })),
                200,
            )
            .await;
        let fetched: Vec<Value> = got["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["docs"][0]["ok"].clone())
            .collect();
        let errors = target
            .must(
                "POST",
                "/db/_bulk_docs",
                Some(json!({"new_edits": false, "docs": fetched})),
                201,
            )
            .await;
        assert_eq!(errors, json!([]));
        let last_seq = changes["last_seq"].clone();
        for (node, current) in [(&source, &cp), (&target, &tcp)] {
            // As CouchDB writes it: `_rev` 0-N and `_revisions` {start: 0, ids: ["N"]}.
            let mut body = json!({
                "_id": format!("_local/{rep_id}"),
                "session_id": format!("session-{run}"),
                "source_last_seq": last_seq,
                "replication_id_version": 4,
                "history": [{"session_id": format!("session-{run}"), "recorded_seq": last_seq,
                             "docs_read": 2, "docs_written": 2, "doc_write_failures": 0}],
            });
            if let Some(rev) = current.get("_rev").and_then(Value::as_str) {
                let n = rev.trim_start_matches("0-").to_owned();
                body["_rev"] = json!(rev);
                body["_revisions"] = json!({"start": 0, "ids": [n]});
            }
            let put = node.must("PUT", &local, Some(body), 201).await;
            assert_eq!(put["rev"], format!("0-{}", run + 1), "run {run}");
        }
        source.must("POST", "/db/_ensure_full_commit", None, 201).await;
    }
    assert_eq!(target.must("GET", "/db", None, 200).await["doc_count"], 6);
    source.stop().await;
    target.stop().await;
}

#[tokio::test]
async fn a_recreated_database_is_another_incarnation_and_its_feeds_end() {
    let dir = tempfile::tempdir().unwrap();
    let n = must_start(dir.path()).await;
    n.must("PUT", "/db", None, 201).await;
    for i in 0..3 {
        n.must("PUT", &format!("/db/d{i}"), Some(json!({})), 201).await;
    }
    let first = n.must("GET", "/db", None, 200).await["instance_start_time"].clone();
    assert_ne!(first, json!("0"));
    let commit = n.must("POST", "/db/_ensure_full_commit", None, 201).await;
    assert_eq!(commit["instance_start_time"], first);

    // Open feeds of every kind, then delete the database.
    let feed = n
        .http
        .get(n.url("/db/_changes?feed=continuous&since=3&heartbeat=200"))
        .send()
        .await
        .unwrap();
    let grpc = format!("http://{}", n.grpc);
    let mut repl = ReplicationClient::connect(grpc.clone()).await.unwrap();
    let mut stream = repl
        .changes(ChangesRequest {
            db: "db".into(),
            since: 3,
            batch_size: 10,
            continuous: true,
            peer: "test/one".into(),
            incarnation: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut sessions = SessionsClient::connect(grpc.clone()).await.unwrap();
    let mut watch = sessions
        .watch(WatchRequest {
            db: "db".into(),
            since: 0,
            from_now: true,
        })
        .await
        .unwrap()
        .into_inner();
    let Some(watch_event::Event::Start(start)) = watch.message().await.unwrap().unwrap().event else {
        panic!("no WatchStart");
    };
    assert_eq!(json!(start.incarnation), first);
    tokio::time::sleep(Duration::from_millis(100)).await;
    n.must("DELETE", "/db", None, 200).await;

    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                other => return other.map(|_| ()),
            }
        }
    })
    .await
    .expect("the replication stream kept heartbeating from a deleted database");
    assert_eq!(ended.unwrap_err().code(), Code::NotFound);
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match watch.message().await {
                Ok(Some(_)) => continue,
                other => return other.map(|_| ()),
            }
        }
    })
    .await
    .expect("Watch kept heartbeating from a deleted database");
    assert_eq!(ended.unwrap_err().code(), Code::NotFound);
    let text = tokio::time::timeout(Duration::from_secs(10), feed.text())
        .await
        .expect("the continuous feed kept going")
        .unwrap();
    let last: Value = serde_json::from_str(text.trim().lines().last().unwrap()).unwrap();
    assert_eq!(last["error"], "not_found", "{text}");

    // The same name again: a new incarnation, whose sequence starts over.
    n.must("PUT", "/db", None, 201).await;
    n.must("PUT", "/db/new", Some(json!({})), 201).await;
    let second = n.must("GET", "/db", None, 200).await["instance_start_time"].clone();
    assert_ne!(first, second);
    let stale = n.must("GET", "/db/_changes?since=3", None, 400).await;
    assert_eq!(stale["error"], "bad_request");
    // gRPC peers naming the old incarnation are refused.
    let info = repl
        .db_info(DbInfoRequest {
            db: "db".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(json!(info.incarnation), second);
    let refused = repl
        .put_checkpoint(PutCheckpointRequest {
            db: "db".into(),
            replication_id: "r".into(),
            rev: 0,
            body: br#"{"a":1}"#.to_vec().into(),
            incarnation: first.as_str().unwrap().into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let ahead = repl
        .changes(ChangesRequest {
            db: "db".into(),
            since: 3,
            batch_size: 10,
            ..Default::default()
        })
        .await;
    let ahead_code = match ahead {
        Err(s) => s.code(),
        Ok(mut s) => s.get_mut().message().await.unwrap_err().code(),
    };
    assert_eq!(ahead_code, Code::OutOfRange);
    n.stop().await;
}

#[tokio::test]
async fn a_peer_with_other_database_options_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let n = must_start(dir.path()).await;
    n.must("PUT", "/db?expiry_field=exp", None, 201).await;
    let mut repl = ReplicationClient::connect(format!("http://{}", n.grpc))
        .await
        .unwrap();
    let same = DbInfoRequest {
        db: "db".into(),
        create: true,
        expiry_field: "exp".into(),
        revs_limit: 0,
    };
    repl.db_info(same.clone()).await.unwrap();
    for other in [
        DbInfoRequest {
            expiry_field: "expires".into(),
            ..same.clone()
        },
        DbInfoRequest {
            revs_limit: 7,
            ..same.clone()
        },
    ] {
        let err = repl.db_info(other).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("expiry_field"), "{}", err.message());
    }
    n.stop().await;
}

#[tokio::test]
async fn revs_diff_answers_around_a_bad_id_or_revision() {
    let dir = tempfile::tempdir().unwrap();
    let n = must_start(dir.path()).await;
    n.must("PUT", "/db", None, 201).await;
    let rev = n.must("PUT", "/db/good", Some(json!({})), 201).await["rev"].clone();
    let diff = n
        .must(
            "POST",
            "/db/_revs_diff",
            Some(json!({"good": [rev, "2-abc"], "_bad_id": ["1-a"], "other": ["not-a-rev"]})),
            200,
        )
        .await;
    assert_eq!(diff["good"]["missing"], json!(["2-abc"]));
    assert_eq!(diff["_bad_id"]["missing"], json!(["1-a"]));
    assert_eq!(diff["other"]["missing"], json!(["not-a-rev"]));
    n.stop().await;
}

fn spec(source: Arc<dyn Peer>, target: Arc<dyn Peer>) -> ReplicationSpec {
    let mut spec = ReplicationSpec::new(source, target, "test");
    spec.backoff.initial = Duration::from_millis(10);
    spec.backoff.max = Duration::from_millis(50);
    spec
}

async fn local_source(dir: &std::path::Path, docs: usize, size: usize) -> store::Store {
    let s = store::Store::open(
        dir,
        store::StoreOptions {
            durability: store::Durability::Buffered,
            sweep_interval: None,
            cache_bytes: 8 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    let name = store::DbName::new("db").unwrap();
    s.create_db(&name, Default::default()).await.unwrap();
    let db = s.db(&name).unwrap();
    let pad = "x".repeat(size);
    let edits = (0..docs)
        .map(|i| {
            store::Edit::new(
                store::DocId::new(&format!("d{i:04}")).unwrap(),
                None,
                format!(r#"{{"pad":"{pad}"}}"#).into_bytes(),
            )
        })
        .collect();
    for r in db.update(edits).await {
        r.unwrap();
    }
    s
}

/// A one-shot replication that keeps failing after it has read changes (here:
/// the target refuses every checkpoint as too large) gives up: reading is not
/// progress, only what was written and checkpointed is.
#[tokio::test]
async fn a_one_shot_replication_failing_after_reading_gives_up() {
    let (ds, dt) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = local_source(ds.path(), 3, 10).await;
    let target = must_start_with(dt.path(), |c| c.limits.max_body_bytes = 200).await;
    target.must("PUT", "/db", None, 201).await;
    let from: Arc<dyn Peer> = Arc::new(LocalPeer::new(
        source.clone(),
        store::DbName::new("db").unwrap(),
        Default::default(),
    ));
    let to: Arc<dyn Peer> = Arc::new(HttpPeer::new(&target.url("/db")).unwrap());
    let r = Replication::start(spec(from, to), CancellationToken::new());
    let status = r.status();
    let ended = tokio::time::timeout(Duration::from_secs(30), r.wait()).await;
    let result = ended.expect("the one-shot replication retried forever");
    assert!(result.is_err());
    assert_eq!(status.state(), ReplicationState::Failed);
    assert!(status.docs_read() >= 3);
    target.stop().await;
}

/// A batch the target refuses as too large (413) is split, and everything arrives.
#[tokio::test]
async fn a_batch_refused_as_too_large_is_split() {
    let (ds, dt) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = local_source(ds.path(), 40, 4000).await;
    let target = must_start_with(dt.path(), |c| c.limits.max_body_bytes = 48 << 10).await;
    target.must("PUT", "/db", None, 201).await;
    let from: Arc<dyn Peer> = Arc::new(LocalPeer::new(
        source.clone(),
        store::DbName::new("db").unwrap(),
        Default::default(),
    ));
    let to: Arc<dyn Peer> = Arc::new(HttpPeer::new(&target.url("/db")).unwrap());
    let r = Replication::start(spec(from, to), CancellationToken::new());
    let status = r.status();
    let ended = tokio::time::timeout(Duration::from_secs(30), r.wait()).await;
    ended
        .expect("the replication retried the same batch forever")
        .unwrap();
    assert_eq!(target.must("GET", "/db", None, 200).await["doc_count"], 40);
    assert_eq!(status.snapshot().doc_write_failures, 0);
    target.stop().await;
}

/// Over gRPC a checkpoint conflict is a conflict, not "unreachable".
#[tokio::test]
async fn grpc_checkpoint_conflicts_are_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let n = must_start(dir.path()).await;
    n.must("PUT", "/db", None, 201).await;
    let url = format!("http://{}", n.grpc);
    let channel = replicator::GrpcPeer::channel(&url, Duration::from_secs(2), None).unwrap();
    let hub = replicator::GrpcPeer::new(channel, &url, "db", "test/node");
    hub.info(false).await.unwrap();
    let rev = hub.put_checkpoint("r1", None, &json!({"a": 1})).await.unwrap();
    assert_eq!(rev, "0-1");
    let stale = hub.put_checkpoint("r1", None, &json!({"a": 2})).await;
    assert!(matches!(stale, Err(PeerError::Conflict { .. })), "{stale:?}");
    n.stop().await;
}

/// The long-history repair over the wire, both ways: a session edited more than
/// `revs_limit` times while the peers were apart, then deleted, must arrive joined to
/// the peer's old leaf (`DocRevs.ancestors` in `RevsDiff`, the history walked through
/// ghosts in `FetchRevs`), or the old leaf stays a live conflict and the deleted
/// session is served again.
#[tokio::test]
async fn a_long_history_joins_the_old_leaf_over_grpc_both_ways() {
    let (dn, dl) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let n = must_start(dn.path()).await;
    n.must("PUT", "/db?revs_limit=10", None, 201).await;
    let local = store::Store::open(
        dl.path(),
        store::StoreOptions {
            sweep_interval: None,
            cache_bytes: 8 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    let name = store::DbName::new("db").unwrap();
    let opts = store::DbOptions {
        revs_limit: Some(10),
        ..Default::default()
    };
    local.create_db(&name, opts.clone()).await.unwrap();
    let url = format!("http://{}", n.grpc);
    let remote: Arc<dyn Peer> = Arc::new(
        replicator::GrpcPeer::new(
            replicator::GrpcPeer::channel(&url, Duration::from_secs(2), None).unwrap(),
            &url,
            "db",
            "test/node",
        )
        .with_create_options(opts),
    );
    let here: Arc<dyn Peer> = Arc::new(LocalPeer::new(local.clone(), name.clone(), Default::default()));
    let once = |from: &Arc<dyn Peer>, to: &Arc<dyn Peer>| {
        let r = Replication::start(spec(from.clone(), to.clone()), CancellationToken::new());
        async move {
            tokio::time::timeout(Duration::from_secs(30), r.wait())
                .await
                .expect("one-shot replication hung")
                .expect("one-shot replication");
        }
    };
    let db = local.db(&name).unwrap();
    let edit = |id: &str, parent: Option<store::Rev>, n: usize| {
        store::Edit::new(
            store::DocId::new(id).unwrap(),
            parent,
            format!(r#"{{"n":{n}}}"#).into_bytes(),
        )
    };

    // Push: written here, the node's old leaf is what the new path must reach.
    let mut rev = None;
    for i in 0..3 {
        rev = Some(
            db.update(vec![edit("pushed", rev.clone(), i)])
                .await
                .remove(0)
                .unwrap(),
        );
    }
    once(&here, &remote).await;
    for i in 3..33 {
        rev = Some(
            db.update(vec![edit("pushed", rev.clone(), i)])
                .await
                .remove(0)
                .unwrap(),
        );
    }
    let id = store::DocId::new("pushed").unwrap();
    db.update(vec![store::Edit::delete(id, rev.unwrap())])
        .await
        .remove(0)
        .unwrap();
    once(&here, &remote).await;
    n.must("GET", "/db/pushed", None, 404).await;
    let open = n.must("GET", "/db/pushed?open_revs=all", None, 200).await;
    assert_eq!(open.as_array().map(Vec::len), Some(1), "a false conflict: {open}");

    // Pull: written at the node, this store's old leaf is what the path must reach.
    let mut rev = n.must("PUT", "/db/pulled", Some(json!({"n": 0})), 201).await["rev"].clone();
    for i in 1..3 {
        rev = n
            .must("PUT", "/db/pulled", Some(json!({"n": i, "_rev": rev})), 201)
            .await["rev"]
            .clone();
    }
    once(&remote, &here).await;
    for i in 3..33 {
        rev = n
            .must("PUT", "/db/pulled", Some(json!({"n": i, "_rev": rev})), 201)
            .await["rev"]
            .clone();
    }
    let rev = rev.as_str().unwrap().to_owned();
    n.must("DELETE", &format!("/db/pulled?rev={rev}"), None, 200)
        .await;
    once(&remote, &here).await;
    let id = store::DocId::new("pulled").unwrap();
    let open = db.open_revs(&id, &store::OpenRevs::All, false, false).unwrap();
    assert_eq!(open.len(), 1, "a false conflict: {open:?}");
    assert!(
        db.get(&id, &Default::default()).is_err(),
        "a deleted session is served"
    );
    n.stop().await;
}
