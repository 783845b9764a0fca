//! Model-based property test: random operations against the store and a
//! `BTreeMap` model, with close-and-reopen and compaction mixed in. Every
//! result and, after every step, the whole visible state must match the model.
//! Failures shrink; keep a shrunk case as a plain test below.

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use store::{
    AllDocsQuery, AllDocsRow, ChangesQuery, DbName, DbOptions, Edit, Error, ReadOptions, Rev, Store,
};

#[derive(Clone, Debug)]
enum Op {
    Create {
        key: u8,
        value: u16,
    },
    Update {
        key: u8,
        value: u16,
        stale: bool,
    },
    Delete {
        key: u8,
    },
    Reopen,
    Compact,
    /// Delete the database and create it again under the same name.
    Recreate,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, any::<u16>()).prop_map(|(key, value)| Op::Create { key, value }),
        6 => (0u8..6, any::<u16>(), prop::bool::weighted(0.2))
            .prop_map(|(key, value, stale)| Op::Update { key, value, stale }),
        2 => (0u8..6).prop_map(|key| Op::Delete { key }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Compact),
        1 => Just(Op::Recreate),
    ]
}

#[derive(Clone, Debug)]
struct ModelDoc {
    rev: Rev,
    previous: Option<Rev>,
    body: Vec<u8>,
    deleted: bool,
}

fn key(k: u8) -> String {
    format!("doc-{k}")
}

fn body(v: u16) -> Vec<u8> {
    format!(r#"{{"v":{v}}}"#).into_bytes()
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let clock = TestClock::at(1000);
        let name = DbName::new("model").unwrap();
        let mut store = must_open(dir.path(), &clock);
        let mut db = must_create(
            &store,
            "model",
            DbOptions {
                revs_limit: Some(4),
                ..Default::default()
            },
        )
        .await;
        let mut model: BTreeMap<String, ModelDoc> = BTreeMap::new();
        let bogus: Rev = "1-0000".parse().unwrap();

        for op in ops {
            match op {
                Op::Create { key: k, value } => {
                    let id = key(k);
                    let got = db.put(Edit::new(common::id(&id), None, body(value))).await;
                    match model.get(&id) {
                        Some(m) if !m.deleted => {
                            prop_assert!(matches!(got, Err(Error::Conflict { .. })), "{got:?}");
                        }
                        existing => {
                            let parent = existing.map(|m| m.rev.clone());
                            let want = Rev::for_edit(parent.as_ref(), false, &body(value)).unwrap();
                            prop_assert_eq!(got.as_ref().ok(), Some(&want), "{:?}", got);
                            model.insert(
                                id,
                                ModelDoc {
                                    rev: want,
                                    previous: parent,
                                    body: body(value),
                                    deleted: false,
                                },
                            );
                        }
                    }
                }
                Op::Update { key: k, value, stale } => {
                    let id = key(k);
                    let (parent, ok) = match model.get(&id) {
                        Some(m) if stale => match &m.previous {
                            // Re-sending the edit that made the current revision is an
                            // idempotent retry only if the body matches; a different body is a conflict.
                            Some(p) => (p.clone(), false),
                            None => (bogus.clone(), false),
                        },
                        Some(m) => (m.rev.clone(), true),
                        None => (bogus.clone(), false),
                    };
                    let got = db
                        .put(Edit::new(common::id(&id), Some(parent.clone()), body(value)))
                        .await;
                    let current = model.get(&id).cloned();
                    let is_retry = current.as_ref().is_some_and(|m| {
                        m.previous.as_ref() == Some(&parent) && m.body == body(value) && !m.deleted
                    });
                    if ok {
                        let want = Rev::for_edit(Some(&parent), false, &body(value)).unwrap();
                        prop_assert_eq!(got.as_ref().ok(), Some(&want), "{:?}", got);
                        model.insert(
                            id,
                            ModelDoc {
                                rev: want,
                                previous: Some(parent),
                                body: body(value),
                                deleted: false,
                            },
                        );
                    } else if is_retry {
                        prop_assert_eq!(got.ok(), current.map(|m| m.rev));
                    } else {
                        prop_assert!(matches!(got, Err(Error::Conflict { .. })), "{got:?}");
                    }
                }
                Op::Delete { key: k } => {
                    let id = key(k);
                    match model.get(&id).cloned() {
                        Some(m) if !m.deleted => {
                            let got = db.put(Edit::delete(common::id(&id), m.rev.clone())).await;
                            let want = Rev::for_edit(Some(&m.rev), true, b"{}").unwrap();
                            prop_assert_eq!(got.as_ref().ok(), Some(&want), "{:?}", got);
                            model.insert(
                                id,
                                ModelDoc {
                                    rev: want,
                                    previous: Some(m.rev),
                                    body: b"{}".to_vec(),
                                    deleted: true,
                                },
                            );
                        }
                        _ => {
                            let got = db.put(Edit::delete(common::id(&id), bogus.clone())).await;
                            prop_assert!(matches!(got, Err(Error::Conflict { .. })), "{got:?}");
                        }
                    }
                }
                Op::Reopen => {
                    drop(db);
                    store.close();
                    drop(store);
                    store = must_open(dir.path(), &clock);
                    db = store.db(&name).unwrap();
                }
                Op::Compact => {
                    db.compact().await.unwrap();
                }
                Op::Recreate => {
                    let before = db.incarnation();
                    let seq = db.update_seq();
                    store.delete_db(&name).await.unwrap();
                    // The old handle sees a deleted database, for reads, feeds and writes.
                    let got = db.get(&common::id("doc-0"), &ReadOptions::default());
                    prop_assert!(matches!(got, Err(Error::DbNotFound { .. })), "{got:?}");
                    let feed = db.changes(&ChangesQuery::default());
                    prop_assert!(matches!(feed, Err(Error::DbNotFound { .. })), "{feed:?}");
                    let put = db.put(Edit::new(common::id("doc-0"), None, body(0))).await;
                    prop_assert!(matches!(put, Err(Error::DbNotFound { .. })), "{put:?}");
                    db = must_create(
                        &store,
                        "model",
                        DbOptions {
                            revs_limit: Some(4),
                            ..Default::default()
                        },
                    )
                    .await;
                    prop_assert_ne!(db.incarnation(), before);
                    prop_assert_eq!(db.update_seq(), 0);
                    if seq > 0 {
                        // A position in the old incarnation is refused, not answered empty.
                        let stale = db.changes(&ChangesQuery {
                            since: seq,
                            ..Default::default()
                        });
                        prop_assert!(matches!(stale, Err(Error::SinceAhead { .. })), "{stale:?}");
                    }
                    model.clear();
                }
            }
            check(&store, &db, &model)?;
        }
        Ok(())
    })
}

fn check(
    _store: &Store,
    db: &store::Database,
    model: &BTreeMap<String, ModelDoc>,
) -> Result<(), TestCaseError> {
    for (id, m) in model {
        let got = db.get(&common::id(id), &ReadOptions::default());
        if m.deleted {
            prop_assert!(
                matches!(
                    got,
                    Err(Error::NotFound {
                        reason: "deleted",
                        ..
                    })
                ),
                "{id}: {got:?}"
            );
        } else {
            let doc = got.map_err(|e| TestCaseError::fail(format!("{id}: {e}")))?;
            prop_assert_eq!(&doc.rev, &m.rev);
            prop_assert_eq!(&doc.body, &m.body);
        }
    }
    let listed: Vec<(String, Rev)> = db
        .all_docs(&AllDocsQuery::default())
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            AllDocsRow::Doc { id, rev, .. } => Some((id.to_string(), rev)),
            AllDocsRow::Missing(_) => None,
        })
        .collect();
    let want: Vec<(String, Rev)> = model
        .iter()
        .filter(|(_, m)| !m.deleted)
        .map(|(id, m)| (id.clone(), m.rev.clone()))
        .collect();
    prop_assert_eq!(listed, want);

    let changes = db.changes(&ChangesQuery::default()).unwrap();
    let mut ids: Vec<String> = changes.changes.iter().map(|c| c.id.to_string()).collect();
    prop_assert!(changes.changes.windows(2).all(|w| w[0].seq < w[1].seq));
    ids.sort();
    prop_assert_eq!(
        ids,
        model.keys().cloned().collect::<Vec<_>>(),
        "each document once"
    );
    for c in &changes.changes {
        let m = &model[c.id.as_str()];
        prop_assert_eq!((&c.revs[0], c.deleted), (&m.rev, m.deleted));
    }
    let info = db.info();
    prop_assert_eq!(
        info.doc_count as usize,
        model.values().filter(|m| !m.deleted).count()
    );
    prop_assert_eq!(
        info.doc_del_count as usize,
        model.values().filter(|m| m.deleted).count()
    );
    prop_assert_eq!(info.update_seq, changes.last_seq);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}

#[test]
fn recreated_database_starts_empty_and_survives_reopen() {
    run(vec![
        Op::Create { key: 1, value: 1 },
        Op::Delete { key: 1 },
        Op::Create { key: 2, value: 2 },
        Op::Recreate,
        Op::Create { key: 1, value: 3 },
        Op::Reopen,
        Op::Recreate,
        Op::Reopen,
        Op::Create { key: 1, value: 3 },
        Op::Compact,
    ])
    .unwrap();
}

#[test]
fn delete_then_recreate_then_reopen() {
    run(vec![
        Op::Create { key: 1, value: 1 },
        Op::Delete { key: 1 },
        Op::Create { key: 1, value: 2 },
        Op::Reopen,
        Op::Update {
            key: 1,
            value: 3,
            stale: true,
        },
        Op::Compact,
        Op::Update {
            key: 1,
            value: 4,
            stale: false,
        },
    ])
    .unwrap();
}
