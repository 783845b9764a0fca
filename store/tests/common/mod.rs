//! Helpers shared by the store's integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use store::{
    Clock, Database, DbName, DbOptions, DocId, Durability, Edit, ReadOptions, Rev, Store, StoreOptions,
};

/// A clock tests move by hand.
#[derive(Clone, Default)]
pub struct TestClock(pub Arc<AtomicU64>);

impl TestClock {
    pub fn at(now: u64) -> TestClock {
        TestClock(Arc::new(AtomicU64::new(now)))
    }
    pub fn set(&self, now: u64) {
        self.0.store(now, Ordering::SeqCst);
    }
    pub fn clock(&self) -> Clock {
        let t = self.0.clone();
        Clock::from_fn(move || t.load(Ordering::SeqCst))
    }
}

pub fn options(clock: &TestClock) -> StoreOptions {
    StoreOptions {
        durability: Durability::Buffered,
        sweep_interval: None,
        cache_bytes: 8 << 20,
        clock: clock.clock(),
        ..StoreOptions::default()
    }
}

pub fn must_open(path: &Path, clock: &TestClock) -> Store {
    Store::open(path, options(clock)).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

pub async fn must_create(store: &Store, name: &str, opts: DbOptions) -> Database {
    let name = DbName::new(name).expect("valid test db name");
    store.create_db(&name, opts).await.expect("create db");
    store.db(&name).expect("db just created")
}

pub fn id(s: &str) -> DocId {
    DocId::new(s).expect("valid test doc id")
}

pub fn rev(s: &str) -> Rev {
    s.parse().expect("valid test rev")
}

pub async fn must_put(db: &Database, doc: &str, parent: Option<&Rev>, body: &str) -> Rev {
    db.put(Edit::new(id(doc), parent.cloned(), body.as_bytes().to_vec()))
        .await
        .unwrap_or_else(|e| panic!("put {doc}: {e}"))
}

/// Read options for one specific revision.
pub fn at_rev(rev: Rev) -> ReadOptions {
    ReadOptions {
        rev: Some(rev),
        ..Default::default()
    }
}
