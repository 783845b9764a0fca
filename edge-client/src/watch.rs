//! Cache invalidation: one `Watch` stream per database from the local spoke.
//! Every committed change evicts its key. While the stream is down, entries
//! older than `max_staleness` are not served; on reconnect the stream resumes
//! from the last sequence seen, so nothing is missed — unless the spoke's store
//! is not the one that vouched for the cache (new uuid, or `OUT_OF_RANGE`), in
//! which case the database's entries are dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use proto::v1::{watch_event, WatchRequest};
use tonic::Code;

use crate::client::Inner;

/// The state of one database's stream.
#[derive(Debug)]
pub(crate) struct WatchState {
    connected: AtomicBool,
    /// When the stream last said anything (changes, or heartbeats every second).
    last_heard: Mutex<Instant>,
    /// When the stream (re)connected: entries fetched before a gap are not vouched for.
    connected_since: Mutex<Option<Instant>>,
    last_seq: AtomicU64,
}

impl WatchState {
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    fn heard(&self) {
        *self.last_heard.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// Whether an entry fetched at `fetched` may be served: the stream has
    /// covered it since (and was heard from within `max_staleness`, so a silent,
    /// half-dead stream does not count), or it is younger than `max_staleness`.
    pub fn vouches_for(&self, fetched: Instant, max_staleness: Duration) -> bool {
        let fresh_stream = self
            .last_heard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
            < max_staleness;
        if self.is_connected() && fresh_stream {
            let since = *self.connected_since.lock().unwrap_or_else(|e| e.into_inner());
            // Fetched while connected, or still young enough.
            if since.is_some_and(|s| fetched >= s) {
                return true;
            }
        }
        fetched.elapsed() < max_staleness
    }
}

/// The database's stream, started on first use.
pub(crate) fn ensure(inner: &Arc<Inner>, db: &str) -> Arc<WatchState> {
    let mut watches = inner.watches.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(w) = watches.get(db) {
        return w.clone();
    }
    let state = Arc::new(WatchState {
        connected: AtomicBool::new(false),
        last_heard: Mutex::new(Instant::now()),
        connected_since: Mutex::new(None),
        last_seq: AtomicU64::new(0),
    });
    watches.insert(Arc::from(db), state.clone());
    tokio::spawn(run(Arc::downgrade(inner), Arc::from(db), state.clone()));
    state
}

async fn drop_db_entries(inner: &Inner, db: &Arc<str>) {
    let db = db.clone();
    if inner.cache.invalidate_entries_if(move |k, _| k.0 == db).is_err() {
        inner.cache.invalidate_all();
    }
    metrics::counter!("edge_cache_flushes_total").increment(1);
}

async fn run(inner: Weak<Inner>, db: Arc<str>, state: Arc<WatchState>) {
    let mut store_uuid: Option<String> = None;
    let mut resume: Option<u64> = None;
    let mut failures = 0u32;
    loop {
        let Some(i) = inner.upgrade() else { return };
        let shutdown = i.shutdown.clone();
        // The stream comes from the first local spoke.
        let targets = i.targets.load_full();
        let Some(target) = targets
            .iter()
            .find(|t| t.local)
            .or_else(|| targets.first())
            .cloned()
        else {
            return;
        };
        let req = WatchRequest {
            db: db.to_string(),
            since: resume.unwrap_or(0),
            from_now: resume.is_none(),
        };
        let opened = tokio::time::timeout(Duration::from_secs(2), target.client.clone().watch(req)).await;
        match opened {
            Ok(Ok(resp)) => {
                let mut stream = resp.into_inner();
                loop {
                    let next = tokio::select! {
                        m = tokio::time::timeout(Duration::from_secs(3), stream.message()) => m,
                        _ = shutdown.cancelled() => return,
                    };
                    if matches!(next, Ok(Ok(Some(_)))) {
                        state.heard();
                    }
                    match next {
                        Ok(Ok(Some(ev))) => match ev.event {
                            Some(watch_event::Event::Start(s)) => {
                                // Another store: nothing it streams vouches for what we
                                // cached. (Entries fetched before a first connection are
                                // covered by the staleness rule in `vouches_for`.)
                                if store_uuid.as_deref().is_some_and(|u| u != s.store_uuid) {
                                    drop_db_entries(&i, &db).await;
                                }
                                store_uuid = Some(s.store_uuid);
                                state.last_seq.store(s.since, Ordering::Release);
                                resume = Some(s.since);
                                *state.connected_since.lock().unwrap_or_else(|e| e.into_inner()) =
                                    Some(Instant::now());
                                state.connected.store(true, Ordering::Release);
                                metrics::gauge!("edge_watch_connected", "db" => db.to_string()).set(1.0);
                                failures = 0;
                            }
                            Some(watch_event::Event::Change(c)) => {
                                let key = (db.clone(), Arc::from(c.id.as_str()));
                                // Our own write coming back: the cached copy is that revision.
                                let current = i.cache.get(&key).await.is_some_and(|e| {
                                    !c.deleted && e.session.as_ref().is_some_and(|s| s.rev == c.rev)
                                });
                                if !current {
                                    i.cache.invalidate(&key).await;
                                    metrics::counter!("edge_invalidations_total").increment(1);
                                }
                                state.last_seq.store(c.seq, Ordering::Release);
                                resume = Some(c.seq);
                            }
                            Some(watch_event::Event::Heartbeat(_)) | None => {}
                        },
                        Ok(Err(status)) if status.code() == Code::OutOfRange => {
                            drop_db_entries(&i, &db).await;
                            resume = None;
                            break;
                        }
                        // Ended, failed, or silent past two heartbeats: reconnect.
                        _ => break,
                    }
                }
            }
            Ok(Err(status)) if status.code() == Code::OutOfRange => {
                drop_db_entries(&i, &db).await;
                resume = None;
            }
            _ => {}
        }
        if state.connected.swap(false, Ordering::AcqRel) {
            tracing::warn!(db = %db, "invalidation stream lost; serving cached entries only while younger than max_staleness");
            metrics::gauge!("edge_watch_connected", "db" => db.to_string()).set(0.0);
        }
        failures += 1;
        let delay =
            Duration::from_millis(50u64.saturating_mul(1 << failures.min(5))).min(Duration::from_secs(2));
        drop(i);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
