//! Configuring a [`Client`]: targets in failover order, deadlines, cache size,
//! and the bounds of the serving rule (see the crate docs).

use std::sync::Arc;
use std::time::Duration;

use proto::tls::{ReloadingTls, TlsPaths};

use crate::client::Client;
use crate::credentials::{Bearer, Credentials};
use crate::error::ClientError;

/// A server the client may ask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TargetSpec {
    pub name: String,
    pub url: String,
    pub local: bool,
    /// A hub: where a read behind a read-your-writes token looks.
    pub hub: bool,
}

/// Builds a [`Client`]. Local spokes are asked first, then the fallbacks in
/// the order given (the hub, then other datacentres).
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    pub(crate) targets: Vec<TargetSpec>,
    pub(crate) cache_bytes: u64,
    pub(crate) deadline: Duration,
    pub(crate) fallback_deadline: Duration,
    pub(crate) hedge_after: Option<Duration>,
    pub(crate) hedge_ratio: f64,
    pub(crate) max_staleness: Duration,
    pub(crate) negative_ttl: Duration,
    pub(crate) failure_threshold: u32,
    pub(crate) probe_interval: Duration,
    pub(crate) miss_checks: usize,
    pub(crate) read_budget: Option<Duration>,
    pub(crate) write_deadline: Duration,
    pub(crate) stale_if_error: Duration,
    pub(crate) watch_silence: Duration,
    pub(crate) delete_memory: Duration,
    pub(crate) watch_idle: Duration,
    pub(crate) token_wait: Duration,
    pub(crate) tls: Option<Arc<ReloadingTls>>,
    pub(crate) token: Option<Bearer>,
}

impl Default for ClientBuilder {
    fn default() -> ClientBuilder {
        ClientBuilder {
            targets: Vec::new(),
            cache_bytes: 32 << 20,
            deadline: Duration::from_millis(50),
            fallback_deadline: Duration::from_millis(500),
            hedge_after: None,
            hedge_ratio: 0.1,
            max_staleness: Duration::from_secs(2),
            negative_ttl: Duration::from_millis(500),
            failure_threshold: 3,
            probe_interval: Duration::from_millis(500),
            miss_checks: 2,
            read_budget: None,
            write_deadline: Duration::from_secs(2),
            stale_if_error: Duration::from_secs(10),
            watch_silence: Duration::from_secs(3),
            delete_memory: Duration::from_secs(300),
            watch_idle: Duration::from_secs(60),
            token_wait: Duration::from_millis(500),
            tls: None,
            token: None,
        }
    }
}

impl ClientBuilder {
    /// A spoke of the client's own datacentre (gRPC URL, e.g. `http://10.1.0.5:6984`).
    pub fn local(mut self, name: impl Into<String>, grpc_url: impl Into<String>) -> Self {
        self.targets.push(TargetSpec {
            name: name.into(),
            url: grpc_url.into(),
            local: true,
            hub: false,
        });
        self
    }

    /// The next target of the failover chain (the hub, then other datacentres).
    pub fn fallback(mut self, name: impl Into<String>, grpc_url: impl Into<String>) -> Self {
        self.targets.push(TargetSpec {
            name: name.into(),
            url: grpc_url.into(),
            local: false,
            hub: false,
        });
        self
    }

    /// The next target of the failover chain, which is a hub: like
    /// [`ClientBuilder::fallback`], and where [`crate::Client::read_after`] looks when
    /// the local spoke is behind a token. Without any, it looks at every fallback.
    pub fn hub(mut self, name: impl Into<String>, grpc_url: impl Into<String>) -> Self {
        self.targets.push(TargetSpec {
            name: name.into(),
            url: grpc_url.into(),
            local: false,
            hub: true,
        });
        self
    }

    /// How long [`crate::Client::read_after`] keeps looking for a token's revision
    /// (the write may not have reached any hub yet) before answering
    /// [`crate::ClientError::Behind`]. Default 500 ms.
    pub fn token_wait(mut self, d: Duration) -> Self {
        self.token_wait = d;
        self
    }

    /// Targets from a topology: the datacentre's failover chain, its own spokes first.
    pub fn from_topology(topology: &topology::Topology, datacentre: &str) -> Result<Self, ClientError> {
        let dc = topology::DatacentreName::new(datacentre)
            .map_err(|e| ClientError::Config(format!("datacentre {datacentre:?}: {e}")))?;
        let chain = topology.failover_chain(&dc);
        if chain.is_empty() {
            return Err(ClientError::Config(format!(
                "the topology has no datacentre {datacentre:?}"
            )));
        }
        let c = &topology.client;
        // `deadline_ms` is the budget of one read across the whole chain: the
        // local spoke gets half of it, so a dead one leaves time for the next.
        let budget = Duration::from_millis(c.deadline_ms.max(1));
        let mut b = ClientBuilder::default()
            .cache_bytes(c.cache_bytes)
            .read_budget(budget)
            .deadline((budget / 2).max(Duration::from_millis(1)))
            .fallback_deadline(budget)
            .max_staleness(Duration::from_millis(c.max_staleness_ms))
            .negative_ttl(Duration::from_millis(c.negative_ttl_ms));
        if let Some(h) = c.hedge_after_ms {
            b = b.hedge_after(Duration::from_millis(h));
        }
        // A fleet with `[tls]` is dialled over TLS, verified against its CA; an app
        // presents its own certificate with [`ClientBuilder::tls`].
        let scheme = match &topology.tls {
            Some(files) => {
                b = b.tls_files(TlsPaths {
                    ca: files.ca.clone(),
                    cert: None,
                    key: None,
                })?;
                "https"
            }
            None => "http",
        };
        for t in chain {
            let url = format!("{scheme}://{}", t.grpc);
            let local = t.datacentre.as_ref().is_some_and(|d| d.as_str() == datacentre);
            b.targets.push(TargetSpec {
                name: t.node.to_string(),
                url,
                local,
                hub: t.kind == topology::TargetKind::Hub,
            });
        }
        Ok(b)
    }

    /// Cache bound in bytes (keys, bodies and per-entry overhead). Default 32 MiB.
    pub fn cache_bytes(mut self, bytes: u64) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Deadline of a call to a local spoke. Default 50 ms.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = d;
        self
    }

    /// Deadline of a call to a fallback target. Default 500 ms.
    pub fn fallback_deadline(mut self, d: Duration) -> Self {
        self.fallback_deadline = d;
        self
    }

    /// Also ask the next target if the local spoke has not answered after `d`.
    pub fn hedge_after(mut self, d: Duration) -> Self {
        self.hedge_after = Some(d);
        self
    }

    /// Largest share of requests that may be hedged. Default 0.1.
    pub fn hedge_ratio(mut self, r: f64) -> Self {
        self.hedge_ratio = r;
        self
    }

    /// Entries the invalidation stream does not vouch for (it is down, or they
    /// were read from another store) are served only while younger than this.
    /// 0 serves only vouched entries. Default 2 s.
    pub fn max_staleness(mut self, d: Duration) -> Self {
        self.max_staleness = d;
        self
    }

    /// How long a "not found" is remembered. Default 500 ms.
    pub fn negative_ttl(mut self, d: Duration) -> Self {
        self.negative_ttl = d;
        self
    }

    /// Consecutive failures after which a target is skipped. Default 3.
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.failure_threshold = n.max(1);
        self
    }

    /// How often skipped targets are probed. Default 500 ms.
    pub fn probe_interval(mut self, d: Duration) -> Self {
        self.probe_interval = d;
        self
    }

    /// How many further targets confirm a "not found" from a local spoke. Default 2.
    pub fn miss_checks(mut self, n: usize) -> Self {
        self.miss_checks = n;
        self
    }

    /// Time budget of one read across the whole chain (every target, hedges and
    /// confirmations included); each call gets the smaller of its own deadline
    /// and what is left. Default: `deadline + fallback_deadline`.
    pub fn read_budget(mut self, d: Duration) -> Self {
        self.read_budget = Some(d);
        self
    }

    /// Deadline of one write attempt, sent to the server as `grpc-timeout`.
    /// Separate from the read deadline: a durable write waits for an fsync.
    /// Default 2 s.
    pub fn write_deadline(mut self, d: Duration) -> Self {
        self.write_deadline = d;
        self
    }

    /// When every target is unreachable, a cached session may still be served
    /// (marked [`Served::stale`](crate::Served)) until it is `max_staleness +
    /// stale_if_error` old — never past its expiry or a delete this client saw.
    /// `Duration::ZERO` disables it. Default 10 s.
    pub fn stale_if_error(mut self, d: Duration) -> Self {
        self.stale_if_error = d;
        self
    }

    /// An invalidation stream silent for this long (it heartbeats every
    /// second) is treated as dead: it stops vouching and is reconnected.
    /// Default 3 s.
    pub fn watch_silence(mut self, d: Duration) -> Self {
        self.watch_silence = d.max(Duration::from_millis(1));
        self
    }

    /// How long deletes this client has seen (its own, or its invalidation
    /// stream's) are remembered, so that an older copy read from a lagging
    /// target is answered as deleted. Default 5 min.
    pub fn delete_memory(mut self, d: Duration) -> Self {
        self.delete_memory = d;
        self
    }

    /// A database's invalidation stream ends after this long without reads
    /// (the next read starts it again). Default 60 s.
    pub fn watch_idle(mut self, d: Duration) -> Self {
        self.watch_idle = d;
        self
    }

    /// The read budget in effect.
    pub(crate) fn budget(&self) -> Duration {
        self.read_budget
            .unwrap_or_else(|| self.deadline.saturating_add(self.fallback_deadline))
    }

    /// TLS material for `https://` targets: the fleet CA and, optionally, the
    /// app server's client certificate (`sessionfleet certs client --role app`).
    /// The files are re-read when they change, so a rotated certificate is used for
    /// new connections without a restart (call [`ReloadingTls::spawn_watcher`]).
    pub fn tls(mut self, tls: Arc<ReloadingTls>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The app server's credentials: its certificate (replacing the CA-only TLS a
    /// topology sets up) and/or bearer token.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        if let Some(tls) = credentials.tls {
            self.tls = Some(tls);
        }
        if let Some(token) = credentials.token {
            self.token = Some(token);
        }
        self
    }

    /// As [`ClientBuilder::tls`], loading the files now.
    ///
    /// ```no_run
    /// # use proto::tls::TlsPaths;
    /// let builder = edge_client::Client::builder()
    ///     .local("eu-west-1", "https://10.1.0.5:6984")
    ///     .tls_files(TlsPaths {
    ///         ca: "/etc/sessionfleet/tls/ca.pem".into(),
    ///         cert: Some("/etc/sessionfleet/tls/app.pem".into()),
    ///         key: Some("/etc/sessionfleet/tls/app.key".into()),
    ///     })?;
    /// # Ok::<(), edge_client::ClientError>(())
    /// ```
    pub fn tls_files(self, paths: TlsPaths) -> Result<Self, ClientError> {
        let tls = ReloadingTls::load(paths).map_err(|e| ClientError::Config(format!("TLS: {e}")))?;
        Ok(self.tls(Arc::new(tls)))
    }

    /// The read deadline of a call to `t`.
    pub(crate) fn deadline_of(&self, local: bool) -> Duration {
        if local {
            self.deadline
        } else {
            self.fallback_deadline
        }
    }

    /// Builds the client; needs a Tokio runtime (background tasks).
    pub fn build(self) -> Result<Client, ClientError> {
        if self.targets.is_empty() {
            return Err(ClientError::Config(
                "no targets: add a local spoke and fallbacks".into(),
            ));
        }
        Client::from_builder(self)
    }
}
