//! The hub's status page: `GET /_fleet` (HTML, refreshes itself) and
//! `GET /_fleet/status` (JSON): every datacentre and spoke, connected or not,
//! last contact, replication lag, documents, and the hub's own health.

use std::collections::BTreeMap;

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;

use super::body::{full, json as json_response, Body};
use crate::fleet::{now_ms, HUB_PEER_PREFIX};
use crate::node::Shared;

/// A spoke silent for longer than this is shown as disconnected (pull streams
/// send a heartbeat every 5 s).
const CONTACT_TIMEOUT_MS: u64 = 15_000;

#[derive(Serialize)]
struct SpokeRow {
    node: String,
    expected: bool,
    connected: bool,
    /// The certificate identity it authenticated with (`None`: plaintext fleet).
    identity: Option<String>,
    last_contact_secs_ago: Option<f64>,
    last_push_secs_ago: Option<f64>,
    seq_lag: u64,
    lag_seconds: f64,
}

#[derive(Serialize)]
struct DcRow {
    name: String,
    spokes: Vec<SpokeRow>,
}

#[derive(Serialize)]
struct DbRow {
    name: String,
    doc_count: u64,
    doc_del_count: u64,
    update_seq: u64,
    disk_bytes: u64,
}

/// A hub of the pair, as this hub sees it.
#[derive(Serialize)]
struct HubRow {
    node: String,
    /// This hub's own row.
    this: bool,
    /// It is pulling from this hub (its pull streams are open and heard from).
    pulls_from_here: bool,
    /// This hub's pulls from it are running or caught up, not retrying.
    pulled_from: bool,
    /// Changes of it this hub has not pulled yet (largest over databases).
    seq_lag: u64,
    /// The last error of this hub's pulls from it, while they retry.
    last_error: Option<String>,
}

#[derive(Serialize)]
struct Status {
    fleet: String,
    hub: Hub,
    /// This hub, then each peer hub; a single hub lists only itself.
    hubs: Vec<HubRow>,
    datacentres: Vec<DcRow>,
    connected_spokes: usize,
    expected_spokes: usize,
}

#[derive(Serialize)]
struct Hub {
    node: String,
    uuid: String,
    healthy: bool,
    uptime_secs: u64,
    databases: Vec<DbRow>,
}

fn status(shared: &Shared) -> Status {
    let now = now_ms();
    let ago = |ms: u64| (ms > 0).then(|| now.saturating_sub(ms) as f64 / 1000.0);
    let peers = shared.fleet.peers();
    let connected = |p: &crate::fleet::PeerState| {
        p.open_streams > 0 && now.saturating_sub(p.last_contact_ms) < CONTACT_TIMEOUT_MS
    };
    let expected = shared.fleet.expected.load_full();
    let mut dcs: BTreeMap<String, Vec<SpokeRow>> = BTreeMap::new();
    let mut listed: Vec<(String, String, bool)> = expected
        .iter()
        .map(|s| (s.datacentre.clone(), s.node.clone(), true))
        .collect();
    for key in peers.keys().filter(|k| !k.starts_with(HUB_PEER_PREFIX)) {
        if !expected
            .iter()
            .any(|s| format!("{}/{}", s.datacentre, s.node) == *key)
        {
            let (dc, node) = key.split_once('/').unwrap_or(("?", key));
            listed.push((dc.to_owned(), node.to_owned(), false));
        }
    }
    for (dc, node, expected) in &listed {
        let (dc, node, expected) = (dc.as_str(), node.as_str(), *expected);
        let key = format!("{dc}/{node}");
        let p = peers.get(&key).cloned().unwrap_or_default();
        let seq_lag = p.pull_seq_lag.values().copied().max().unwrap_or(0);
        let oldest_caught_up = p.caught_up_ms.values().copied().min().unwrap_or(0);
        let connected = connected(&p);
        dcs.entry(dc.to_owned()).or_default().push(SpokeRow {
            node: node.to_owned(),
            expected,
            connected,
            identity: p.identity.clone(),
            last_contact_secs_ago: ago(p.last_contact_ms),
            last_push_secs_ago: ago(p.last_push_ms),
            seq_lag,
            lag_seconds: if seq_lag == 0 || oldest_caught_up == 0 {
                0.0
            } else {
                now.saturating_sub(oldest_caught_up) as f64 / 1000.0
            },
        });
    }
    let databases: Vec<DbRow> = shared
        .store
        .list_dbs()
        .into_iter()
        .filter_map(|n| shared.store.db(&n).ok())
        .map(|db| {
            let i = db.info();
            DbRow {
                name: i.name.to_string(),
                doc_count: i.doc_count,
                doc_del_count: i.doc_del_count,
                update_seq: i.update_seq,
                disk_bytes: i.disk_size,
            }
        })
        .collect();
    let datacentres: Vec<DcRow> = dcs
        .into_iter()
        .map(|(name, spokes)| DcRow { name, spokes })
        .collect();
    let connected_spokes = datacentres
        .iter()
        .flat_map(|d| &d.spokes)
        .filter(|s| s.connected)
        .count();
    let links = shared.fleet.links();
    let mut hubs = vec![HubRow {
        node: shared.config.node_name.clone(),
        this: true,
        pulls_from_here: false,
        pulled_from: true,
        seq_lag: 0,
        last_error: None,
    }];
    for name in shared.fleet.peer_hubs.load().iter() {
        let inbound = peers.get(&format!("{HUB_PEER_PREFIX}{name}"));
        let pulls: Vec<_> = links
            .iter()
            .filter(|l| &l.remote == name)
            .flat_map(|l| l.replications.iter().map(|r| r.snapshot()))
            .collect();
        hubs.push(HubRow {
            node: name.clone(),
            this: false,
            pulls_from_here: inbound.is_some_and(connected),
            pulled_from: !pulls.is_empty()
                && pulls.iter().all(|s| {
                    matches!(
                        s.state,
                        replicator::ReplicationState::Running | replicator::ReplicationState::Idle
                    )
                }),
            seq_lag: pulls.iter().map(|s| s.seq_lag).max().unwrap_or(0),
            last_error: pulls.iter().find_map(|s| s.last_error.clone()),
        });
    }
    Status {
        fleet: shared.fleet.name.load().to_string(),
        hubs,
        hub: Hub {
            node: shared.config.node_name.clone(),
            uuid: shared.store.uuid().to_owned(),
            healthy: !shared.shutdown.is_cancelled(),
            uptime_secs: shared.started.elapsed().as_secs(),
            databases,
        },
        connected_spokes,
        expected_spokes: expected.len(),
        datacentres,
    }
}

pub(crate) fn json(shared: &Shared) -> Response<Body> {
    json_response(StatusCode::OK, &status(shared))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn secs(v: Option<f64>) -> String {
    v.map_or("never".into(), |s| {
        if s < 1.0 {
            "just now".into()
        } else {
            format!("{s:.0} s ago")
        }
    })
}

/// The hub pair's table; nothing for a single hub.
fn pair_table(hubs: &[HubRow]) -> String {
    if hubs.len() < 2 {
        return String::new();
    }
    let mut rows = String::new();
    for h in hubs.iter().filter(|h| !h.this) {
        let (class, state) = match (h.pulled_from, h.pulls_from_here) {
            (true, true) if h.seq_lag > 0 => ("lag", "catching up"),
            (true, true) => ("ok", "replicating both ways"),
            (true, false) => ("lag", "it does not pull from here"),
            (false, _) => ("down", "UNREACHABLE"),
        };
        rows.push_str(&format!(
            "<tr class=\"{class}\"><td>{}</td><td class=\"state\">{state}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&h.node),
            h.seq_lag,
            esc(h.last_error.as_deref().unwrap_or("")),
        ));
    }
    format!(
        "<h2>Hub pair</h2>\n<table id=\"hubs\"><tr><th>peer hub</th><th>state</th><th>pull lag (changes)</th><th>last error</th></tr>\n{rows}</table>\n"
    )
}

pub(crate) fn html(shared: &Shared) -> Response<Body> {
    let s = status(shared);
    let mut rows = String::new();
    for dc in &s.datacentres {
        for (i, sp) in dc.spokes.iter().enumerate() {
            let (class, state) = match (sp.connected, sp.expected) {
                (true, _) if sp.seq_lag > 0 => ("lag", "catching up"),
                (true, _) => ("ok", "connected"),
                (false, true) => ("down", "DISCONNECTED"),
                (false, false) => ("down", "gone (not in topology)"),
            };
            rows.push_str(&format!(
                "<tr class=\"{class}\"><td>{}</td><td title=\"{}\">{}</td><td class=\"state\">{state}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1} s</td></tr>\n",
                if i == 0 { esc(&dc.name) } else { String::new() },
                esc(sp.identity.as_deref().unwrap_or("not authenticated (plaintext fleet)")),
                esc(&sp.node),
                secs(sp.last_contact_secs_ago),
                secs(sp.last_push_secs_ago),
                sp.seq_lag,
                sp.lag_seconds,
            ));
        }
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"7\">No spokes expected or seen yet.</td></tr>");
    }
    let dbs: String = s
        .hub
        .databases
        .iter()
        .map(|d| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&d.name),
                d.doc_count,
                d.doc_del_count,
                d.update_seq
            )
        })
        .collect();
    let summary_class = if s.connected_spokes >= s.expected_spokes {
        "ok"
    } else {
        "down"
    };
    let page = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>Sessionfleet — {fleet}</title>
<style>
body {{ font: 15px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
h1 {{ font-size: 1.4em; margin-bottom: .2em; }}
.summary {{ font-size: 1.1em; padding: .4em .8em; display: inline-block; border-radius: 4px; }}
table {{ border-collapse: collapse; margin: 1em 0; min-width: 50em; }}
th, td {{ text-align: left; padding: .35em .8em; border-bottom: 1px solid #ddd; }}
th {{ background: #f4f4f4; }}
tr.ok .state, .summary.ok {{ background: #dff5e1; color: #17622a; }}
tr.lag .state {{ background: #fff4d6; color: #7a5600; }}
tr.down .state, .summary.down {{ background: #fde0e0; color: #a11; font-weight: bold; }}
small {{ color: #777; }}
</style></head>
<body>
<h1>Sessionfleet fleet <q>{fleet}</q> — hub {hub}</h1>
<p class="summary {summary_class}" id="summary">{connected} of {expected} expected spokes connected</p>
<p><small>hub uuid {uuid}, up {uptime} s, healthy: {healthy}. This page refreshes every 2 s; JSON at <a href="/_fleet/status">/_fleet/status</a>.</small></p>
<table id="spokes">
<tr><th>datacentre</th><th>spoke</th><th>state</th><th>last contact</th><th>last push</th><th>pull lag (changes)</th><th>pull lag (time)</th></tr>
{rows}</table>
{pair}<h2>Databases on the hub</h2>
<table id="databases"><tr><th>database</th><th>documents</th><th>deleted</th><th>sequence</th></tr>{dbs}</table>
</body></html>
"#,
        fleet = esc(&s.fleet),
        pair = pair_table(&s.hubs),
        hub = esc(&s.hub.node),
        connected = s.connected_spokes,
        expected = s.expected_spokes,
        uuid = s.hub.uuid,
        uptime = s.hub.uptime_secs,
        healthy = s.hub.healthy,
    );
    let mut r = Response::new(full(page));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r
}
