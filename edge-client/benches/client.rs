//! The edge-client's read paths: a cache hit beside a bare moka get (the
//! ratio is our overhead), and a miss served by a local spoke over gRPC (a
//! real in-process node on 127.0.0.1). Run: `cargo bench --workspace --bench client`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use edge_client::Client;
use server::{Node, ServerConfig};
use store::{DbName, DbOptions, DocId, Edit, Store, StoreOptions};

const KEYS: usize = 100_000;

type Key = (Arc<str>, Arc<str>);

/// The client's cache entry, in shape: a shared session, when it was fetched, and
/// what vouches for it.
#[derive(Clone)]
struct BareEntry {
    session: Arc<Vec<u8>>,
    fetched: Instant,
    _vouch: Option<(u64, u64)>,
}

/// A per-entry lifetime, as the client's cache has.
struct BareExpiry;

impl moka::Expiry<Key, BareEntry> for BareExpiry {
    fn expire_after_create(&self, _: &Key, v: &BareEntry, _: Instant) -> Option<Duration> {
        Some(Duration::from_secs(600).saturating_sub(v.fetched.elapsed()))
    }
}

/// The client's cache without the client: same key and value shapes, weigher,
/// per-entry expiry and invalidation closures (`Client::from_builder`).
type BareCache = moka::future::Cache<Key, BareEntry>;

fn body(i: usize) -> Vec<u8> {
    format!(r#"{{"user":"u{i}","pad":"{}"}}"#, "x".repeat(1000)).into_bytes()
}

fn all(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (node, client, bare) = rt.block_on(async {
        let store = Store::open(
            dir.path(),
            StoreOptions {
                sweep_interval: None,
                ..StoreOptions::default()
            },
        )
        .unwrap();
        let name = DbName::new("sessions").unwrap();
        store.create_db(&name, DbOptions::default()).await.unwrap();
        let db = store.db(&name).unwrap();
        for chunk in (0..KEYS).collect::<Vec<_>>().chunks(1000) {
            let edits = chunk
                .iter()
                .map(|&i| Edit::new(DocId::new(&format!("s{i}")).unwrap(), None, body(i)))
                .collect();
            for r in db.update(edits).await {
                r.unwrap();
            }
        }
        let cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap(), "127.0.0.1:0".parse().unwrap());
        let node = Node::start(store, cfg).await.unwrap();
        let client = Client::builder()
            .local("spoke", format!("http://{}", node.grpc_addr))
            .deadline(Duration::from_secs(1))
            .cache_bytes(64 << 20)
            .build()
            .unwrap();
        let bare: BareCache = moka::future::Cache::builder()
            .max_capacity(64 << 20)
            .weigher(|k: &Key, v: &BareEntry| (k.0.len() + k.1.len() + v.session.len() + 96) as u32)
            .expire_after(BareExpiry)
            .support_invalidation_closures()
            .build();
        (node, client, bare)
    });
    // Warm: one key in both caches.
    rt.block_on(async {
        client.get("sessions", "s1").await.unwrap().unwrap();
        let entry = BareEntry {
            session: Arc::new(body(1)),
            fetched: Instant::now(),
            _vouch: None,
        };
        bare.insert((Arc::from("sessions"), Arc::from("s1")), entry).await;
    });

    let mut g = c.benchmark_group("edge_read");
    g.bench_function("client_cache_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { client.get("sessions", "s1").await.unwrap() })
    });
    let key: Key = (Arc::from("sessions"), Arc::from("s1"));
    g.bench_function("bare_moka_get", |b| {
        b.to_async(&rt).iter(|| async { bare.get(&key).await.unwrap() })
    });
    let _in_runtime = rt.enter();
    let miss_client = Client::builder()
        .local("spoke", format!("http://{}", node.grpc_addr))
        .deadline(Duration::from_secs(1))
        .cache_bytes(64 << 10)
        .build()
        .unwrap();
    let mut i = 0usize;
    g.bench_function("client_miss_local_spoke", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 7919) % KEYS;
            let id = format!("s{i}");
            let c = miss_client.clone();
            async move { c.get("sessions", &id).await.unwrap().unwrap() }
        })
    });
    g.finish();
    // Criterion reports a central estimate; the miss path's tail needs percentiles.
    let mut lat: Vec<Duration> = rt.block_on(async {
        let mut out = Vec::with_capacity(5000);
        for n in 0..5000usize {
            let id = format!("s{}", (n * 104_729 + 13) % KEYS);
            let t = std::time::Instant::now();
            miss_client.get("sessions", &id).await.unwrap().unwrap();
            out.push(t.elapsed());
        }
        out
    });
    lat.sort();
    let pct = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "edge_read/client_miss_local_spoke percentiles over 5000 misses: p50 {:?} p99 {:?} p99.9 {:?}",
        pct(0.5),
        pct(0.99),
        pct(0.999)
    );
    rt.block_on(node.shutdown());
}

criterion_group!(benches, all);
criterion_main!(benches);
