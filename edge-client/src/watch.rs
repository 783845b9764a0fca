//! Cache invalidation: one `Watch` stream per database from the local spoke,
//! on its own connection. Every committed change evicts its key.
//!
//! The stream is also what *vouches* for entries (see `rule`): an entry read
//! from the stream's own store at sequence `s` is covered if the stream's
//! history (a *generation*: one store, gap-free since `covered_from`) includes
//! every change after `s`. A reconnect to the same store resumes from the last
//! sequence seen and keeps the generation; another store (new uuid) or an
//! `OUT_OF_RANGE` resume starts a new one and drops the database's entries.
//! Recent changes are kept so a read that was in flight while its key changed
//! is not cached (the invalidation came before the answer).
//!
//! A stream for a database nobody reads for `watch_idle` ends and is
//! forgotten; so does one whose database does not exist, once idle.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use proto::v1::{watch_event, WatchChange, WatchRequest};
use tonic::Code;

use crate::cache::{Key, Vouch};
use crate::client::{Inner, Target};
use crate::rule;

/// At most this many databases are watched; reads of others are unvouched.
const MAX_WATCHES: usize = 1024;
/// Recent changes kept to catch reads that raced an invalidation.
const HISTORY: usize = 4096;

#[derive(Debug)]
struct Recent {
    seq: u64,
    id: Arc<str>,
    rev: Arc<str>,
    deleted: bool,
    at: Instant,
}

#[derive(Debug)]
struct History {
    changes: VecDeque<Recent>,
    /// Changes at or below this sequence may have been forgotten.
    floor_seq: u64,
    /// Changes processed before this instant may have been forgotten.
    floor_at: Instant,
}

/// The state of one database's stream.
pub(crate) struct WatchState {
    db: Arc<str>,
    epoch: Instant,
    connected: AtomicBool,
    /// The replay after a (re)connect has reached the store's sequence at start.
    caught_up: AtomicBool,
    generation: AtomicU64,
    covered_from: AtomicU64,
    /// Milliseconds since `epoch` when the stream last said anything.
    last_heard: AtomicU64,
    /// Milliseconds since `epoch` when a read last used this database.
    last_used: AtomicU64,
    /// The store's sequence when the current connection started.
    start_update_seq: AtomicU64,
    target: Mutex<Option<Arc<Target>>>,
    history: Mutex<History>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl WatchState {
    fn new(db: &str) -> WatchState {
        let now = Instant::now();
        WatchState {
            db: Arc::from(db),
            epoch: now,
            connected: AtomicBool::new(false),
            caught_up: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            covered_from: AtomicU64::new(u64::MAX),
            last_heard: AtomicU64::new(0),
            last_used: AtomicU64::new(0),
            start_update_seq: AtomicU64::new(0),
            target: Mutex::new(None),
            history: Mutex::new(History {
                changes: VecDeque::new(),
                floor_seq: u64::MAX,
                floor_at: now,
            }),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    fn heard(&self) {
        self.last_heard.store(ms(self.epoch.elapsed()), Ordering::Release);
    }

    fn touch(&self, at: Instant) {
        let used = ms(at.saturating_duration_since(self.epoch));
        self.last_used.store(used, Ordering::Relaxed);
    }

    fn idle(&self, limit: Duration) -> bool {
        let used = Duration::from_millis(self.last_used.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(used) > limit
    }

    /// The current generation (0 before the first connection).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether the stream vouches for an entry: it is connected, caught up, was
    /// heard from within `silence` before `at`, and `v` belongs to its current history.
    pub fn vouches(&self, v: Vouch, silence: Duration, at: Instant) -> bool {
        let heard = Duration::from_millis(self.last_heard.load(Ordering::Acquire));
        self.is_connected()
            && self.caught_up.load(Ordering::Acquire)
            && at.saturating_duration_since(self.epoch).saturating_sub(heard) < silence
            && v.generation == self.generation()
            && v.seq >= self.covered_from.load(Ordering::Acquire)
    }

    /// The vouch for a read of `target` served at `seq`, if `target` is the
    /// store this stream follows and its history covers `seq`.
    pub fn vouch_for(&self, target: &Arc<Target>, seq: u64) -> Option<Vouch> {
        let same = self
            .target
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(t, target));
        let floor = self.history.lock().unwrap_or_else(|e| e.into_inner()).floor_seq;
        (same && self.is_connected() && seq >= floor && seq >= self.covered_from.load(Ordering::Acquire))
            .then(|| Vouch {
                generation: self.generation(),
                seq,
            })
    }

    /// Whether the stream has seen a change of `id` that a read of revision
    /// `rev` (`None`: absent) may not reflect: after `vouch.seq` for a read of
    /// the stream's store, else processed after `sent` (when the read was sent).
    /// Unknown (history forgotten) counts as changed.
    pub fn superseded(&self, id: &str, rev: Option<&str>, vouch: Option<Vouch>, sent: Instant) -> bool {
        let h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let differs = |c: &Recent| c.id.as_ref() == id && (c.deleted || Some(c.rev.as_ref()) != rev);
        match vouch {
            Some(v) => {
                v.generation != self.generation()
                    || h.floor_seq > v.seq
                    || h.changes.iter().rev().take_while(|c| c.seq > v.seq).any(differs)
            }
            None => h.floor_at > sent || h.changes.iter().rev().take_while(|c| c.at >= sent).any(differs),
        }
    }

    fn record(&self, c: &WatchChange) {
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        h.changes.push_back(Recent {
            seq: c.seq,
            id: Arc::from(c.id.as_str()),
            rev: Arc::from(c.rev.as_str()),
            deleted: c.deleted,
            at: Instant::now(),
        });
        while h.changes.len() > HISTORY {
            if let Some(old) = h.changes.pop_front() {
                h.floor_seq = old.seq;
                h.floor_at = old.at;
            }
        }
    }

    /// A new history from `since`: nothing before it is covered.
    fn new_history(&self, since: u64) {
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        h.changes.clear();
        h.floor_seq = since;
        // `floor_at` stays: reads of other stores are bounded by max_staleness
        // whatever the stream saw, and the time check only narrows that.
        self.covered_from.store(since, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// Every read looks its database's stream up here, so the map is read without a
/// lock (a snapshot) and changed, rarely, by copying it.
#[derive(Default)]
pub(crate) struct Watches {
    current: ArcSwap<HashMap<Arc<str>, Arc<WatchState>>>,
    changing: Mutex<()>,
}

impl Watches {
    /// The stream of `db`, if it has one.
    pub fn get(&self, db: &str) -> Option<Arc<WatchState>> {
        self.current.load().get(db).cloned()
    }

    /// The databases with a stream.
    pub fn databases(&self) -> Vec<String> {
        self.current.load().keys().map(|k| k.to_string()).collect()
    }

    /// Changes the map (one change at a time) and publishes the new snapshot.
    fn change<R>(&self, f: impl FnOnce(&mut HashMap<Arc<str>, Arc<WatchState>>) -> R) -> R {
        let _one_at_a_time = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let mut map = HashMap::clone(&self.current.load());
        let r = f(&mut map);
        metrics::gauge!("edge_watch_streams").set(map.len() as f64);
        self.current.store(Arc::new(map));
        r
    }
}

/// The database's stream, started on first use (`None` past [`MAX_WATCHES`]);
/// marks it used at `at`.
pub(crate) fn ensure(inner: &Arc<Inner>, db: &str, at: Instant) -> Option<Arc<WatchState>> {
    if let Some(w) = inner.watches.get(db) {
        w.touch(at);
        return Some(w);
    }
    inner.watches.change(|watches| {
        if let Some(w) = watches.get(db) {
            w.touch(at);
            return Some(w.clone());
        }
        if watches.len() >= MAX_WATCHES {
            return None;
        }
        let state = Arc::new(WatchState::new(db));
        state.touch(at);
        watches.insert(Arc::from(db), state.clone());
        tokio::spawn(run(Arc::downgrade(inner), state.clone()));
        Some(state)
    })
}

/// Forgets `state` (if it is still the database's).
fn forget(inner: &Inner, state: &Arc<WatchState>) {
    inner.watches.change(|watches| {
        if watches.get(&state.db).is_some_and(|w| Arc::ptr_eq(w, state)) {
            watches.remove(&state.db);
        }
    });
}

async fn drop_db_entries(inner: &Inner, db: &Arc<str>) {
    let db = db.clone();
    if inner.cache.invalidate_entries_if(move |k, _| k.0 == db).is_err() {
        inner.cache.invalidate_all();
    }
    metrics::counter!("edge_cache_flushes_total").increment(1);
}

/// The target streams come from: the first local spoke, else the first target.
fn stream_target(inner: &Inner) -> Option<Arc<Target>> {
    let targets = inner.targets.load();
    targets
        .iter()
        .find(|t| t.local)
        .or_else(|| targets.first())
        .cloned()
}

async fn on_change(i: &Inner, state: &WatchState, c: &WatchChange) {
    state.record(c);
    let key: Key = (state.db.clone(), Arc::from(c.id.as_str()));
    if c.deleted {
        i.deletes.insert(key.clone(), rule::generation(&c.rev)).await;
    } else {
        // Written again (a re-creation, even one purged and restarted at
        // generation 1 after expiry): the delete no longer speaks for it.
        i.deletes.invalidate(&key).await;
    }
    // Already this revision (read after the change): keep it.
    let current = !c.deleted
        && i.cache.get(&key).await.is_some_and(|e| match &e.answer {
            crate::cache::Answer::Found(s) => s.rev() == c.rev,
            crate::cache::Answer::Absent(_) => false,
        });
    if !current {
        i.cache.invalidate(&key).await;
        metrics::counter!("edge_invalidations_total").increment(1);
    }
}

async fn run(inner: Weak<Inner>, state: Arc<WatchState>) {
    let db = state.db.clone();
    let mut store_uuid: Option<String> = None;
    // The database's identity on that store: a delete and re-create gives a new one, whose
    // sequence numbers say nothing about the old one's.
    let mut incarnation: Option<String> = None;
    let mut resume: Option<u64> = None;
    let mut failures = 0u32;
    loop {
        let Some(i) = inner.upgrade() else { return };
        let (silence, idle) = {
            let cfg = i.cfg.load();
            (cfg.watch_silence, cfg.watch_idle)
        };
        if state.idle(idle) {
            forget(&i, &state);
            return;
        }
        let shutdown = i.shutdown.clone();
        let Some(target) = stream_target(&i) else {
            forget(&i, &state);
            return;
        };
        let req = WatchRequest {
            db: db.to_string(),
            since: resume.unwrap_or(0),
            from_now: resume.is_none(),
        };
        let opened = tokio::time::timeout(silence, target.watch_client.clone().watch(req)).await;
        match opened {
            Ok(Ok(resp)) => {
                let mut stream = resp.into_inner();
                loop {
                    let next = tokio::select! {
                        m = tokio::time::timeout(silence, stream.message()) => m,
                        _ = shutdown.cancelled() => return,
                    };
                    match next {
                        Ok(Ok(Some(ev))) => {
                            state.heard();
                            match ev.event {
                                Some(watch_event::Event::Start(s)) => {
                                    let same_db = store_uuid.as_deref() == Some(s.store_uuid.as_str())
                                        && incarnation.as_deref() == Some(s.incarnation.as_str());
                                    if !same_db || resume.is_none() {
                                        if store_uuid.is_some() {
                                            // Another store, or the database deleted and
                                            // re-created: nothing it streams vouches for what
                                            // we cached.
                                            drop_db_entries(&i, &db).await;
                                        }
                                        state.new_history(s.since);
                                    }
                                    *state.target.lock().unwrap_or_else(|e| e.into_inner()) =
                                        Some(target.clone());
                                    store_uuid = Some(s.store_uuid);
                                    incarnation = Some(s.incarnation);
                                    resume = Some(s.since);
                                    state.start_update_seq.store(s.update_seq, Ordering::Release);
                                    state.caught_up.store(s.update_seq <= s.since, Ordering::Release);
                                    state.connected.store(true, Ordering::Release);
                                    metrics::gauge!("edge_watch_connected", "db" => db.to_string()).set(1.0);
                                    failures = 0;
                                }
                                Some(watch_event::Event::Change(c)) => {
                                    on_change(&i, &state, &c).await;
                                    resume = Some(c.seq);
                                    if c.seq >= state.start_update_seq.load(Ordering::Acquire) {
                                        state.caught_up.store(true, Ordering::Release);
                                    }
                                }
                                Some(watch_event::Event::Heartbeat(_)) => {
                                    state.caught_up.store(true, Ordering::Release);
                                }
                                None => {}
                            }
                            // The chain changed (topology reload): follow the new local spoke.
                            if !stream_target(&i).is_some_and(|t| Arc::ptr_eq(&t, &target))
                                || state.idle(idle)
                            {
                                break;
                            }
                        }
                        Ok(Err(status)) if status.code() == Code::OutOfRange => {
                            drop_db_entries(&i, &db).await;
                            resume = None;
                            break;
                        }
                        // Ended, failed, or silent past `watch_silence`: reconnect.
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
        *state.target.lock().unwrap_or_else(|e| e.into_inner()) = None;
        failures = failures.saturating_add(1);
        let delay =
            Duration::from_millis(50u64.saturating_mul(1 << failures.min(5))).min(Duration::from_secs(2));
        drop(i);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
