//! Certificate rotation without restart.
//!
//! [`ReloadingTls`] keeps the current [`TlsMaterial`] and the configs built from it
//! behind an `ArcSwap`. [`ReloadingTls::reload`] re-reads the files; invalid new files
//! leave the old material in place (logged and counted). [`ReloadingTls::spawn_watcher`]
//! reloads when the files change and on SIGHUP. New connections use the new configs;
//! connections already established keep the ones they were made with.
//!
//! Writers should rename new files into place: a watcher that sees a new certificate
//! beside the old key counts one failed reload and picks the pair up once both are there.

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rustls::{ClientConfig, ServerConfig};
use tokio_util::sync::CancellationToken;

use super::material::{ClientAuth, TlsMaterial, TlsPaths};
use super::TlsError;

/// Counter: reloads that failed and kept the previous material.
pub const RELOAD_FAILURES_METRIC: &str = "sessionfleet_tls_reload_failures_total";
/// Gauge: seconds until the own certificate's notAfter (negative once expired).
pub const CERT_EXPIRY_METRIC: &str = "sessionfleet_tls_cert_expiry_seconds";

type AlpnKey = Vec<Vec<u8>>;
/// Server configs built so far, by (client auth, ALPN list).
type ServerCache = RwLock<Vec<((ClientAuth, AlpnKey), Arc<ServerConfig>)>>;
/// Client configs built so far, by ALPN list.
type ClientCache = RwLock<Vec<(AlpnKey, Arc<ClientConfig>)>>;

/// One loaded generation of material and the configs built from it so far.
struct Current {
    material: Arc<TlsMaterial>,
    generation: u64,
    servers: ServerCache,
    clients: ClientCache,
}

/// What the files looked like at the last (attempted) load.
#[derive(Default)]
struct Seen {
    /// (path, mtime, len) of each file; `None` where it could not be stat'ed.
    meta: Vec<(PathBuf, Option<(SystemTime, u64)>)>,
    /// Hash of the contents read at the last load.
    hash: u64,
}

/// TLS material that follows its files. See the module documentation.
pub struct ReloadingTls {
    paths: TlsPaths,
    current: ArcSwap<Current>,
    /// Serialises reloads and remembers what they read.
    seen: Mutex<Seen>,
}

impl fmt::Debug for ReloadingTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cur = self.current.load();
        f.debug_struct("ReloadingTls")
            .field("paths", &self.paths)
            .field("generation", &cur.generation)
            .field("material", &cur.material)
            .finish()
    }
}

fn alpn_key(alpn: &[&[u8]]) -> AlpnKey {
    alpn.iter().map(|p| p.to_vec()).collect()
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Reads every file (in `TlsPaths::files` order) and hashes the contents.
fn read_all(paths: &TlsPaths) -> Result<(Vec<Vec<u8>>, u64), TlsError> {
    let mut hasher = DefaultHasher::new();
    let mut out = Vec::new();
    for p in paths.files() {
        let bytes = std::fs::read(p).map_err(|source| TlsError::Io {
            path: p.to_owned(),
            source,
        })?;
        bytes.hash(&mut hasher);
        out.push(bytes);
    }
    Ok((out, hasher.finish()))
}

fn stat_all(paths: &TlsPaths) -> Vec<(PathBuf, Option<(SystemTime, u64)>)> {
    paths
        .files()
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            (p.to_owned(), m)
        })
        .collect()
}

fn material_from(paths: &TlsPaths, files: &[Vec<u8>]) -> Result<TlsMaterial, TlsError> {
    match (&paths.cert, &paths.key, files) {
        (Some(c), Some(k), [ca, cert, key]) => TlsMaterial::from_pem(&paths.ca, ca, Some((c, cert, k, key))),
        (None, None, [ca]) => TlsMaterial::from_pem(&paths.ca, ca, None),
        (Some(_), None, _) => Err(TlsError::HalfPair("certificate")),
        (None, Some(_), _) => Err(TlsError::HalfPair("key")),
        _ => Err(TlsError::Config(
            "internal: file count does not match paths".into(),
        )),
    }
}

/// Warns when the own certificate is already expired (peers will refuse it).
fn warn_if_expired(material: &TlsMaterial) {
    if let Some(not_after) = material.not_after().filter(|&t| t <= now_unix()) {
        tracing::warn!(
            identity = material.identity().map(|i| i.to_uri()),
            not_after,
            "own TLS certificate has expired; peers will refuse it"
        );
    }
}

fn set_expiry_gauge(material: &TlsMaterial) {
    if let Some(not_after) = material.not_after() {
        metrics::gauge!(CERT_EXPIRY_METRIC).set((not_after - now_unix()) as f64);
    }
}

impl ReloadingTls {
    /// Loads the material for the first time; fails if it is invalid (there is nothing
    /// old to keep).
    pub fn load(paths: TlsPaths) -> Result<ReloadingTls, TlsError> {
        let (files, hash) = read_all(&paths)?;
        let meta = stat_all(&paths);
        let material = material_from(&paths, &files)?;
        set_expiry_gauge(&material);
        warn_if_expired(&material);
        tracing::info!(
            identity = material.identity().map(|i| i.to_uri()),
            not_after = material.not_after(),
            ca = %paths.ca.display(),
            "TLS material loaded"
        );
        Ok(ReloadingTls {
            current: ArcSwap::from_pointee(Current::new(Arc::new(material), 0)),
            paths,
            seen: Mutex::new(Seen { meta, hash }),
        })
    }

    /// The files this material is read from.
    pub fn paths(&self) -> &TlsPaths {
        &self.paths
    }

    /// The current material.
    pub fn material(&self) -> Arc<TlsMaterial> {
        self.current.load().material.clone()
    }

    /// How many successful reloads have replaced the first material.
    pub fn generation(&self) -> u64 {
        self.current.load().generation
    }

    /// The server config of the current material for `client_auth` and `alpn`, built once
    /// per material generation.
    pub fn current_server(
        &self,
        client_auth: ClientAuth,
        alpn: &[&[u8]],
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let cur = self.current.load();
        let key = (client_auth, alpn_key(alpn));
        if let Some((_, c)) = cur
            .servers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(k, _)| *k == key)
        {
            return Ok(c.clone());
        }
        let config = cur.material.server_config(client_auth, alpn)?;
        let mut cache = cur.servers.write().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, c)) = cache.iter().find(|(k, _)| *k == key) {
            return Ok(c.clone());
        }
        cache.push((key, config.clone()));
        Ok(config)
    }

    /// The client config of the current material for `alpn`, built once per material
    /// generation.
    pub fn current_client(&self, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, TlsError> {
        let cur = self.current.load();
        let key = alpn_key(alpn);
        if let Some((_, c)) = cur
            .clients
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(k, _)| *k == key)
        {
            return Ok(c.clone());
        }
        let config = cur.material.client_config(alpn)?;
        let mut cache = cur.clients.write().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, c)) = cache.iter().find(|(k, _)| *k == key) {
            return Ok(c.clone());
        }
        cache.push((key, config.clone()));
        Ok(config)
    }

    /// Re-reads the files. On success the new material replaces the old (logged at info);
    /// on failure the old material stays, the error is logged as a warning and
    /// `sessionfleet_tls_reload_failures_total` is incremented.
    pub fn reload(&self) -> Result<(), TlsError> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        self.reload_locked(&mut seen)
    }

    fn reload_locked(&self, seen: &mut Seen) -> Result<(), TlsError> {
        seen.meta = stat_all(&self.paths);
        let result = read_all(&self.paths).and_then(|(files, hash)| {
            seen.hash = hash;
            material_from(&self.paths, &files)
        });
        match result {
            Ok(material) => {
                set_expiry_gauge(&material);
                warn_if_expired(&material);
                let generation = self.current.load().generation + 1;
                tracing::info!(
                    identity = material.identity().map(|i| i.to_uri()),
                    not_after = material.not_after(),
                    generation,
                    "TLS material reloaded"
                );
                self.current
                    .store(Arc::new(Current::new(Arc::new(material), generation)));
                Ok(())
            }
            Err(e) => {
                metrics::counter!(RELOAD_FAILURES_METRIC).increment(1);
                tracing::warn!(error = %e, "TLS reload failed; keeping the previous certificates");
                Err(e)
            }
        }
    }

    /// Reloads if the files changed since the last load: cheap when they did not
    /// (mtime and length), and a content hash decides when those moved. Returns whether
    /// a reload was attempted.
    pub fn reload_if_changed(&self) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let meta = stat_all(&self.paths);
        if meta == seen.meta {
            return false;
        }
        match read_all(&self.paths) {
            Ok((_, hash)) if hash == seen.hash => {
                seen.meta = meta;
                false
            }
            _ => {
                let _ = self.reload_locked(&mut seen);
                true
            }
        }
    }

    /// Polls the files every `every` and reloads on change or SIGHUP, until `cancel`.
    /// Also refreshes the expiry gauge on every poll.
    pub fn spawn_watcher(
        self: &Arc<Self>,
        every: Duration,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGHUP; TLS files are only polled");
                    None
                }
            };
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                let hup_recv = async {
                    match hup.as_mut() {
                        Some(s) => s.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => {
                        let t = this.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            t.reload_if_changed();
                            set_expiry_gauge(&t.material());
                        }).await;
                    }
                    _ = hup_recv => {
                        tracing::info!("SIGHUP: reloading TLS material");
                        let t = this.clone();
                        let _ = tokio::task::spawn_blocking(move || t.reload()).await;
                    }
                }
            }
        })
    }
}

impl Current {
    fn new(material: Arc<TlsMaterial>, generation: u64) -> Current {
        Current {
            material,
            generation,
            servers: RwLock::new(Vec::new()),
            clients: RwLock::new(Vec::new()),
        }
    }
}
