//! Rules that relate parts of a topology file to each other, and the step from a checked draft to
//! the typed [`Topology`].
//!
//! Every check reports at the later of two clashing places and names the earlier one, so that a
//! reader looking at the error's line sees what to change and where the other use is.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::error::Diagnostics;
use crate::model::{
    DatabaseSpec, Datacentre, DatacentreName, FailoverStep, Hub, Links, NodeName, Spoke, Topology,
};
use crate::parse::{Draft, DraftNode};
use toml::Spanned;

/// Reports every cross-field mistake in `draft`.
pub(crate) fn check(diag: &mut Diagnostics<'_>, draft: &Draft) {
    check_node_names(diag, draft);
    check_addresses(diag, draft);
    check_plaintext(diag, draft);
    check_datacentres(diag, draft);
    check_databases(diag, draft);
    check_overrides(diag, draft);
}

/// All nodes (the hubs first, then spokes in file order) for checks that span all of them.
fn nodes(draft: &Draft) -> impl Iterator<Item = &DraftNode> {
    draft
        .hubs
        .iter()
        .chain(draft.datacentres.iter().flat_map(|dc| dc.spokes.iter()))
}

fn check_node_names(diag: &mut Diagnostics<'_>, draft: &Draft) {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for node in nodes(draft) {
        let Some(name) = &node.name else { continue };
        if let Some(first) = seen.get(name.get_ref().as_str()) {
            diag.error(
                &name.span(),
                format!("{}.name", node.path),
                format!(
                    "node name `{}` is already used by {first}; hub and spoke names must be unique",
                    name.get_ref()
                ),
            );
        } else {
            seen.insert(name.get_ref().as_str(), &node.path);
        }
    }
}

fn check_addresses(diag: &mut Diagnostics<'_>, draft: &Draft) {
    let mut seen: HashMap<SocketAddr, String> = HashMap::new();
    for node in nodes(draft) {
        for (kind, addr) in [("http", &node.http), ("grpc", &node.grpc)] {
            let Some(addr) = addr else { continue };
            let field = format!("{}.{kind}", node.path);
            if let Some(first) = seen.get(addr.get_ref()) {
                diag.error(
                    &addr.span(),
                    field,
                    format!("address {} is already used by {first}", addr.get_ref()),
                );
            } else {
                seen.insert(*addr.get_ref(), field);
            }
        }
    }
}

/// Plaintext only on one host: sessions are credentials, and a link that leaves the machine is
/// encrypted and authenticated or not allowed.
fn check_plaintext(diag: &mut Diagnostics<'_>, draft: &Draft) {
    if draft.tls.is_some() {
        return;
    }
    let exposed = nodes(draft).find_map(|node| {
        [("http", &node.http), ("grpc", &node.grpc)]
            .into_iter()
            .find_map(|(kind, addr)| {
                let addr = addr.as_ref()?;
                (!addr.get_ref().ip().is_loopback()).then(|| (format!("{}.{kind}", node.path), addr))
            })
    });
    if let Some((field, addr)) = exposed {
        diag.error(
            &addr.span(),
            field,
            format!(
                "{} is not a loopback address, and the file has no [tls] section: a fleet beyond one host \
                 must be encrypted. Add [tls] (make the files with `sessionfleet certs`); plaintext is allowed \
                 only when every address is loopback",
                addr.get_ref()
            ),
        );
    }
}

/// Not a datacentre name: peers are keyed `<datacentre>/<node>` and peer hubs `hub/<node>`.
const RESERVED_DATACENTRE: &str = "hub";

/// The names of the hubs that have a readable one.
fn hub_names(draft: &Draft) -> Vec<&str> {
    draft
        .hubs
        .iter()
        .filter_map(|h| h.name.as_ref())
        .map(|n| n.get_ref().as_str())
        .collect()
}

fn check_datacentres(diag: &mut Diagnostics<'_>, draft: &Draft) {
    let hubs = hub_names(draft);
    let mut by_name: HashMap<&str, &str> = HashMap::new();
    for dc in &draft.datacentres {
        let Some(name) = &dc.name else { continue };
        let name_field = format!("{}.name", dc.path);
        if name.get_ref().as_str() == RESERVED_DATACENTRE {
            diag.error(
                &name.span(),
                name_field,
                format!(
                    "datacentre name `{RESERVED_DATACENTRE}` is reserved: status pages name peer hubs `hub/<name>` beside spokes' `<datacentre>/<name>`"
                ),
            );
        } else if hubs.contains(&name.get_ref().as_str()) {
            diag.error(
                &name.span(),
                name_field,
                format!(
                    "datacentre name `{}` is also a hub's name; failover lists could not tell them apart",
                    name.get_ref()
                ),
            );
        } else if let Some(first) = by_name.get(name.get_ref().as_str()) {
            diag.error(
                &name.span(),
                name_field,
                format!("datacentre name `{}` is already used by {first}", name.get_ref()),
            );
        } else {
            by_name.insert(name.get_ref().as_str(), &dc.path);
        }
    }
    let spoke_names: HashMap<&str, &str> = draft
        .datacentres
        .iter()
        .flat_map(|dc| dc.spokes.iter().map(move |s| (s, dc)))
        .filter_map(|(s, dc)| {
            Some((
                s.name.as_ref()?.get_ref().as_str(),
                dc.name.as_ref()?.get_ref().as_str(),
            ))
        })
        .collect();
    let known = known_targets(&hubs, draft);

    for dc in &draft.datacentres {
        let own = dc.name.as_ref().map(|n| n.get_ref().as_str());
        if dc.spokes.is_empty() {
            diag.error(
                &dc.span,
                format!("{}.spoke", dc.path),
                format!(
                    "datacentre `{}` has no spokes; add at least one [[datacentre.spoke]] after its [[datacentre]]",
                    own.unwrap_or("?")
                ),
            );
        }
        if let Some(preferred) = &dc.hub {
            if !hubs.is_empty() && !hubs.contains(&preferred.get_ref().as_str()) {
                let known: Vec<String> = hubs.iter().map(|h| format!("`{h}`")).collect();
                diag.error(
                    &preferred.span(),
                    format!("{}.hub", dc.path),
                    format!(
                        "unknown hub `{}` (hubs: {})",
                        preferred.get_ref(),
                        known.join(", ")
                    ),
                );
            }
        }
        let mut listed: HashMap<&str, usize> = HashMap::new();
        for (j, entry) in dc.failover.iter().enumerate() {
            let target = entry.get_ref().as_str();
            let field = format!("{}.failover[{j}]", dc.path);
            let problem = if Some(target) == own {
                Some(format!(
                    "datacentre `{target}` cannot fail over to itself: its own spokes always come first"
                ))
            } else if let Some(first) = listed.get(target) {
                Some(format!("`{target}` is listed twice (first at failover[{first}])"))
            } else if hubs.contains(&target) || by_name.contains_key(target) {
                None
            } else if let Some(spoke_dc) = spoke_names.get(target) {
                Some(format!(
                    "`{target}` is a spoke; failover lists name datacentres (here `{spoke_dc}`) or hubs"
                ))
            } else if hubs.len() < draft.hubs.len() || hubs.is_empty() {
                // Without every hub's name the entry may well name one; the missing name is reported.
                None
            } else {
                Some(format!("unknown datacentre `{target}` (known: {known})"))
            };
            if let Some(message) = problem {
                diag.error(&entry.span(), field, message);
            }
            listed.entry(target).or_insert(j);
        }
    }
}

/// "hub `london`; datacentres `eu-west`, `us-east`", for "unknown name" messages.
fn known_targets(hubs: &[&str], draft: &Draft) -> String {
    let dcs: Vec<String> = draft
        .datacentres
        .iter()
        .filter_map(|dc| dc.name.as_ref())
        .map(|n| format!("`{}`", n.get_ref()))
        .collect();
    let dcs = if dcs.is_empty() {
        "no datacentres".to_string()
    } else {
        format!("datacentres {}", dcs.join(", "))
    };
    let named: Vec<String> = hubs.iter().map(|h| format!("`{h}`")).collect();
    match named.len() {
        0 => dcs,
        1 => format!("hub {}; {dcs}", named.join("")),
        _ => format!("hubs {}; {dcs}", named.join(", ")),
    }
}

fn check_databases(diag: &mut Diagnostics<'_>, draft: &Draft) {
    if draft.databases.is_empty() {
        diag.error(
            &(0..0),
            "database",
            "no [[database]] sections: the fleet would replicate nothing; add at least one",
        );
    }
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for db in &draft.databases {
        let Some(name) = &db.name else { continue };
        if let Some(first) = seen.get(name.get_ref().as_str()) {
            diag.error(
                &name.span(),
                format!("{}.name", db.path),
                format!("database `{}` is already defined by {first}", name.get_ref()),
            );
        } else {
            seen.insert(name.get_ref(), &db.path);
        }
    }
}

fn check_overrides(diag: &mut Diagnostics<'_>, draft: &Draft) {
    for o in &draft.overrides {
        let name = o.datacentre.get_ref();
        let exists = draft
            .datacentres
            .iter()
            .any(|dc| dc.name.as_ref().is_some_and(|n| n.get_ref() == name.as_str()));
        if !exists {
            let hint = if hub_names(draft).contains(&name.as_str()) {
                " (the hub's links are its spokes' links; override the spokes' datacentres)".to_string()
            } else {
                format!(" (known: {})", known_targets(&[], draft))
            };
            diag.error(
                &o.datacentre.span(),
                o.path.clone(),
                format!("unknown datacentre `{name}`{hint}"),
            );
        }
    }
}

/// Turns a draft with no reported mistakes into the typed topology. `None` only if something
/// required is missing, which `parse` has reported: callers treat it as a bug, not a panic.
pub(crate) fn build(draft: Draft) -> Option<Topology> {
    let hubs = draft
        .hubs
        .into_iter()
        .map(|h| {
            Some(Hub {
                name: h.name?.into_inner(),
                http: h.http?.into_inner(),
                grpc: h.grpc?.into_inner(),
                data_dir: h.data_dir,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    if hubs.is_empty() {
        return None;
    }
    let mut datacentres = Vec::new();
    for dc in draft.datacentres {
        let spokes = dc
            .spokes
            .into_iter()
            .map(build_spoke)
            .collect::<Option<Vec<_>>>()?;
        let failover = dc
            .failover
            .into_iter()
            .map(|entry| {
                let name = entry.into_inner();
                if hubs.iter().any(|h| h.name == name.as_str()) {
                    NodeName::new(name).ok().map(FailoverStep::Hub)
                } else {
                    DatacentreName::new(name).ok().map(FailoverStep::Datacentre)
                }
            })
            .collect::<Option<Vec<_>>>()?;
        datacentres.push(Datacentre {
            name: dc.name?.into_inner(),
            hub: dc.hub.map(Spanned::into_inner),
            failover,
            spokes,
        });
    }
    let databases = draft
        .databases
        .into_iter()
        .map(|db| {
            Some(DatabaseSpec {
                name: db.name?.into_inner(),
                expiry_field: db.expiry_field,
                revs_limit: db.revs_limit,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let overrides = draft
        .overrides
        .into_iter()
        .map(|o| Some((DatacentreName::new(o.datacentre.into_inner()).ok()?, o.settings)))
        .collect::<Option<_>>()?;
    Some(Topology {
        fleet: draft.fleet?.into_inner(),
        hubs,
        datacentres,
        databases,
        links: Links {
            defaults: draft.links,
            overrides,
        },
        client: draft.client,
        tls: draft.tls,
        auth: draft.auth,
    })
}

fn build_spoke(node: DraftNode) -> Option<Spoke> {
    Some(Spoke {
        name: node.name?.into_inner(),
        http: node.http?.into_inner(),
        grpc: node.grpc?.into_inner(),
        data_dir: node.data_dir,
    })
}
