//! Creating the database and its keyspace of sessions before a run.

use http_body_util::{BodyExt, Full};
use hyper::Request;

use crate::config::{body, key, BenchConfig};
use crate::{authorized, BenchError};

/// Creates the database (if missing) and `cfg.keys` sessions, 500 per request, over
/// one connection (TLS when configured).
pub async fn preload(cfg: &BenchConfig) -> Result<(), BenchError> {
    let fail = |e: &dyn std::fmt::Display| BenchError::Preload(e.to_string());
    let mut sender = crate::http::connect(cfg).await?;
    let base = format!("/{}", cfg.db);
    let host = cfg.http.to_string();
    let put = authorized(Request::put(&base), cfg.token.as_deref())
        .header("host", &host)
        .body(Full::default())
        .map_err(|e| fail(&e))?;
    let resp = sender.send_request(put).await.map_err(|e| fail(&e))?;
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    if !(status == 201 || status == 412) {
        return Err(BenchError::Preload(format!("creating {base}: HTTP {status}")));
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
        let req = authorized(Request::post(format!("{base}/_bulk_docs")), cfg.token.as_deref())
            .header("host", &host)
            .header("content-type", "application/json")
            .body(Full::new(payload.into()))
            .map_err(|e| fail(&e))?;
        sender.ready().await.map_err(|e| fail(&e))?;
        let resp = sender.send_request(req).await.map_err(|e| fail(&e))?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        if status != 201 {
            return Err(BenchError::Preload(format!("_bulk_docs: HTTP {status}")));
        }
    }
    Ok(())
}
