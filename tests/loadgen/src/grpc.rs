//! One HTTP/2 connection (tonic channel) per connection, shared by `streams` workers,
//! each with one request in flight: N connections × M concurrent streams.

use std::time::Instant;

use proto::v1::sessions_client::SessionsClient;
use proto::v1::GetRequest;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

use crate::config::{key, BenchConfig};
use crate::{new_histogram, record, BenchError, WorkerResult};

/// Opens one connection (lazily: on its first request) to the node's gRPC address.
pub(crate) fn channel(cfg: &BenchConfig) -> Result<Channel, BenchError> {
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    proto::tls::grpc_channel(&format!("{scheme}://{}", cfg.grpc), cfg.tls.as_ref(), |e| {
        e.tcp_nodelay(true)
    })
    .map_err(|e| BenchError::Connect {
        addr: cfg.grpc.to_string(),
        reason: e.to_string(),
    })
}

/// One closed-loop stream over `channel` (a clone shares its connection).
pub(crate) async fn worker(
    cfg: &BenchConfig,
    channel: Channel,
    deadline: Instant,
) -> Result<WorkerResult, BenchError> {
    let mut client = SessionsClient::new(channel);
    let bearer: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> = match &cfg.token {
        Some(t) => Some(format!("Bearer {t}").parse().map_err(|_| BenchError::Connect {
            addr: cfg.grpc.to_string(),
            reason: "the token is not printable ASCII".into(),
        })?),
        None => None,
    };
    let mut histogram = new_histogram();
    let (mut ops, mut errors) = (0u64, 0u64);
    let mut rng = rand::rngs::StdRng::from_os_rng();
    while Instant::now() < deadline {
        let mut req = tonic::Request::new(GetRequest {
            db: cfg.db.clone(),
            id: key(rng.random_range(0..cfg.keys.max(1))),
        });
        if let Some(v) = &bearer {
            req.metadata_mut().insert("authorization", v.clone());
        }
        let started = Instant::now();
        match client.get(req).await {
            Ok(r) if r.get_ref().session.is_some() => {
                record(&mut histogram, started);
                ops += 1;
            }
            _ => errors += 1,
        }
    }
    Ok(WorkerResult {
        histogram,
        ops,
        errors,
    })
}
