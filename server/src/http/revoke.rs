//! `POST /{db}/_revoke/{id}?timeout_ms=N`: a revocation over HTTP (see
//! [`crate::revocation`]): every live revision deleted, the tombstones sent ahead
//! of bulk replication, and who has applied them within the wait.

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::body::{json as json_response, Body};
use super::error::ApiError;
use super::query::Query;
use super::router::only;
use crate::node::Shared;

pub(crate) async fn handle(
    shared: &Shared,
    req: Request<Incoming>,
    db: &str,
    id: &str,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    only(req.method(), &[Method::POST])?;
    let db = super::db::open(shared, db)?;
    let doc = store::DocId::new(id)?;
    let ms = q.u64("timeout_ms")?.unwrap_or(0);
    let wait = crate::revocation::timeout(u32::try_from(ms).unwrap_or(u32::MAX));
    let revoked = crate::revocation::revoke(shared, &db, &doc, wait)
        .await
        .map_err(|s| ApiError::new(StatusCode::BAD_GATEWAY, "revocation_failed", s.message().to_owned()))?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "session {id:?} does not exist here; revoke it where it was written, or once it has replicated"
            ))
        })?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "ok": true,
            "id": id,
            "rev": revoked.rev.to_string(),
            "applied": revoked.applied,
            "not_applied": revoked.not_applied,
        }),
    ))
}
