//! Opening and closing a store, and its catalogue of databases.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

use rocksdb::{ColumnFamily, IteratorMode, WriteBatch, WriteOptions, DB};
use tokio::sync::{mpsc, oneshot};

use crate::database::Database;
use crate::db_state::DbState;
use crate::engine;
use crate::error::{Error, Result};
use crate::keys::{self, CF_META};
use crate::names::DbName;
use crate::options::{DbOptions, StoreOptions};
use crate::records::{self, DbRecord, DbStats, FORMAT_VERSION};
use crate::sweeper::Sweeper;
use crate::writer::{self, Command};

/// How many write requests may queue for the writer before callers wait.
const WRITE_QUEUE: usize = 4096;

pub(crate) struct Inner {
    pub db: DB,
    pub path: PathBuf,
    pub opts: StoreOptions,
    pub uuid: String,
    pub next_db_id: AtomicU64,
    dbs: RwLock<HashMap<String, Arc<DbState>>>,
    pub tx: mpsc::Sender<Command>,
    write_opts: WriteOptions,
    /// Read options for point reads, made once: `get_cf` without options creates
    /// and frees a native `ReadOptions` on every call.
    pub point_read: rocksdb::ReadOptions,
    /// Free space on the data directory, checked before every write.
    pub space: Arc<crate::space::Space>,
}

impl Inner {
    pub fn cf(&self, name: &str) -> &ColumnFamily {
        // The column families are created at open; a missing one is a bug here.
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| panic!("column family {name} opened at start"))
    }

    pub fn dbs_read(&self) -> RwLockReadGuard<'_, HashMap<String, Arc<DbState>>> {
        self.dbs.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn dbs_write(&self) -> RwLockWriteGuard<'_, HashMap<String, Arc<DbState>>> {
        self.dbs.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self, wb: WriteBatch) -> Result<()> {
        self.db.write_opt(wb, &self.write_opts)?;
        Ok(())
    }

    /// Sends a command to the writer and waits for its reply.
    pub async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// The same, from a thread outside any async runtime.
    pub fn call_blocking<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.blocking_send(make(tx)).map_err(|_| Error::Closed)?;
        rx.blocking_recv().map_err(|_| Error::Closed)
    }
}

/// An open store: a RocksDB directory holding any number of databases.
///
/// Cloning is cheap and shares the store. The store closes (finishing queued
/// writes) when the last clone is dropped or [`Store::close`] is called.
///
/// ```no_run
/// # async fn demo() -> Result<(), store::Error> {
/// use store::{DbName, DbOptions, DocId, Edit, Store, StoreOptions};
/// let store = Store::open("/var/lib/sessionfleet", StoreOptions::default())?;
/// let name = DbName::new("sessions")?;
/// store.create_db(&name, DbOptions::default()).await?;
/// let db = store.db(&name)?;
/// let rev = db.put(Edit::new(DocId::new("s1")?, None, br#"{"user":"ada"}"#.to_vec())).await?;
/// let doc = db.get(&DocId::new("s1")?, &Default::default())?;
/// assert_eq!(doc.rev, rev);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    threads: Arc<Threads>,
}

struct Threads {
    inner: Arc<Inner>,
    writer: Mutex<Option<JoinHandle<()>>>,
    sweeper: Mutex<Option<Sweeper>>,
}

impl Threads {
    fn stop(&self) {
        if let Some(s) = self.sweeper.lock().unwrap_or_else(|e| e.into_inner()).take() {
            s.stop();
        }
        if let Some(w) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            // Sent from a plain thread: blocking_send refuses to run inside an async
            // runtime, and close() may be called (or the store dropped) from one.
            let tx = self.inner.tx.clone();
            let sent = std::thread::spawn(move || tx.blocking_send(Command::Shutdown)).join();
            if !matches!(sent, Ok(Ok(()))) {
                tracing::error!("could not ask the store writer to stop");
            }
            if w.join().is_err() {
                tracing::error!("store writer thread panicked");
            }
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Store {
    /// Opens (creating if needed) the store in `path`. Fails with
    /// [`Error::Locked`] if another process has it open.
    pub fn open(path: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        let path = path.as_ref().to_owned();
        std::fs::create_dir_all(&path)
            .map_err(|e| Error::Engine(format!("creating {}: {e}", path.display())))?;
        let db = engine::open(&path, opts.cache_bytes)?;
        let meta = db
            .cf_handle(CF_META)
            .ok_or_else(|| Error::Engine("meta column family missing".into()))?;
        let format = match db.get_cf(meta, keys::META_FORMAT)? {
            None => None,
            Some(v) => Some(u32::from_be_bytes(v.as_slice().try_into().map_err(|_| {
                Error::Corrupt {
                    what: "format version",
                    reason: "not 4 bytes".into(),
                }
            })?)),
        };
        let uuid = match (format, db.get_cf(meta, keys::META_UUID)?) {
            (Some(found), _) if found > FORMAT_VERSION => {
                return Err(Error::UnsupportedFormat {
                    path,
                    found,
                    supported: FORMAT_VERSION,
                })
            }
            (Some(_), Some(uuid)) => String::from_utf8_lossy(&uuid).into_owned(),
            _ => {
                let uuid = new_uuid(&path);
                let mut wb = WriteBatch::default();
                wb.put_cf(meta, keys::META_FORMAT, FORMAT_VERSION.to_be_bytes());
                wb.put_cf(meta, keys::META_UUID, uuid.as_bytes());
                let mut wo = WriteOptions::default();
                wo.set_sync(true);
                db.write_opt(wb, &wo)?;
                uuid
            }
        };
        let (dbs, next_id) = load_catalogue(&db, meta)?;
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let space = crate::space::Space::watch(&path, opts.min_free_bytes);
        let inner = Arc::new(Inner {
            space,
            db,
            path,
            write_opts: writer::write_options(opts.durability),
            point_read: rocksdb::ReadOptions::default(),
            opts,
            uuid,
            next_db_id: AtomicU64::new(next_id),
            dbs: RwLock::new(dbs),
            tx,
        });
        let writer = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || writer::run(inner, rx))
                .map_err(|e| Error::Engine(format!("spawning writer thread: {e}")))?
        };
        let sweeper = inner
            .opts
            .sweep_interval
            .map(|every| Sweeper::start(inner.clone(), every))
            .transpose()?;
        tracing::info!(path = %inner.path.display(), databases = inner.dbs_read().len(), "store open");
        Ok(Store {
            threads: Arc::new(Threads {
                inner: inner.clone(),
                writer: Mutex::new(Some(writer)),
                sweeper: Mutex::new(sweeper),
            }),
            inner,
        })
    }

    /// Stops the sweeper, lets the writer finish what is queued, and stops it.
    /// Later writes through any handle fail with [`Error::Closed`]. Blocks until
    /// the writer has stopped.
    pub fn close(&self) {
        self.threads.stop();
    }

    /// [`Store::close`] from async code, off the runtime's workers; false if the
    /// writer had not stopped within `limit`.
    pub async fn close_within(&self, limit: std::time::Duration) -> bool {
        let store = self.clone();
        let closing = tokio::task::spawn_blocking(move || store.close());
        tokio::time::timeout(limit, closing).await.is_ok()
    }

    /// Writes every column family's memtable out to SST files and waits. Writes
    /// are durable without it (the WAL); it puts data where a long-running node
    /// has it, so benchmarks read from SST files rather than memtables.
    pub fn flush(&self) -> Result<()> {
        for name in keys::ALL_CFS {
            self.inner.db.flush_cf(self.inner.cf(name))?;
        }
        Ok(())
    }

    /// This store's unique id, created with it and stable across restarts.
    pub fn uuid(&self) -> &str {
        &self.inner.uuid
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.opts
    }

    /// Creates a database.
    pub async fn create_db(&self, name: &DbName, opts: DbOptions) -> Result<()> {
        self.inner.space.check(false)?;
        let name = name.clone();
        self.inner
            .call(|reply| Command::CreateDb { name, opts, reply })
            .await?
    }

    /// Deletes a database and everything in it.
    pub async fn delete_db(&self, name: &DbName) -> Result<()> {
        let name = name.clone();
        self.inner.call(|reply| Command::DeleteDb { name, reply }).await?
    }

    /// The names of all databases, sorted.
    pub fn list_dbs(&self) -> Vec<DbName> {
        let mut names: Vec<DbName> = self.inner.dbs_read().values().map(|s| s.name.clone()).collect();
        names.sort();
        names
    }

    /// A handle on a database.
    pub fn db(&self, name: &DbName) -> Result<Database> {
        let state = self
            .inner
            .dbs_read()
            .get(name.as_str())
            .cloned()
            .ok_or_else(|| Error::DbNotFound {
                name: name.to_string(),
            })?;
        Ok(Database::new(self.inner.clone(), state))
    }
}

fn load_catalogue(db: &DB, meta: &ColumnFamily) -> Result<(HashMap<String, Arc<DbState>>, u64)> {
    let next_id = match db.get_cf(meta, keys::META_NEXT_DB_ID)? {
        Some(v) => u64::from_be_bytes(v.as_slice().try_into().map_err(|_| Error::Corrupt {
            what: "next database id",
            reason: "not 8 bytes".into(),
        })?),
        None => 1,
    };
    let mut dbs = HashMap::new();
    let iter = db.iterator_cf(
        meta,
        IteratorMode::From(keys::META_DB_PREFIX, rocksdb::Direction::Forward),
    );
    for item in iter {
        let (key, value) = item?;
        let Some(name) = key.strip_prefix(keys::META_DB_PREFIX) else {
            break;
        };
        let name = DbName::new(&String::from_utf8_lossy(name))?;
        let record: DbRecord = records::decode_record(&value, "database record")?;
        let stats: DbStats = match db.get_cf(meta, keys::meta_stats(record.id))? {
            Some(v) => records::decode_record(&v, "database counters")?,
            None => DbStats::default(),
        };
        dbs.insert(
            name.as_str().to_owned(),
            Arc::new(DbState::new(name, &record, stats)),
        );
    }
    Ok((dbs, next_id))
}

/// A random-enough 128-bit id without another dependency: hash of path, time and pid.
fn new_uuid(path: &Path) -> String {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    h.update(path.as_os_str().as_encoded_bytes());
    h.update(format!("{:?}", std::time::SystemTime::now()).as_bytes());
    h.update(std::process::id().to_be_bytes());
    h.update(format!("{:p}", &h as *const _).as_bytes());
    hex::encode(h.finalize())
}
