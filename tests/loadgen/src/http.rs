//! One HTTP/1.1 keep-alive connection per worker.

use std::time::Instant;

use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;
use rand::{Rng, SeedableRng};
use tokio::net::TcpStream;

use crate::config::{body, key, BenchConfig, Workload};
use crate::{new_histogram, record, BenchError, WorkerResult};

pub(crate) async fn worker(
    cfg: &BenchConfig,
    worker: usize,
    deadline: Instant,
) -> Result<WorkerResult, BenchError> {
    let connect_err = |e: &dyn std::fmt::Display| BenchError::Connect {
        addr: cfg.http.to_string(),
        reason: e.to_string(),
    };
    let stream = TcpStream::connect(cfg.http).await.map_err(|e| connect_err(&e))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = http1::handshake::<_, Full<bytes::Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| connect_err(&e))?;
    tokio::spawn(conn);
    let mut histogram = new_histogram();
    let (mut ops, mut errors) = (0u64, 0u64);
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let host = cfg.http.to_string();
    let mut n = 0usize;
    while Instant::now() < deadline {
        let req = match cfg.workload {
            Workload::HttpGet => {
                let k = key(rng.random_range(0..cfg.keys.max(1)));
                Request::get(format!("/{}/{k}", cfg.db))
                    .header("host", &host)
                    .body(Full::default())
            }
            _ => {
                n += 1;
                Request::put(format!("/{}/put-{worker}-{n}", cfg.db))
                    .header("host", &host)
                    .header("content-type", "application/json")
                    .body(Full::new(body(cfg.value_size, n).into()))
            }
        };
        let Ok(req) = req else {
            errors += 1;
            continue;
        };
        let started = Instant::now();
        if sender.ready().await.is_err() {
            return Err(connect_err(&"connection closed by the server"));
        }
        match sender.send_request(req).await {
            Ok(resp) => {
                let ok = resp.status().is_success();
                let _ = resp.into_body().collect().await;
                record(&mut histogram, started);
                if ok {
                    ops += 1;
                } else {
                    errors += 1;
                }
            }
            Err(_) => errors += 1,
        }
    }
    Ok(WorkerResult {
        histogram,
        ops,
        errors,
    })
}
