//! Creating the database and its keyspace of sessions before a run.

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::{body, key, BenchConfig};
use crate::BenchError;

/// Creates the database (if missing) and `cfg.keys` sessions, 500 per request.
pub async fn preload(cfg: &BenchConfig) -> Result<(), BenchError> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let base = format!("http://{}/{}", cfg.http, cfg.db);
    let put = Request::put(&base)
        .body(Full::default())
        .map_err(|e| BenchError::Preload(e.to_string()))?;
    let resp = client
        .request(put)
        .await
        .map_err(|e| BenchError::Preload(e.to_string()))?;
    if !(resp.status() == 201 || resp.status() == 412) {
        return Err(BenchError::Preload(format!(
            "creating {base}: HTTP {}",
            resp.status()
        )));
    }
    for start in (0..cfg.keys).step_by(500) {
        let mut docs = Vec::new();
        for i in start..(start + 500).min(cfg.keys) {
            let mut doc = body(cfg.value_size, i);
            // Splice the id in front of the body's members.
            let id = format!("{{\"_id\":\"{}\",", key(i));
            doc.splice(0..1, id.into_bytes());
            docs.push(String::from_utf8_lossy(&doc).into_owned());
        }
        let payload = format!("{{\"docs\":[{}]}}", docs.join(","));
        let req = Request::post(format!("{base}/_bulk_docs"))
            .header("content-type", "application/json")
            .body(Full::new(payload.into()))
            .map_err(|e| BenchError::Preload(e.to_string()))?;
        let resp = client
            .request(req)
            .await
            .map_err(|e| BenchError::Preload(e.to_string()))?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        if status != 201 {
            return Err(BenchError::Preload(format!("_bulk_docs: HTTP {status}")));
        }
    }
    Ok(())
}
