//! One HTTP/2 connection (tonic channel) per worker.

use std::time::Instant;

use proto::v1::sessions_client::SessionsClient;
use proto::v1::GetRequest;
use rand::{Rng, SeedableRng};

use crate::config::{key, BenchConfig};
use crate::{new_histogram, record, BenchError, WorkerResult};

pub(crate) async fn worker(
    cfg: &BenchConfig,
    _worker: usize,
    deadline: Instant,
) -> Result<WorkerResult, BenchError> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", cfg.grpc))
        .map_err(|e| BenchError::Connect {
            addr: cfg.grpc.to_string(),
            reason: e.to_string(),
        })?
        .tcp_nodelay(true);
    let mut client = SessionsClient::connect(endpoint)
        .await
        .map_err(|e| BenchError::Connect {
            addr: cfg.grpc.to_string(),
            reason: e.to_string(),
        })?;
    let mut histogram = new_histogram();
    let (mut ops, mut errors) = (0u64, 0u64);
    let mut rng = rand::rngs::StdRng::from_os_rng();
    while Instant::now() < deadline {
        let req = GetRequest {
            db: cfg.db.clone(),
            id: key(rng.random_range(0..cfg.keys.max(1))),
        };
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
