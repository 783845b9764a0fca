//! `_local` documents: per-node (replication checkpoints), `0-N` revisions.

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use store::{DocInput, LocalId};

use super::body::{self, json as json_response, json_bytes, Body};
use super::db::open;
use super::error::ApiError;
use super::query::Query;
use crate::node::Shared;

/// Parses a `_local` revision `0-N`.
pub(crate) fn parse_local_rev(rev: &str) -> Result<u64, ApiError> {
    rev.strip_prefix("0-")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| ApiError::bad_request(format!("invalid _local revision {rev:?}: expected 0-N")))
}

pub(crate) fn render(id: &LocalId, rev: u64, body: &[u8]) -> Vec<u8> {
    let mut out =
        serde_json::to_vec(&json!({"_id": format!("_local/{}", id.as_str()), "_rev": format!("0-{rev}")}))
            .unwrap_or_default();
    let inner = if body.len() > 2 {
        &body[1..body.len() - 1]
    } else {
        &[][..]
    };
    if !inner.is_empty() {
        out.pop();
        out.push(b',');
        out.extend_from_slice(inner);
        out.push(b'}');
    }
    out
}

pub(crate) async fn handle(
    shared: &Shared,
    req: Request<Incoming>,
    db: &str,
    id: &str,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let database = open(shared, db)?;
    let lid = LocalId::new(id)?;
    match *req.method() {
        Method::GET | Method::HEAD => {
            let doc = database.get_local(&lid)?;
            Ok(json_bytes(StatusCode::OK, render(&lid, doc.rev, &doc.body)))
        }
        Method::PUT => {
            let max = shared.store.options().max_document_size;
            let bytes = body::read(shared, req).await?;
            let input = DocInput::parse_local(&bytes, max)?;
            let rev = match q.get("rev").or(input.rev.as_deref()) {
                Some(r) => parse_local_rev(r)?,
                None => 0,
            };
            let rev = if input.deleted {
                database.delete_local(&lid, rev).await?;
                0
            } else {
                database.put_local(&lid, rev, input.body).await?
            };
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"ok": true, "id": format!("_local/{id}"), "rev": format!("0-{rev}")}),
            ))
        }
        Method::DELETE => {
            let rev = q.get("rev").map(parse_local_rev).transpose()?;
            let rev = match rev {
                Some(r) => r,
                None => database.get_local(&lid)?.rev,
            };
            database.delete_local(&lid, rev).await?;
            Ok(json_response(
                StatusCode::OK,
                &json!({"ok": true, "id": format!("_local/{id}"), "rev": "0-0"}),
            ))
        }
        _ => Err(ApiError::method_not_allowed("GET,HEAD,PUT,DELETE")),
    }
}
