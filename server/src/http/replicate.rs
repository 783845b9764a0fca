//! `POST /_replicate`: one-shot (answers when done) or continuous (answers at
//! once), and `cancel`.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use super::body::{self, json as json_response, Body};
use super::error::ApiError;
use crate::node::Shared;
use crate::replications::{ReplicateError, ReplicateRequest};

impl From<ReplicateError> for ApiError {
    fn from(e: ReplicateError) -> ApiError {
        match e {
            ReplicateError::Invalid(r) => ApiError::bad_request(r),
            ReplicateError::NotFound(r) => ApiError::not_found(r),
            // As CouchDB: a peer refusing the credentials in the request's URLs.
            ReplicateError::Peer(e) if e.is_auth_refusal() => {
                if matches!(&e, replicator::PeerError::Refused { status, .. } if status.starts_with("403") || status == "PermissionDenied")
                {
                    ApiError::forbidden(e.to_string())
                } else {
                    ApiError::unauthorized(e.to_string())
                }
            }
            ReplicateError::Peer(e) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "replication_failed",
                e.to_string(),
            ),
        }
    }
}

pub(crate) async fn handle(shared: &Shared, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let r: ReplicateRequest = body::read_json(shared, req).await?;
    let replications = &shared.replications;
    if r.cancel {
        return if replications.cancel(&r) {
            Ok(json_response(StatusCode::OK, &json!({"ok": true})))
        } else {
            Err(ApiError::not_found("no such replication is running"))
        };
    }
    if r.continuous {
        let status = replications.start(&r, None)?;
        return Ok(json_response(
            StatusCode::ACCEPTED,
            &json!({"ok": true, "_local_id": status.label}),
        ));
    }
    let s = replications.run_once(&r).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "ok": true,
            "source_last_seq": s.checkpointed_seq,
            "history": [{
                "docs_read": s.docs_read,
                "docs_written": s.docs_written,
                "doc_write_failures": s.doc_write_failures,
            }],
        }),
    ))
}
