//! Hot reload: a topology that follows its file, swapping in valid new versions atomically and
//! keeping the old one when a new version is invalid.
//!
//! Readers on hot paths call [`TopologyWatcher::handle`] once and `load()` the `ArcSwap` per
//! request (no lock); servers that must act on a change (re-dial, re-plan replications) use
//! [`TopologyWatcher::subscribe`].

use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::TopologyErrors;
use crate::load::parse_file_text;
use crate::model::Topology;

/// Polling faster than this only burns CPU; it also keeps `tokio::time::interval` off zero.
const MIN_POLL: Duration = Duration::from_millis(10);

/// Follows a topology file. Dropping the watcher stops its polling task.
pub struct TopologyWatcher {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    path: PathBuf,
    current: Arc<ArcSwap<Topology>>,
    changes: watch::Sender<Arc<Topology>>,
    reloads: AtomicU64,
    failures: AtomicU64,
    /// Fingerprint of the file state last acted on, applied or rejected. Polling acts once per
    /// change of the file, so a bad edit is logged and counted once, not every interval. The lock
    /// also serialises polls with `reload_now`.
    last_seen: Mutex<u64>,
}

impl TopologyWatcher {
    /// Loads the topology at `path` (an invalid file is an error: a node must not start on a
    /// topology it cannot trust) and starts a task that checks the file every `poll_interval`
    /// (at least 10 ms) and reloads it when its content changes.
    ///
    /// Must be called within a Tokio runtime, as `tokio::spawn` must.
    pub fn start(
        path: impl Into<PathBuf>,
        poll_interval: Duration,
    ) -> Result<TopologyWatcher, TopologyErrors> {
        let path = path.into();
        let state = std::fs::read_to_string(&path);
        let fingerprint = fingerprint(&state);
        let topology = match state {
            Ok(text) => parse_file_text(&text, &path)?,
            Err(e) => return Err(read_error(&path, &e)),
        };
        let topology = Arc::new(topology);
        let (changes, _) = watch::channel(Arc::clone(&topology));
        let shared = Arc::new(Shared {
            path,
            current: Arc::new(ArcSwap::new(topology)),
            changes,
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_seen: Mutex::new(fingerprint),
        });
        let task = tokio::spawn(poll_loop(Arc::downgrade(&shared), poll_interval.max(MIN_POLL)));
        Ok(TopologyWatcher { shared, task })
    }

    /// The topology in force now.
    pub fn current(&self) -> Arc<Topology> {
        self.shared.current.load_full()
    }

    /// The swap cell itself, for readers that keep it and `load()` per request.
    pub fn handle(&self) -> Arc<ArcSwap<Topology>> {
        Arc::clone(&self.shared.current)
    }

    /// A receiver that sees every topology swapped in (including after `reload_now`).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Topology>> {
        self.shared.changes.subscribe()
    }

    /// Re-reads the file now, whether or not it changed (what SIGHUP asks for). A valid file is
    /// swapped in and returned; an invalid one is logged, counted and returned as the error,
    /// and the old topology stays in force.
    ///
    /// Blocks on a small file read; call it from a blocking context or accept that cost.
    pub fn reload_now(&self) -> Result<Arc<Topology>, TopologyErrors> {
        self.shared.reload(true)
    }

    /// The file being followed.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Successful reloads since start.
    pub fn reloads(&self) -> u64 {
        self.shared.reloads.load(Ordering::Relaxed)
    }

    /// Rejected reloads (unreadable or invalid file) since start.
    pub fn reload_failures(&self) -> u64 {
        self.shared.failures.load(Ordering::Relaxed)
    }
}

impl Drop for TopologyWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Checks the file every `interval` until the watcher is gone.
async fn poll_loop(shared: std::sync::Weak<Shared>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // The first tick is immediate; the file was just loaded.
    loop {
        ticker.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        // File I/O is blocking; keep it off the runtime's worker threads.
        let _ = tokio::task::spawn_blocking(move || shared.reload(false)).await;
    }
}

impl Shared {
    /// Reads the file and, if `force` or its content changed since last time, applies it.
    fn reload(&self, force: bool) -> Result<Arc<Topology>, TopologyErrors> {
        let mut last_seen = self.last_seen.lock().unwrap_or_else(PoisonError::into_inner);
        let state = std::fs::read_to_string(&self.path);
        let fingerprint = fingerprint(&state);
        if !force && *last_seen == fingerprint {
            return Ok(self.current.load_full());
        }
        *last_seen = fingerprint;
        let parsed = match state {
            Ok(text) => parse_file_text(&text, &self.path),
            Err(e) => Err(read_error(&self.path, &e)),
        };
        match parsed {
            Ok(topology) => {
                let topology = Arc::new(topology);
                self.current.store(Arc::clone(&topology));
                self.changes.send_replace(Arc::clone(&topology));
                self.reloads.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("topology_reloads_total").increment(1);
                tracing::info!(
                    file = %self.path.display(),
                    fleet = %topology.fleet,
                    datacentres = topology.datacentres.len(),
                    spokes = topology.spoke_count(),
                    "topology reloaded"
                );
                Ok(topology)
            }
            Err(errors) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("topology_reload_failures_total").increment(1);
                tracing::error!(
                    file = %self.path.display(),
                    errors = errors.errors.len(),
                    "rejected topology reload, keeping the topology in force:\n{errors}"
                );
                Err(errors)
            }
        }
    }
}

fn read_error(path: &Path, e: &io::Error) -> TopologyErrors {
    TopologyErrors::whole_file(
        path.display().to_string(),
        format!("cannot read topology file: {e}"),
    )
}

/// Identifies a file state: its content, or the kind of error reading it gave.
fn fingerprint(state: &io::Result<String>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match state {
        Ok(text) => (0u8, text).hash(&mut h),
        Err(e) => (1u8, e.kind().to_string()).hash(&mut h),
    }
    h.finish()
}
