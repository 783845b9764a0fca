//! Convergence: the same revision paths, applied to two stores in different
//! orders and with duplicates, give identical trees, winners and conflicts —
//! and, with expiry, the same visible state at every time, whatever the times
//! at which each store received each path.

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

/// Gives every path's body an expiry time (or none) between 1000 and 1200.
fn with_expiry(all: Vec<Replicated>, exps: &[Option<u16>]) -> Vec<Replicated> {
    all.into_iter()
        .zip(exps.iter().cycle())
        .map(|(mut r, exp)| {
            if let Some(e) = exp {
                let text = String::from_utf8(r.body).unwrap();
                r.body =
                    format!(r#"{},"exp":{}}}"#, &text[..text.len() - 1], 1000 + u64::from(*e)).into_bytes();
            }
            r
        })
        .collect()
}

/// Everything a reader can see of one document at the store's current time.
fn visible(db: &Database, doc: &str) -> (DocState, Result<Vec<u8>, String>) {
    let body = db
        .get(&id(doc), &ReadOptions::default())
        .map(|d| d.body)
        .map_err(|e| e.to_string());
    (state(db, doc), body)
}

fn run_expiring(
    all: Vec<Replicated>,
    (order_a, times_a): (Vec<usize>, Vec<u16>),
    (order_b, times_b): (Vec<usize>, Vec<u16>),
    checks: Vec<u16>,
    revs_limit: u32,
) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (da, db_) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (ca, cb) = (TestClock::at(1000), TestClock::at(1000));
        let (sa, sb) = (must_open(da.path(), &ca), must_open(db_.path(), &cb));
        let opts = DbOptions {
            revs_limit: Some(revs_limit),
            expiry_field: Some("exp".into()),
        };
        let a = must_create(&sa, "c", opts.clone()).await;
        let b = must_create(&sb, "c", opts).await;
        // Each store receives each path at its own random, increasing time.
        for (db, clock, order, times) in [(&a, &ca, &order_a, &times_a), (&b, &cb, &order_b, &times_b)] {
            let mut now = 1000u64;
            for (&i, &dt) in order.iter().zip(times.iter().cycle()) {
                now += u64::from(dt);
                clock.set(now);
                let r = db.merge(vec![all[i].clone()]).await;
                prop_assert!(r[0].is_ok(), "{:?}", r);
            }
        }
        let arrived =
            ca.0.load(std::sync::atomic::Ordering::SeqCst)
                .max(cb.0.load(std::sync::atomic::Ordering::SeqCst));
        let mut docs: Vec<String> = all.iter().map(|p| p.id.to_string()).collect();
        docs.sort();
        docs.dedup();
        let mut times: Vec<u64> = checks.iter().map(|c| arrived + u64::from(*c)).collect();
        times.sort();
        for t in times {
            ca.set(t);
            cb.set(t);
            for doc in &docs {
                prop_assert_eq!(visible(&a, doc), visible(&b, doc), "document {} at {}", doc, t);
                // No store reports a revision it was sent as missing.
                let sent: Vec<Rev> = all
                    .iter()
                    .filter(|p| p.id.as_str() == doc)
                    .map(|p| p.path[0].clone())
                    .collect();
                for db in [&a, &b] {
                    let diff = db.revs_diff(&id(doc), &sent).unwrap();
                    prop_assert!(diff.missing.is_empty(), "{} at {}: {:?}", doc, t, diff);
                }
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
            prop_assert_eq!(changes(&a), changes(&b), "changes at {}", t);
        }
        Ok(())
    })
}

/// One store's arrival order and arrival times.
type Arrivals = (Vec<usize>, Vec<u16>);

/// Revisions with expiry times, two stores' arrivals, and the times to compare them at.
type ExpiringWorkload = (Vec<Replicated>, Arrivals, Arrivals, Vec<u16>);

fn expiring_workload() -> impl Strategy<Value = ExpiringWorkload> {
    (
        workload(),
        prop::collection::vec(prop::option::weighted(0.8, 0u16..200), 1..8),
        prop::collection::vec(0u16..30, 1..20),
        prop::collection::vec(0u16..30, 1..20),
        prop::collection::vec(0u16..250, 1..6),
    )
        .prop_map(|((all, a, b), exps, ta, tb, checks)| (with_expiry(all, &exps), (a, ta), (b, tb), checks))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn with_expiry_any_order_and_arrival_times_converge((all, a, b, checks) in expiring_workload()) {
        run_expiring(all, a, b, checks, 1000)?;
    }

    #[test]
    fn with_expiry_and_stemming_any_order_and_arrival_times_converge((all, a, b, checks) in expiring_workload()) {
        run_expiring(all, a, b, checks, 3)?;
    }

    #[test]
    fn any_order_converges((all, a, b) in workload()) {
        run(all, a, b, 1000)?;
    }

    #[test]
    fn any_order_converges_with_stemming((all, a, b) in workload()) {
        run(all, a, b, 3)?;
    }
}
