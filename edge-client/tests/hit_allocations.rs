//! A cache hit allocates nothing beyond what moka itself does. A counting global
//! allocator counts the test thread's allocations while it reads a session, cached
//! from a real node (store and gRPC server in this process), thousands of times. The
//! client's background tasks run on the runtime's worker thread and are not counted;
//! a bare moka cache, counted the same way, is the floor.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_client::{Client, Source};
use server::{Node, ServerConfig};
use store::{DbName, DbOptions, DocId, Edit, Store, StoreOptions};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by this thread while `f` runs.
fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

const HITS: usize = 10_000;

#[test]
fn a_cache_hit_allocates_nothing() {
    // block_on polls on this thread; spawned tasks (watch stream, probes, the
    // node) run on the one worker.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_node, client) = rt.block_on(async {
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let name = DbName::new("sessions").unwrap();
        store.create_db(&name, DbOptions::default()).await.unwrap();
        let db = store.db(&name).unwrap();
        let edit = Edit::new(DocId::new("s1").unwrap(), None, br#"{"user":"ada"}"#.to_vec());
        for r in db.update(vec![edit]).await {
            r.unwrap();
        }
        let cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap(), "127.0.0.1:0".parse().unwrap());
        let node = Node::start(store, cfg).await.unwrap();
        let client = Client::builder()
            .local("spoke", format!("http://{}", node.grpc_addr))
            .max_staleness(Duration::from_secs(600))
            .build()
            .unwrap();
        client.watch("sessions");
        let started = Instant::now();
        while !client.watch_connected("sessions") {
            assert!(started.elapsed() < Duration::from_secs(10), "the watch stream");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (node, client)
    });
    let read = || rt.block_on(client.get_traced("sessions", "s1")).unwrap();
    let (first, served) = read();
    assert_eq!(first.map(|s| s.rev().starts_with("1-")), Some(true));
    assert!(matches!(served.source, Source::Target(_)), "{served:?}");
    // Warm: the runtime's and the cache's per-thread state.
    for _ in 0..100 {
        read();
    }

    let mut from_cache = 0;
    let client_hits = allocations_in(|| {
        for _ in 0..HITS {
            let (s, served) = read();
            from_cache += usize::from(served.source == Source::Cache && s.is_some());
        }
    });
    assert_eq!(from_cache, HITS, "every read a cache hit");

    type Bare = moka::future::Cache<(Arc<str>, Arc<str>), Arc<Vec<u8>>>;
    let bare: Bare = moka::future::Cache::builder()
        .max_capacity(64 << 20)
        .weigher(|_, v: &Arc<Vec<u8>>| v.len() as u32)
        .support_invalidation_closures()
        .build();
    let key = (Arc::<str>::from("sessions"), Arc::<str>::from("s1"));
    rt.block_on(bare.insert(key.clone(), Arc::new(vec![0; 1024])));
    for _ in 0..100 {
        rt.block_on(bare.get(&key)).unwrap();
    }
    let bare_hits = allocations_in(|| {
        for _ in 0..HITS {
            rt.block_on(bare.get(&key)).unwrap();
        }
    });
    let nothing = allocations_in(|| {
        for _ in 0..HITS {
            rt.block_on(async {});
        }
    });
    eprintln!(
        "allocations in {HITS} hits: client {client_hits}, bare moka {bare_hits}, empty block_on {nothing}"
    );
    // moka's own bookkeeping allocates now and then (a batch of recorded reads
    // drained every so often: ~0.08 per get here, the same for both); the client's
    // part of the hit path allocates nothing (it made four allocations per hit
    // before: two for the key, two copying the session out).
    assert_eq!(nothing, 0, "block_on itself allocates");
    assert!(
        client_hits <= bare_hits + (HITS / 100) as u64,
        "the client allocated on the hit path: {client_hits} allocations in {HITS} hits, bare moka {bare_hits}"
    );
}
