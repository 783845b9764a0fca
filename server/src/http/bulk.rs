//! Multi-document endpoints: `_bulk_docs`, `_bulk_get`, `_revs_diff`, `_all_docs`.

use std::collections::BTreeMap;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use store::{
    AllDocsQuery, AllDocsRow, DocId, DocInput, Edit, LocalId, OpenRev, OpenRevs, ReadOptions, Replicated, Rev,
};

use super::body::{self, json as json_response, Body};
use super::db::open;
use super::doc::doc_json;
use super::error::ApiError;
use super::query::Query;
use super::router::only;
use crate::node::Shared;

#[derive(Deserialize)]
struct BulkDocsRequest<'a> {
    #[serde(borrow)]
    docs: Vec<&'a RawValue>,
    #[serde(default = "yes")]
    new_edits: bool,
}

fn yes() -> bool {
    true
}

/// A per-document result row of `_bulk_docs`.
#[derive(Serialize)]
#[serde(untagged)]
enum BulkRow {
    Ok {
        ok: bool,
        id: String,
        rev: String,
    },
    Err {
        id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        rev: Option<String>,
        error: String,
        reason: String,
    },
}

fn err_row(id: String, rev: Option<String>, e: impl Into<ApiError>) -> BulkRow {
    let e: ApiError = e.into();
    let (error, reason) = e.parts();
    BulkRow::Err {
        id,
        rev,
        error: error.to_owned(),
        reason: reason.to_owned(),
    }
}

/// The `_id` of a document that failed to parse, if one can be read at all,
/// so the error row names it.
fn lenient_id(raw: &RawValue) -> String {
    serde_json::from_str::<Value>(raw.get())
        .ok()
        .and_then(|v| v.get("_id").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default()
}

fn check_count(shared: &Shared, n: usize) -> Result<(), ApiError> {
    let max = shared.config.limits.max_bulk_docs;
    if n > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("{n} documents in one request; the limit is {max}"),
        ));
    }
    Ok(())
}

pub(crate) async fn bulk_docs(
    shared: &Shared,
    req: Request<Incoming>,
    db: &str,
) -> Result<Response<Body>, ApiError> {
    let database = open(shared, db)?;
    let bytes = body::read(shared, req).await?;
    let request: BulkDocsRequest = body::parse_json(&bytes)?;
    check_count(shared, request.docs.len())?;
    let max = shared.store.options().max_document_size;

    if !request.new_edits {
        // Replication write: answer errors only; `[]` means everything is stored.
        let mut errors = Vec::new();
        let mut docs = Vec::with_capacity(request.docs.len());
        for raw in &request.docs {
            let parsed = DocInput::parse(raw.get().as_bytes(), max);
            let id = parsed
                .as_ref()
                .ok()
                .and_then(|d| d.id.clone())
                .unwrap_or_else(|| lenient_id(raw));
            match parsed.and_then(Replicated::from_input) {
                Ok(r) => docs.push(r),
                Err(e) => errors.push(err_row(id, None, e)),
            }
        }
        for f in database.merge_reporting(docs).await? {
            errors.push(err_row(f.id.to_string(), f.rev.map(|r| r.to_string()), f.error));
        }
        return Ok(json_response(StatusCode::CREATED, &errors));
    }

    // Interactive: parse everything, apply the edits as one group commit.
    let mut rows: Vec<Option<BulkRow>> = Vec::with_capacity(request.docs.len());
    let mut edits = Vec::new();
    let mut local_writes = Vec::new();
    for raw in &request.docs {
        let input = match DocInput::parse(raw.get().as_bytes(), max) {
            Ok(i) => i,
            Err(e) => {
                rows.push(Some(err_row(lenient_id(raw), None, e)));
                continue;
            }
        };
        let id = input
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        if let Some(local) = id.strip_prefix("_local/") {
            local_writes.push((rows.len(), local.to_owned(), raw.get().as_bytes().to_vec()));
            rows.push(None);
            continue;
        }
        match DocId::new(&id) {
            Ok(doc_id) => {
                edits.push(Edit::from_input(doc_id, input));
                rows.push(None);
            }
            Err(e) => rows.push(Some(err_row(id, None, e))),
        }
    }
    let ids: Vec<String> = edits.iter().map(|e| e.id.to_string()).collect();
    let mut results = ids.into_iter().zip(database.update(edits).await);
    for (i, local, raw) in local_writes {
        let row = match write_local(&database, &local, &raw, max).await {
            Ok(rev) => BulkRow::Ok {
                ok: true,
                id: format!("_local/{local}"),
                rev: format!("0-{rev}"),
            },
            Err(e) => err_row(format!("_local/{local}"), None, e),
        };
        rows[i] = Some(row);
    }
    let out: Vec<BulkRow> = rows
        .into_iter()
        .filter_map(|slot| {
            slot.or_else(|| {
                results.next().map(|(id, r)| match r {
                    Ok(rev) => BulkRow::Ok {
                        ok: true,
                        id,
                        rev: rev.to_string(),
                    },
                    Err(e) => err_row(id, None, e),
                })
            })
        })
        .collect();
    Ok(json_response(StatusCode::CREATED, &out))
}

async fn write_local(db: &store::Database, id: &str, raw: &[u8], max: usize) -> Result<u64, ApiError> {
    let lid = LocalId::new(id)?;
    let input = DocInput::parse_local(raw, max)?;
    let rev = input
        .rev
        .as_deref()
        .map(super::local::parse_local_rev)
        .transpose()?
        .unwrap_or(0);
    Ok(db.put_local(&lid, rev, input.body).await?)
}

#[derive(Deserialize)]
struct BulkGetRequest {
    docs: Vec<BulkGetItem>,
}

#[derive(Deserialize)]
struct BulkGetItem {
    id: String,
    rev: Option<String>,
}

pub(crate) async fn bulk_get(
    shared: &Shared,
    req: Request<Incoming>,
    db: &str,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let database = open(shared, db)?;
    let request: BulkGetRequest = body::read_json(shared, req).await?;
    check_count(shared, request.docs.len())?;
    let (revs, latest) = (q.bool("revs")?, q.bool("latest")?);
    let mut results = Vec::with_capacity(request.docs.len());
    for item in request.docs {
        let error = |rev: &str, e: ApiError| {
            let (error, reason) = e.parts();
            json!({"error": {"id": item.id, "rev": rev, "error": error, "reason": reason}})
        };
        let docs: Vec<Value> = match (DocId::new(&item.id), item.rev.as_deref().map(str::parse::<Rev>)) {
            (Err(e), _) => vec![error(item.rev.as_deref().unwrap_or("undefined"), e.into())],
            (_, Some(Err(e))) => vec![error(item.rev.as_deref().unwrap_or(""), e.into())],
            (Ok(id), Some(Ok(rev))) => {
                match database.open_revs(&id, &OpenRevs::Revs(vec![rev.clone()]), latest, revs) {
                    Ok(list) => list
                        .into_iter()
                        .map(|r| match r {
                            OpenRev::Ok(doc) => json!({"ok": doc_json(&doc)}),
                            OpenRev::Missing(rev) => error(&rev.to_string(), ApiError::not_found("missing")),
                        })
                        .collect(),
                    Err(e) => vec![error(&rev.to_string(), e.into())],
                }
            }
            (Ok(id), None) => {
                match database.get(
                    &id,
                    &ReadOptions {
                        revs,
                        ..Default::default()
                    },
                ) {
                    Ok(doc) => vec![json!({"ok": doc_json(&doc)})],
                    Err(e) => vec![error("undefined", e.into())],
                }
            }
        };
        results.push(json!({"id": item.id, "docs": docs}));
    }
    Ok(json_response(StatusCode::OK, &json!({"results": results})))
}

pub(crate) async fn revs_diff(
    shared: &Shared,
    req: Request<Incoming>,
    db: &str,
) -> Result<Response<Body>, ApiError> {
    let database = open(shared, db)?;
    let request: BTreeMap<String, Vec<String>> = body::read_json(shared, req).await?;
    check_count(shared, request.len())?;
    let mut out = serde_json::Map::new();
    for (id, revs) in request {
        // An id or revision this node refuses is certainly not here: report it
        // missing (its write will be refused and counted, as CouchDB's
        // replicator does), rather than failing the whole request.
        let parsed: Result<Vec<Rev>, _> = revs.iter().map(|r| r.parse()).collect();
        let (Ok(doc_id), Ok(revs)) = (DocId::new(&id), parsed) else {
            out.insert(id, json!({ "missing": revs }));
            continue;
        };
        let diff = database.revs_diff(&doc_id, &revs)?;
        if diff.missing.is_empty() {
            continue;
        }
        let mut entry = json!({"missing": diff.missing.iter().map(Rev::to_string).collect::<Vec<_>>()});
        if !diff.possible_ancestors.is_empty() {
            entry["possible_ancestors"] = json!(diff
                .possible_ancestors
                .iter()
                .map(Rev::to_string)
                .collect::<Vec<_>>());
        }
        out.insert(id, entry);
    }
    Ok(json_response(StatusCode::OK, &out))
}

#[derive(Deserialize)]
struct KeysBody {
    keys: Vec<String>,
}

pub(crate) async fn all_docs(
    shared: &Shared,
    req: Request<Incoming>,
    db: &str,
    q: Query,
) -> Result<Response<Body>, ApiError> {
    only(req.method(), &[Method::GET, Method::HEAD, Method::POST])?;
    let database = open(shared, db)?;
    let mut query = AllDocsQuery {
        start_key: q.json_string(&["start_key", "startkey"])?,
        end_key: q.json_string(&["end_key", "endkey"])?,
        exclusive_end: !q.bool_or("inclusive_end", true)?,
        keys: None,
        limit: q.u64("limit")?.map(|n| n as usize),
        skip: q.u64("skip")?.unwrap_or(0) as usize,
        descending: q.bool("descending")?,
    };
    if let Some(key) = q.json_string(&["key"])? {
        query.keys = Some(vec![key]);
    }
    if let Some((k, v)) = q.get_any(&["keys"]) {
        query.keys = Some(q.json(k, v)?);
    }
    if req.method() == Method::POST {
        let body: KeysBody = body::read_json(shared, req).await?;
        check_count(shared, body.keys.len())?;
        query.keys = Some(body.keys);
    }
    let include_docs = q.bool("include_docs")?;
    let rows = database.all_docs(&query)?;
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|row| match row {
            AllDocsRow::Doc { id, rev, deleted } => {
                let mut v = json!({"id": id.as_str(), "key": id.as_str(), "value": {"rev": rev.to_string()}});
                if deleted {
                    v["value"]["deleted"] = json!(true);
                }
                if include_docs {
                    v["doc"] = if deleted {
                        Value::Null
                    } else {
                        database
                            .get(&id, &ReadOptions::default())
                            .ok()
                            .and_then(|d| serde_json::from_slice(&d.to_json()).ok())
                            .unwrap_or(Value::Null)
                    };
                }
                v
            }
            AllDocsRow::Missing(key) => json!({"key": key, "error": "not_found"}),
        })
        .collect();
    let info = database.info();
    let mut out = json!({"total_rows": info.doc_count, "offset": query.skip, "rows": rows});
    if q.bool("update_seq")? {
        out["update_seq"] = json!(info.update_seq);
    }
    Ok(json_response(StatusCode::OK, &out))
}
