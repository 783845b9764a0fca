//! The checked-in example topologies load, and their chains are what their comments promise.

use std::path::PathBuf;

use topology::{DatacentreName, TargetKind, Topology};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

fn must_load(name: &str) -> Topology {
    Topology::load(example(name)).unwrap_or_else(|e| panic!("example {name} is invalid:\n{e}"))
}

fn chain(t: &Topology, dc: &str) -> Vec<String> {
    let dc = DatacentreName::new(dc).expect("valid name");
    t.failover_chain(&dc)
        .into_iter()
        .map(|target| target.node.to_string())
        .collect()
}

#[test]
fn local_example_is_the_demo_fleet() {
    let t = must_load("local.toml");
    assert_eq!(t.fleet.as_str(), "local-demo");
    assert_eq!(t.first_hub().name.as_str(), "london");
    assert_eq!(t.first_hub().http.to_string(), "127.0.0.1:5984");
    assert_eq!(t.first_hub().grpc.to_string(), "127.0.0.1:6984");
    assert_eq!(chain(&t, "eu-west"), ["eu-west-1", "london", "us-east-1"]);
    assert_eq!(chain(&t, "us-east"), ["us-east-1", "london", "eu-west-1"]);
    let eu = t.spoke("eu-west-1").expect("eu-west-1 exists");
    assert_eq!(
        (eu.http.to_string(), eu.grpc.to_string()),
        ("127.0.0.1:5985".into(), "127.0.0.1:6985".into())
    );
    let us = t.spoke("us-east-1").expect("us-east-1 exists");
    assert_eq!(
        (us.http.to_string(), us.grpc.to_string()),
        ("127.0.0.1:5986".into(), "127.0.0.1:6986".into())
    );
    let db = t.database("sessions").expect("sessions database");
    assert_eq!(db.expiry_field.as_deref(), Some("expires_at"));
    assert_eq!(db.revs_limit, 10);
    assert!(t.tls.is_none());
    assert_eq!(t.hub_expected_spokes().len(), 2);
}

#[test]
fn production_example_is_25_datacentres_through_london() {
    let t = must_load("production.toml");
    assert_eq!(t.first_hub().name.as_str(), "london");
    assert_eq!(t.datacentres.len(), 25);
    assert_eq!(t.spoke_count(), 50);
    for dc in &t.datacentres {
        assert_eq!(dc.spokes.len(), 2, "{} has two spokes", dc.name);
        let c = t.failover_chain(&dc.name);
        // Own spokes, the hub, then a neighbour's two spokes.
        assert_eq!(c.len(), 5, "chain of {}", dc.name);
        assert!(
            c[..2].iter().all(|x| x.datacentre.as_ref() == Some(&dc.name)),
            "{} own spokes first",
            dc.name
        );
        assert_eq!(c[2].kind, TargetKind::Hub, "{}: hub third", dc.name);
        let neighbour = c[3].datacentre.clone().expect("a spoke");
        assert_ne!(neighbour, dc.name);
        assert_eq!(c[4].datacentre.as_ref(), Some(&neighbour));
        assert!(
            c.iter().all(|x| x.http.ip().to_string().starts_with("10.")),
            "private addresses"
        );
    }
    assert_eq!(
        chain(&t, "eu-west-1"),
        ["eu-west-1a", "eu-west-1b", "london", "eu-west-2a", "eu-west-2b"]
    );
    assert_eq!(
        chain(&t, "ap-southeast-2"),
        [
            "ap-southeast-2a",
            "ap-southeast-2b",
            "london",
            "ap-southeast-1a",
            "ap-southeast-1b"
        ]
    );
    let sydney = t.link_settings_for(&DatacentreName::new("ap-southeast-2").expect("valid"));
    assert_eq!((sydney.batch_size, sydney.connect_timeout_ms), (1000, 5000));
    let dublin = t.link_settings_for(&DatacentreName::new("eu-west-1").expect("valid"));
    assert_eq!((dublin.batch_size, dublin.connect_timeout_ms), (500, 2000));
    assert!(t.tls.is_some());
    assert_eq!(t.databases().len(), 2);
}

#[test]
fn hub_pair_example_is_two_hubs_with_a_preference_each() {
    let t = must_load("hub-pair.toml");
    let hubs: Vec<&str> = t.hubs.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(hubs, ["london-a", "london-b"]);
    assert_eq!(
        chain(&t, "eu-west"),
        ["eu-west-1", "us-east-1", "london-a", "london-b"]
    );
    assert_eq!(
        chain(&t, "us-east"),
        ["us-east-1", "london-b", "eu-west-1", "london-a"]
    );
    let us = DatacentreName::new("us-east").unwrap();
    let order: Vec<&str> = t.hubs_for(&us).iter().map(|h| h.name.as_str()).collect();
    assert_eq!(order, ["london-b", "london-a"]);
}
