//! How a store is opened and how a database is configured.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// When a write is acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// After the write-ahead log is synced to disk (group-committed). The default.
    #[default]
    Sync,
    /// After the write reaches the OS; survives a process crash, not a power cut.
    /// For tests and benchmarks only.
    Buffered,
}

/// The store's source of "now", in unix seconds. Tests substitute their own.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        }))
    }

    /// A clock reading `f`.
    pub fn from_fn(f: impl Fn() -> u64 + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }

    /// Now, in unix seconds.
    pub fn now(&self) -> u64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock(now={})", self.now())
    }
}

/// Options for [`crate::Store::open`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// When writes are acknowledged.
    pub durability: Durability,
    /// Largest document accepted, in bytes of JSON as received.
    pub max_document_size: usize,
    /// `revs_limit` of databases created without one.
    pub default_revs_limit: u32,
    /// How often the sweeper purges expired sessions; `None` disables it.
    pub sweep_interval: Option<Duration>,
    /// RocksDB's memory bound in bytes: the block cache, which the memtables
    /// (at most a quarter of it) are charged to.
    pub cache_bytes: usize,
    /// The clock deciding expiry.
    pub clock: Clock,
    /// Free bytes the data directory's filesystem must keep: writes are refused
    /// (deletions only under half of it) rather than fill the disk. 0 disables it.
    pub min_free_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            durability: Durability::Sync,
            max_document_size: 1 << 20,
            default_revs_limit: 100,
            sweep_interval: Some(Duration::from_secs(60)),
            cache_bytes: 256 << 20,
            clock: Clock::system(),
            min_free_bytes: 64 << 20,
        }
    }
}

/// Options of one database, fixed at creation (`revs_limit` can change later).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DbOptions {
    /// How many revisions of each branch to keep; the store default if `None`.
    pub revs_limit: Option<u32>,
    /// A top-level body member holding the session's expiry time (unix seconds).
    pub expiry_field: Option<String>,
}
