//! One HTTP/1.1 keep-alive connection per worker.

use std::time::Instant;

use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;
use rand::{Rng, SeedableRng};
use tokio::net::TcpStream;

use crate::config::{body, key, BenchConfig, Workload};

/// A connection's byte stream: TCP, or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Opens one HTTP/1.1 connection to the node (TLS when configured).
pub(crate) async fn connect(cfg: &BenchConfig) -> Result<http1::SendRequest<Full<bytes::Bytes>>, BenchError> {
    let connect_err = |e: &dyn std::fmt::Display| BenchError::Connect {
        addr: cfg.http.to_string(),
        reason: e.to_string(),
    };
    let stream = TcpStream::connect(cfg.http).await.map_err(|e| connect_err(&e))?;
    let _ = stream.set_nodelay(true);
    let io: Box<dyn Io> = match &cfg.tls {
        Some(tls) => {
            let config = tls
                .current_client(&[proto::tls::ALPN_HTTP11])
                .map_err(|e| connect_err(&e))?;
            let name = proto::tls::server_name(&cfg.http.ip().to_string()).map_err(|e| connect_err(&e))?;
            let tls_stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await
                .map_err(|e| connect_err(&e))?;
            Box::new(tls_stream)
        }
        None => Box::new(stream),
    };
    let (sender, conn) = http1::handshake::<_, Full<bytes::Bytes>>(TokioIo::new(io))
        .await
        .map_err(|e| connect_err(&e))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One client of a reconnect storm: connect at `start`, one `GET`, report.
pub(crate) async fn storm_client(cfg: &BenchConfig, start: Instant) -> Result<WorkerResult, BenchError> {
    let mut histogram = new_histogram();
    let k = key(worker_key(cfg));
    let outcome = async {
        let mut sender = connect(cfg).await?;
        let req = authorized(Request::get(format!("/{}/{k}", cfg.db)), cfg.token.as_deref())
            .header("host", cfg.http.to_string())
            .body(Full::default())
            .map_err(|e| BenchError::Connect {
                addr: cfg.http.to_string(),
                reason: e.to_string(),
            })?;
        let resp = sender.send_request(req).await.map_err(|e| BenchError::Connect {
            addr: cfg.http.to_string(),
            reason: e.to_string(),
        })?;
        let ok = resp.status().is_success();
        let _ = resp.into_body().collect().await;
        Ok::<bool, BenchError>(ok)
    }
    .await;
    record(&mut histogram, start);
    let ok = matches!(outcome, Ok(true));
    Ok(WorkerResult {
        histogram,
        ops: u64::from(ok),
        errors: u64::from(!ok),
    })
}

fn worker_key(cfg: &BenchConfig) -> usize {
    rand::rng().random_range(0..cfg.keys.max(1))
}
use crate::{authorized, new_histogram, record, BenchError, WorkerResult};

pub(crate) async fn worker(
    cfg: &BenchConfig,
    worker: usize,
    deadline: Instant,
) -> Result<WorkerResult, BenchError> {
    let connect_err = |e: &dyn std::fmt::Display| BenchError::Connect {
        addr: cfg.http.to_string(),
        reason: e.to_string(),
    };
    let mut sender = connect(cfg).await?;
    let mut histogram = new_histogram();
    let (mut ops, mut errors) = (0u64, 0u64);
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let host = cfg.http.to_string();
    let mut n = 0usize;
    while Instant::now() < deadline {
        let req = match cfg.workload {
            Workload::HttpGet => {
                let k = key(rng.random_range(0..cfg.keys.max(1)));
                authorized(Request::get(format!("/{}/{k}", cfg.db)), cfg.token.as_deref())
                    .header("host", &host)
                    .body(Full::default())
            }
            _ => {
                n += 1;
                authorized(
                    Request::put(format!("/{}/put-{worker}-{n}", cfg.db)),
                    cfg.token.as_deref(),
                )
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
