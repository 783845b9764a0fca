//! Database endpoints: `PUT/GET/HEAD/DELETE /{db}`, `_ensure_full_commit`,
//! `_compact`, `_revs_limit`.

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use store::{Database, DbName, DbOptions};

use super::body::{self, json as json_response, Body};
use super::error::ApiError;
use super::query::Query;
use super::router::only;
use crate::node::Shared;

pub(crate) fn open(shared: &Shared, name: &str) -> Result<Database, ApiError> {
    let name = DbName::new(name)?;
    Ok(shared.store.db(&name)?)
}

pub(crate) async fn handle(
    shared: &Shared,
    req: Request<Incoming>,
    name: &str,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    match *req.method() {
        Method::PUT => {
            let name = DbName::new(name)?;
            let revs_limit = q.u64("revs_limit")?.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
            if revs_limit == Some(0) {
                return Err(ApiError::query("revs_limit must be at least 1"));
            }
            let expiry_field = q.get("expiry_field").map(str::to_owned);
            shared
                .store
                .create_db(
                    &name,
                    DbOptions {
                        revs_limit,
                        expiry_field,
                    },
                )
                .await?;
            Ok(json_response(StatusCode::CREATED, &json!({"ok": true})))
        }
        Method::GET | Method::HEAD => {
            let db = open(shared, name)?;
            let info = db.info();
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "db_name": info.name.as_str(),
                    "doc_count": info.doc_count,
                    "doc_del_count": info.doc_del_count,
                    "update_seq": info.update_seq,
                    "purge_seq": 0,
                    "compact_running": false,
                    "sizes": {"file": info.disk_size, "external": info.disk_size, "active": info.disk_size},
                    "disk_size": info.disk_size,
                    "instance_start_time": info.incarnation,
                    "disk_format_version": 1,
                    "committed_update_seq": info.update_seq,
                    "revs_limit": info.revs_limit,
                    "expiry_field": info.expiry_field,
                }),
            ))
        }
        Method::DELETE => {
            if q.get("rev").is_some() {
                // CouchDB's guard against deleting a database when a document was meant.
                return Err(ApiError::bad_request(
                    "You tried to DELETE a database with a ?rev= parameter. Did you mean to DELETE a document instead?",
                ));
            }
            shared.store.delete_db(&DbName::new(name)?).await?;
            Ok(json_response(StatusCode::OK, &json!({"ok": true})))
        }
        _ => Err(ApiError::method_not_allowed("GET,HEAD,PUT,DELETE,POST")),
    }
}

/// Nothing to do: every acknowledged write is already synced to disk. The
/// incarnation lets a CouchDB replicator notice a recreated database and
/// abandon its checkpoint, as it does with CouchDB's own.
pub(crate) fn ensure_full_commit(shared: &Shared, name: &str) -> Result<Response<Body>, ApiError> {
    let db = open(shared, name)?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"ok": true, "instance_start_time": db.incarnation()}),
    ))
}

/// Starts an online compaction and answers at once, as CouchDB does.
pub(crate) fn compact(shared: &Shared, name: &str) -> Result<Response<Body>, ApiError> {
    let db = open(shared, name)?;
    tokio::spawn(async move {
        if let Err(e) = db.compact().await {
            tracing::error!(db = %db.name(), error = %e, "compaction failed");
        }
    });
    Ok(json_response(StatusCode::ACCEPTED, &json!({"ok": true})))
}

pub(crate) async fn revs_limit(
    shared: &Shared,
    req: Request<Incoming>,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    only(req.method(), &[Method::GET, Method::PUT])?;
    let db = open(shared, name)?;
    if req.method() == Method::GET {
        return Ok(json_response(StatusCode::OK, &db.info().revs_limit));
    }
    let limit: u64 = body::read_json(shared, req).await?;
    let limit = u32::try_from(limit)
        .ok()
        .filter(|l| *l > 0)
        .ok_or_else(|| ApiError::bad_request("revs_limit must be a positive integer"))?;
    db.set_revs_limit(limit).await?;
    Ok(json_response(StatusCode::OK, &json!({"ok": true})))
}
