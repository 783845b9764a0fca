//! Views derived from a topology: a datacentre's failover chain, the hub's expected spokes, and
//! lookups. Pure functions of the [`Topology`], so servers and clients agree on them exactly.

use std::collections::HashSet;
use std::net::SocketAddr;

use serde::Serialize;

use crate::model::{
    DatabaseSpec, Datacentre, DatacentreName, FailoverStep, Hub, LinkSettings, NodeName, Spoke, Topology,
};

/// Whether a target is the hub or a spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// A spoke in some datacentre.
    Spoke,
    /// The hub.
    Hub,
}

/// A node an edge-client (or the hub) talks to, with everything needed to dial it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The node's name.
    pub node: NodeName,
    /// The spoke's datacentre; `None` for a hub.
    pub datacentre: Option<DatacentreName>,
    /// Hub or spoke.
    pub kind: TargetKind,
    /// CouchDB-compatible HTTP address.
    pub http: SocketAddr,
    /// gRPC address.
    pub grpc: SocketAddr,
}

impl Target {
    fn spoke(dc: &Datacentre, spoke: &Spoke) -> Target {
        Target {
            node: spoke.name.clone(),
            datacentre: Some(dc.name.clone()),
            kind: TargetKind::Spoke,
            http: spoke.http,
            grpc: spoke.grpc,
        }
    }

    fn hub(hub: &Hub) -> Target {
        Target {
            node: hub.name.clone(),
            datacentre: None,
            kind: TargetKind::Hub,
            http: hub.http,
            grpc: hub.grpc,
        }
    }
}

impl Topology {
    /// The order in which an app server in datacentre `dc` tries nodes: the datacentre's own
    /// spokes (file order), then each `failover` entry expanded (a hub, or another
    /// datacentre's spokes in file order), then every hub the list did not name, in the
    /// datacentre's hub order ([`Topology::hubs_for`]) — a hub holds everything, so every hub
    /// is somewhere in the chain. No node appears twice.
    ///
    /// Empty if the topology has no datacentre `dc`: an app server configured for a datacentre
    /// the topology does not know should fail loudly, not quietly read from the hub.
    pub fn failover_chain(&self, dc: &DatacentreName) -> Vec<Target> {
        let Some(home) = self.datacentre(dc.as_str()) else {
            return Vec::new();
        };
        let mut chain: Vec<Target> = Vec::new();
        let mut seen: HashSet<NodeName> = HashSet::new();
        let mut push = |chain: &mut Vec<Target>, target: Target| {
            if seen.insert(target.node.clone()) {
                chain.push(target);
            }
        };
        for spoke in &home.spokes {
            push(&mut chain, Target::spoke(home, spoke));
        }
        for step in &home.failover {
            match step {
                FailoverStep::Hub(name) => {
                    if let Some(hub) = self.hub(name.as_str()) {
                        push(&mut chain, Target::hub(hub));
                    }
                }
                FailoverStep::Datacentre(name) => {
                    // Validation guarantees the name exists; a hand-built topology may not.
                    if let Some(other) = self.datacentre(name.as_str()) {
                        for spoke in &other.spokes {
                            push(&mut chain, Target::spoke(other, spoke));
                        }
                    }
                }
            }
        }
        for hub in self.hubs_for(dc) {
            push(&mut chain, Target::hub(hub));
        }
        chain
    }

    /// The hubs datacentre `dc`'s spokes replicate with, in the order they try them: the
    /// datacentre's preferred hub (`hub = ...`, else the first hub), then the others in file
    /// order. A spoke replicates with the first reachable one and returns to the first when it
    /// recovers. For a datacentre the topology does not know: every hub in file order.
    pub fn hubs_for(&self, dc: &DatacentreName) -> Vec<&Hub> {
        let preferred = self
            .datacentre(dc.as_str())
            .and_then(|d| d.hub.as_ref())
            .and_then(|name| self.hub(name.as_str()));
        preferred
            .into_iter()
            .chain(self.hubs.iter().filter(|h| Some(*h) != preferred))
            .collect()
    }

    /// The hub called `name`.
    pub fn hub(&self, name: &str) -> Option<&Hub> {
        self.hubs.iter().find(|h| h.name == name)
    }

    /// The first hub in the file: where a tool that needs one hub (the demo's status page,
    /// `sessionfleet client`'s fallback) goes.
    pub fn first_hub(&self) -> &Hub {
        // A topology has at least one hub: `parse` refuses a file without, and `hubs_for`
        // et al. would be meaningless without one.
        &self.hubs[0]
    }

    /// Every hub but `me`, in file order: the hubs a hub replicates with.
    pub fn peer_hubs(&self, me: &str) -> Vec<&Hub> {
        self.hubs.iter().filter(|h| h.name != me).collect()
    }

    /// Every spoke with its datacentre, in file order: the spokes the hub expects to replicate
    /// with (and the only ones it accepts).
    pub fn hub_expected_spokes(&self) -> Vec<Target> {
        self.datacentres
            .iter()
            .flat_map(|dc| dc.spokes.iter().map(move |s| Target::spoke(dc, s)))
            .collect()
    }

    /// The datacentre called `name`.
    pub fn datacentre(&self, name: &str) -> Option<&Datacentre> {
        self.datacentres.iter().find(|dc| dc.name == name)
    }

    /// The spoke called `name`, in any datacentre.
    pub fn spoke(&self, name: &str) -> Option<&Spoke> {
        self.datacentres
            .iter()
            .flat_map(|dc| dc.spokes.iter())
            .find(|s| s.name == name)
    }

    /// The datacentre the spoke called `spoke` belongs to.
    pub fn datacentre_of(&self, spoke: &str) -> Option<&Datacentre> {
        self.datacentres
            .iter()
            .find(|dc| dc.spokes.iter().any(|s| s.name == spoke))
    }

    /// Any node (a hub or a spoke) by name, as a dialable target.
    pub fn node(&self, name: &str) -> Option<Target> {
        if let Some(hub) = self.hub(name) {
            return Some(Target::hub(hub));
        }
        let dc = self.datacentre_of(name)?;
        dc.spokes
            .iter()
            .find(|s| s.name == name)
            .map(|s| Target::spoke(dc, s))
    }

    /// The settings for the links of datacentre `dc`'s spokes: the `[links]` defaults with the
    /// datacentre's override applied (just the defaults for a datacentre with no override).
    pub fn link_settings_for(&self, dc: &DatacentreName) -> LinkSettings {
        match self.links.overrides.get(dc) {
            Some(o) => o.apply(self.links.defaults),
            None => self.links.defaults,
        }
    }

    /// The databases that replicate, in file order.
    pub fn databases(&self) -> &[DatabaseSpec] {
        &self.databases
    }

    /// The database called `name`.
    pub fn database(&self, name: &str) -> Option<&DatabaseSpec> {
        self.databases.iter().find(|db| db.name == name)
    }

    /// Number of spokes in all datacentres.
    pub fn spoke_count(&self) -> usize {
        self.datacentres.iter().map(|dc| dc.spokes.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[fleet]
name = "t"
[hub]
name = "hub"
http = "10.0.0.1:1"
grpc = "10.0.0.1:2"
[[database]]
name = "sessions"
[links]
batch_size = 7
[links.override.b]
batch_size = 3
backoff_max_ms = 60000
"#;

    /// Builds a topology from `(datacentre, spokes, failover)` rows.
    fn topology(dcs: &[(&str, &[&str], &[&str])]) -> Topology {
        let mut text = BASE.to_string();
        let mut port = 100;
        for (name, spokes, failover) in dcs {
            let list: Vec<String> = failover.iter().map(|f| format!("{f:?}")).collect();
            text.push_str(&format!(
                "[[datacentre]]\nname = {name:?}\nfailover = [{}]\n",
                list.join(", ")
            ));
            for s in *spokes {
                port += 2;
                text.push_str(&format!(
                    "[[datacentre.spoke]]\nname = {s:?}\nhttp = \"10.0.0.2:{port}\"\ngrpc = \"10.0.0.2:{}\"\n",
                    port + 1
                ));
            }
        }
        // Addresses beyond loopback need TLS.
        text.push_str("[tls]\nca = \"ca.pem\"\ncert = \"{node}.pem\"\nkey = \"{node}.key\"\n");
        Topology::parse(&text, "table.toml").unwrap_or_else(|e| panic!("test topology is invalid:\n{e}"))
    }

    fn chain(t: &Topology, dc: &str) -> Vec<String> {
        let dc = DatacentreName::new(dc).expect("valid test name");
        t.failover_chain(&dc)
            .into_iter()
            .map(|target| target.node.to_string())
            .collect()
    }

    #[test]
    fn failover_chain_table() {
        let fleet = topology(&[
            ("a", &["a1", "a2"], &["hub", "b"]),
            ("b", &["b1"], &["c", "hub", "a"]),
            ("c", &["c1", "c2"], &[]),
            ("d", &["d1"], &["c", "b"]),
        ]);
        let cases: &[(&str, &[&str])] = &[
            // Own spokes first, then the list in order.
            ("a", &["a1", "a2", "hub", "b1"]),
            // The hub where the list puts it, other datacentres expanded in file order.
            ("b", &["b1", "c1", "c2", "hub", "a1", "a2"]),
            // No list: own spokes, then the hub.
            ("c", &["c1", "c2", "hub"]),
            // The hub is appended when the list leaves it out.
            ("d", &["d1", "c1", "c2", "b1", "hub"]),
            // Unknown datacentre: empty, so the caller notices.
            ("zz", &[]),
        ];
        for (dc, want) in cases {
            assert_eq!(chain(&fleet, dc), *want, "chain of {dc}");
        }
    }

    #[test]
    fn chain_targets_carry_kind_datacentre_and_addresses() {
        let fleet = topology(&[("a", &["a1"], &["hub"]), ("b", &["b1"], &[])]);
        let c = fleet.failover_chain(&DatacentreName::new("a").expect("valid"));
        assert_eq!(c[0].kind, TargetKind::Spoke);
        assert_eq!(c[0].datacentre.as_ref().map(|d| d.as_str()), Some("a"));
        assert_eq!(c[0].http.to_string(), "10.0.0.2:102");
        assert_eq!(c[0].grpc.to_string(), "10.0.0.2:103");
        assert_eq!(c[1].kind, TargetKind::Hub);
        assert_eq!(c[1].datacentre, None);
        assert_eq!(c[1].grpc.to_string(), "10.0.0.1:2");
    }

    #[test]
    fn lookups_and_expected_spokes() {
        let fleet = topology(&[("a", &["a1", "a2"], &[]), ("b", &["b1"], &[])]);
        let expected: Vec<(String, String)> = fleet
            .hub_expected_spokes()
            .into_iter()
            .map(|t| {
                (
                    t.node.to_string(),
                    t.datacentre.map(|d| d.to_string()).unwrap_or_default(),
                )
            })
            .collect();
        let pairs = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(expected, pairs(&[("a1", "a"), ("a2", "a"), ("b1", "b")]));
        assert_eq!(
            fleet.spoke("a2").map(|s| s.http.to_string()).as_deref(),
            Some("10.0.0.2:104")
        );
        assert_eq!(fleet.datacentre_of("b1").map(|d| d.name.as_str()), Some("b"));
        assert!(fleet.datacentre_of("hub").is_none());
        assert_eq!(fleet.node("hub").map(|t| t.kind), Some(TargetKind::Hub));
        assert_eq!(fleet.node("a1").map(|t| t.kind), Some(TargetKind::Spoke));
        assert!(fleet.node("nope").is_none());
        assert_eq!(fleet.spoke_count(), 3);
        assert_eq!(fleet.databases().len(), 1);
        assert!(fleet.database("sessions").is_some());
    }

    #[test]
    fn link_settings_merge_defaults_with_overrides() {
        let fleet = topology(&[("a", &["a1"], &[]), ("b", &["b1"], &[])]);
        let name = |n: &str| DatacentreName::new(n).expect("valid");
        let a = fleet.link_settings_for(&name("a"));
        assert_eq!(
            (a.batch_size, a.backoff_initial_ms, a.backoff_max_ms),
            (7, 100, 30_000)
        );
        let b = fleet.link_settings_for(&name("b"));
        assert_eq!(
            (b.batch_size, b.backoff_initial_ms, b.backoff_max_ms),
            (3, 100, 60_000)
        );
        assert_eq!(b.checkpoint_interval_ms, 5_000);
    }
}
