//! The store's behaviour through its public API, one capability per test.

mod common;

use std::time::Duration;

use common::*;
use store::{
    AllDocsQuery, AllDocsRow, ChangesQuery, DbName, DbOptions, DocInput, Edit, Error, LocalId, OpenRev,
    OpenRevs, ReadOptions, Replicated, Store,
};

#[tokio::test]
async fn databases_create_list_info_delete() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(1000);
    let store = must_open(dir.path(), &clock);
    let a = must_create(&store, "alpha", DbOptions::default()).await;
    must_create(&store, "beta", DbOptions::default()).await;
    let name = DbName::new("alpha").unwrap();
    assert!(matches!(
        store.create_db(&name, DbOptions::default()).await,
        Err(Error::DbExists { .. })
    ));
    assert_eq!(
        store.list_dbs().iter().map(|n| n.as_str()).collect::<Vec<_>>(),
        ["alpha", "beta"]
    );
    must_put(&a, "d1", None, r#"{"x":1}"#).await;
    let r2 = must_put(&a, "d2", None, r#"{"x":2}"#).await;
    a.put(Edit::delete(id("d2"), r2)).await.unwrap();
    let info = a.info();
    assert_eq!((info.doc_count, info.doc_del_count, info.update_seq), (1, 1, 3));
    assert_eq!(info.revs_limit, 100);

    store.delete_db(&name).await.unwrap();
    assert!(matches!(store.db(&name), Err(Error::DbNotFound { .. })));
    assert!(matches!(
        a.get(&id("d1"), &ReadOptions::default()),
        Err(Error::DbNotFound { .. })
    ));
    assert!(matches!(
        store.delete_db(&name).await,
        Err(Error::DbNotFound { .. })
    ));
    // Recreated: empty, even before RocksDB reclaims the old range.
    let a = must_create(&store, "alpha", DbOptions::default()).await;
    assert_eq!(a.info().doc_count, 0);
    assert!(a.get(&id("d1"), &ReadOptions::default()).is_err());
}

#[tokio::test]
async fn create_update_delete_with_optimistic_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(1000);
    let store = must_open(dir.path(), &clock);
    let db = must_create(&store, "s", DbOptions::default()).await;

    let r1 = must_put(&db, "doc", None, r#"{"v":1}"#).await;
    assert_eq!(r1.generation(), 1);
    // Creating again without _rev is a conflict.
    let again = db.put(Edit::new(id("doc"), None, br#"{"v":9}"#.to_vec())).await;
    assert!(matches!(again, Err(Error::Conflict { .. })));
    let r2 = must_put(&db, "doc", Some(&r1), r#"{"v":2}"#).await;
    // A stale _rev is a conflict; the same edit retried is idempotent.
    let stale = db
        .put(Edit::new(id("doc"), Some(r1.clone()), br#"{"v":3}"#.to_vec()))
        .await;
    assert!(matches!(stale, Err(Error::Conflict { .. })));
    assert_eq!(must_put(&db, "doc", Some(&r1), r#"{"v":2}"#).await, r2);

    let doc = db.get(&id("doc"), &ReadOptions::default()).unwrap();
    assert_eq!(
        (doc.rev.clone(), doc.body.as_slice()),
        (r2.clone(), br#"{"v":2}"#.as_slice())
    );
    assert_eq!(
        String::from_utf8(doc.to_json()).unwrap(),
        format!(r#"{{"_id":"doc","_rev":"{r2}","v":2}}"#)
    );
    // Old revisions stay readable until compaction.
    let old = db.get(&id("doc"), &at_rev(r1.clone())).unwrap();
    assert_eq!(old.body, br#"{"v":1}"#);

    let r3 = db.put(Edit::delete(id("doc"), r2.clone())).await.unwrap();
    assert!(matches!(
        db.get(&id("doc"), &ReadOptions::default()),
        Err(Error::NotFound {
            reason: "deleted",
            ..
        })
    ));
    let tomb = db.get(&id("doc"), &at_rev(r3.clone())).unwrap();
    assert!(tomb.deleted);
    // Recreate after delete: extends the tombstone.
    let r4 = must_put(&db, "doc", None, r#"{"v":4}"#).await;
    assert_eq!(r4.generation(), 4);
    let doc = db
        .get(
            &id("doc"),
            &ReadOptions {
                revs: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(doc.revisions.unwrap(), vec![r4, r3, r2, r1]);
}

#[tokio::test]
async fn replication_merge_conflicts_and_open_revs() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(1000);
    let store = must_open(dir.path(), &clock);
    let db = must_create(&store, "s", DbOptions::default()).await;
    let merge = |path: &[&str], body: &str, deleted: bool| Replicated {
        id: id("d"),
        path: path.iter().map(|r| rev(r)).collect(),
        deleted,
        body: body.as_bytes().to_vec(),
    };
    let results = db
        .merge(vec![
            merge(&["2-aaa", "1-root"], r#"{"side":"a"}"#, false),
            merge(&["2-bbb", "1-root"], r#"{"side":"b"}"#, false),
            merge(&["3-ccc", "2-ccc", "1-root"], "{}", true),
        ])
        .await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    // Idempotent.
    assert!(db
        .merge(vec![merge(&["2-aaa", "1-root"], r#"{"side":"a"}"#, false)])
        .await[0]
        .is_ok());
    assert_eq!(db.update_seq(), 3, "a repeated merge is not a change");

    let doc = db
        .get(
            &id("d"),
            &ReadOptions {
                conflicts: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        doc.rev,
        rev("2-bbb"),
        "non-deleted beats a longer deleted branch; bbb > aaa"
    );
    assert_eq!(doc.conflicts.unwrap(), vec![rev("2-aaa")]);
    assert_eq!(doc.deleted_conflicts.unwrap(), vec![rev("3-ccc")]);

    let all = db.open_revs(&id("d"), &OpenRevs::All, false, true).unwrap();
    assert_eq!(all.len(), 3);
    let listed = db
        .open_revs(
            &id("d"),
            &OpenRevs::Revs(vec![rev("2-aaa"), rev("9-nope")]),
            false,
            false,
        )
        .unwrap();
    assert!(matches!(&listed[0], OpenRev::Ok(d) if d.body == br#"{"side":"a"}"#));
    assert_eq!(listed[1], OpenRev::Missing(rev("9-nope")));
    // latest=true turns an ancestor into its leaves.
    let latest = db
        .open_revs(&id("d"), &OpenRevs::Revs(vec![rev("1-root")]), true, true)
        .unwrap();
    assert_eq!(latest.len(), 3);
    if let OpenRev::Ok(d) = &latest[0] {
        assert_eq!(d.revisions.as_ref().unwrap().last(), Some(&rev("1-root")));
    }

    let diff = db.revs_diff(&id("d"), &[rev("2-aaa"), rev("3-zzz")]).unwrap();
    assert_eq!(diff.missing, vec![rev("3-zzz")]);
    assert!(diff.possible_ancestors.contains(&rev("2-aaa")));
    let diff = db.revs_diff(&id("unknown"), &[rev("1-x")]).unwrap();
    assert_eq!(diff.missing, vec![rev("1-x")]);

    // Resolve the conflict by deleting the loser.
    db.put(Edit::delete(id("d"), rev("2-aaa"))).await.unwrap();
    let doc = db
        .get(
            &id("d"),
            &ReadOptions {
                conflicts: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(doc.conflicts.unwrap().is_empty());
}

#[tokio::test]
async fn replicated_input_parsing() {
    let input = DocInput::parse(
        br#"{"_id":"x","_rev":"3-c","_revisions":{"start":3,"ids":["c","b","a"]},"k":1}"#,
        1 << 20,
    )
    .unwrap();
    let r = Replicated::from_input(input).unwrap();
    assert_eq!(r.path, vec![rev("3-c"), rev("2-b"), rev("1-a")]);
    assert!(Replicated::from_input(DocInput::parse(br#"{"_rev":"1-a"}"#, 100).unwrap()).is_err());
    assert!(Replicated::from_input(DocInput::parse(br#"{"_id":"x"}"#, 100).unwrap()).is_err());
}

#[tokio::test]
async fn all_docs_ranges_keys_limit_descending() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(1000);
    let store = must_open(dir.path(), &clock);
    let db = must_create(&store, "s", DbOptions::default()).await;
    for k in ["a", "b", "c", "d", "e"] {
        must_put(&db, k, None, "{}").await;
    }
    let rc = db.get(&id("c"), &ReadOptions::default()).unwrap().rev;
    db.put(Edit::delete(id("c"), rc)).await.unwrap();
    let ids = |q: AllDocsQuery| -> Vec<String> {
        db.all_docs(&q)
            .unwrap()
            .into_iter()
            .map(|r| match r {
                AllDocsRow::Doc { id, deleted, .. } => format!("{id}{}", if deleted { "!" } else { "" }),
                AllDocsRow::Missing(k) => format!("?{k}"),
            })
            .collect()
    };
    assert_eq!(ids(AllDocsQuery::default()), ["a", "b", "d", "e"]);
    let q = AllDocsQuery {
        start_key: Some("b".into()),
        end_key: Some("d".into()),
        ..Default::default()
    };
    assert_eq!(ids(q.clone()), ["b", "d"]);
    assert_eq!(
        ids(AllDocsQuery {
            exclusive_end: true,
            ..q
        }),
        ["b"]
    );
    let q = AllDocsQuery {
        descending: true,
        limit: Some(2),
        ..Default::default()
    };
    assert_eq!(ids(q), ["e", "d"]);
    let q = AllDocsQuery {
        descending: true,
        start_key: Some("d".into()),
        end_key: Some("b".into()),
        ..Default::default()
    };
    assert_eq!(ids(q), ["d", "b"]);
    let q = AllDocsQuery {
        skip: 1,
        limit: Some(2),
        ..Default::default()
    };
    assert_eq!(ids(q), ["b", "d"]);
    let q = AllDocsQuery {
        keys: Some(vec!["e".into(), "zz".into(), "c".into()]),
        ..Default::default()
    };
    assert_eq!(ids(q), ["e", "?zz", "c!"]);
}

#[tokio::test]
async fn changes_feed_and_subscription() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(1000);
    let store = must_open(dir.path(), &clock);
    let db = must_create(&store, "s", DbOptions::default()).await;
    let ra = must_put(&db, "a", None, "{}").await;
    must_put(&db, "b", None, "{}").await;
    must_put(&db, "a", Some(&ra), r#"{"n":2}"#).await;
    let page = db.changes(&ChangesQuery::default()).unwrap();
    let seen: Vec<(u64, String)> = page.changes.iter().map(|c| (c.seq, c.id.to_string())).collect();
    assert_eq!(
        seen,
        [(2, "b".to_string()), (3, "a".to_string())],
        "each doc once, at its latest change"
    );
    assert_eq!((page.last_seq, page.pending), (3, 0));
    let page = db
        .changes(&ChangesQuery {
            since: 2,
            include_docs: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page.changes.len(), 1);
    assert_eq!(page.changes[0].doc.as_ref().unwrap().body, br#"{"n":2}"#);
    let page = db
        .changes(&ChangesQuery {
            limit: Some(1),
            ..Default::default()
        })
        .unwrap();
    assert_eq!((page.changes.len(), page.last_seq, page.pending), (1, 2, 1));
    let page = db
        .changes(&ChangesQuery {
            doc_ids: Some(vec!["b".into()]),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page.changes.len(), 1);
    assert!(db
        .changes(&ChangesQuery {
            since: 3,
            ..Default::default()
        })
        .unwrap()
        .changes
        .is_empty());

    // A subscriber wakes on commit without polling.
    let mut rx = db.subscribe();
    let db2 = db.clone();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        must_put(&db2, "c", None, "{}").await
    });
    let seen = tokio::time::timeout(Duration::from_secs(5), rx.wait_past(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen, 4);
    assert_eq!(rx.current(), 4);
    writer.await.unwrap();
    assert_eq!(db.wait_for_change(3, Duration::from_secs(1)).await.unwrap(), 4);
    assert_eq!(
        db.wait_for_change(4, Duration::from_millis(20)).await.unwrap(),
        4,
        "times out"
    );

    // style=all_docs lists every leaf, winner first. (Hashes compare as CouchDB
    // stores them: 32 hex digits as 16 bytes, so "ffff…" beats any other.)
    let top = format!("2-{}", "f".repeat(32));
    db.merge(vec![Replicated {
        id: id("a"),
        path: vec![rev(&top), ra.clone()],
        deleted: false,
        body: b"{}".to_vec(),
    }])
    .await[0]
        .as_ref()
        .unwrap();
    let page = db
        .changes(&ChangesQuery {
            since: 4,
            all_leaves: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page.changes[0].revs.len(), 2);
    assert_eq!(page.changes[0].revs[0], rev(&top));
}

#[tokio::test]
async fn local_docs_are_not_replicated_or_in_changes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(1000);
    let store = must_open(dir.path(), &clock);
    let db = must_create(&store, "s", DbOptions::default()).await;
    let lid = LocalId::new("checkpoint-1").unwrap();
    assert!(matches!(db.get_local(&lid), Err(Error::NotFound { .. })));
    assert_eq!(db.put_local(&lid, 0, br#"{"seq":1}"#.to_vec()).await.unwrap(), 1);
    assert!(matches!(
        db.put_local(&lid, 0, b"{}".to_vec()).await,
        Err(Error::Conflict { .. })
    ));
    assert_eq!(db.put_local(&lid, 1, br#"{"seq":2}"#.to_vec()).await.unwrap(), 2);
    let doc = db.get_local(&lid).unwrap();
    assert_eq!((doc.rev, doc.body.as_slice()), (2, br#"{"seq":2}"#.as_slice()));
    assert_eq!(db.update_seq(), 0);
    assert!(db.changes(&ChangesQuery::default()).unwrap().changes.is_empty());
    assert!(db.all_docs(&AllDocsQuery::default()).unwrap().is_empty());
    db.delete_local(&lid, 2).await.unwrap();
    assert!(db.get_local(&lid).is_err());
}

#[tokio::test]
async fn expiry_hides_sweeps_and_blocks_resurrection() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(1000);
    let store = must_open(dir.path(), &clock);
    let opts = DbOptions {
        expiry_field: Some("exp".into()),
        ..Default::default()
    };
    let db = must_create(&store, "s", opts).await;
    must_put(&db, "short", None, r#"{"exp":1010}"#).await;
    must_put(&db, "long", None, r#"{"exp":5000}"#).await;
    must_put(&db, "forever", None, r#"{"user":"x"}"#).await;
    let bad = db
        .put(Edit::new(id("typo"), None, br#"{"exp":"tomorrow"}"#.to_vec()))
        .await;
    assert!(matches!(bad, Err(Error::InvalidDocument { .. })));

    clock.set(1010);
    assert!(matches!(
        db.get(&id("short"), &ReadOptions::default()),
        Err(Error::NotFound {
            reason: "expired",
            ..
        })
    ));
    assert!(db.get(&id("long"), &ReadOptions::default()).is_ok());
    let ids: Vec<String> = db
        .changes(&ChangesQuery::default())
        .unwrap()
        .changes
        .iter()
        .map(|c| c.id.to_string())
        .collect();
    assert_eq!(ids, ["long", "forever"]);
    assert_eq!(db.all_docs(&AllDocsQuery::default()).unwrap().len(), 2);
    assert_eq!(
        db.revs_diff(&id("short"), &[rev("1-x")]).unwrap().missing.len(),
        1
    );

    assert_eq!(db.sweep_expired().await.unwrap(), 1);
    assert_eq!(db.info().doc_count, 2);
    assert_eq!(db.sweep_expired().await.unwrap(), 0);

    // A peer that has not swept yet sends the expired session back: it joins
    // the tree (every node keeps the same tree) but stays expired, and only a
    // stub of it is ever served.
    let r = db
        .merge(vec![Replicated {
            id: id("short"),
            path: vec![rev("1-abc")],
            deleted: false,
            body: br#"{"exp":1010}"#.to_vec(),
        }])
        .await;
    assert!(r[0].is_ok());
    assert!(db.get(&id("short"), &ReadOptions::default()).is_err());
    match &db
        .open_revs(&id("short"), &OpenRevs::Revs(vec![rev("1-abc")]), false, false)
        .unwrap()[0]
    {
        OpenRev::Ok(stub) => assert_eq!(stub.body, br#"{"exp":1010}"#),
        other => panic!("{other:?}"),
    }
    assert_eq!(db.info().doc_count, 2, "an expired stub is not a live document");
    // An expired session's id can be used again.
    must_put(&db, "short", None, r#"{"exp":9000}"#).await;
    let seq_before = db.update_seq();
    // A refresh moves the expiry.
    let rl = db.get(&id("long"), &ReadOptions::default()).unwrap().rev;
    must_put(&db, "long", Some(&rl), r#"{"exp":20000}"#).await;
    clock.set(6000);
    assert!(db.get(&id("long"), &ReadOptions::default()).is_ok());
    assert_eq!(db.sweep_expired().await.unwrap(), 0);
    assert!(db.update_seq() > seq_before);
}

#[tokio::test]
async fn compaction_drops_old_bodies_and_restems() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(1000);
    let store = must_open(dir.path(), &clock);
    let db = must_create(
        &store,
        "s",
        DbOptions {
            revs_limit: Some(50),
            ..Default::default()
        },
    )
    .await;
    let mut revs = vec![must_put(&db, "d", None, r#"{"i":0}"#).await];
    for i in 1..20 {
        let parent = revs.last().cloned();
        revs.push(must_put(&db, "d", parent.as_ref(), &format!(r#"{{"i":{i}}}"#)).await);
    }
    let seq = db.update_seq();
    db.set_revs_limit(5).await.unwrap();
    let report = db.compact().await.unwrap();
    assert_eq!(report.documents, 1);
    assert_eq!(report.bodies_dropped, 19);
    assert_eq!(db.update_seq(), seq, "compaction is not a change");
    let doc = db
        .get(
            &id("d"),
            &ReadOptions {
                revs: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(doc.body, br#"{"i":19}"#);
    assert_eq!(doc.revisions.unwrap().len(), 5);
    let old = db.get(&id("d"), &at_rev(revs[18].clone()));
    assert!(matches!(old, Err(Error::NotFound { .. })));
    // Writes continue after compaction.
    must_put(&db, "d", Some(&revs[19]), r#"{"i":20}"#).await;
}

#[tokio::test]
async fn reopen_keeps_everything_and_uuid() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(1000);
    let store = must_open(dir.path(), &clock);
    let uuid = store.uuid().to_owned();
    let db = must_create(
        &store,
        "s",
        DbOptions {
            revs_limit: Some(7),
            expiry_field: Some("e".into()),
        },
    )
    .await;
    let r = must_put(&db, "a", None, r#"{"x":1}"#).await;
    db.put_local(&LocalId::new("l").unwrap(), 0, b"{}".to_vec())
        .await
        .unwrap();
    drop(db);
    store.close();
    drop(store);

    let store = must_open(dir.path(), &clock);
    assert_eq!(store.uuid(), uuid);
    let db = store.db(&DbName::new("s").unwrap()).unwrap();
    let info = db.info();
    assert_eq!((info.update_seq, info.doc_count, info.revs_limit), (1, 1, 7));
    assert_eq!(info.expiry_field.as_deref(), Some("e"));
    assert_eq!(db.get(&id("a"), &ReadOptions::default()).unwrap().rev, r);
    assert_eq!(db.get_local(&LocalId::new("l").unwrap()).unwrap().rev, 1);
    let r2 = must_put(&db, "b", None, "{}").await;
    assert_eq!(r2.generation(), 1);
    assert_eq!(db.update_seq(), 2, "sequence continues after reopen");
}

#[tokio::test]
async fn second_open_of_a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(1000);
    let _store = must_open(dir.path(), &clock);
    match Store::open(dir.path(), options(&clock)) {
        Err(Error::Locked { path }) => assert_eq!(path, dir.path()),
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("second open succeeded"),
    }
}

#[tokio::test]
async fn writes_after_close_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(1000);
    let store = must_open(dir.path(), &clock);
    let db = must_create(&store, "s", DbOptions::default()).await;
    store.close();
    assert!(matches!(
        db.put(Edit::new(id("x"), None, b"{}".to_vec())).await,
        Err(Error::Closed)
    ));
}

#[tokio::test]
async fn a_flush_moves_documents_to_sst_files_and_they_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(1000);
    let store = must_open(dir.path(), &clock);
    let db = must_create(&store, "alpha", DbOptions::default()).await;
    let rev = must_put(&db, "d1", None, r#"{"x":1}"#).await;
    let ssts = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "sst"))
            .count()
    };
    let before = ssts();
    store.flush().unwrap();
    assert!(ssts() > before, "no SST file written ({before} before)");
    let doc = db.get(&id("d1"), &ReadOptions::default()).unwrap();
    assert_eq!((doc.rev, doc.body), (rev, br#"{"x":1}"#.to_vec()));
    assert!(matches!(
        db.get(&id("absent"), &ReadOptions::default()),
        Err(Error::NotFound { .. })
    ));
}
