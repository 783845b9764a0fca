//! The store beside raw RocksDB opened with the same options, in the same run,
//! so that the store's overhead reads as a ratio. Run with `cargo bench -p store`;
//! `STORE_BENCH_DOCS=1000000` for a million sessions. Both are flushed to SST files
//! before reading, where a long-running node has its data.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rocksdb::{ColumnFamilyDescriptor, WriteBatch, WriteOptions, DB};
use store::{ChangesQuery, DbName, DbOptions, DocId, Durability, Edit, ReadOptions, Store, StoreOptions};

/// Sessions loaded (`STORE_BENCH_DOCS`, default 10,000).
fn docs() -> usize {
    std::env::var("STORE_BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// The changes benchmark reads this many.
const CHANGES: usize = 10_000;
const CACHE: usize = 64 << 20;

fn body(i: usize) -> Vec<u8> {
    // A ~1 KB session.
    format!(
        r#"{{"user":"u{i}","roles":["a","b"],"pad":"{}"}}"#,
        "x".repeat(960)
    )
    .into_bytes()
}

fn key(i: usize) -> String {
    format!("session-{i:08}")
}

struct Fixture {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    store: Store,
    db: store::Database,
    raw: Arc<DB>,
    _raw_dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        durability: Durability::Sync,
        sweep_interval: None,
        cache_bytes: CACHE,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    let name = DbName::new("bench").unwrap();
    let db = rt.block_on(async {
        store.create_db(&name, DbOptions::default()).await.unwrap();
        let db = store.db(&name).unwrap();
        for chunk in (0..docs()).collect::<Vec<_>>().chunks(500) {
            let edits = chunk
                .iter()
                .map(|&i| Edit::new(DocId::new(&key(i)).unwrap(), None, body(i)))
                .collect();
            for r in db.update(edits).await {
                r.unwrap();
            }
        }
        db
    });
    let raw_dir = tempfile::tempdir().unwrap();
    let raw_opts = store::engine_options(CACHE);
    let raw = DB::open_cf_descriptors(
        &raw_opts,
        raw_dir.path(),
        [ColumnFamilyDescriptor::new("docs", raw_opts.clone())],
    )
    .unwrap();
    {
        let cf = raw.cf_handle("docs").unwrap();
        for chunk in (0..docs()).collect::<Vec<_>>().chunks(10_000) {
            let mut wb = WriteBatch::default();
            for &i in chunk {
                wb.put_cf(cf, key(i), body(i));
            }
            raw.write(wb).unwrap();
        }
        raw.flush_cf(cf).unwrap();
    }
    store.flush().unwrap();
    Fixture {
        _dir: dir,
        rt,
        store,
        db,
        raw: Arc::new(raw),
        _raw_dir: raw_dir,
    }
}

fn reads(c: &mut Criterion, f: &Fixture) {
    let n = docs();
    let mut g = c.benchmark_group(format!("read_winner_{n}"));
    let mut i = 0usize;
    let ro = ReadOptions::default();
    // The raw reads reuse one native ReadOptions, as the store does.
    let raw_ro = rocksdb::ReadOptions::default();
    g.bench_function("store_hit", |b| {
        b.iter(|| {
            i = (i + 7919) % n;
            f.db.get(&DocId::new(&key(i)).unwrap(), &ro).unwrap()
        })
    });
    let cf = f.raw.cf_handle("docs").unwrap();
    g.bench_function("rocksdb_hit", |b| {
        b.iter(|| {
            i = (i + 7919) % n;
            f.raw
                .get_pinned_cf_opt(cf, key(i), &raw_ro)
                .unwrap()
                .unwrap()
                .to_vec()
        })
    });
    g.bench_function("store_miss", |b| {
        b.iter(|| {
            i = (i + 7919) % n;
            f.db.get(&DocId::new(&format!("absent-{i}")).unwrap(), &ro)
                .unwrap_err()
        })
    });
    g.bench_function("rocksdb_miss", |b| {
        b.iter(|| {
            i = (i + 7919) % n;
            f.raw
                .get_pinned_cf_opt(cf, format!("absent-{i}"), &raw_ro)
                .unwrap()
                .is_none()
        })
    });
    g.finish();
}

fn writes(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("durable_write");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    let mut n = 0usize;
    g.bench_function("store_1_writer", |b| {
        b.iter(|| {
            n += 1;
            let edit = Edit::new(DocId::new(&format!("w1-{n}")).unwrap(), None, body(n));
            f.rt.block_on(f.db.put(edit)).unwrap()
        })
    });
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    let cf = f.raw.cf_handle("docs").unwrap();
    g.bench_function("rocksdb_1_writer", |b| {
        b.iter(|| {
            n += 1;
            let mut wb = WriteBatch::default();
            wb.put_cf(cf, format!("w1-{n}"), body(n));
            f.raw.write_opt(wb, &sync).unwrap()
        })
    });
    // 64 concurrent writers: one iteration is 64 writes issued at once.
    g.bench_function("store_64_writers", |b| {
        b.iter_batched(
            || {
                n += 64;
                (0..64)
                    .map(|k| Edit::new(DocId::new(&format!("w64-{}", n + k)).unwrap(), None, body(k)))
                    .collect::<Vec<_>>()
            },
            |edits| {
                f.rt.block_on(async {
                    let tasks: Vec<_> = edits
                        .into_iter()
                        .map(|e| {
                            let db = f.db.clone();
                            tokio::spawn(async move { db.put(e).await.unwrap() })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                })
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("rocksdb_64_writers", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                n += 64;
                let base = n;
                f.rt.block_on(async {
                    let tasks: Vec<_> = (0..64)
                        .map(|k| {
                            let raw = f.raw.clone();
                            tokio::task::spawn_blocking(move || {
                                let mut sync = WriteOptions::default();
                                sync.set_sync(true);
                                let mut wb = WriteBatch::default();
                                wb.put_cf(
                                    raw.cf_handle("docs").unwrap(),
                                    format!("w64-{}", base + k),
                                    body(k),
                                );
                                raw.write_opt(wb, &sync).unwrap()
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                });
            }
            start.elapsed()
        })
    });
    g.finish();
}

fn changes(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("changes_10k");
    g.sample_size(20);
    g.bench_function("store", |b| {
        b.iter(|| {
            let page =
                f.db.changes(&ChangesQuery {
                    limit: Some(CHANGES),
                    ..Default::default()
                })
                .unwrap();
            assert!(page.changes.len() >= CHANGES);
            page.last_seq
        })
    });
    let cf = f.raw.cf_handle("docs").unwrap();
    g.bench_function("rocksdb_scan", |b| {
        b.iter(|| {
            let mut n = 0;
            for item in f.raw.iterator_cf(cf, rocksdb::IteratorMode::Start).take(CHANGES) {
                let (k, v) = item.unwrap();
                n += k.len() + v.len();
            }
            n
        })
    });
    g.finish();
}

fn all(c: &mut Criterion) {
    let f = fixture();
    reads(c, &f);
    writes(c, &f);
    changes(c, &f);
    f.store.close();
}

criterion_group!(benches, all);
criterion_main!(benches);
