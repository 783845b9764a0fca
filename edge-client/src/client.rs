//! The read and write paths.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use moka::future::Cache;
use proto::v1::sessions_client::SessionsClient;
use proto::v1::{DeleteRequest, GetRequest, PutRequest};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use crate::builder::{ClientBuilder, TargetSpec};
use crate::cache::{weigh, Entry, EntryExpiry, Key};
use crate::health::Health;
use crate::hedge::HedgeBudget;
use crate::watch::{self, WatchState};

/// A session as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Its id.
    pub id: String,
    /// Its revision (`N-hash`): pass it to [`Client::put`] to update.
    pub rev: String,
    /// Its JSON body, without `_id`/`_rev`.
    pub body: Bytes,
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

/// How a read was served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// Where the answer came from.
    pub source: Source,
    /// How long it took.
    pub latency: Duration,
}

/// What can go wrong.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// Every target failed or was skipped; each attempt and why.
    #[error("no target could answer: {}", .attempts.iter().map(|(t, e)| format!("{t}: {e}")).collect::<Vec<_>>().join("; "))]
    Unavailable {
        /// (target, reason) per attempt.
        attempts: Vec<(String, String)>,
    },
    /// A target refused the request (bad input, or a revision conflict on writes).
    #[error("{target} refused: {code:?}: {message}")]
    Rejected {
        /// The target.
        target: String,
        /// The gRPC code (`Aborted` is a revision conflict).
        code: Code,
        /// Its message.
        message: String,
    },
    /// The client is misconfigured.
    #[error("configuration: {0}")]
    Config(String),
}

pub(crate) struct Target {
    pub name: String,
    pub url: String,
    pub local: bool,
    pub client: SessionsClient<Channel>,
    pub health: Health,
    pub deadline: Duration,
}

/// Why one call to one target failed.
enum CallError {
    /// Worth trying elsewhere (unreachable, deadline, server trouble).
    Retry(String),
    /// The request itself is wrong: the same everywhere.
    Reject(Code, String),
}

fn classify(s: &tonic::Status) -> CallError {
    match s.code() {
        Code::InvalidArgument | Code::Aborted | Code::AlreadyExists | Code::ResourceExhausted => {
            CallError::Reject(s.code(), s.message().to_owned())
        }
        _ => CallError::Retry(format!("{:?}: {}", s.code(), s.message())),
    }
}

pub(crate) struct Inner {
    /// The chain in order, swapped whole when the topology changes.
    pub targets: ArcSwap<Vec<Arc<Target>>>,
    pub cache: Cache<Key, Entry>,
    pub cfg: ClientBuilder,
    pub watches: Mutex<HashMap<Arc<str>, Arc<WatchState>>>,
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

impl Client {
    /// Starts configuring a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    pub(crate) fn from_builder(cfg: ClientBuilder) -> Result<Client, ClientError> {
        let targets = make_targets(&cfg, &cfg.targets, &[])?;
        let cache = Cache::builder()
            .max_capacity(cfg.cache_bytes)
            .weigher(weigh)
            .expire_after(EntryExpiry {
                negative_ttl: cfg.negative_ttl,
            })
            .support_invalidation_closures()
            .build();
        let shutdown = CancellationToken::new();
        let inner = Arc::new(Inner {
            targets: ArcSwap::from_pointee(targets),
            cache,
            hedge: HedgeBudget::new(cfg.hedge_ratio),
            cfg,
            watches: Mutex::new(HashMap::new()),
            shutdown: shutdown.clone(),
        });
        tokio::spawn(probe_loop(Arc::downgrade(&inner)));
        Ok(Client {
            inner,
            _guard: Arc::new(DropGuard(shutdown)),
        })
    }

    /// A client for `datacentre` whose chain follows the topology file at `path`:
    /// the file is re-read when it changes, and a valid new chain replaces the old
    /// one (targets that did not change keep their connections and health).
    pub fn from_topology_file(
        path: impl AsRef<std::path::Path>,
        datacentre: &str,
    ) -> Result<Client, ClientError> {
        let watcher = topology::TopologyWatcher::start(path.as_ref(), Duration::from_secs(1))
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let client = ClientBuilder::from_topology(&watcher.current(), datacentre)?.build()?;
        tokio::spawn(follow_topology(
            Arc::downgrade(&client.inner),
            watcher,
            datacentre.to_owned(),
        ));
        Ok(client)
    }

    /// The chain's target names, in order.
    pub fn targets(&self) -> Vec<String> {
        self.inner.targets.load().iter().map(|t| t.name.clone()).collect()
    }

    /// Reads a session: `Ok(None)` if it does not exist (or has expired or been deleted).
    pub async fn get(&self, db: &str, id: &str) -> Result<Option<Session>, ClientError> {
        Ok(self.get_traced(db, id).await?.0)
    }

    /// [`Client::get`], also saying where the answer came from and how long it took.
    pub async fn get_traced(&self, db: &str, id: &str) -> Result<(Option<Session>, Served), ClientError> {
        let started = Instant::now();
        let state = watch::ensure(&self.inner, db);
        let key: Key = (Arc::from(db), Arc::from(id));
        if let Some(entry) = self.inner.cache.get(&key).await {
            if state.vouches_for(entry.fetched, self.inner.cfg.max_staleness) {
                let source = if entry.session.is_some() {
                    metrics::counter!("edge_cache_hits_total").increment(1);
                    Source::Cache
                } else {
                    metrics::counter!("edge_negative_hits_total").increment(1);
                    Source::NegativeCache
                };
                let served = Served {
                    source,
                    latency: started.elapsed(),
                };
                return Ok((entry.session.map(|s| (*s).clone()), served));
            }
            metrics::counter!("edge_stale_refetches_total").increment(1);
            self.inner.cache.invalidate(&key).await;
        }
        metrics::counter!("edge_cache_misses_total").increment(1);
        let served_by: Arc<Mutex<Option<String>>> = Arc::default();
        let (inner, db2, id2, by) = (
            self.inner.clone(),
            db.to_owned(),
            id.to_owned(),
            served_by.clone(),
        );
        // Concurrent misses for one key share this one fetch.
        let entry = self
            .inner
            .cache
            .try_get_with(key, async move {
                let (session, target) = fetch(&inner, &db2, &id2).await?;
                *by.lock().unwrap_or_else(|e| e.into_inner()) = Some(target);
                Ok::<_, ClientError>(Entry {
                    session: session.map(Arc::new),
                    fetched: Instant::now(),
                })
            })
            .await
            .map_err(|e| (*e).clone())?;
        let who = served_by.lock().unwrap_or_else(|e| e.into_inner()).take();
        let source = match who {
            Some(t) => Source::Target(t),
            // Another caller's fetch answered for us.
            None => Source::Cache,
        };
        Ok((
            entry.session.map(|s| (*s).clone()),
            Served {
                source,
                latency: started.elapsed(),
            },
        ))
    }

    /// Creates (`rev: None`) or updates a session; returns its new revision.
    /// Goes to the local spoke, else along the chain.
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
        let (new_rev, _) = write(&self.inner, |mut c| {
            let req = req.clone();
            async move { c.put(req).await.map(|r| r.into_inner().rev) }
        })
        .await?;
        let session = Session {
            id: id.into(),
            rev: new_rev.clone(),
            body: Bytes::copy_from_slice(body),
        };
        self.inner
            .cache
            .insert(
                (Arc::from(db), Arc::from(id)),
                Entry {
                    session: Some(Arc::new(session)),
                    fetched: Instant::now(),
                },
            )
            .await;
        Ok(new_rev)
    }

    /// Deletes a session at revision `rev` (a tombstone that replicates).
    pub async fn delete(&self, db: &str, id: &str, rev: &str) -> Result<String, ClientError> {
        let req = DeleteRequest {
            db: db.into(),
            id: id.into(),
            rev: rev.into(),
        };
        let (new_rev, _) = write(&self.inner, |mut c| {
            let req = req.clone();
            async move { c.delete(req).await.map(|r| r.into_inner().rev) }
        })
        .await?;
        self.inner
            .cache
            .insert(
                (Arc::from(db), Arc::from(id)),
                Entry {
                    session: None,
                    fetched: Instant::now(),
                },
            )
            .await;
        Ok(new_rev)
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
        self.inner
            .watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(db)
            .is_some_and(|w| w.is_connected())
    }
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
        .map(|TargetSpec { name, url, local }| {
            if let Some(t) = old
                .iter()
                .find(|t| t.name == *name && t.url == *url && t.local == *local)
            {
                return Ok(t.clone());
            }
            let endpoint = Endpoint::from_shared(url.clone())
                .map_err(|e| ClientError::Config(format!("target {name} ({url}): {e}")))?
                .connect_timeout(if *local {
                    cfg.deadline.max(Duration::from_millis(20))
                } else {
                    cfg.fallback_deadline
                })
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_while_idle(true);
            Ok(Arc::new(Target {
                name: name.clone(),
                url: url.clone(),
                local: *local,
                client: SessionsClient::new(endpoint.connect_lazy()),
                health: Health::default(),
                deadline: if *local {
                    cfg.deadline
                } else {
                    cfg.fallback_deadline
                },
            }))
        })
        .collect()
}

/// Keeps a client's chain in step with a topology file (see [`Client::from_topology_file`]).
async fn follow_topology(
    inner: std::sync::Weak<Inner>,
    watcher: topology::TopologyWatcher,
    datacentre: String,
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
        let specs = match ClientBuilder::from_topology(&topology, &datacentre) {
            Ok(b) => b.targets,
            Err(e) => {
                tracing::error!(error = %e, "new topology has no chain for this datacentre; keeping the old one");
                continue;
            }
        };
        match make_targets(&i.cfg, &specs, &i.targets.load()) {
            Ok(targets) => {
                tracing::info!(
                    targets = targets.len(),
                    "topology changed: failover chain updated"
                );
                i.targets.store(Arc::new(targets));
            }
            Err(e) => tracing::error!(error = %e, "new topology rejected; keeping the old chain"),
        }
    }
}

/// One call to one target, within its deadline, recording health and latency.
async fn call<T, F, Fut>(t: &Target, threshold: u32, f: F) -> Result<T, CallError>
where
    F: FnOnce(SessionsClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let started = Instant::now();
    let result = match tokio::time::timeout(t.deadline, f(t.client.clone())).await {
        Err(_) => Err(CallError::Retry(format!("no answer within {:?}", t.deadline))),
        Ok(Err(s)) => Err(classify(&s)),
        Ok(Ok(v)) => Ok(v),
    };
    metrics::histogram!("edge_target_latency_seconds", "target" => t.name.clone())
        .record(started.elapsed().as_secs_f64());
    match &result {
        Ok(_) | Err(CallError::Reject(..)) => t.health.success(),
        Err(CallError::Retry(why)) => {
            if t.health.failure(threshold) {
                tracing::warn!(target = %t.name, reason = %why, "target marked down; probing in the background");
                metrics::gauge!("edge_target_healthy", "target" => t.name.clone()).set(0.0);
            }
        }
    }
    result
}

/// One target's answer to a read.
enum Lookup {
    Found(Session),
    /// Never seen there: it may exist elsewhere (written moments ago).
    Missing,
    /// Deleted or expired there: an older copy elsewhere must not win.
    Gone,
}

async fn get_one(t: &Target, threshold: u32, db: &str, id: &str) -> Result<Lookup, CallError> {
    let req = GetRequest {
        db: db.into(),
        id: id.into(),
    };
    let resp = call(t, threshold, |mut c| async move { c.get(req).await })
        .await?
        .into_inner();
    Ok(match resp.session {
        Some(s) => Lookup::Found(Session {
            id: s.id,
            rev: s.rev,
            body: s.body,
        }),
        None if resp.not_found_reason.is_empty() || resp.not_found_reason == "missing" => Lookup::Missing,
        None => Lookup::Gone,
    })
}

/// The miss path: local spoke first (hedged if configured), then the chain; a
/// "not found" from a local spoke is confirmed further along the chain.
async fn fetch(inner: &Inner, db: &str, id: &str) -> Result<(Option<Session>, String), ClientError> {
    inner.hedge.earn();
    let threshold = inner.cfg.failure_threshold;
    let mut attempts = Vec::new();
    let targets = inner.targets.load_full();
    let available: Vec<&Arc<Target>> = targets
        .iter()
        .filter(|t| {
            let ok = t.health.is_available();
            if !ok {
                metrics::counter!("edge_fallbacks_total", "reason" => "circuit_open").increment(1);
                attempts.push((t.name.clone(), "skipped: marked down".to_owned()));
            }
            ok
        })
        .collect();
    let mut i = 0;
    while i < available.len() {
        let t = available[i];
        let next = available.get(i + 1);
        let result = match (inner.cfg.hedge_after, next) {
            (Some(after), Some(n)) if t.local => hedged(inner, t, n, after, db, id).await,
            _ => get_one(t, threshold, db, id).await.map(|s| (s, t.name.clone())),
        };
        match result {
            Ok((Lookup::Gone, by)) => return Ok((None, by)),
            Ok((Lookup::Found(s), by)) => {
                tracing::debug!(target_name = %by, db, id, skipped = attempts.len(), "read served");
                return Ok((Some(s), by));
            }
            Ok((Lookup::Missing, by)) => {
                tracing::debug!(target_name = %by, db, id, "not found; confirming further along the chain");
                // Written elsewhere moments ago? Ask further along before saying no.
                let confirm: Vec<&Arc<Target>> = available[i + 1..]
                    .iter()
                    .take(inner.cfg.miss_checks)
                    .copied()
                    .collect();
                if !confirm.is_empty() {
                    metrics::counter!("edge_miss_confirmations_total").increment(1);
                }
                let answers =
                    futures_util::future::join_all(confirm.iter().map(|c| get_one(c, threshold, db, id)))
                        .await;
                for (c, a) in confirm.iter().zip(answers) {
                    if let Ok(Lookup::Found(s)) = a {
                        metrics::counter!("edge_fallbacks_total", "reason" => "miss_found_elsewhere")
                            .increment(1);
                        return Ok((Some(s), c.name.clone()));
                    }
                }
                return Ok((None, by));
            }
            Err(CallError::Reject(code, message)) => {
                return Err(ClientError::Rejected {
                    target: t.name.clone(),
                    code,
                    message,
                })
            }
            Err(CallError::Retry(why)) => {
                tracing::debug!(target_name = %t.name, reason = %why, "read failed; trying the next target");
                metrics::counter!("edge_fallbacks_total", "reason" => "error").increment(1);
                attempts.push((t.name.clone(), why));
            }
        }
        i += 1;
    }
    Err(ClientError::Unavailable { attempts })
}

/// Asks `first`; if it has not answered after `after` (and the budget allows),
/// also asks `second`, and takes whichever answers first.
async fn hedged(
    inner: &Inner,
    first: &Target,
    second: &Target,
    after: Duration,
    db: &str,
    id: &str,
) -> Result<(Lookup, String), CallError> {
    let threshold = inner.cfg.failure_threshold;
    let a = get_one(first, threshold, db, id);
    tokio::pin!(a);
    tokio::select! {
        r = &mut a => return r.map(|s| (s, first.name.clone())),
        _ = tokio::time::sleep(after) => {}
    }
    if !inner.hedge.try_spend() {
        return a.await.map(|s| (s, first.name.clone()));
    }
    metrics::counter!("edge_hedges_total").increment(1);
    let b = get_one(second, threshold, db, id);
    tokio::pin!(b);
    tokio::select! {
        r = &mut a => match r {
            Ok(s) => Ok((s, first.name.clone())),
            Err(_) => b.await.map(|s| (s, second.name.clone())),
        },
        r = &mut b => match r {
            Ok(s) => Ok((s, second.name.clone())),
            Err(_) => a.await.map(|s| (s, first.name.clone())),
        },
    }
}

/// Writes go to the first available target that answers.
async fn write<T, F, Fut>(inner: &Inner, f: F) -> Result<(T, String), ClientError>
where
    F: Fn(SessionsClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut attempts = Vec::new();
    let targets = inner.targets.load_full();
    for t in targets.iter().filter(|t| t.health.is_available()) {
        match call(t, inner.cfg.failure_threshold, &f).await {
            Ok(v) => return Ok((v, t.name.clone())),
            Err(CallError::Reject(code, message)) => {
                return Err(ClientError::Rejected {
                    target: t.name.clone(),
                    code,
                    message,
                })
            }
            Err(CallError::Retry(why)) => {
                metrics::counter!("edge_fallbacks_total", "reason" => "write_error").increment(1);
                attempts.push((t.name.clone(), why));
            }
        }
    }
    Err(ClientError::Unavailable { attempts })
}

/// Probes targets marked down until they answer again.
async fn probe_loop(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(i) = inner.upgrade() else { return };
        let interval = i.cfg.probe_interval;
        let shutdown = i.shutdown.clone();
        let targets = i.targets.load_full();
        for t in targets.iter().filter(|t| !t.health.is_available()) {
            if probe_ok(t).await {
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
    match tokio::time::timeout(
        t.deadline.max(Duration::from_millis(100)),
        t.client.clone().get(req),
    )
    .await
    {
        Ok(Ok(_)) => true,
        Ok(Err(s)) => !matches!(
            s.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled
        ),
        Err(_) => false,
    }
}
