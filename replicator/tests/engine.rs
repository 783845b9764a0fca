//! The replication engine between real stores (and a silent socket): stopping,
//! deadlines, recreated databases.

use std::sync::Arc;
use std::time::Duration;

use replicator::{GrpcPeer, LocalPeer, Peer, PeerError, Replication, ReplicationSpec, ReplicationState};
use store::{DbName, DbOptions, DocId, Durability, Edit, OpenRev, OpenRevs, Rev, Store, StoreOptions};
use tokio_util::sync::CancellationToken;

fn open(dir: &std::path::Path) -> Store {
    Store::open(
        dir,
        StoreOptions {
            durability: Durability::Buffered,
            sweep_interval: None,
            cache_bytes: 8 << 20,
            ..StoreOptions::default()
        },
    )
    .expect("open store")
}

fn name() -> DbName {
    DbName::new("sessions").unwrap()
}

async fn put_docs(store: &Store, from: usize, to: usize) {
    let db = store.db(&name()).unwrap();
    let edits = (from..to)
        .map(|i| {
            Edit::new(
                DocId::new(&format!("d{i:05}")).unwrap(),
                None,
                br#"{"v":1}"#.to_vec(),
            )
        })
        .collect();
    for r in db.update(edits).await {
        r.expect("put");
    }
}

fn peer(store: &Store) -> Arc<dyn Peer> {
    Arc::new(LocalPeer::new(store.clone(), name(), DbOptions::default()))
}

/// Waits (bounded) until `cond` holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..400 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

fn doc_count(store: &Store) -> u64 {
    store.db(&name()).map(|d| d.info().doc_count).unwrap_or(0)
}

#[tokio::test]
async fn stopping_writes_the_last_checkpoint() {
    let (ds, dt) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (source, target) = (open(ds.path()), open(dt.path()));
    for s in [&source, &target] {
        s.create_db(&name(), DbOptions::default()).await.unwrap();
    }
    put_docs(&source, 0, 3000).await;
    let mut spec = ReplicationSpec::new(peer(&source), peer(&target), "push:sessions");
    spec.continuous = true;
    spec.batch_size = 1;
    // Never by time: only catching up or stopping writes a checkpoint.
    spec.checkpoint_interval = Duration::from_secs(3600);
    let shutdown = CancellationToken::new();
    let r = Replication::start(spec, shutdown.clone());
    let status = r.status();
    eventually("some documents replicated", || status.docs_written() >= 5).await;
    r.stop().await.unwrap();
    let written = status.docs_written();
    assert!(
        written < 3000,
        "caught up before the stop; the test proves nothing"
    );
    let id = replicator::replication_id(source.uuid(), "sessions", target.uuid(), "sessions");
    for (end, store) in [("source", &source), ("target", &target)] {
        let cp = peer(store).get_checkpoint(&id).await.unwrap();
        let cp = cp.unwrap_or_else(|| panic!("no checkpoint on the {end} after stopping"));
        let seq = cp.body["source_last_seq"].as_u64().unwrap();
        assert!(
            seq >= written,
            "{end} checkpoint at {seq}, {written} documents written"
        );
    }
    assert_eq!(status.state(), ReplicationState::Stopped);
}

#[tokio::test]
async fn a_grpc_peer_that_never_answers_times_out() {
    // Accepts connections and reads, never answers (not even the HTTP/2 preface).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let url = format!("http://{addr}");
    let channel = GrpcPeer::channel(&url, Duration::from_secs(1), None).unwrap();
    let hub =
        GrpcPeer::new(channel, &url, "sessions", "test/node").with_call_timeout(Duration::from_millis(300));
    let answer = tokio::time::timeout(Duration::from_secs(20), hub.info(false)).await;
    match answer {
        Ok(Err(PeerError::Unreachable { .. })) => {}
        Ok(other) => panic!("unexpected answer {other:?}"),
        Err(_) => panic!("the call hung past every deadline"),
    }
    silent.abort();
}

#[tokio::test]
async fn a_target_recreated_mid_replication_receives_everything() {
    let (ds, dt) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (source, target) = (open(ds.path()), open(dt.path()));
    for s in [&source, &target] {
        s.create_db(&name(), DbOptions::default()).await.unwrap();
    }
    put_docs(&source, 0, 10).await;
    let mut spec = ReplicationSpec::new(peer(&source), peer(&target), "push:sessions");
    spec.continuous = true;
    spec.poll_wait = Duration::from_millis(200);
    spec.backoff.initial = Duration::from_millis(20);
    spec.backoff.max = Duration::from_millis(100);
    let r = Replication::start(spec, CancellationToken::new());
    eventually("first ten replicated", || doc_count(&target) == 10).await;
    target.delete_db(&name()).await.unwrap();
    target.create_db(&name(), DbOptions::default()).await.unwrap();
    put_docs(&source, 10, 11).await;
    eventually("the new target has all eleven", || doc_count(&target) == 11).await;
    r.stop().await.unwrap();
}

#[tokio::test]
async fn a_source_recreated_mid_replication_is_read_from_its_start() {
    let (ds, dt) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (source, target) = (open(ds.path()), open(dt.path()));
    for s in [&source, &target] {
        s.create_db(&name(), DbOptions::default()).await.unwrap();
    }
    put_docs(&source, 0, 10).await;
    let mut spec = ReplicationSpec::new(peer(&source), peer(&target), "pull:sessions");
    spec.continuous = true;
    spec.poll_wait = Duration::from_secs(30);
    spec.backoff.initial = Duration::from_millis(20);
    spec.backoff.max = Duration::from_millis(100);
    let r = Replication::start(spec, CancellationToken::new());
    eventually("first ten replicated", || doc_count(&target) == 10).await;
    // The new incarnation has fewer changes than the old position (10).
    source.delete_db(&name()).await.unwrap();
    source.create_db(&name(), DbOptions::default()).await.unwrap();
    put_docs(&source, 100, 103).await;
    eventually("the three new documents arrived", || doc_count(&target) == 13).await;
    r.stop().await.unwrap();
}

/// The leaves of `id` at `store`, newest first, with their deleted flags.
fn leaves(store: &Store, id: &DocId) -> Vec<(String, bool)> {
    let db = store.db(&name()).unwrap();
    db.open_revs(id, &OpenRevs::All, false, false)
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            OpenRev::Ok(d) => Some((d.rev.to_string(), d.deleted)),
            OpenRev::Missing(_) => None,
        })
        .collect()
}

async fn replicate_once(from: &Store, to: &Store) {
    let spec = ReplicationSpec::new(peer(from), peer(to), "push:sessions");
    Replication::start(spec, CancellationToken::new())
        .wait()
        .await
        .expect("one-shot replication");
}

/// More edits than `revs_limit` while a peer is away, then a delete: the peer's old leaf
/// must be joined to the new history, not left as a live "conflict" that outranks the
/// tombstone and brings a deleted session back.
#[tokio::test]
async fn a_long_history_made_while_apart_joins_the_old_leaf_and_the_delete_holds() {
    let (ds, dt) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (source, target) = (open(ds.path()), open(dt.path()));
    let opts = DbOptions {
        revs_limit: Some(10),
        ..DbOptions::default()
    };
    for s in [&source, &target] {
        s.create_db(&name(), opts.clone()).await.unwrap();
    }
    let db = source.db(&name()).unwrap();
    let id = DocId::new("s1").unwrap();
    let mut rev = None;
    let edit =
        |parent: Option<Rev>, n: usize| Edit::new(id.clone(), parent, format!(r#"{{"n":{n}}}"#).into_bytes());
    for n in 0..3 {
        rev = Some(db.update(vec![edit(rev.clone(), n)]).await.remove(0).unwrap());
    }
    replicate_once(&source, &target).await;
    assert_eq!(
        leaves(&target, &id),
        vec![(rev.clone().unwrap().to_string(), false)]
    );
    // Thirty edits apart: three times the revisions either node keeps per branch.
    for n in 3..33 {
        rev = Some(db.update(vec![edit(rev.clone(), n)]).await.remove(0).unwrap());
    }
    let tomb = db
        .update(vec![Edit::delete(id.clone(), rev.unwrap())])
        .await
        .remove(0)
        .unwrap();
    replicate_once(&source, &target).await;
    assert_eq!(leaves(&source, &id), vec![(tomb.to_string(), true)]);
    assert_eq!(
        leaves(&target, &id),
        leaves(&source, &id),
        "the old leaf came back as a conflict"
    );
    let gone = target.db(&name()).unwrap().get(&id, &Default::default());
    assert!(gone.is_err(), "a deleted session is served: {gone:?}");
}
