//! Configuring a [`Client`]: targets in failover order, deadlines, cache size.

use std::time::Duration;

use crate::client::{Client, ClientError};

/// A server the client may ask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TargetSpec {
    pub name: String,
    pub url: String,
    pub local: bool,
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
        });
        self
    }

    /// The next target of the failover chain (the hub, then other datacentres).
    pub fn fallback(mut self, name: impl Into<String>, grpc_url: impl Into<String>) -> Self {
        self.targets.push(TargetSpec {
            name: name.into(),
            url: grpc_url.into(),
            local: false,
        });
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
        let mut b = ClientBuilder::default()
            .cache_bytes(c.cache_bytes)
            .deadline(Duration::from_millis(c.deadline_ms))
            .max_staleness(Duration::from_millis(c.max_staleness_ms))
            .negative_ttl(Duration::from_millis(c.negative_ttl_ms));
        if let Some(h) = c.hedge_after_ms {
            b = b.hedge_after(Duration::from_millis(h));
        }
        for t in chain {
            let url = format!("http://{}", t.grpc);
            let local = t.datacentre.as_ref().is_some_and(|d| d.as_str() == datacentre);
            b.targets.push(TargetSpec {
                name: t.node.to_string(),
                url,
                local,
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

    /// While the invalidation stream is down, cached entries older than this are
    /// not served. Default 2 s.
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
