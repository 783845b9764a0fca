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

/// Reports every cross-field mistake in `draft`.
pub(crate) fn check(diag: &mut Diagnostics<'_>, draft: &Draft) {
    check_node_names(diag, draft);
    check_addresses(diag, draft);
    check_plaintext(diag, draft);
    check_datacentres(diag, draft);
    check_databases(diag, draft);
    check_overrides(diag, draft);
}

/// All nodes (the hub first, then spokes in file order) for checks that span all of them.
fn nodes(draft: &Draft) -> impl Iterator<Item = &DraftNode> {
    draft
        .hub
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

fn check_datacentres(diag: &mut Diagnostics<'_>, draft: &Draft) {
    let hub_name = draft
        .hub
        .as_ref()
        .and_then(|h| h.name.as_ref())
        .map(|n| n.get_ref().as_str());
    let mut by_name: HashMap<&str, &str> = HashMap::new();
    for dc in &draft.datacentres {
        let Some(name) = &dc.name else { continue };
        let name_field = format!("{}.name", dc.path);
        if Some(name.get_ref().as_str()) == hub_name {
            diag.error(
                &name.span(),
                name_field,
                format!(
                    "datacentre name `{}` is also the hub's name; failover lists could not tell them apart",
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
    let known = known_targets(hub_name, draft);

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
            } else if Some(target) == hub_name || by_name.contains_key(target) {
                None
            } else if let Some(spoke_dc) = spoke_names.get(target) {
                Some(format!(
                    "`{target}` is a spoke; failover lists name datacentres (here `{spoke_dc}`) or the hub"
                ))
            } else if hub_name.is_none() {
                // Without a readable hub the entry may well name it; the missing hub is reported.
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
fn known_targets(hub_name: Option<&str>, draft: &Draft) -> String {
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
    match hub_name {
        Some(hub) => format!("hub `{hub}`; {dcs}"),
        None => dcs,
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
            let hub_name = draft
                .hub
                .as_ref()
                .and_then(|h| h.name.as_ref())
                .map(|n| n.get_ref().as_str());
            let hint = if Some(name.as_str()) == hub_name {
                " (the hub's links are its spokes' links; override the spokes' datacentres)".to_string()
            } else {
                format!(" (known: {})", known_targets(None, draft))
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
    let hub_draft = draft.hub?;
    let hub = Hub {
        name: hub_draft.name?.into_inner(),
        http: hub_draft.http?.into_inner(),
        grpc: hub_draft.grpc?.into_inner(),
        data_dir: hub_draft.data_dir,
    };
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
                if name == hub.name.as_str() {
                    NodeName::new(name).ok().map(FailoverStep::Hub)
                } else {
                    DatacentreName::new(name).ok().map(FailoverStep::Datacentre)
                }
            })
            .collect::<Option<Vec<_>>>()?;
        datacentres.push(Datacentre {
            name: dc.name?.into_inner(),
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
        hub,
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
