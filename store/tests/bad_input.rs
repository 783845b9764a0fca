//! Bad input gets a typed error and leaves the store exactly as it was.

mod common;

use common::*;
use store::{
    AllDocsQuery, ChangesQuery, Database, DbName, DbOptions, DocId, DocInput, Edit, Error, LocalId,
    Replicated, Rev,
};

fn snapshot(db: &Database) -> (String, String, u64) {
    (
        format!("{:?}", db.all_docs(&AllDocsQuery::default()).unwrap()),
        format!(
            "{:?}",
            db.changes(&ChangesQuery {
                all_leaves: true,
                ..Default::default()
            })
            .unwrap()
        ),
        db.update_seq(),
    )
}

#[tokio::test]
async fn bad_input_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::at(1000);
    let mut opts = options(&clock);
    opts.max_document_size = 4096;
    let store = store::Store::open(dir.path(), opts).unwrap();
    let db = must_create(
        &store,
        "s",
        DbOptions {
            expiry_field: Some("exp".into()),
            ..Default::default()
        },
    )
    .await;
    let r1 = must_put(&db, "keep", None, r#"{"v":1}"#).await;
    let before = snapshot(&db);

    // Invalid names and ids.
    for bad in ["", "Caps", "_private", "9lives", "white space"] {
        assert!(
            matches!(DbName::new(bad), Err(Error::InvalidDbName { .. })),
            "{bad:?}"
        );
    }
    for bad in ["", "_reserved", &"x".repeat(2000)] {
        assert!(matches!(DocId::new(bad), Err(Error::InvalidDocId { .. })));
    }
    assert!(LocalId::new("").is_err());
    // Malformed revisions.
    for bad in ["", "1", "abc", "0-abc", "1-", "-1-a", "1-a b"] {
        assert!(
            matches!(bad.parse::<Rev>(), Err(Error::InvalidRev { .. })),
            "{bad:?}"
        );
    }
    // Non-object bodies and bad special members.
    for bad in [
        &b"[1,2]"[..],
        b"42",
        b"\"s\"",
        b"null",
        b"{\"_bogus\":1}",
        b"{not json}",
        b"{\"a\":1",
        // A lone surrogate escape: found by fuzz/fuzz_targets/document_json.rs. Stored,
        // it would be refused by strict readers on every read.
        br#"{"u":"\ude08"}"#,
        br#"{"u":"\ud800x"}"#,
        // A number beyond a double's range: also found by the fuzzer.
        br#"{"n":[0,11111111e81111111111111112]}"#,
        b"{\"n\":1e999}",
        br#"{"f":0.5e3151}"#,
        // serde_json's raw-value marker as a member name, at any depth and escaped: its
        // `Value` would read the object as the member's value. Found by the fuzzer.
        br#"{"$serde_json::private::RawValue":"3"}"#,
        br#"{"a":[{"$serde_json::private::RawValue":"{}"}]}"#,
        br#"{"$serde_json::private::RawValue":"3"}"#,
    ] {
        assert!(matches!(
            DocInput::parse(bad, 4096),
            Err(Error::InvalidDocument { .. })
        ));
    }
    // Oversized documents, through every write path.
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(5000)).into_bytes();
    assert!(matches!(
        DocInput::parse(&big, 4096),
        Err(Error::DocumentTooLarge { .. })
    ));
    let r = db.put(Edit::new(id("big"), None, big.clone())).await;
    assert!(
        matches!(
            r,
            Err(Error::DocumentTooLarge {
                size: 5010,
                limit: 4096
            })
        ),
        "{r:?}"
    );
    let r = db.put(Edit::new(id("keep"), Some(r1.clone()), big.clone())).await;
    assert!(matches!(r, Err(Error::DocumentTooLarge { .. })));
    let r = db
        .merge(vec![Replicated {
            id: id("big"),
            path: vec![rev("1-a")],
            deleted: false,
            body: big.clone(),
        }])
        .await;
    assert!(matches!(r[0], Err(Error::DocumentTooLarge { .. })));
    assert!(matches!(
        db.put_local(&LocalId::new("l").unwrap(), 0, big).await,
        Err(Error::DocumentTooLarge { .. })
    ));
    // Ready-made bodies that are not canonical (not JSON, not an object, a special
    // member, a lone surrogate), from a peer or a caller: reads splice bodies into their
    // answers, so these would make every read of the document invalid JSON.
    for bad in [
        &b"not json"[..],
        b"[1]",
        br#"{"_id":"x"}"#,
        br#"{"u":"\udc00"}"#,
        b"\xff",
    ] {
        let r = db
            .merge(vec![Replicated {
                id: id("raw"),
                path: vec![rev("1-a")],
                deleted: false,
                body: bad.to_vec(),
            }])
            .await;
        assert!(matches!(r[0], Err(Error::InvalidDocument { .. })), "{r:?}");
        let r = db.put(Edit::new(id("raw"), None, bad.to_vec())).await;
        assert!(matches!(r, Err(Error::InvalidDocument { .. })), "{r:?}");
    }
    // A surrogate pair is fine.
    assert!(DocInput::parse(br#"{"u":"\ud83d\ude00"}"#, 4096).is_ok());
    // Replicated paths with gaps or no revisions.
    let r = db
        .merge(vec![
            Replicated {
                id: id("gap"),
                path: vec![rev("3-c"), rev("1-a")],
                deleted: false,
                body: b"{}".to_vec(),
            },
            Replicated {
                id: id("none"),
                path: vec![],
                deleted: false,
                body: b"{}".to_vec(),
            },
        ])
        .await;
    assert!(
        r.iter().all(|x| matches!(x, Err(Error::InvalidRevisions { .. }))),
        "{r:?}"
    );
    // A bad expiry member.
    let r = db
        .put(Edit::new(id("exp"), None, br#"{"exp":"never"}"#.to_vec()))
        .await;
    assert!(matches!(r, Err(Error::InvalidDocument { .. })));
    // Conflicts: stale and unknown revisions.
    let r = db
        .put(Edit::new(id("keep"), Some(rev("1-nope")), b"{}".to_vec()))
        .await;
    assert!(matches!(r, Err(Error::Conflict { .. })));
    let r = db.put(Edit::new(id("keep"), None, b"{}".to_vec())).await;
    assert!(matches!(r, Err(Error::Conflict { .. })));
    assert!(matches!(
        db.set_revs_limit(0).await,
        Err(Error::InvalidRevisions { .. })
    ));
    assert_eq!(db.info().revs_limit, 100);

    assert_eq!(snapshot(&db), before, "bad input changed the store");

    // In a mixed batch the good edits apply and the bad ones fail alone.
    let results = db
        .update(vec![
            Edit::new(id("new"), None, b"{}".to_vec()),
            Edit::new(id("keep"), Some(rev("1-nope")), b"{}".to_vec()),
            Edit::new(id("exp2"), None, br#"{"exp":[]}"#.to_vec()),
        ])
        .await;
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(Error::Conflict { .. })));
    assert!(matches!(results[2], Err(Error::InvalidDocument { .. })));
    assert_eq!(db.update_seq(), before.2 + 1);
}
