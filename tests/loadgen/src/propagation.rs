//! Propagation lag: write at one node at a steady rate, and time when each write
//! appears in another node's changes feed (both on this machine, one clock).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use tokio::net::TcpStream;

use crate::config::body;
use crate::{new_histogram, BenchError};

/// What a propagation run measures.
#[derive(Clone, Debug)]
pub struct PropagationConfig {
    /// Where writes go (HTTP).
    pub writer: SocketAddr,
    /// Where they must appear (HTTP).
    pub reader: SocketAddr,
    /// The database (must exist on both and replicate between them).
    pub db: String,
    /// Writes per second.
    pub rate: u32,
    /// How long to write.
    pub duration: Duration,
    /// Body size.
    pub value_size: usize,
    /// The bearer token sent with every request.
    pub token: Option<String>,
}

/// Lag percentiles.
#[derive(Clone, Debug, Serialize)]
pub struct PropagationReport {
    /// Writes acknowledged.
    pub written: u64,
    /// Writes seen at the reader before the deadline.
    pub seen: u64,
    /// Achieved write rate.
    pub write_rate: f64,
    /// Median lag, ms.
    pub p50_ms: f64,
    /// 99th percentile lag, ms.
    pub p99_ms: f64,
    /// Worst lag, ms.
    pub max_ms: f64,
}

fn err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Connect {
        addr: "propagation".into(),
        reason: e.to_string(),
    }
}

/// Runs the measurement.
pub async fn run(cfg: &PropagationConfig) -> Result<PropagationReport, BenchError> {
    let acked: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let prefix = format!("prop-{}", std::process::id());

    // Follow the reader's feed from now on.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let info = client
        .request(
            crate::authorized(
                Request::get(format!("http://{}/{}", cfg.reader, cfg.db)),
                cfg.token.as_deref(),
            )
            .body(Full::default())
            .map_err(err)?,
        )
        .await
        .map_err(err)?;
    let info: serde_json::Value =
        serde_json::from_slice(&info.into_body().collect().await.map_err(err)?.to_bytes()).map_err(err)?;
    let since = info["update_seq"].as_u64().unwrap_or(0);
    let feed_url = format!(
        "http://{}/{}/_changes?feed=continuous&heartbeat=1000&since={since}",
        cfg.reader, cfg.db
    );
    let feed = client
        .request(
            crate::authorized(Request::get(feed_url), cfg.token.as_deref())
                .body(Full::default())
                .map_err(err)?,
        )
        .await
        .map_err(err)?;
    let seen2 = seen.clone();
    let prefix2 = prefix.clone();
    let follower = tokio::spawn(async move {
        let mut body = feed.into_body();
        let mut buf = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else { continue };
            let now = Instant::now();
            buf.extend_from_slice(&data);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) {
                    if let Some(id) = v["id"].as_str().filter(|id| id.starts_with(&prefix2)) {
                        seen2
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(id.to_owned())
                            .or_insert(now);
                    }
                }
            }
        }
    });

    // Writers: 8 connections sharing the rate.
    let writers = 8u32;
    let per_writer = Duration::from_secs_f64(f64::from(writers) / f64::from(cfg.rate.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (cfg, acked, prefix) = (cfg.clone(), acked.clone(), prefix.clone());
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(cfg.writer).await.map_err(err)?;
            let _ = stream.set_nodelay(true);
            let (mut tx, conn) = http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(err)?;
            tokio::spawn(conn);
            let mut tick = tokio::time::interval(per_writer);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0u64;
            while started.elapsed() < cfg.duration {
                tick.tick().await;
                n += 1;
                let id = format!("{prefix}-{w}-{n}");
                let req = crate::authorized(Request::put(format!("/{}/{id}", cfg.db)), cfg.token.as_deref())
                    .header("host", cfg.writer.to_string())
                    .header("content-type", "application/json")
                    .body(Full::new(body(cfg.value_size, n as usize).into()))
                    .map_err(err)?;
                tx.ready().await.map_err(err)?;
                let resp = tx.send_request(req).await.map_err(err)?;
                let ok = resp.status().is_success();
                let _ = resp.into_body().collect().await;
                if ok {
                    acked
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(id, Instant::now());
                }
            }
            Ok::<_, BenchError>(())
        }));
    }
    for t in tasks {
        t.await.map_err(err)??;
    }
    let write_secs = started.elapsed().as_secs_f64();
    // Give the last writes time to arrive.
    let deadline = Instant::now() + Duration::from_secs(30);
    let total = acked.lock().unwrap_or_else(|e| e.into_inner()).len();
    while Instant::now() < deadline && seen.lock().unwrap_or_else(|e| e.into_inner()).len() < total {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    follower.abort();
    let acked = acked.lock().unwrap_or_else(|e| e.into_inner());
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = new_histogram();
    for (id, at) in acked.iter() {
        if let Some(s) = seen.get(id) {
            let _ = h.record(s.saturating_duration_since(*at).as_micros().max(1) as u64);
        }
    }
    Ok(PropagationReport {
        written: acked.len() as u64,
        seen: h.len(),
        write_rate: acked.len() as f64 / write_secs,
        p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
        max_ms: h.max() as f64 / 1000.0,
    })
}
