//! Human and JSON renderings of a topology, for `sessionfleet topology check|show`.

use std::fmt::Write as _;

use serde::Serialize;

use crate::chain::{Target, TargetKind};
use crate::model::{ClientSettings, Datacentre, LinkOverride, LinkSettings, Topology};

/// "ok: fleet local-demo, hub london, 2 datacentres, 2 spokes, 1 database".
pub(crate) fn summary(t: &Topology) -> String {
    format!(
        "ok: fleet {}, {} {}, {}, {}, {}",
        t.fleet,
        if t.hubs.len() == 1 { "hub" } else { "hubs" },
        t.hubs
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
            .join(" + "),
        plural(t.datacentres.len(), "datacentre"),
        plural(t.spoke_count(), "spoke"),
        plural(t.databases.len(), "database"),
    )
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The whole fleet: hubs, datacentres with spokes and chains, databases, settings.
pub(crate) fn overview(t: &Topology) -> String {
    let width = widths(t);
    let mut out = String::new();
    let _ = writeln!(out, "fleet {}", t.fleet);
    for hub in &t.hubs {
        let _ = writeln!(
            out,
            "hub   {}",
            node_line(hub.name.as_str(), width, &hub.http, &hub.grpc, &hub.data_dir)
        );
    }
    for dc in &t.datacentres {
        let _ = writeln!(out, "\ndatacentre {}", dc.name);
        for s in &dc.spokes {
            let _ = writeln!(
                out,
                "  spoke     {}",
                node_line(s.name.as_str(), width, &s.http, &s.grpc, &s.data_dir)
            );
        }
        if t.hubs.len() > 1 {
            let hubs: Vec<&str> = t.hubs_for(&dc.name).iter().map(|h| h.name.as_str()).collect();
            let _ = writeln!(out, "  hubs      {}", hubs.join(" -> "));
        }
        let _ = writeln!(out, "  failover  {}", chain_names(&t.failover_chain(&dc.name)));
    }
    let _ = writeln!(out, "\ndatabases");
    for db in &t.databases {
        let expiry = db
            .expiry_field
            .as_deref()
            .map_or("none".to_string(), |f| f.to_string());
        let _ = writeln!(
            out,
            "  {}  expiry_field={expiry}  revs_limit={}",
            db.name, db.revs_limit
        );
    }
    let _ = writeln!(out, "\nlinks   {}", links_line(&t.links.defaults));
    for (dc, o) in &t.links.overrides {
        let _ = writeln!(out, "  override {dc}: {}", override_line(o));
    }
    let _ = writeln!(out, "client  {}", client_line(&t.client));
    let _ = write!(out, "{}", tls_line(t));
    out
}

/// One datacentre: its spokes, its expanded failover chain with addresses, its link settings.
pub(crate) fn datacentre(t: &Topology, dc: &Datacentre) -> String {
    let chain = t.failover_chain(&dc.name);
    let width = chain.iter().map(|c| c.node.as_str().len()).max().unwrap_or(0);
    let http_width = chain.iter().map(|c| c.http.to_string().len()).max().unwrap_or(0);
    let dc_width = chain
        .iter()
        .filter_map(|c| c.datacentre.as_ref())
        .map(|d| d.as_str().len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(out, "datacentre {} (fleet {})", dc.name, t.fleet);
    let _ = writeln!(out, "spokes");
    for s in &dc.spokes {
        let _ = writeln!(
            out,
            "  {}",
            node_line(
                s.name.as_str(),
                (width, http_width),
                &s.http,
                &s.grpc,
                &s.data_dir
            )
        );
    }
    let _ = writeln!(out, "failover chain");
    for (i, target) in chain.iter().enumerate() {
        let kind = match target.kind {
            TargetKind::Spoke => "spoke",
            TargetKind::Hub => "hub",
        };
        let home = target.datacentre.as_ref().map_or("-", |d| d.as_str());
        let _ = writeln!(
            out,
            "  {:>2}. {:<width$}  {kind:<5}  {home:<dc_width$}  http {:<http_width$}  grpc {}",
            i + 1,
            target.node,
            target.http.to_string(),
            target.grpc,
        );
    }
    let _ = write!(out, "links {}", links_line(&t.link_settings_for(&dc.name)));
    out
}

/// `show --datacentre X --json`: the datacentre as written plus what it resolves to.
#[derive(Serialize)]
pub(crate) struct DatacentreView<'t> {
    pub datacentre: &'t Datacentre,
    pub failover_chain: Vec<Target>,
    pub links: LinkSettings,
}

/// Column widths (node name, HTTP address) that line up every node of the fleet.
fn widths(t: &Topology) -> (usize, usize) {
    let spokes = t.datacentres.iter().flat_map(|dc| dc.spokes.iter());
    let names = spokes
        .clone()
        .map(|s| s.name.as_str().len())
        .chain(t.hubs.iter().map(|h| h.name.as_str().len()));
    let https = spokes
        .map(|s| s.http.to_string().len())
        .chain(t.hubs.iter().map(|h| h.http.to_string().len()));
    (names.max().unwrap_or(0), https.max().unwrap_or(0))
}

fn node_line(
    name: &str,
    (width, http_width): (usize, usize),
    http: &std::net::SocketAddr,
    grpc: &std::net::SocketAddr,
    data_dir: &Option<std::path::PathBuf>,
) -> String {
    let http = http.to_string();
    let mut line = format!("{name:<width$}  http {http:<http_width$}  grpc {grpc}");
    if let Some(dir) = data_dir {
        let _ = write!(line, "  data_dir {}", dir.display());
    }
    line.trim_end().to_string()
}

fn chain_names(chain: &[Target]) -> String {
    chain
        .iter()
        .map(|t| t.node.as_str())
        .collect::<Vec<_>>()
        .join(" -> ")
}

fn links_line(l: &LinkSettings) -> String {
    format!(
        "batch_size={} backoff={}..{}ms checkpoint_interval={}ms connect_timeout={}ms",
        l.batch_size, l.backoff_initial_ms, l.backoff_max_ms, l.checkpoint_interval_ms, l.connect_timeout_ms
    )
}

fn override_line(o: &LinkOverride) -> String {
    let parts: Vec<String> = [
        o.batch_size.map(|v| format!("batch_size={v}")),
        o.backoff_initial_ms.map(|v| format!("backoff_initial={v}ms")),
        o.backoff_max_ms.map(|v| format!("backoff_max={v}ms")),
        o.checkpoint_interval_ms
            .map(|v| format!("checkpoint_interval={v}ms")),
        o.connect_timeout_ms.map(|v| format!("connect_timeout={v}ms")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        "(no changes)".to_string()
    } else {
        parts.join(" ")
    }
}

fn client_line(c: &ClientSettings) -> String {
    let hedge = c.hedge_after_ms.map_or("off".to_string(), |h| format!("{h}ms"));
    format!(
        "deadline={}ms hedge_after={hedge} max_staleness={}ms cache_bytes={} negative_ttl={}ms",
        c.deadline_ms, c.max_staleness_ms, c.cache_bytes, c.negative_ttl_ms
    )
}

fn tls_line(t: &Topology) -> String {
    match &t.tls {
        Some(tls) => {
            format!(
                "tls     ca={} cert={} key={}",
                tls.ca.display(),
                tls.cert,
                tls.key
            )
        }
        None => "tls     off (plaintext: only for a fleet on one host)".to_string(),
    }
}
