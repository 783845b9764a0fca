//! Node-level endpoints: `/`, `/_up`, `/_all_dbs`, `/_active_tasks`, `/_metrics`.

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::json;

use super::body::{full, json as json_response, Body};
use crate::node::Shared;

/// The CouchDB API level this node speaks (replicators look at `version`).
const COUCHDB_API_VERSION: &str = "3.4.3";

pub(crate) fn welcome(shared: &Shared) -> Response<Body> {
    json_response(
        StatusCode::OK,
        &json!({
            "couchdb": "Welcome",
            "version": COUCHDB_API_VERSION,
            "uuid": shared.store.uuid(),
            "vendor": {"name": "Sessionfleet", "version": env!("CARGO_PKG_VERSION"), "node": shared.config.node_name},
            "features": [],
        }),
    )
}

pub(crate) fn up() -> Response<Body> {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

pub(crate) fn all_dbs(shared: &Shared) -> Response<Body> {
    let names: Vec<String> = shared
        .store
        .list_dbs()
        .into_iter()
        .map(|n| n.to_string())
        .collect();
    json_response(StatusCode::OK, &names)
}

/// The node's own links first (a spoke's with its hub, a hub's with its peer hubs;
/// each entry names the `remote` node and its `link` role), then the requested jobs.
pub(crate) fn active_tasks(shared: &Shared) -> Response<Body> {
    let mut tasks: Vec<serde_json::Value> = Vec::new();
    for link in shared.fleet.links().iter() {
        for r in &link.replications {
            let mut task = crate::replications::active_task(&r.snapshot());
            task["remote"] = json!(link.remote);
            task["link"] = json!(link.role);
            tasks.push(task);
        }
    }
    tasks.extend(shared.replications.active_tasks());
    json_response(StatusCode::OK, &tasks)
}

/// Prometheus text: the process's recorded metrics plus the store's figures,
/// refreshed at scrape time.
pub(crate) fn metrics(shared: &Shared) -> Response<Body> {
    for name in shared.store.list_dbs() {
        if let Ok(db) = shared.store.db(&name) {
            let info = db.info();
            let label = name.to_string();
            metrics::gauge!("store_docs", "db" => label.clone()).set(info.doc_count as f64);
            metrics::gauge!("store_deleted_docs", "db" => label.clone()).set(info.doc_del_count as f64);
            metrics::gauge!("store_update_seq", "db" => label.clone()).set(info.update_seq as f64);
            metrics::gauge!("store_disk_bytes", "db" => label).set(info.disk_size as f64);
        }
    }
    metrics::gauge!("node_uptime_seconds").set(shared.started.elapsed().as_secs_f64());
    crate::metrics::record_process();
    let text = crate::metrics::handle().map(|h| h.render()).unwrap_or_default();
    let mut r = Response::new(full(text));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}
