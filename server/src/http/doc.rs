//! Document endpoints: `GET/HEAD/PUT/DELETE /{db}/{id}` (with `rev`, `revs`,
//! `conflicts`, `open_revs`, `latest`) and `POST /{db}`.

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE, ETAG, IF_MATCH};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use store::{Doc, DocId, DocInput, Edit, OpenRev, OpenRevs, ReadOptions, Rev};

use super::body::{self, full, json as json_response, json_bytes, Body};
use super::db::open;
use super::error::ApiError;
use super::query::Query;
use crate::node::Shared;

pub(crate) async fn handle(
    shared: &Shared,
    req: Request<Incoming>,
    db: &str,
    id: &str,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let database = open(shared, db)?;
    let id = DocId::new(id)?;
    match *req.method() {
        Method::GET | Method::HEAD => {
            let head = req.method() == Method::HEAD;
            if let Some(raw) = q.get("open_revs") {
                let which = if raw == "all" {
                    OpenRevs::All
                } else {
                    let list: Vec<String> = q.json("open_revs", raw)?;
                    OpenRevs::Revs(list.iter().map(|r| r.parse()).collect::<Result<_, _>>()?)
                };
                let revs = database.open_revs(&id, &which, q.bool("latest")?, q.bool("revs")?)?;
                let multipart = req
                    .headers()
                    .get(ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.contains("multipart/mixed"));
                return Ok(if multipart {
                    open_revs_multipart(&revs)
                } else {
                    open_revs_json(&revs)
                });
            }
            let opts = ReadOptions {
                rev: q.get("rev").map(str::parse).transpose()?,
                conflicts: q.bool("conflicts")? || q.bool("meta")?,
                revs: q.bool("revs")?,
            };
            let doc = database.get(&id, &opts)?;
            let mut r = json_bytes(StatusCode::OK, if head { Vec::new() } else { doc.to_json() });
            set_etag(&mut r, &doc.rev);
            Ok(r)
        }
        Method::PUT => {
            let max = shared.store.options().max_document_size;
            let bytes = body::read(shared, req).await?;
            let mut input = DocInput::parse(&bytes, max)?;
            if let Some(rev) = q.get("rev") {
                input.rev = Some(rev.parse()?);
            }
            if q.get("new_edits") == Some("false") {
                input.id = Some(id.to_string());
                let results = database.merge(vec![store::Replicated::from_input(input)?]).await;
                let rev = results.into_iter().next().unwrap_or(Err(store::Error::Closed))?;
                return Ok(saved(StatusCode::CREATED, &id, &rev));
            }
            let rev = database.put(Edit::from_input(id.clone(), input)).await?;
            Ok(saved(StatusCode::CREATED, &id, &rev))
        }
        Method::DELETE => {
            let rev = q
                .get("rev")
                .or_else(|| req.headers().get(IF_MATCH).and_then(|v| v.to_str().ok()))
                .map(|r| r.trim_matches('"').parse::<Rev>())
                .transpose()?;
            let Some(rev) = rev else {
                // Without a revision a delete cannot name what it replaces.
                database.get(&id, &ReadOptions::default())?;
                return Err(store::Error::Conflict { id: id.to_string() }.into());
            };
            let rev = database.put(Edit::delete(id.clone(), rev)).await?;
            Ok(saved(StatusCode::OK, &id, &rev))
        }
        _ => Err(ApiError::method_not_allowed("GET,HEAD,PUT,DELETE")),
    }
}

/// `POST /{db}`: create a document, generating an id if it has none.
pub(crate) async fn post(
    shared: &Shared,
    req: Request<Incoming>,
    db: &str,
    _q: &Query,
) -> Result<Response<Body>, ApiError> {
    let database = open(shared, db)?;
    let max = shared.store.options().max_document_size;
    let bytes = body::read(shared, req).await?;
    let input = DocInput::parse(&bytes, max)?;
    let id = match &input.id {
        Some(id) => DocId::new(id)?,
        None => DocId::new(&uuid::Uuid::new_v4().simple().to_string())?,
    };
    let rev = database.put(Edit::from_input(id.clone(), input)).await?;
    Ok(saved(StatusCode::CREATED, &id, &rev))
}

fn saved(status: StatusCode, id: &DocId, rev: &Rev) -> Response<Body> {
    let mut r = json_response(
        status,
        &json!({"ok": true, "id": id.as_str(), "rev": rev.to_string()}),
    );
    set_etag(&mut r, rev);
    r
}

fn set_etag(r: &mut Response<Body>, rev: &Rev) {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{rev}\"")) {
        r.headers_mut().insert(ETAG, v);
    }
}

/// PouchDB's form: `[{"ok": doc}, {"missing": rev}]`.
fn open_revs_json(revs: &[OpenRev]) -> Response<Body> {
    let mut out = Vec::with_capacity(256);
    out.push(b'[');
    for (i, r) in revs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match r {
            OpenRev::Ok(doc) => {
                out.extend_from_slice(b"{\"ok\":");
                out.extend_from_slice(&doc.to_json());
                out.push(b'}');
            }
            OpenRev::Missing(rev) => {
                out.extend_from_slice(format!("{{\"missing\":\"{rev}\"}}").as_bytes());
            }
        }
    }
    out.push(b']');
    json_bytes(StatusCode::OK, out)
}

/// CouchDB's replicator's form: one MIME part per revision; a missing one is a
/// part marked `error="true"`.
fn open_revs_multipart(revs: &[OpenRev]) -> Response<Body> {
    let boundary = uuid::Uuid::new_v4().simple().to_string();
    let mut out = Vec::with_capacity(512);
    for r in revs {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match r {
            OpenRev::Ok(doc) => {
                out.extend_from_slice(b"Content-Type: application/json\r\n\r\n");
                out.extend_from_slice(&doc.to_json());
            }
            OpenRev::Missing(rev) => {
                out.extend_from_slice(b"Content-Type: application/json; error=\"true\"\r\n\r\n");
                out.extend_from_slice(format!("{{\"missing\":\"{rev}\"}}").as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--").as_bytes());
    let mut resp = Response::new(full(Bytes::from(out)));
    if let Ok(v) = HeaderValue::from_str(&format!("multipart/mixed; boundary=\"{boundary}\"")) {
        resp.headers_mut().insert(CONTENT_TYPE, v);
    }
    resp
}

/// A document rendered for `include_docs` and `_bulk_get`.
pub(crate) fn doc_json(doc: &Doc) -> Box<serde_json::value::RawValue> {
    // to_json produces valid JSON by construction.
    serde_json::value::RawValue::from_string(String::from_utf8_lossy(&doc.to_json()).into_owned())
        .unwrap_or_else(|_| serde_json::value::RawValue::from_string("null".into()).unwrap_or_default())
}
