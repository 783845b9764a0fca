//! A session that is gone stays gone: expiry as a function of (tree, time),
//! forgotten branches, generation bounds, deleted and recreated databases.

mod common;

use std::time::Duration;

use common::*;
use store::{
    ChangesQuery, Database, DbOptions, Error, OpenRev, OpenRevs, ReadOptions, Replicated, Rev, Store,
};

fn expiring() -> DbOptions {
    DbOptions {
        expiry_field: Some("exp".into()),
        ..Default::default()
    }
}

fn path(revs: &[&str]) -> Vec<Rev> {
    revs.iter().map(|r| rev(r)).collect()
}

fn revision(doc: &str, revs: &[&str], exp: Option<u64>) -> Replicated {
    let body = match exp {
        Some(e) => format!(r#"{{"user":"ada","exp":{e}}}"#),
        None => r#"{"user":"ada"}"#.to_owned(),
    };
    Replicated {
        id: id(doc),
        path: path(revs),
        deleted: false,
        body: body.into_bytes(),
    }
}

async fn merge_ok(db: &Database, r: Replicated) {
    let out = db.merge(vec![r]).await;
    assert!(out[0].is_ok(), "{out:?}");
}

fn reason(db: &Database, doc: &str) -> Result<Rev, &'static str> {
    match db.get(&id(doc), &ReadOptions::default()) {
        Ok(d) => Ok(d.rev),
        Err(Error::NotFound { reason, .. }) => Err(reason),
        Err(e) => panic!("{doc}: {e}"),
    }
}

/// The winner W expires before its live conflict C. Whatever the order and
/// times of arrival, both nodes end with the same tree, read the session as
/// expired, never report a revision they hold as missing, and a re-delivered
/// conflict does not bring the session back.
#[tokio::test]
async fn an_expired_winner_with_a_live_conflict_stays_expired_in_any_order() {
    let (da, db_) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ca, cb) = (TestClock::at(1000), TestClock::at(1000));
    let (sa, sb) = (must_open(da.path(), &ca), must_open(db_.path(), &cb));
    let a = must_create(&sa, "s", expiring()).await;
    let b = must_create(&sb, "s", expiring()).await;
    let w = revision("x", &["3-w", "2-w", "1-a"], Some(1100));
    let c = revision("x", &["2-c", "1-a"], Some(5000));

    // A: both before W expires. B: C first, W only after it expired.
    merge_ok(&a, w.clone()).await;
    merge_ok(&a, c.clone()).await;
    merge_ok(&b, c.clone()).await;
    assert_eq!(reason(&b, "x"), Ok(rev("2-c")), "B has only the conflict so far");
    ca.set(1200);
    cb.set(1200);
    merge_ok(&b, w.clone()).await;

    for (name, db) in [("A", &a), ("B", &b)] {
        assert_eq!(reason(db, "x"), Err("expired"), "{name}");
        let diff = db.revs_diff(&id("x"), &path(&["3-w", "2-c", "1-a"])).unwrap();
        assert!(
            diff.missing.is_empty(),
            "{name} reports present revisions missing: {diff:?}"
        );
        // Re-delivering the conflict changes nothing.
        merge_ok(db, c.clone()).await;
        assert_eq!(reason(db, "x"), Err("expired"), "{name} after re-delivery");
        // Replication serves a stub: the expiry, never the session's data.
        let got = db
            .open_revs(&id("x"), &OpenRevs::Revs(path(&["3-w"])), false, true)
            .unwrap();
        let OpenRev::Ok(stub) = &got[0] else {
            panic!("{name}: {got:?}")
        };
        assert_eq!(stub.body, br#"{"exp":1100}"#, "{name}");
        assert!(db.changes(&ChangesQuery::default()).unwrap().changes.is_empty());
        let with_expired = ChangesQuery {
            include_expired: true,
            all_leaves: true,
            ..Default::default()
        };
        assert_eq!(
            db.changes(&with_expired).unwrap().changes[0].revs,
            path(&["3-w", "2-c"])
        );
    }
    // Sweeping drops bodies but not the tree: still expired, still not missing.
    a.sweep_expired().await.unwrap();
    assert_eq!(reason(&a, "x"), Err("expired"));
    assert!(a.revs_diff(&id("x"), &path(&["2-c"])).unwrap().missing.is_empty());
    merge_ok(&a, c).await;
    assert_eq!(reason(&a, "x"), Err("expired"));
    // Creating the session again extends the expired winner, like a tombstone.
    let again = a
        .put(store::Edit::new(id("x"), None, br#"{"exp":9000}"#.to_vec()))
        .await
        .unwrap();
    assert_eq!(again.generation(), 4);
    assert_eq!(reason(&a, "x"), Ok(again));
}

/// A lagging peer's live revision, older than the ghost window, does not
/// undelete a session deleted since.
#[tokio::test]
async fn a_stemmed_away_live_leaf_does_not_undelete() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(1000);
    let s = must_open(dir.path(), &clock);
    let db = must_create(
        &s,
        "s",
        DbOptions {
            revs_limit: Some(3),
            ..Default::default()
        },
    )
    .await;
    let mut parent: Option<Rev> = None;
    let mut lagging = Vec::new();
    for i in 0..40 {
        let r = must_put(&db, "x", parent.as_ref(), &format!(r#"{{"v":{i}}}"#)).await;
        lagging.insert(0, r.clone());
        parent = Some(r);
    }
    db.put(store::Edit::delete(id("x"), parent.unwrap()))
        .await
        .unwrap();
    assert_eq!(reason(&db, "x"), Err("deleted"));
    // The peer stopped hearing at generation 20; it sends its stemmed history.
    let old: Vec<Rev> = lagging[20..23].to_vec();
    assert_eq!(old[0].generation(), 20);
    assert!(db.revs_diff(&id("x"), &old[..1]).unwrap().missing.is_empty());
    let out = db
        .merge(vec![Replicated {
            id: id("x"),
            path: old,
            deleted: false,
            body: br#"{"v":19}"#.to_vec(),
        }])
        .await;
    assert!(out[0].is_ok(), "{out:?}");
    assert_eq!(
        reason(&db, "x"),
        Err("deleted"),
        "the old branch undeleted the session"
    );
}

/// Generations are bounded where they enter, and an edit never overflows.
#[tokio::test]
async fn generations_are_bounded_and_the_writer_survives_the_top() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(1000);
    let s = must_open(dir.path(), &clock);
    let db = must_create(&s, "s", DbOptions::default()).await;
    for start in [u64::MAX, 10_000_000_000_000_000_000, store::MAX_GENERATION + 1] {
        let json = format!(r#"{{"_id":"x","_revisions":{{"start":{start},"ids":["a"]}}}}"#);
        assert!(store::DocInput::parse(json.as_bytes(), 1000).is_err(), "{start}");
    }
    let top = Rev::new(store::MAX_GENERATION, "a").unwrap();
    merge_ok(
        &db,
        Replicated {
            id: id("top"),
            path: vec![top.clone()],
            deleted: false,
            body: b"{}".to_vec(),
        },
    )
    .await;
    let r = db.put(store::Edit::delete(id("top"), top)).await;
    assert!(matches!(r, Err(Error::InvalidRev { .. })), "{r:?}");
    // The writer is alive.
    must_put(&db, "after", None, "{}").await;
}

/// Reads with options take the tree and the body from one snapshot: a
/// concurrent update never makes the document read as missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_with_options_never_miss_during_updates() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(1000);
    let s = must_open(dir.path(), &clock);
    let db = must_create(
        &s,
        "s",
        DbOptions {
            revs_limit: Some(1),
            ..Default::default()
        },
    )
    .await;
    let first = must_put(&db, "x", None, r#"{"v":0}"#).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let opts = ReadOptions {
                conflicts: true,
                ..Default::default()
            };
            let mut misses = 0;
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || reads < 1000 {
                if db.get(&id("x"), &opts).is_err() {
                    misses += 1;
                }
                reads += 1;
            }
            misses
        })
    };
    let mut parent = first;
    for i in 1..1500 {
        parent = must_put(&db, "x", Some(&parent), &format!(r#"{{"v":{i}}}"#)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(reader.join().unwrap(), 0, "reads with options saw a spurious 404");
}

/// Nodes whose clocks are 30 s apart hold the same revisions; they disagree on
/// visibility only for the 30 s around an expiry.
#[tokio::test]
async fn clocks_30_seconds_apart_agree_on_everything_but_the_skew_window() {
    let (da, db_) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ca, cb) = (TestClock::at(1000), TestClock::at(1030));
    let (sa, sb) = (must_open(da.path(), &ca), must_open(db_.path(), &cb));
    let a = must_create(&sa, "s", expiring()).await;
    let b = must_create(&sb, "s", expiring()).await;
    let r = revision("x", &["1-a"], Some(1020));
    merge_ok(&a, r.clone()).await;
    merge_ok(&b, r).await;
    // B is ahead: the session is already expired there, but B holds it.
    assert_eq!(reason(&a, "x"), Ok(rev("1-a")));
    assert_eq!(reason(&b, "x"), Err("expired"));
    for db in [&a, &b] {
        assert!(db
            .revs_diff(&id("x"), &path(&["1-a"]))
            .unwrap()
            .missing
            .is_empty());
    }
    ca.set(1020);
    assert_eq!(
        reason(&a, "x"),
        Err("expired"),
        "A agrees once its own clock passes"
    );
}

/// `merge_reporting` on a deleted database fails the batch, not each document.
#[tokio::test]
async fn replicated_writes_to_a_deleted_database_fail_as_a_whole() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(1000);
    let s = must_open(dir.path(), &clock);
    let db = must_create(&s, "s", DbOptions::default()).await;
    s.delete_db(db.name()).await.unwrap();
    let r = db.merge_reporting(vec![revision("x", &["1-a"], None)]).await;
    assert!(matches!(r, Err(Error::DbNotFound { .. })), "{r:?}");
}

/// A deleted database ends its subscribers; a recreated one is another
/// incarnation, and positions in the old one are refused.
#[tokio::test]
async fn a_deleted_database_ends_its_feeds_and_a_recreated_one_is_new() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(1000);
    let s: Store = must_open(dir.path(), &clock);
    let db = must_create(&s, "s", DbOptions::default()).await;
    for i in 0..5 {
        must_put(&db, &format!("d{i}"), None, "{}").await;
    }
    let before = db.incarnation();
    let mut sub = db.subscribe();
    let waiting = tokio::spawn(async move { sub.wait_past(5).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    s.delete_db(db.name()).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), waiting).await;
    assert!(
        matches!(ended, Ok(Ok(Err(Error::DbNotFound { .. })))),
        "the subscriber was not told: {ended:?}"
    );
    assert!(matches!(
        db.changes(&ChangesQuery::default()),
        Err(Error::DbNotFound { .. })
    ));
    let again = must_create(&s, "s", DbOptions::default()).await;
    assert_ne!(again.incarnation(), before);
    must_put(&again, "new", None, "{}").await;
    let stale = again.changes(&ChangesQuery {
        since: 5,
        ..Default::default()
    });
    assert!(
        matches!(
            stale,
            Err(Error::SinceAhead {
                since: 5,
                update_seq: 1
            })
        ),
        "{stale:?}"
    );
    // The incarnation survives a restart.
    let inc = again.incarnation();
    drop((db, again));
    s.close();
    drop(s);
    let s = must_open(dir.path(), &clock);
    assert_eq!(
        s.db(&store::DbName::new("s").unwrap()).unwrap().incarnation(),
        inc
    );
}
