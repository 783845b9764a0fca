//! Convergence: the same revision paths, applied to two stores in different
//! orders and with duplicates, give identical trees, winners and conflicts.

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use store::{ChangesQuery, Database, DbOptions, OpenRev, OpenRevs, ReadOptions, Replicated, Rev};

/// A random revision tree of one document, as the list of every node's path.
fn doc_paths(doc: u8) -> impl Strategy<Value = Vec<Replicated>> {
    // Each edit picks a parent among the nodes so far (or none: a new root).
    prop::collection::vec(
        (any::<prop::sample::Index>(), any::<bool>(), 0u8..4, 0u16..1000),
        1..14,
    )
    .prop_map(move |edits| {
        let mut nodes: Vec<(Vec<Rev>, bool)> = Vec::new();
        let mut out = Vec::new();
        for (i, (parent, deleted, truncate, v)) in edits.into_iter().enumerate() {
            let parent_path = if nodes.is_empty() || i % 7 == 6 {
                Vec::new()
            } else {
                nodes[parent.index(nodes.len())].0.clone()
            };
            let gen = parent_path.first().map_or(1, |r| r.generation() + 1);
            let rev: Rev = format!("{gen}-{:04x}{:02x}{doc:02x}", v, i).parse().unwrap();
            let mut path = vec![rev];
            path.extend(parent_path);
            nodes.push((path.clone(), deleted));
            // Peers may send shortened histories.
            let keep = (path.len() - usize::from(truncate).min(path.len() - 1)).max(1);
            path.truncate(keep);
            out.push(Replicated {
                id: id(&format!("d{doc}")),
                path,
                deleted,
                body: format!(r#"{{"doc":{doc},"v":{v}}}"#).into_bytes(),
            });
        }
        out
    })
}

fn workload() -> impl Strategy<Value = (Vec<Replicated>, Vec<usize>, Vec<usize>)> {
    prop::collection::vec(doc_paths(0), 1..4)
        .prop_map(|docs| {
            docs.into_iter()
                .enumerate()
                .flat_map(|(d, mut paths)| {
                    for p in &mut paths {
                        p.id = id(&format!("d{d}"));
                    }
                    paths
                })
                .collect::<Vec<_>>()
        })
        .prop_flat_map(|all| {
            let n = all.len();
            let order = prop::collection::vec(0..n, n..n * 2).prop_map(move |mut extra| {
                // Every path at least once, plus duplicates.
                extra.extend(0..n);
                extra
            });
            (Just(all), order.clone().prop_shuffle(), order.prop_shuffle())
        })
}

#[derive(Debug, PartialEq, Eq)]
struct DocState {
    winner: Option<(Rev, bool)>,
    conflicts: Vec<Rev>,
    deleted_conflicts: Vec<Rev>,
    leaves: BTreeMap<Rev, (bool, Vec<Rev>)>,
}

fn state(db: &Database, doc: &str) -> DocState {
    let opts = ReadOptions {
        conflicts: true,
        ..Default::default()
    };
    let (winner, conflicts, deleted_conflicts) = match db.get(&id(doc), &opts) {
        Ok(d) => (
            Some((d.rev, d.deleted)),
            d.conflicts.unwrap(),
            d.deleted_conflicts.unwrap(),
        ),
        Err(_) => (None, vec![], vec![]),
    };
    let leaves = match db.open_revs(&id(doc), &OpenRevs::All, false, true) {
        Ok(list) => list
            .into_iter()
            .filter_map(|r| match r {
                OpenRev::Ok(d) => Some((d.rev, (d.deleted, d.revisions.unwrap()))),
                OpenRev::Missing(_) => None,
            })
            .collect(),
        Err(_) => BTreeMap::new(),
    };
    DocState {
        winner,
        conflicts,
        deleted_conflicts,
        leaves,
    }
}

fn run(
    all: Vec<Replicated>,
    order_a: Vec<usize>,
    order_b: Vec<usize>,
    revs_limit: u32,
) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (da, db_) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let clock = TestClock::at(1000);
        let (sa, sb) = (must_open(da.path(), &clock), must_open(db_.path(), &clock));
        let opts = DbOptions {
            revs_limit: Some(revs_limit),
            ..Default::default()
        };
        let a = must_create(&sa, "c", opts.clone()).await;
        let b = must_create(&sb, "c", opts).await;
        // A applies one at a time; B in batches, to cover in-batch overlays.
        for &i in &order_a {
            let r = a.merge(vec![all[i].clone()]).await;
            prop_assert!(r[0].is_ok(), "{:?}", r);
        }
        for chunk in order_b.chunks(3) {
            let r = b.merge(chunk.iter().map(|&i| all[i].clone()).collect()).await;
            prop_assert!(r.iter().all(|x| x.is_ok()), "{:?}", r);
        }
        let mut docs: Vec<String> = all.iter().map(|p| p.id.to_string()).collect();
        docs.sort();
        docs.dedup();
        for doc in &docs {
            let (x, y) = (state(&a, doc), state(&b, doc));
            prop_assert!(x.winner.is_some() || x.leaves.values().all(|(d, _)| *d));
            prop_assert_eq!(x, y, "document {}", doc);
        }
        let changes = |db: &Database| -> Vec<(String, Vec<Rev>, bool)> {
            let mut c: Vec<_> = db
                .changes(&ChangesQuery {
                    all_leaves: true,
                    ..Default::default()
                })
                .unwrap()
                .changes
                .into_iter()
                .map(|c| (c.id.to_string(), c.revs, c.deleted))
                .collect();
            c.sort();
            c
        };
        prop_assert_eq!(changes(&a), changes(&b));
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_order_converges((all, a, b) in workload()) {
        run(all, a, b, 1000)?;
    }

    #[test]
    fn any_order_converges_with_stemming((all, a, b) in workload()) {
        run(all, a, b, 3)?;
    }
}
