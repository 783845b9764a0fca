//! The read and write paths. Whether an answer may be served is decided by
//! `rule` alone; this module fetches, single-flights, caches and writes.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use futures_util::stream::{FuturesUnordered, StreamExt};
use moka::future::Cache;
use proto::tls::ReloadingTls;
use proto::v1::sessions_client::SessionsClient;
use proto::v1::{DeleteRequest, GetRequest, PutRequest, RevokeRequest};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Code;

use crate::builder::{ClientBuilder, TargetSpec};
use crate::cache::{weigh, Absence, Answer, Entry, EntryExpiry, Key, KeyRef};
use crate::credentials::{AuthChannel, Authorize, Credentials};
use crate::error::ClientError;
use crate::health::Health;
use crate::hedge::HedgeBudget;
use crate::rule::{self, Verdict};
use crate::token::ReadToken;
use crate::watch::{self, WatchState, Watches};

/// A session as read. Cheap to clone: the cache and every reader share one copy,
/// so a cache hit hands out a reference count, not a copy of the body.
#[derive(Clone, PartialEq, Eq)]
pub struct Session(Arc<SessionData>);

#[derive(Debug, PartialEq, Eq)]
struct SessionData {
    id: String,
    rev: String,
    body: Bytes,
    expires_at: Option<u64>,
}

impl Session {
    /// A session `id` at revision `rev` with JSON `body` (without `_id`/`_rev`).
    pub(crate) fn new(id: String, rev: String, body: Bytes, expires_at: Option<u64>) -> Session {
        Session(Arc::new(SessionData {
            id,
            rev,
            body,
            expires_at,
        }))
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// Its revision (`N-hash`): pass it to [`Client::put`] to update.
    pub fn rev(&self) -> &str {
        &self.0.rev
    }

    /// Its JSON body, without `_id`/`_rev`.
    pub fn body(&self) -> &[u8] {
        &self.0.body
    }

    /// When it expires (unix seconds), if its database expires sessions. The
    /// client never serves it at or after this time.
    pub fn expires_at(&self) -> Option<u64> {
        self.0.expires_at
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Where an answer came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The in-process cache.
    Cache,
    /// The cache remembered that the session does not exist.
    NegativeCache,
    /// A server, by name.
    Target(String),
}

/// What a revocation did ([`Client::revoke`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revoked {
    /// The winning tombstone's revision ([`ReadToken::deleted`] of it for later reads).
    pub rev: String,
    /// Nodes that committed it, as `datacentre/node` (hubs as `hub/<name>`).
    pub applied: Vec<String>,
    /// Nodes that had not acknowledged it when the call returned.
    pub not_applied: Vec<String>,
}

/// How a read given a [`ReadToken`] met it ([`Client::read_after`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caught {
    /// The usual read (cache or local spoke) already had the token's revision or later.
    Already,
    /// It did not; a hub (named) did, at once.
    FromHub(String),
    /// Nothing had it at first; the target named did after the client waited this long
    /// (the write had not reached a hub yet).
    AfterWaiting(String, Duration),
}

/// How a read was served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// Where the answer came from.
    pub source: Source,
    /// How long it took.
    pub latency: Duration,
    /// Served from the cache under the stale-if-error window because no
    /// target could be reached (see the crate docs).
    pub stale: bool,
}

pub(crate) struct Target {
    pub name: String,
    pub url: String,
    pub local: bool,
    pub hub: bool,
    /// Reads and writes.
    pub client: SessionsClient<AuthChannel>,
    /// The invalidation stream, on its own connection: its events must not
    /// queue behind (or ahead of) reads, and a read's answer is ordered against
    /// them by sequence, not by arrival.
    pub watch_client: SessionsClient<AuthChannel>,
    pub health: Health,
}

/// Why one read call to one target failed.
enum CallError {
    /// Worth trying elsewhere (unreachable, deadline, server trouble).
    Retry(String),
    /// The request itself is wrong: the same everywhere.
    Reject(Code, String),
    /// A healthy answer: the target does not have this database.
    NoDatabase,
}

fn classify(s: &tonic::Status) -> CallError {
    match s.code() {
        Code::NotFound => CallError::NoDatabase,
        // RESOURCE_EXHAUSTED on a read is a node shedding load (or a batch over its
        // limit, refused again elsewhere at the cost of one call): try the next target.
        Code::InvalidArgument | Code::Aborted | Code::AlreadyExists => {
            CallError::Reject(s.code(), s.message().to_owned())
        }
        _ => CallError::Retry(format!("{:?}: {}", s.code(), s.message())),
    }
}

type Flight = Shared<BoxFuture<'static, Result<Fetched, ClientError>>>;

/// The outcome of one (shared) fetch.
#[derive(Clone)]
struct Fetched {
    answer: Answer,
    target: String,
}

pub(crate) struct Inner {
    /// The chain in order, swapped whole when the topology changes.
    pub targets: ArcSwap<Vec<Arc<Target>>>,
    pub cache: Cache<Key, Entry>,
    /// The cache's entry lifetimes, which follow `cfg`.
    lifetimes: EntryExpiry,
    /// Deletes this client has seen: key → generation of the tombstone.
    pub deletes: Cache<Key, u64>,
    /// Settings, swapped whole when the topology changes.
    pub cfg: ArcSwap<ClientBuilder>,
    pub watches: Watches,
    /// The hit path's counters, registered once (a lookup by name costs more than
    /// the hit). The metrics recorder must be installed before the client is built.
    hits: metrics::Counter,
    negative_hits: metrics::Counter,
    flights: Mutex<HashMap<Key, Flight>>,
    hedge: HedgeBudget,
    pub shutdown: CancellationToken,
}

/// The app server's session client. Cheap to clone; background tasks stop
/// when the last clone is dropped.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    _guard: Arc<DropGuard>,
}

struct DropGuard(CancellationToken);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Between looks for a read-your-writes token's revision.
const TOKEN_RETRY: Duration = Duration::from_millis(20);

/// Most deletes remembered (each costs its key and a number).
const DELETE_MEMORY_ENTRIES: u64 = 100_000;

impl Client {
    /// Starts configuring a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    pub(crate) fn from_builder(cfg: ClientBuilder) -> Result<Client, ClientError> {
        let targets = make_targets(&cfg, &cfg.targets, &[])?;
        let lifetimes = EntryExpiry::default();
        lifetimes.follow(&cfg);
        let cache = Cache::builder()
            .max_capacity(cfg.cache_bytes)
            .weigher(weigh)
            .expire_after(lifetimes.clone())
            .support_invalidation_closures()
            .build();
        let deletes = Cache::builder()
            .max_capacity(DELETE_MEMORY_ENTRIES)
            .time_to_live(cfg.delete_memory.max(Duration::from_millis(1)))
            .build();
        let shutdown = CancellationToken::new();
        let inner = Arc::new(Inner {
            targets: ArcSwap::from_pointee(targets),
            cache,
            lifetimes,
            deletes,
            hedge: HedgeBudget::new(cfg.hedge_ratio),
            cfg: ArcSwap::from_pointee(cfg),
            watches: Watches::default(),
            hits: metrics::counter!("edge_cache_hits_total"),
            negative_hits: metrics::counter!("edge_negative_hits_total"),
            flights: Mutex::new(HashMap::new()),
            shutdown: shutdown.clone(),
        });
        tokio::spawn(probe_loop(Arc::downgrade(&inner)));
        Ok(Client {
            inner,
            _guard: Arc::new(DropGuard(shutdown)),
        })
    }

    /// A client for `datacentre` whose chain and `[client]` settings follow the
    /// topology file at `path`: the file is re-read when it changes, and a valid
    /// new chain replaces the old one (targets that did not change keep their
    /// connections and health; the invalidation streams move to the new local
    /// spoke). The cache's byte bound is fixed when the client is built.
    pub fn from_topology_file(
        path: impl AsRef<std::path::Path>,
        datacentre: &str,
        credentials: Credentials,
    ) -> Result<Client, ClientError> {
        let watcher = topology::TopologyWatcher::start(path.as_ref(), Duration::from_secs(1))
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let client = ClientBuilder::from_topology(&watcher.current(), datacentre)?
            .credentials(credentials.clone())
            .build()?;
        tokio::spawn(follow_topology(
            Arc::downgrade(&client.inner),
            watcher,
            datacentre.to_owned(),
            credentials,
        ));
        Ok(client)
    }

    /// The chain's target names, in order.
    pub fn targets(&self) -> Vec<String> {
        self.inner.targets.load().iter().map(|t| t.name.clone()).collect()
    }

    /// Reads a session. Not found, deleted and expired are errors
    /// ([`ClientError::is_gone`]); so is "cannot tell" ([`ClientError::Unavailable`]).
    pub async fn read(&self, db: &str, id: &str) -> Result<Session, ClientError> {
        Ok(self.read_traced(db, id).await?.0)
    }

    /// [`Client::read`], also saying where the answer came from and how long it took.
    pub async fn read_traced(&self, db: &str, id: &str) -> Result<(Session, Served), ClientError> {
        let (answer, served) = self.lookup(db, id).await?;
        match answer {
            Answer::Found(s) => Ok((s, served)),
            Answer::Absent(a) => {
                let (db, id) = (db.to_owned(), id.to_owned());
                Err(match a {
                    Absence::Missing => ClientError::NotFound { db, id },
                    Absence::Deleted => ClientError::Deleted { db, id },
                    Absence::Expired => ClientError::Expired { db, id },
                })
            }
        }
    }

    /// Reads a session: `Ok(None)` if it does not exist (or has expired or been deleted).
    pub async fn get(&self, db: &str, id: &str) -> Result<Option<Session>, ClientError> {
        Ok(self.get_traced(db, id).await?.0)
    }

    /// [`Client::get`], also saying where the answer came from and how long it took.
    pub async fn get_traced(&self, db: &str, id: &str) -> Result<(Option<Session>, Served), ClientError> {
        let (answer, served) = self.lookup(db, id).await?;
        Ok(match answer {
            Answer::Found(s) => (Some(s), served),
            Answer::Absent(_) => (None, served),
        })
    }

    /// Reads a session no older than the write `token` stands for (read-your-writes
    /// after roaming): `Ok(None)` if it is gone. First the usual read; if that answers
    /// an older revision (the local spoke has not applied the write yet), the hubs are
    /// asked directly, then asked again (with the local spoke) until the write turns up
    /// or [`ClientBuilder::token_wait`] passes, which is [`ClientError::Behind`]. The
    /// [`Caught`] says which happened. A stale cached copy is dropped on the way.
    ///
    /// Costs nothing extra when the local spoke is current; one hub round trip when it
    /// is not.
    pub async fn read_after(
        &self,
        db: &str,
        id: &str,
        token: &ReadToken,
    ) -> Result<(Option<Session>, Served, Caught), ClientError> {
        let started = Instant::now();
        let found = |a: Answer| match a {
            Answer::Found(s) => Some(s),
            Answer::Absent(_) => None,
        };
        let (answer, served) = self.lookup(db, id).await?;
        if rule::meets(&answer, token) {
            return Ok((found(answer), served, Caught::Already));
        }
        metrics::counter!("edge_token_behind_total").increment(1);
        let key: Key = (Arc::from(db), Arc::from(id));
        self.inner.cache.invalidate(&key).await;
        let cfg = self.inner.cfg.load_full();
        let targets = self.inner.targets.load_full();
        let any_hub = targets.iter().any(|t| t.hub);
        let hubs: Vec<&Arc<Target>> = targets
            .iter()
            .filter(|t| t.hub || (!any_hub && !t.local))
            .collect();
        let everywhere: Vec<&Arc<Target>> = targets
            .iter()
            .filter(|t| t.local)
            .chain(hubs.iter().copied())
            .collect();
        let give_up = started + cfg.token_wait;
        let mut round = 0u32;
        loop {
            let asked = if round == 0 { &hubs } else { &everywhere };
            for t in asked {
                let until = Instant::now() + cfg.deadline_of(t.local);
                let Ok((lookup, _)) = get_one(t, &cfg, until, db, id).await else {
                    continue;
                };
                let answer = answer_of(&self.inner, &key, lookup).await.unwrap_or_else(|a| a);
                if rule::meets(&answer, token) {
                    let caught = if round == 0 {
                        Caught::FromHub(t.name.clone())
                    } else {
                        Caught::AfterWaiting(t.name.clone(), started.elapsed())
                    };
                    metrics::counter!("edge_token_caught_total", "how" => if round == 0 { "hub" } else { "waited" }).increment(1);
                    let how = self::served(Source::Target(t.name.clone()), started, false);
                    return Ok((found(answer), how, caught));
                }
            }
            if Instant::now() >= give_up {
                metrics::counter!("edge_token_missed_total").increment(1);
                return Err(ClientError::Behind {
                    db: db.to_owned(),
                    id: id.to_owned(),
                    token: token.to_string(),
                    waited: started.elapsed(),
                });
            }
            round += 1;
            tokio::time::sleep(TOKEN_RETRY.min(give_up.saturating_duration_since(Instant::now()))).await;
        }
    }

    /// The read path: the cache if the rule allows, else one shared fetch; if
    /// that finds every target unreachable, the cached entry if the rule's
    /// stale-if-error window allows.
    async fn lookup(&self, db: &str, id: &str) -> Result<(Answer, Served), ClientError> {
        // A hit allocates nothing: the key is looked up by reference, the stream
        // from a snapshot, the session handed out as a reference count, and the
        // clock read once (plus once for the latency, and for expiring sessions).
        let started = Instant::now();
        let cfg = self.inner.cfg.load_full();
        let state = watch::ensure(&self.inner, db, started);
        let mut stale_candidate = false;
        if let Some(entry) = self.inner.cache.get(&KeyRef(db, id)).await {
            match rule::judge(&entry, state.as_deref(), &cfg, started, rule::unix_now) {
                Verdict::Serve => {
                    let source = match entry.answer {
                        Answer::Found(_) => {
                            self.inner.hits.increment(1);
                            Source::Cache
                        }
                        Answer::Absent(_) => {
                            self.inner.negative_hits.increment(1);
                            Source::NegativeCache
                        }
                    };
                    return Ok((entry.answer, served(source, started, false)));
                }
                Verdict::StaleIfError => stale_candidate = true,
                Verdict::Refetch => {}
            }
            metrics::counter!("edge_stale_refetches_total").increment(1);
        }
        metrics::counter!("edge_cache_misses_total").increment(1);
        let key: Key = (Arc::from(db), Arc::from(id));
        match flight(&self.inner, key.clone(), state.clone()).await {
            Ok(f) => {
                // A shared answer may have been settled a moment before this
                // caller joined: the expiry is checked again as it is served.
                let answer = match f.answer {
                    Answer::Found(s) if rule::expired(&s, rule::unix_now()) => {
                        Answer::Absent(Absence::Expired)
                    }
                    a => a,
                };
                Ok((answer, served(Source::Target(f.target), started, false)))
            }
            Err(e @ ClientError::Unavailable { .. }) if stale_candidate => {
                // Every target unreachable: the entry, if it is still cached (not
                // invalidated meanwhile) and the rule still allows it.
                if let Some(entry) = self.inner.cache.get(&key).await {
                    let verdict = rule::judge(&entry, state.as_deref(), &cfg, Instant::now(), rule::unix_now);
                    if verdict != Verdict::Refetch && matches!(entry.answer, Answer::Found(_)) {
                        metrics::counter!("edge_stale_if_error_total").increment(1);
                        tracing::debug!(
                            db,
                            id,
                            "every target unreachable; serving a cached session under stale-if-error"
                        );
                        return Ok((entry.answer, served(Source::Cache, started, true)));
                    }
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Creates (`rev: None`) or updates a session; returns its new revision.
    /// Goes to the local spoke, else along the chain — but only on to the next
    /// target when the write certainly did not happen; see [`ClientError::WriteOutcomeUnknown`].
    pub async fn put(
        &self,
        db: &str,
        id: &str,
        rev: Option<&str>,
        body: &[u8],
    ) -> Result<String, ClientError> {
        let req = PutRequest {
            db: db.into(),
            id: id.into(),
            rev: rev.unwrap_or("").into(),
            body: Bytes::copy_from_slice(body),
        };
        let new_rev = write(&self.inner, Duration::ZERO, |mut c, deadline| {
            let mut r = tonic::Request::new(req.clone());
            r.set_timeout(deadline);
            async move { c.put(r).await.map(|r| r.into_inner().rev) }
        })
        .await?;
        // The next read fetches it (with its expiry, which only the server
        // knows); a delete seen earlier no longer speaks for it.
        let key: Key = (Arc::from(db), Arc::from(id));
        self.inner.deletes.invalidate(&key).await;
        self.inner.cache.invalidate(&key).await;
        Ok(new_rev)
    }

    /// Deletes a session at revision `rev` (a tombstone that replicates). From
    /// then on this client answers it as deleted, whatever a lagging target says,
    /// until a newer revision (a re-creation) appears.
    pub async fn delete(&self, db: &str, id: &str, rev: &str) -> Result<String, ClientError> {
        let req = DeleteRequest {
            db: db.into(),
            id: id.into(),
            rev: rev.into(),
        };
        let new_rev = write(&self.inner, Duration::ZERO, |mut c, deadline| {
            let mut r = tonic::Request::new(req.clone());
            r.set_timeout(deadline);
            async move { c.delete(r).await.map(|r| r.into_inner().rev) }
        })
        .await?;
        self.remember_deleted(db, id, &new_rev).await;
        Ok(new_rev)
    }

    /// Revokes a session everywhere, fast (a logout that must hold): the local spoke
    /// deletes every live revision and sends the tombstones to the hub on the
    /// priority lane, ahead of bulk replication, and the hub sends them down to every
    /// datacentre. Returns within about `wait` with which nodes have committed it and
    /// which have not (cut off or slow; each gets it first thing when it reconnects).
    /// Edge-clients watching those spokes evict it as it commits there.
    ///
    /// Sent like a write (local spoke, else along the chain when it certainly did not
    /// happen). Revoking a session that was never seen where the call lands is
    /// [`ClientError::NotFound`].
    pub async fn revoke(&self, db: &str, id: &str, wait: Duration) -> Result<Revoked, ClientError> {
        let req = RevokeRequest {
            db: db.into(),
            id: id.into(),
            timeout_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
        };
        let answer = write(&self.inner, wait, |mut c, deadline| {
            let mut r = tonic::Request::new(req.clone());
            // The server waits `wait` for acknowledgements before it answers.
            let allowed = deadline.saturating_add(wait);
            r.set_timeout(allowed);
            async move { c.revoke(r).await.map(|r| r.into_inner()) }
        })
        .await
        .map_err(|e| match e {
            ClientError::Rejected {
                code: Code::NotFound, ..
            } => ClientError::NotFound {
                db: db.to_owned(),
                id: id.to_owned(),
            },
            e => e,
        })?;
        self.remember_deleted(db, id, &answer.rev).await;
        Ok(Revoked {
            rev: answer.rev,
            applied: answer.applied,
            not_applied: answer.not_applied,
        })
    }

    /// From a delete or revocation this client made: the session is answered as deleted
    /// until a newer revision (a re-creation) appears, whatever a lagging target says.
    async fn remember_deleted(&self, db: &str, id: &str, tombstone: &str) {
        let key: Key = (Arc::from(db), Arc::from(id));
        self.inner
            .deletes
            .insert(key.clone(), rule::generation(tombstone))
            .await;
        let entry = Entry {
            answer: Answer::Absent(Absence::Deleted),
            fetched: Instant::now(),
            vouch: None,
        };
        self.inner.cache.insert(key, entry).await;
    }

    /// Starts the invalidation stream of `db` now (it otherwise starts at the
    /// first read), so that first reads can already be vouched for.
    pub fn watch(&self, db: &str) {
        let _ = watch::ensure(&self.inner, db, Instant::now());
    }

    /// Bytes the cache holds now (eventually consistent; see moka).
    pub async fn cache_bytes(&self) -> u64 {
        self.inner.cache.run_pending_tasks().await;
        self.inner.cache.weighted_size()
    }

    /// Whether target `name` is currently used (its breaker is closed).
    pub fn is_healthy(&self, name: &str) -> Option<bool> {
        self.inner
            .targets
            .load()
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.health.is_available())
    }

    /// Whether the invalidation stream of `db` is connected.
    pub fn watch_connected(&self, db: &str) -> bool {
        self.inner.watches.get(db).is_some_and(|w| w.is_connected())
    }

    /// The databases with an invalidation stream (running or reconnecting).
    pub fn watched_databases(&self) -> Vec<String> {
        let mut dbs = self.inner.watches.databases();
        dbs.sort();
        dbs
    }
}

fn served(source: Source, started: Instant, stale: bool) -> Served {
    Served {
        source,
        latency: started.elapsed(),
        stale,
    }
}

/// The one place a connection to a target is made: TLS (verifying the target
/// against the fleet CA, presenting the client's certificate if it has one) for
/// `https://` targets. Lazy: nothing is dialled until the first request.
fn channel(
    spec: &TargetSpec,
    tls: Option<&Arc<ReloadingTls>>,
    connect_timeout: Duration,
) -> Result<Channel, ClientError> {
    proto::tls::grpc_channel(&spec.url, tls, |endpoint| {
        endpoint
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_while_idle(true)
    })
    .map_err(|e| ClientError::Config(format!("target {}: {e}", spec.name)))
}

/// Targets for `specs`, reusing those of `old` with the same name, address and
/// role (their connections and health carry over a topology reload).
fn make_targets(
    cfg: &ClientBuilder,
    specs: &[TargetSpec],
    old: &[Arc<Target>],
) -> Result<Vec<Arc<Target>>, ClientError> {
    specs
        .iter()
        .map(|spec| {
            if let Some(t) = old.iter().find(|t| {
                t.name == spec.name && t.url == spec.url && t.local == spec.local && t.hub == spec.hub
            }) {
                return Ok(t.clone());
            }
            let connect_timeout = cfg.deadline_of(spec.local).max(Duration::from_millis(20));
            Ok(Arc::new(Target {
                name: spec.name.clone(),
                url: spec.url.clone(),
                local: spec.local,
                hub: spec.hub,
                client: SessionsClient::with_interceptor(
                    channel(spec, cfg.tls.as_ref(), connect_timeout)?,
                    Authorize(cfg.token.clone()),
                ),
                watch_client: SessionsClient::with_interceptor(
                    channel(
                        spec,
                        cfg.tls.as_ref(),
                        connect_timeout.max(Duration::from_secs(1)),
                    )?,
                    Authorize(cfg.token.clone()),
                ),
                health: Health::default(),
            }))
        })
        .collect()
}

/// Keeps a client's chain and settings in step with a topology file (see
/// [`Client::from_topology_file`]).
async fn follow_topology(
    inner: std::sync::Weak<Inner>,
    watcher: topology::TopologyWatcher,
    datacentre: String,
    credentials: Credentials,
) {
    let mut rx = watcher.subscribe();
    let shutdown = match inner.upgrade() {
        Some(i) => i.shutdown.clone(),
        None => return,
    };
    loop {
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = shutdown.cancelled() => return,
        }
        let topology = rx.borrow_and_update().clone();
        let Some(i) = inner.upgrade() else { return };
        let mut cfg = match ClientBuilder::from_topology(&topology, &datacentre) {
            Ok(b) => b.credentials(credentials.clone()),
            Err(e) => {
                tracing::error!(error = %e, "new topology has no chain for this datacentre; keeping the old one");
                continue;
            }
        };
        match make_targets(&cfg, &cfg.targets, &i.targets.load()) {
            Ok(targets) => {
                tracing::info!(
                    targets = targets.len(),
                    "topology changed: failover chain and client settings updated"
                );
                // moka's bound is fixed at build.
                cfg.cache_bytes = i.cfg.load().cache_bytes;
                i.lifetimes.follow(&cfg);
                i.cfg.store(Arc::new(cfg));
                i.targets.store(Arc::new(targets));
            }
            Err(e) => tracing::error!(error = %e, "new topology rejected; keeping the old chain"),
        }
    }
}

/// One read call to one target within `deadline`, recording health and latency.
/// A timeout counts against the target's health only when it had its full
/// deadline (`full`), not a remnant of the read budget; answers (even "no such
/// database") count for it.
async fn call<T, F, Fut>(
    t: &Target,
    threshold: u32,
    deadline: Duration,
    full: bool,
    f: F,
) -> Result<T, CallError>
where
    F: FnOnce(SessionsClient<AuthChannel>) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let started = Instant::now();
    let (result, counts) = match tokio::time::timeout(deadline, f(t.client.clone())).await {
        Err(_) => (
            Err(CallError::Retry(format!("no answer within {deadline:?}"))),
            full,
        ),
        Ok(Err(s)) => {
            let e = classify(&s);
            let counts = matches!(e, CallError::Retry(_));
            (Err(e), counts)
        }
        Ok(Ok(v)) => (Ok(v), false),
    };
    metrics::histogram!("edge_target_latency_seconds", "target" => t.name.clone())
        .record(started.elapsed().as_secs_f64());
    match &result {
        Err(CallError::Retry(why)) if counts => {
            if t.health.failure(threshold) {
                tracing::warn!(target = %t.name, reason = %why, "target marked down; probing in the background");
                metrics::gauge!("edge_target_healthy", "target" => t.name.clone()).set(0.0);
            }
        }
        Err(CallError::Retry(_)) => {}
        _ => t.health.success(),
    }
    result
}

/// One target's answer to a read.
enum Lookup {
    Found(Session),
    /// Never seen there: it may exist elsewhere (written moments ago).
    Missing,
    /// Deleted or expired there: an older copy elsewhere must not win.
    Gone(Absence),
}

/// A read answer with what the rule needs: who served it, at which sequence,
/// and (for a "not found") whether every confirmation answered.
struct Raw {
    lookup: Lookup,
    target: Arc<Target>,
    seq: u64,
    complete: bool,
}

/// One read of one target, within its deadline and what is left of the budget.
async fn get_one(
    t: &Target,
    cfg: &ClientBuilder,
    until: Instant,
    db: &str,
    id: &str,
) -> Result<(Lookup, u64), CallError> {
    let left = until.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(CallError::Retry("read budget spent".into()));
    }
    let full = cfg.deadline_of(t.local);
    let req = GetRequest {
        db: db.into(),
        id: id.into(),
    };
    let resp = match call(
        t,
        cfg.failure_threshold,
        full.min(left),
        left >= full,
        |mut c| async move { c.get(req).await },
    )
    .await
    {
        Ok(r) => r.into_inner(),
        Err(CallError::NoDatabase) => return Ok((Lookup::Missing, 0)),
        Err(e) => return Err(e),
    };
    let lookup = match resp.session {
        Some(s) => Lookup::Found(Session::new(
            s.id,
            s.rev,
            s.body,
            (s.expires_at != 0).then_some(s.expires_at),
        )),
        None => match resp.not_found_reason.as_str() {
            "" | "missing" => Lookup::Missing,
            "expired" => Lookup::Gone(Absence::Expired),
            _ => Lookup::Gone(Absence::Deleted),
        },
    };
    Ok((lookup, resp.update_seq))
}

/// Starts the shared fetch of `key`, or joins the one in flight. The fetch runs
/// in its own task (a caller giving up does not cancel it) and caches its answer.
async fn flight(
    inner: &Arc<Inner>,
    key: Key,
    state: Option<Arc<WatchState>>,
) -> Result<Fetched, ClientError> {
    let f = {
        let mut flights = inner.flights.lock().unwrap_or_else(|e| e.into_inner());
        match flights.get(&key) {
            Some(f) => f.clone(),
            None => {
                let task = tokio::spawn(fetch_and_cache(inner.clone(), key.clone(), state));
                let (owner, k) = (Arc::downgrade(inner), key.clone());
                let f: Flight = async move {
                    task.await.unwrap_or_else(|e| {
                        // The task removes its flight when done; here it could not.
                        if let Some(i) = owner.upgrade() {
                            i.flights.lock().unwrap_or_else(|e| e.into_inner()).remove(&k);
                        }
                        Err(ClientError::Unavailable {
                            attempts: vec![("client".into(), format!("fetch task failed: {e}"))],
                        })
                    })
                }
                .boxed()
                .shared();
                flights.insert(key, f.clone());
                f
            }
        }
    };
    f.await
}

async fn fetch_and_cache(
    inner: Arc<Inner>,
    key: Key,
    state: Option<Arc<WatchState>>,
) -> Result<Fetched, ClientError> {
    let cfg = inner.cfg.load_full();
    let sent = Instant::now();
    let generation = state.as_ref().map(|w| w.generation());
    let result = match fetch(&inner, &cfg, &key.0, &key.1).await {
        Ok(raw) => Ok(settle(&inner, &key, state.as_deref(), generation, sent, raw).await),
        Err(e) => Err(e),
    };
    // Done, whether or not anyone still waits: the next miss starts a new fetch
    // (a finished flight must never answer a later read).
    inner
        .flights
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&key);
    result
}

/// What a target's answer is served as: a session the rule does not admit (expired,
/// or superseded by a delete this client has seen) is `Err` with the absence it is
/// served as instead, and is never cached.
async fn answer_of(inner: &Inner, key: &Key, lookup: Lookup) -> Result<Answer, Answer> {
    match lookup {
        Lookup::Found(s) => match rule::admit(&s, inner.deletes.get(key).await, rule::unix_now()) {
            Ok(()) => Ok(Answer::Found(s)),
            Err(absence) => {
                metrics::counter!("edge_superseded_reads_total").increment(1);
                Err(Answer::Absent(absence))
            }
        },
        Lookup::Missing => Ok(Answer::Absent(Absence::Missing)),
        Lookup::Gone(a) => Ok(Answer::Absent(a)),
    }
}

/// Turns a read answer into what is served, and caches it if the rule allows.
async fn settle(
    inner: &Inner,
    key: &Key,
    state: Option<&WatchState>,
    generation: Option<u64>,
    sent: Instant,
    raw: Raw,
) -> Fetched {
    let target = raw.target.name.clone();
    let answer = match answer_of(inner, key, raw.lookup).await {
        Ok(a) => a,
        Err(superseded) => {
            return Fetched {
                answer: superseded,
                target,
            }
        }
    };
    // A "not found" is remembered only if every confirmation answered.
    let cacheable = raw.complete || !matches!(answer, Answer::Absent(Absence::Missing));
    if cacheable {
        let vouch = state
            .and_then(|w| w.vouch_for(&raw.target, raw.seq))
            .filter(|v| Some(v.generation) == generation);
        let rev = match &answer {
            Answer::Found(s) => Some(s.rev().to_owned()),
            Answer::Absent(_) => None,
        };
        let superseded = |w: &WatchState| w.superseded(&key.1, rev.as_deref(), vouch, sent);
        if !state.is_some_and(superseded) {
            let entry = Entry {
                answer: answer.clone(),
                fetched: sent,
                vouch,
            };
            inner.cache.insert(key.clone(), entry).await;
            // The stream may have processed a change between the check and the
            // insert; it recorded it before evicting, so looking again closes the gap.
            if state.is_some_and(superseded) {
                inner.cache.invalidate(key).await;
            }
        } else {
            metrics::counter!("edge_raced_reads_total").increment(1);
        }
    }
    Fetched { answer, target }
}

/// The miss path: local spoke first (hedged if configured), then the chain,
/// all within the read budget; a "not found" from a local spoke is confirmed
/// further along the chain.
async fn fetch(inner: &Inner, cfg: &ClientBuilder, db: &str, id: &str) -> Result<Raw, ClientError> {
    inner.hedge.earn();
    let until = Instant::now() + cfg.budget();
    let mut attempts = Vec::new();
    let targets = inner.targets.load_full();
    let available: Vec<Arc<Target>> = targets
        .iter()
        .filter(|t| {
            let ok = t.health.is_available();
            if !ok {
                metrics::counter!("edge_fallbacks_total", "reason" => "circuit_open").increment(1);
                attempts.push((t.name.clone(), "skipped: marked down".to_owned()));
            }
            ok
        })
        .cloned()
        .collect();
    let mut i = 0;
    while i < available.len() {
        let t = &available[i];
        let outcome = match (cfg.hedge_after, available.get(i + 1)) {
            (Some(after), Some(n)) if t.local => hedged(inner, cfg, t, n, after, until, db, id).await,
            _ => Hedged::single(t, get_one(t, cfg, until, db, id).await),
        };
        let asked = if outcome.asked_second { 2 } else { 1 };
        for (name, e) in outcome.failed {
            match e {
                CallError::Reject(code, message) => {
                    return Err(ClientError::Rejected {
                        target: name,
                        code,
                        message,
                    })
                }
                CallError::Retry(why) => {
                    tracing::debug!(target_name = %name, reason = %why, "read failed; trying the next target");
                    metrics::counter!("edge_fallbacks_total", "reason" => "error").increment(1);
                    attempts.push((name, why));
                }
                CallError::NoDatabase => {}
            }
        }
        if let Some((lookup, seq, by)) = outcome.answer {
            if let Lookup::Missing = lookup {
                tracing::debug!(target_name = %by.name, db, id, "not found; confirming further along the chain");
                let failed: Vec<&str> = attempts.iter().map(|(n, _)| n.as_str()).collect();
                let rest: Vec<Arc<Target>> = available[i + 1..]
                    .iter()
                    .filter(|c| !Arc::ptr_eq(c, &by) && !failed.contains(&c.name.as_str()))
                    .take(cfg.miss_checks)
                    .cloned()
                    .collect();
                let miss = Raw {
                    lookup,
                    target: by,
                    seq,
                    complete: true,
                };
                return Ok(confirm(cfg, until, db, id, miss, rest).await);
            }
            tracing::debug!(target_name = %by.name, db, id, "read served");
            return Ok(Raw {
                lookup,
                target: by,
                seq,
                complete: true,
            });
        }
        i += asked;
    }
    Err(ClientError::Unavailable { attempts })
}

/// Asks the next targets whether a session a local spoke does not have exists
/// elsewhere (written moments ago). Any "deleted" that has answered wins (an
/// older copy elsewhere must not undo a logout). A "found" is returned as soon
/// as every confirmation before it in chain order (the chain's order is its
/// priority) has answered or failed, and at the latest one local `deadline`
/// after it arrived. "Not found" is complete only if every confirmation answered.
async fn confirm(
    cfg: &ClientBuilder,
    until: Instant,
    db: &str,
    id: &str,
    miss: Raw,
    rest: Vec<Arc<Target>>,
) -> Raw {
    if rest.is_empty() {
        return miss;
    }
    metrics::counter!("edge_miss_confirmations_total").increment(1);
    let mut pending: FuturesUnordered<_> = rest
        .iter()
        .enumerate()
        .map(|(k, c)| async move { (k, get_one(c, cfg, until, db, id).await) })
        .collect();
    let mut answers: Vec<Option<Result<(Lookup, u64), CallError>>> = rest.iter().map(|_| None).collect();
    let mut grace: Option<tokio::time::Instant> = None;
    let found = |answers: &mut Vec<Option<Result<(Lookup, u64), CallError>>>, k: usize| {
        let Some(Ok((lookup, seq))) = answers[k].take() else {
            return None;
        };
        metrics::counter!("edge_fallbacks_total", "reason" => "miss_found_elsewhere").increment(1);
        Some(Raw {
            lookup,
            target: rest[k].clone(),
            seq,
            complete: true,
        })
    };
    let is_found =
        |a: &Option<Result<(Lookup, u64), CallError>>| matches!(a, Some(Ok((Lookup::Found(_), _))));
    loop {
        let next = match grace {
            Some(at) => tokio::select! {
                n = pending.next() => n,
                _ = tokio::time::sleep_until(at) => {
                    // Grace over: the first "found" in chain order.
                    if let Some(k) = answers.iter().position(is_found) {
                        if let Some(raw) = found(&mut answers, k) {
                            return raw;
                        }
                    }
                    grace = None;
                    continue;
                }
            },
            None => pending.next().await,
        };
        let Some((k, r)) = next else { break };
        if let Ok((Lookup::Gone(a), seq)) = r {
            return Raw {
                lookup: Lookup::Gone(a),
                target: rest[k].clone(),
                seq,
                complete: true,
            };
        }
        answers[k] = Some(r);
        // The first "found" whose predecessors have all answered or failed.
        if let Some(j) = answers.iter().position(|a| a.is_none() || is_found(a)) {
            if is_found(&answers[j]) {
                if let Some(raw) = found(&mut answers, j) {
                    return raw;
                }
            }
        }
        if grace.is_none() && answers.iter().any(is_found) {
            grace = Some(tokio::time::Instant::now() + cfg.deadline);
        }
    }
    if let Some(k) = answers.iter().position(is_found) {
        if let Some(raw) = found(&mut answers, k) {
            return raw;
        }
    }
    let complete = answers.iter().all(|a| matches!(a, Some(Ok(_))));
    Raw { complete, ..miss }
}

/// What a (possibly hedged) attempt produced.
struct Hedged {
    answer: Option<(Lookup, u64, Arc<Target>)>,
    /// Targets that failed, by name.
    failed: Vec<(String, CallError)>,
    /// Whether the second target was asked (it is then not asked again).
    asked_second: bool,
}

impl Hedged {
    fn single(t: &Arc<Target>, r: Result<(Lookup, u64), CallError>) -> Hedged {
        match r {
            Ok((l, seq)) => Hedged {
                answer: Some((l, seq, t.clone())),
                failed: Vec::new(),
                asked_second: false,
            },
            Err(e) => Hedged {
                answer: None,
                failed: vec![(t.name.clone(), e)],
                asked_second: false,
            },
        }
    }
}

/// Asks `first`; if it has not answered after `after` (and the budget allows),
/// also asks `second`, and takes whichever answers first.
#[allow(clippy::too_many_arguments)]
async fn hedged(
    inner: &Inner,
    cfg: &ClientBuilder,
    first: &Arc<Target>,
    second: &Arc<Target>,
    after: Duration,
    until: Instant,
    db: &str,
    id: &str,
) -> Hedged {
    let a = get_one(first, cfg, until, db, id);
    tokio::pin!(a);
    tokio::select! {
        r = &mut a => return Hedged::single(first, r),
        _ = tokio::time::sleep(after) => {}
    }
    if !inner.hedge.try_spend() {
        return Hedged::single(first, a.await);
    }
    metrics::counter!("edge_hedges_total").increment(1);
    let b = get_one(second, cfg, until, db, id);
    tokio::pin!(b);
    let first_done;
    let winner = tokio::select! {
        r = &mut a => { first_done = true; r }
        r = &mut b => { first_done = false; r }
    };
    let (done, other) = if first_done {
        (first, second)
    } else {
        (second, first)
    };
    let mut out = Hedged {
        answer: None,
        failed: Vec::new(),
        asked_second: true,
    };
    match winner {
        Ok((l, seq)) => out.answer = Some((l, seq, done.clone())),
        Err(e) => {
            out.failed.push((done.name.clone(), e));
            let r = if first_done { b.await } else { a.await };
            match r {
                Ok((l, seq)) => out.answer = Some((l, seq, other.clone())),
                Err(e) => out.failed.push((other.name.clone(), e)),
            }
        }
    }
    out
}

/// Why one write attempt failed.
enum WriteError {
    /// Certainly not applied (no connection could be made): safe to send elsewhere.
    NotSent(String),
    /// Sent, no answer: it may have been applied.
    Ambiguous(String),
    /// Refused by the target.
    Reject(Code, String),
}

/// Whether `s` says the connection could not be made (the request never left).
fn never_sent(s: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(s);
    while let Some(e) = source {
        if e.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        source = e.source();
    }
    false
}

async fn write_once<T, F, Fut>(
    t: &Target,
    cfg: &ClientBuilder,
    extra: Duration,
    f: &F,
) -> Result<T, WriteError>
where
    F: Fn(SessionsClient<AuthChannel>, Duration) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let deadline = cfg.write_deadline;
    // The server is told the deadline (grpc-timeout); our own timer allows for
    // the answer's trip back, and for `extra` the server is asked to spend.
    let ours = deadline
        .saturating_add(extra)
        .saturating_add(deadline / 4)
        .saturating_add(Duration::from_millis(20));
    match tokio::time::timeout(ours, f(t.client.clone(), deadline)).await {
        Err(_) => Err(WriteError::Ambiguous(format!("no answer within {ours:?}"))),
        Ok(Ok(rev)) => Ok(rev),
        Ok(Err(s)) if never_sent(&s) => Err(WriteError::NotSent(format!("{:?}: {}", s.code(), s.message()))),
        // Shed load or a full disk: refused before anything was written, so the
        // write may go to the next target.
        Ok(Err(s)) if s.code() == Code::ResourceExhausted => {
            Err(WriteError::NotSent(format!("{:?}: {}", s.code(), s.message())))
        }
        Ok(Err(s)) => match s.code() {
            Code::InvalidArgument
            | Code::Aborted
            | Code::AlreadyExists
            | Code::NotFound
            | Code::FailedPrecondition => Err(WriteError::Reject(s.code(), s.message().to_owned())),
            _ => Err(WriteError::Ambiguous(format!("{:?}: {}", s.code(), s.message()))),
        },
    }
}

/// Writes go to the first available target. An attempt with no answer is
/// retried once at the same target (revisions are deterministic, so a retry of
/// a committed edit is answered with the same revision); the write moves on to
/// the next target only if it certainly did not happen. Write timeouts never
/// count against the read breaker (a slow fsync is not a dead spoke); a
/// connection that cannot be made does.
async fn write<T, F, Fut>(inner: &Inner, extra: Duration, f: F) -> Result<T, ClientError>
where
    F: Fn(SessionsClient<AuthChannel>, Duration) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let cfg = inner.cfg.load_full();
    let mut attempts = Vec::new();
    let targets = inner.targets.load_full();
    for t in targets.iter().filter(|t| t.health.is_available()) {
        let mut ambiguous: Option<String> = None;
        for _ in 0..2 {
            let why = match write_once(t, &cfg, extra, &f).await {
                Ok(rev) => {
                    t.health.success();
                    return Ok(rev);
                }
                Err(WriteError::Reject(code, message)) => {
                    t.health.success();
                    return Err(match (code, ambiguous) {
                        (Code::Aborted, Some(first)) => ClientError::WriteOutcomeUnknown {
                            target: t.name.clone(),
                            reason: format!("{first}; the retry then met a conflict, possibly with itself"),
                        },
                        (Code::Aborted, None) => ClientError::Conflict {
                            target: t.name.clone(),
                            message,
                        },
                        _ => ClientError::Rejected {
                            target: t.name.clone(),
                            code,
                            message,
                        },
                    });
                }
                Err(WriteError::NotSent(why)) if ambiguous.is_none() => {
                    t.health.failure(cfg.failure_threshold);
                    metrics::counter!("edge_fallbacks_total", "reason" => "write_not_sent").increment(1);
                    attempts.push((t.name.clone(), why));
                    break;
                }
                Err(WriteError::NotSent(why) | WriteError::Ambiguous(why)) => why,
            };
            if let Some(first) = ambiguous.take() {
                metrics::counter!("edge_write_outcome_unknown_total").increment(1);
                return Err(ClientError::WriteOutcomeUnknown {
                    target: t.name.clone(),
                    reason: format!("{first}; retry: {why}"),
                });
            }
            tracing::debug!(target_name = %t.name, reason = %why, "write unanswered; retrying the same target");
            ambiguous = Some(why);
        }
    }
    Err(ClientError::Unavailable { attempts })
}

/// Probes targets marked down, all at once, until they answer again.
async fn probe_loop(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(i) = inner.upgrade() else { return };
        let interval = i.cfg.load().probe_interval;
        let shutdown = i.shutdown.clone();
        let targets = i.targets.load_full();
        let down: Vec<&Arc<Target>> = targets.iter().filter(|t| !t.health.is_available()).collect();
        let results = futures_util::future::join_all(down.iter().map(|t| probe_ok(t))).await;
        for (t, ok) in down.iter().zip(results) {
            if ok {
                t.health.success();
                metrics::gauge!("edge_target_healthy", "target" => t.name.clone()).set(1.0);
                tracing::info!(target = %t.name, "target answers again");
            }
        }
        drop(i);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Any answer, even "no such database", means the server is up; transport
/// failures and silence do not.
async fn probe_ok(t: &Target) -> bool {
    let req = GetRequest {
        db: "sessionfleet-probe".into(),
        id: "probe".into(),
    };
    match tokio::time::timeout(Duration::from_millis(500), t.client.clone().get(req)).await {
        Ok(Ok(_)) => true,
        Ok(Err(s)) => !matches!(
            s.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled
        ),
        Err(_) => false,
    }
}
