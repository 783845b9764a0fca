//! Parses a request line into an [`Endpoint`]; handling lives in the resource modules.

use hyper::body::Incoming;
use hyper::{Method, Request, Response, Uri};
use percent_encoding::percent_decode_str;

use super::body::Body;
use super::error::ApiError;
use super::query::Query;
use super::{bulk, changes, db, doc, fleet, local, replicate, revoke, server_info};
use crate::auth::Need;
use crate::node::Shared;
use security::Role;

/// Every HTTP endpoint the node serves, with what the path names.
#[derive(Debug)]
pub(crate) enum Endpoint {
    Welcome,
    Up,
    AllDbs,
    Session,
    ActiveTasks,
    Metrics,
    Replicate,
    Fleet,
    FleetStatus,
    Db { db: String, q: Query },
    DbPost { db: String, q: Query },
    AllDocs { db: String, q: Query },
    Changes { db: String, q: Query },
    BulkDocs { db: String },
    BulkGet { db: String, q: Query },
    RevsDiff { db: String },
    EnsureFullCommit { db: String },
    Compact { db: String },
    RevsLimit { db: String },
    Local { db: String, id: String, q: Query },
    Doc { db: String, id: String, q: Query },
    Revoke { db: String, id: String, q: Query },
}

impl Endpoint {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Endpoint::Welcome => "welcome",
            Endpoint::Up => "up",
            Endpoint::AllDbs => "all_dbs",
            Endpoint::Session => "session",
            Endpoint::ActiveTasks => "active_tasks",
            Endpoint::Metrics => "metrics",
            Endpoint::Replicate => "replicate",
            Endpoint::Fleet => "fleet",
            Endpoint::FleetStatus => "fleet_status",
            Endpoint::Db { .. } => "db",
            Endpoint::DbPost { .. } => "db_post",
            Endpoint::AllDocs { .. } => "all_docs",
            Endpoint::Changes { .. } => "changes",
            Endpoint::BulkDocs { .. } => "bulk_docs",
            Endpoint::BulkGet { .. } => "bulk_get",
            Endpoint::RevsDiff { .. } => "revs_diff",
            Endpoint::EnsureFullCommit { .. } => "ensure_full_commit",
            Endpoint::Compact { .. } => "compact",
            Endpoint::RevsLimit { .. } => "revs_limit",
            Endpoint::Local { .. } => "local",
            Endpoint::Doc { .. } => "doc",
            Endpoint::Revoke { .. } => "revoke",
        }
    }

    /// What the caller must hold. Session documents are the app's; what replicators
    /// read and write (changes, bulk, revs_diff, checkpoints) the replicator's;
    /// databases, `_replicate`, compaction, options and the `_replicator`/`_users`
    /// databases the admin's; the node's figures ops'.
    pub fn needs(&self, method: &Method) -> Need {
        use Endpoint as E;
        let read = *method == Method::GET || *method == Method::HEAD;
        let on = |db: &str, role: Role| {
            if db == "_replicator" || db == "_users" {
                Need::Role(Role::Admin)
            } else {
                Need::Role(role)
            }
        };
        match self {
            E::Welcome | E::Up | E::Session => Need::Anyone,
            E::AllDbs | E::ActiveTasks | E::Metrics | E::Fleet | E::FleetStatus => Need::Role(Role::Ops),
            E::Replicate | E::Compact { .. } => Need::Role(Role::Admin),
            E::Db { db, .. } if read => on(db, Role::App),
            E::Db { .. } => Need::Role(Role::Admin),
            E::RevsLimit { db } if read => on(db, Role::Replicator),
            E::RevsLimit { .. } => Need::Role(Role::Admin),
            E::DbPost { db, .. } | E::Doc { db, .. } | E::Revoke { db, .. } => on(db, Role::App),
            E::AllDocs { db, .. }
            | E::Changes { db, .. }
            | E::BulkDocs { db }
            | E::BulkGet { db, .. }
            | E::RevsDiff { db }
            | E::EnsureFullCommit { db }
            | E::Local { db, .. } => on(db, Role::Replicator),
        }
    }

    pub fn parse(method: &Method, uri: &Uri) -> Result<Endpoint, ApiError> {
        let raw = uri.path();
        let segments: Vec<String> = raw
            .split('/')
            .skip(1)
            .map(|s| {
                percent_decode_str(s)
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| ApiError::bad_request("path is not valid UTF-8 after percent-decoding"))
            })
            .collect::<Result<_, _>>()?;
        let q = || Query::parse(uri.query());
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let post = *method == Method::POST;
        Ok(match segs.as_slice() {
            [] | [""] => Endpoint::Welcome,
            ["_up"] => Endpoint::Up,
            ["_all_dbs"] => Endpoint::AllDbs,
            ["_session"] => Endpoint::Session,
            ["_active_tasks"] => Endpoint::ActiveTasks,
            ["_metrics"] => Endpoint::Metrics,
            ["_replicate"] => Endpoint::Replicate,
            ["_fleet"] => Endpoint::Fleet,
            ["_fleet", "status"] => Endpoint::FleetStatus,
            [s, ..] if s.starts_with('_') && *s != "_replicator" && *s != "_users" => {
                return Err(ApiError::not_found(format!("unknown endpoint /{s}")))
            }
            [db] | [db, ""] if post => Endpoint::DbPost {
                db: db.to_string(),
                q: q()?,
            },
            [db] | [db, ""] => Endpoint::Db {
                db: db.to_string(),
                q: q()?,
            },
            [db, "_all_docs"] => Endpoint::AllDocs {
                db: db.to_string(),
                q: q()?,
            },
            [db, "_changes"] => Endpoint::Changes {
                db: db.to_string(),
                q: q()?,
            },
            [db, "_bulk_docs"] => Endpoint::BulkDocs { db: db.to_string() },
            [db, "_bulk_get"] => Endpoint::BulkGet {
                db: db.to_string(),
                q: q()?,
            },
            [db, "_revs_diff"] => Endpoint::RevsDiff { db: db.to_string() },
            [db, "_ensure_full_commit"] => Endpoint::EnsureFullCommit { db: db.to_string() },
            [db, "_compact"] => Endpoint::Compact { db: db.to_string() },
            [db, "_revs_limit"] => Endpoint::RevsLimit { db: db.to_string() },
            [db, "_revoke", id] => Endpoint::Revoke {
                db: db.to_string(),
                id: id.to_string(),
                q: q()?,
            },
            [db, "_local", rest @ ..] if !rest.is_empty() => Endpoint::Local {
                db: db.to_string(),
                id: rest.join("/"),
                q: q()?,
            },
            [db, "_design", rest @ ..] if !rest.is_empty() => Endpoint::Doc {
                db: db.to_string(),
                id: format!("_design/{}", rest.join("/")),
                q: q()?,
            },
            [db, id] => Endpoint::Doc {
                db: db.to_string(),
                id: id.to_string(),
                q: q()?,
            },
            // A document id containing '/' must be sent percent-encoded.
            _ => return Err(ApiError::not_found("unknown endpoint")),
        })
    }

    pub async fn handle(self, shared: &Shared, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
        let method = req.method().clone();
        match self {
            Endpoint::Welcome => {
                only(&method, &[Method::GET, Method::HEAD]).map(|_| server_info::welcome(shared))
            }
            Endpoint::Up => only(&method, &[Method::GET, Method::HEAD]).map(|_| server_info::up()),
            Endpoint::AllDbs => {
                only(&method, &[Method::GET, Method::HEAD]).map(|_| server_info::all_dbs(shared))
            }
            Endpoint::Session => super::auth::session(shared, req).await,
            Endpoint::ActiveTasks => {
                only(&method, &[Method::GET, Method::HEAD]).map(|_| server_info::active_tasks(shared))
            }
            Endpoint::Metrics => {
                only(&method, &[Method::GET, Method::HEAD]).map(|_| server_info::metrics(shared))
            }
            Endpoint::Fleet => only(&method, &[Method::GET, Method::HEAD]).map(|_| fleet::html(shared)),
            Endpoint::FleetStatus => only(&method, &[Method::GET, Method::HEAD]).map(|_| fleet::json(shared)),
            Endpoint::Replicate => {
                only(&method, &[Method::POST])?;
                replicate::handle(shared, req).await
            }
            Endpoint::Db { db, q } => db::handle(shared, req, &db, &q).await,
            Endpoint::DbPost { db, q } => doc::post(shared, req, &db, &q).await,
            Endpoint::AllDocs { db, q } => bulk::all_docs(shared, req, &db, q).await,
            Endpoint::Changes { db, q } => changes::handle(shared, req, &db, q).await,
            Endpoint::BulkDocs { db } => {
                only(&method, &[Method::POST])?;
                bulk::bulk_docs(shared, req, &db).await
            }
            Endpoint::BulkGet { db, q } => {
                only(&method, &[Method::POST])?;
                bulk::bulk_get(shared, req, &db, &q).await
            }
            Endpoint::RevsDiff { db } => {
                only(&method, &[Method::POST])?;
                bulk::revs_diff(shared, req, &db).await
            }
            Endpoint::EnsureFullCommit { db } => {
                only(&method, &[Method::POST])?;
                db::ensure_full_commit(shared, &db)
            }
            Endpoint::Compact { db } => {
                only(&method, &[Method::POST])?;
                db::compact(shared, &db)
            }
            Endpoint::RevsLimit { db } => db::revs_limit(shared, req, &db).await,
            Endpoint::Local { db, id, q } => local::handle(shared, req, &db, &id, &q).await,
            Endpoint::Doc { db, id, q } => doc::handle(shared, req, &db, &id, &q).await,
            Endpoint::Revoke { db, id, q } => revoke::handle(shared, req, &db, &id, &q).await,
        }
    }
}

/// Refuses a method the endpoint does not serve, with CouchDB's 405.
pub(crate) fn only(method: &Method, allowed: &[Method]) -> Result<(), ApiError> {
    if allowed.contains(method) {
        Ok(())
    } else {
        let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        Err(ApiError::method_not_allowed(&names.join(",")))
    }
}
