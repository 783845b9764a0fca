//! The ansible inventory (INI) of a topology, so that deployment reads the same file as the fleet.
//!
//! Groups: `hub`, `spokes`, and one `dc_<name>` per datacentre (`-` becomes `_`, which names
//! cannot contain, so groups never collide). Host variables: `ansible_host` (the IP of the
//! node's HTTP address), `role`, `http_addr`, `grpc_addr`, `datacentre` (spokes only) and
//! `data_dir` (when set). `[all:vars]` holds `fleet_name` and `databases`, a JSON list of
//! database names; values in `:vars` sections reach playbooks as strings, so use
//! `databases | from_json` there.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use crate::model::{DatacentreName, Topology};

/// The ansible group of a datacentre: `eu-west` -> `dc_eu_west`.
pub fn datacentre_group(dc: &DatacentreName) -> String {
    format!("dc_{}", dc.as_str().replace('-', "_"))
}

/// Renders the inventory; `source` (the topology file) is named in the header comment.
pub fn render(t: &Topology, source: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Ansible inventory of fleet {}, generated from {source}",
        t.fleet
    );
    let _ = writeln!(
        out,
        "# by `sessionfleet topology inventory`: edit the topology file, not this one."
    );
    let _ = writeln!(out, "\n[hub]");
    for hub in &t.hubs {
        let _ = writeln!(
            out,
            "{}",
            host_line(
                hub.name.as_str(),
                "hub",
                None,
                hub.http,
                hub.grpc,
                hub.data_dir.as_deref()
            )
        );
    }
    let _ = writeln!(out, "\n[spokes]");
    for dc in &t.datacentres {
        // With a hub pair, each spoke names its preferred hub: the one whose status page
        // the deployment waits on to list it.
        let preferred = t.hubs_for(&dc.name).first().map(|h| h.name.clone());
        for s in &dc.spokes {
            let mut line = host_line(
                s.name.as_str(),
                "spoke",
                Some(dc.name.as_str()),
                s.http,
                s.grpc,
                s.data_dir.as_deref(),
            );
            if let Some(hub) = preferred.as_ref().filter(|_| t.hubs.len() > 1) {
                let _ = write!(line, " hub={hub}");
            }
            let _ = writeln!(out, "{line}");
        }
    }
    for dc in &t.datacentres {
        // Hosts are listed with their variables once (under [spokes]); here only by name.
        let _ = writeln!(out, "\n[{}]", datacentre_group(&dc.name));
        for s in &dc.spokes {
            let _ = writeln!(out, "{}", s.name);
        }
    }
    let names: Vec<&str> = t.databases.iter().map(|db| db.name.as_str()).collect();
    let databases = serde_json::to_string(&names).unwrap_or_else(|_| "[]".to_string());
    let _ = writeln!(out, "\n[all:vars]");
    let _ = writeln!(out, "fleet_name={}", t.fleet);
    let _ = write!(out, "databases={databases}");
    out
}

fn host_line(
    name: &str,
    role: &str,
    datacentre: Option<&str>,
    http: SocketAddr,
    grpc: SocketAddr,
    data_dir: Option<&Path>,
) -> String {
    let mut line = format!("{name} ansible_host={} role={role}", http.ip());
    if let Some(dc) = datacentre {
        let _ = write!(line, " datacentre={dc}");
    }
    let _ = write!(line, " http_addr={http} grpc_addr={grpc}");
    if let Some(dir) = data_dir {
        let _ = write!(line, " data_dir={}", quote(&dir.display().to_string()));
    }
    line
}

/// Host variables are split like a shell line: quote values that would not survive that.
fn quote(value: &str) -> String {
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%".contains(c))
    {
        value.to_string()
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_sanitised() {
        let dc = DatacentreName::new("ap-southeast-1").expect("valid");
        assert_eq!(datacentre_group(&dc), "dc_ap_southeast_1");
    }

    #[test]
    fn odd_data_dirs_are_quoted() {
        assert_eq!(quote("/var/lib/sf"), "/var/lib/sf");
        assert_eq!(quote("/data/my dir"), "\"/data/my dir\"");
        assert_eq!(quote("/d/\"q\""), "\"/d/\\\"q\\\"\"");
    }
}
