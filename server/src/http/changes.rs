//! `GET|POST /{db}/_changes`: `feed=normal|longpoll|continuous|eventsource`,
//! `since` (integer or `now`), `limit`, `include_docs`, `style=all_docs`,
//! `heartbeat`, `timeout`, `doc_ids` / `filter=_doc_ids`.

use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use store::{Change, ChangesQuery, Database};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::body::{self, json_bytes, Body, JSON};
use super::db::open;
use super::doc::doc_json;
use super::error::ApiError;
use super::query::Query;
use super::router::only;
use crate::node::Shared;

/// Changes read per store call while streaming.
const BATCH: usize = 1000;
/// CouchDB's default `timeout` for feeds without a heartbeat.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Feed {
    Normal,
    Longpoll,
    Continuous,
    EventSource,
}

struct Params {
    feed: Feed,
    query: ChangesQuery,
    heartbeat: Option<Duration>,
    /// Longest wait without a change; `None`: until the client leaves.
    timeout: Option<Duration>,
}

#[derive(Deserialize)]
struct DocIdsBody {
    doc_ids: Option<Vec<String>>,
}

fn parse_since(raw: Option<&str>, db: &Database) -> Result<u64, ApiError> {
    let Some(raw) = raw else { return Ok(0) };
    if raw == "now" {
        return Ok(db.update_seq());
    }
    // Integers (CouchDB 1.x style, what we emit), quoted integers, or an opaque
    // CouchDB 3 sequence whose numeric prefix is ours.
    let unquoted = raw.trim_matches('"');
    let number = unquoted.split('-').next().unwrap_or("");
    number.parse().map_err(|_| {
        ApiError::query(format!(
            "Malformed since value {raw:?}: expected an integer or \"now\""
        ))
    })
}

async fn params(
    shared: &Shared,
    req: Request<Incoming>,
    db: &Database,
    q: &Query,
) -> Result<Params, ApiError> {
    let feed = match q.get("feed").unwrap_or("normal") {
        "normal" => Feed::Normal,
        "longpoll" => Feed::Longpoll,
        "continuous" => Feed::Continuous,
        "eventsource" => Feed::EventSource,
        other => return Err(ApiError::query(format!("Invalid feed {other:?}"))),
    };
    let all_leaves = match q.get("style") {
        None | Some("main_only") => false,
        Some("all_docs") => true,
        Some(other) => return Err(ApiError::query(format!("Invalid style {other:?}"))),
    };
    if q.bool("descending")? {
        return Err(ApiError::query("descending changes feeds are not supported"));
    }
    let heartbeat = match q.get("heartbeat") {
        None | Some("false") => None,
        Some("true") => Some(Duration::from_secs(60)),
        Some(_) => q.millis("heartbeat")?.map(|d| d.max(Duration::from_millis(100))),
    };
    let max_timeout = shared.config.limits.max_feed_timeout;
    let timeout = match (q.millis("timeout")?, heartbeat) {
        (Some(t), _) => Some(t.min(max_timeout)),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_TIMEOUT),
    };
    let mut doc_ids: Option<Vec<String>> = match q.get("doc_ids") {
        Some(raw) => Some(q.json("doc_ids", raw)?),
        None => None,
    };
    match q.get("filter") {
        None => {}
        Some("_doc_ids") => {
            if req.method() == Method::POST {
                let body: DocIdsBody = body::read_json(shared, req).await?;
                doc_ids = body.doc_ids.or(doc_ids);
            }
            if doc_ids.is_none() {
                return Err(ApiError::bad_request("filter=_doc_ids needs doc_ids"));
            }
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "filter {other:?} is not supported; use _doc_ids"
            )))
        }
    }
    let query = ChangesQuery {
        since: parse_since(q.get("since"), db)?,
        limit: q.u64("limit")?.map(|n| n as usize),
        all_leaves,
        include_docs: q.bool("include_docs")?,
        doc_ids,
        include_expired: false,
    };
    Ok(Params {
        feed,
        query,
        heartbeat,
        timeout,
    })
}

pub(crate) async fn handle(
    shared: &Shared,
    req: Request<Incoming>,
    db: &str,
    q: Query,
) -> Result<Response<Body>, ApiError> {
    only(req.method(), &[Method::GET, Method::POST])?;
    let database = open(shared, db)?;
    let p = params(shared, req, &database, &q).await?;
    let page = database.changes(&p.query)?;
    if p.feed == Feed::Normal || (p.feed == Feed::Longpoll && !page.changes.is_empty()) {
        return Ok(json_bytes(StatusCode::OK, render_page(&page)));
    }
    let (tx, body) = body::channel();
    let content_type = if p.feed == Feed::EventSource {
        "text/event-stream"
    } else {
        JSON
    };
    let shutdown = shared.shutdown.clone();
    tokio::spawn(stream(database, p, tx, shutdown));
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}

fn render_row(c: &Change) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(format!("{{\"seq\":{},\"id\":", c.seq).as_bytes());
    out.extend_from_slice(&serde_json::to_vec(c.id.as_str()).unwrap_or_default());
    out.extend_from_slice(b",\"changes\":[");
    for (i, r) in c.revs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(format!("{{\"rev\":\"{r}\"}}").as_bytes());
    }
    out.push(b']');
    if c.deleted {
        out.extend_from_slice(b",\"deleted\":true");
    }
    if let Some(doc) = &c.doc {
        out.extend_from_slice(b",\"doc\":");
        out.extend_from_slice(doc_json(doc).get().as_bytes());
    }
    out.push(b'}');
    out
}

fn render_page(page: &store::ChangesPage) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + page.changes.len() * 96);
    out.extend_from_slice(b"{\"results\":[");
    for (i, c) in page.changes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&render_row(c));
    }
    out.extend_from_slice(
        format!("],\"last_seq\":{},\"pending\":{}}}", page.last_seq, page.pending).as_bytes(),
    );
    out
}

/// The last line of a feed that ended by an error (its database was deleted):
/// CouchDB's `{"error","reason"}` body, as a line or an event.
fn error_line(feed: Feed, e: store::Error) -> Vec<u8> {
    let e = ApiError::from(e);
    let (error, reason) = e.parts();
    let body =
        serde_json::to_string(&serde_json::json!({"error": error, "reason": reason})).unwrap_or_default();
    match feed {
        Feed::EventSource => format!("event: error\ndata: {body}\n\n").into_bytes(),
        _ => format!("{body}\n").into_bytes(),
    }
}

/// Feeds a streaming response until the limit, the idle timeout, shutdown, the
/// client leaving, or the database being deleted.
async fn stream(db: Database, p: Params, tx: mpsc::Sender<Bytes>, shutdown: CancellationToken) {
    let mut since = p.query.since;
    let mut remaining = p.query.limit.unwrap_or(usize::MAX);
    let mut sub = db.subscribe();
    let mut idle_deadline = p.timeout.map(|t| tokio::time::Instant::now() + t);
    let heartbeat_line: &[u8] = if p.feed == Feed::EventSource {
        b"event: heartbeat\ndata: \n\n"
    } else {
        b"\n"
    };
    loop {
        let q = ChangesQuery {
            since,
            limit: Some(remaining.min(BATCH)),
            ..p.query.clone()
        };
        let page = match db.changes(&q) {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(db = %db.name(), error = %e, "changes feed ended by an error");
                let _ = tx.send(Bytes::from(error_line(p.feed, e))).await;
                return;
            }
        };
        since = page.last_seq;
        if p.feed == Feed::Longpoll && !page.changes.is_empty() {
            let _ = tx.send(Bytes::from(render_page(&page))).await;
            return;
        }
        for c in &page.changes {
            let line = match p.feed {
                Feed::EventSource => {
                    let mut l = b"data: ".to_vec();
                    l.extend_from_slice(&render_row(c));
                    l.extend_from_slice(format!("\nid: {}\n\n", c.seq).as_bytes());
                    l
                }
                _ => {
                    let mut l = render_row(c);
                    l.push(b'\n');
                    l
                }
            };
            if tx.send(Bytes::from(line)).await.is_err() {
                return;
            }
        }
        remaining = remaining.saturating_sub(page.changes.len());
        if !page.changes.is_empty() {
            idle_deadline = p.timeout.map(|t| tokio::time::Instant::now() + t);
        }
        if remaining == 0 {
            break;
        }
        if page.pending > 0 && !page.changes.is_empty() {
            continue;
        }
        // Wait for a commit past `since`, sending heartbeats meanwhile.
        let woke = loop {
            let heartbeat = async {
                match p.heartbeat {
                    Some(h) => tokio::time::sleep(h).await,
                    None => std::future::pending().await,
                }
            };
            let idle = async {
                match idle_deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                woke = sub.wait_past(since) => match woke {
                    Ok(_) => break true,
                    Err(e) => {
                        // The database was deleted: say so, then end the feed.
                        let _ = tx.send(Bytes::from(error_line(p.feed, e))).await;
                        return;
                    }
                },
                _ = heartbeat => {
                    if tx.send(Bytes::from_static(heartbeat_line)).await.is_err() {
                        return;
                    }
                }
                _ = idle => break false,
                _ = shutdown.cancelled() => break false,
                _ = tx.closed() => return,
            }
        };
        if !woke {
            break;
        }
    }
    let end = match p.feed {
        Feed::Longpoll => render_page(&store::ChangesPage {
            changes: Vec::new(),
            last_seq: since,
            pending: 0,
        }),
        Feed::EventSource => return,
        _ => format!("{{\"last_seq\":{since}}}\n").into_bytes(),
    };
    let _ = tx.send(Bytes::from(end)).await;
}
