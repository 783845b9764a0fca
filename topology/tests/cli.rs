//! `sessionfleet topology check|show|inventory`: argument parsing and each output.

use std::path::PathBuf;

use clap::Parser;
use topology::cli::{run, TopologyCliError, TopologyCommand};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

fn must_run(cmd: TopologyCommand) -> String {
    run(&cmd).unwrap_or_else(|e| panic!("{cmd:?} failed:\n{e}"))
}

/// How the `sessionfleet` binary embeds the subcommands.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    topology: TopologyCommand,
}

#[test]
fn arguments_parse_as_documented() {
    let parse = |args: &[&str]| Cli::try_parse_from(args).map(|c| c.topology);
    assert_eq!(
        parse(&["x", "check", "f.toml"]).ok(),
        Some(TopologyCommand::Check {
            file: "f.toml".into()
        })
    );
    assert_eq!(
        parse(&["x", "show", "f.toml", "--datacentre", "eu-west", "--json"]).ok(),
        Some(TopologyCommand::Show {
            file: "f.toml".into(),
            datacentre: Some("eu-west".into()),
            json: true
        })
    );
    assert_eq!(
        parse(&["x", "show", "f.toml"]).ok(),
        Some(TopologyCommand::Show {
            file: "f.toml".into(),
            datacentre: None,
            json: false
        })
    );
    assert_eq!(
        parse(&["x", "inventory", "f.toml"]).ok(),
        Some(TopologyCommand::Inventory {
            file: "f.toml".into()
        })
    );
    assert!(parse(&["x", "check"]).is_err(), "the file is required");
}

#[test]
fn check_prints_a_summary() {
    let out = must_run(TopologyCommand::Check {
        file: example("local.toml"),
    });
    assert_eq!(
        out,
        "ok: fleet local-demo, hub london, 2 datacentres, 2 spokes, 1 database"
    );
    let out = must_run(TopologyCommand::Check {
        file: example("production.toml"),
    });
    assert_eq!(
        out,
        "ok: fleet sessions-prod, hub london, 25 datacentres, 50 spokes, 2 databases"
    );
}

#[test]
fn check_of_an_invalid_file_prints_every_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[fleet]\nname = \"x\"\nmood = 1\n[[database]]\nname = \"sessions\"\n",
    )
    .expect("write");
    let err = run(&TopologyCommand::Check { file: path.clone() }).expect_err("invalid");
    assert!(matches!(err, TopologyCliError::Invalid(_)));
    let text = err.to_string();
    let file = path.display().to_string();
    assert_eq!(
        text,
        format!(
            "{file}:1:1: hub: missing [hub] section: every fleet has at least one hub ([hub], or [[hub]] for each of a pair)\n\
             {file}:3:1: fleet.mood: unknown key `mood`; expected one of: name"
        )
    );
}

#[test]
fn show_prints_the_fleet() {
    let out = must_run(TopologyCommand::Show {
        file: example("local.toml"),
        datacentre: None,
        json: false,
    });
    let expected = "\
fleet local-demo
hub   london     http 127.0.0.1:5984  grpc 127.0.0.1:6984  data_dir /tmp/sessionfleet-demo/london

datacentre eu-west
  spoke     eu-west-1  http 127.0.0.1:5985  grpc 127.0.0.1:6985  data_dir /tmp/sessionfleet-demo/eu-west-1
  failover  eu-west-1 -> london -> us-east-1

datacentre us-east
  spoke     us-east-1  http 127.0.0.1:5986  grpc 127.0.0.1:6986  data_dir /tmp/sessionfleet-demo/us-east-1
  failover  us-east-1 -> london -> eu-west-1

databases
  sessions  expiry_field=expires_at  revs_limit=10

links   batch_size=200 backoff=100..30000ms checkpoint_interval=5000ms connect_timeout=2000ms
  override us-east: connect_timeout=3000ms
client  deadline=50ms hedge_after=20ms max_staleness=2000ms cache_bytes=33554432 negative_ttl=500ms
tls     off (plaintext: only for a fleet on one host)";
    assert_eq!(out, expected);
}

#[test]
fn show_datacentre_prints_its_chain() {
    let out = must_run(TopologyCommand::Show {
        file: example("local.toml"),
        datacentre: Some("us-east".into()),
        json: false,
    });
    let expected = "\
datacentre us-east (fleet local-demo)
spokes
  us-east-1  http 127.0.0.1:5986  grpc 127.0.0.1:6986  data_dir /tmp/sessionfleet-demo/us-east-1
failover chain
   1. us-east-1  spoke  us-east  http 127.0.0.1:5986  grpc 127.0.0.1:6986
   2. london     hub    -        http 127.0.0.1:5984  grpc 127.0.0.1:6984
   3. eu-west-1  spoke  eu-west  http 127.0.0.1:5985  grpc 127.0.0.1:6985
links batch_size=200 backoff=100..30000ms checkpoint_interval=5000ms connect_timeout=3000ms";
    assert_eq!(out, expected);

    let err = run(&TopologyCommand::Show {
        file: example("local.toml"),
        datacentre: Some("mars".into()),
        json: false,
    })
    .expect_err("unknown datacentre");
    assert!(
        err.to_string()
            .ends_with("no datacentre `mars` (known: eu-west, us-east)"),
        "{err}"
    );
}

#[test]
fn show_json_is_the_model() {
    let out = must_run(TopologyCommand::Show {
        file: example("local.toml"),
        datacentre: None,
        json: true,
    });
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["fleet"], "local-demo");
    assert_eq!(v["hubs"][0]["grpc"], "127.0.0.1:6984");
    assert_eq!(v["datacentres"][0]["spokes"][0]["name"], "eu-west-1");
    assert_eq!(v["datacentres"][0]["failover"][0]["hub"], "london");
    assert_eq!(v["databases"][0]["revs_limit"], 10);
    assert_eq!(v["links"]["overrides"]["us-east"]["connect_timeout_ms"], 3000);
    assert_eq!(v["client"]["hedge_after_ms"], 20);

    let out = must_run(TopologyCommand::Show {
        file: example("local.toml"),
        datacentre: Some("eu-west".into()),
        json: true,
    });
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    let chain: Vec<&str> = v["failover_chain"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|t| t["node"].as_str())
        .collect();
    assert_eq!(chain, ["eu-west-1", "london", "us-east-1"]);
    assert_eq!(v["failover_chain"][1]["kind"], "hub");
    assert_eq!(v["failover_chain"][1]["datacentre"], serde_json::Value::Null);
    assert_eq!(v["links"]["batch_size"], 200);
}

#[test]
fn inventory_renders_ansible_ini() {
    let file = example("local.toml");
    let out = must_run(TopologyCommand::Inventory { file: file.clone() });
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some(
            format!(
                "# Ansible inventory of fleet local-demo, generated from {}",
                file.display()
            )
            .as_str()
        )
    );
    let body: Vec<&str> = lines.skip(1).collect();
    let expected = "
[hub]
london ansible_host=127.0.0.1 role=hub http_addr=127.0.0.1:5984 grpc_addr=127.0.0.1:6984 data_dir=/tmp/sessionfleet-demo/london

[spokes]
eu-west-1 ansible_host=127.0.0.1 role=spoke datacentre=eu-west http_addr=127.0.0.1:5985 grpc_addr=127.0.0.1:6985 data_dir=/tmp/sessionfleet-demo/eu-west-1
us-east-1 ansible_host=127.0.0.1 role=spoke datacentre=us-east http_addr=127.0.0.1:5986 grpc_addr=127.0.0.1:6986 data_dir=/tmp/sessionfleet-demo/us-east-1

[dc_eu_west]
eu-west-1

[dc_us_east]
us-east-1

[all:vars]
fleet_name=local-demo
databases=[\"sessions\"]";
    assert_eq!(body, expected.lines().collect::<Vec<_>>());

    let out = must_run(TopologyCommand::Inventory {
        file: example("production.toml"),
    });
    assert!(
        out.contains("\n[dc_ap_southeast_2]\nap-southeast-2a\nap-southeast-2b\n"),
        "{out}"
    );
    assert!(out.contains(
        "\nsa-east-1b ansible_host=10.14.0.12 role=spoke datacentre=sa-east-1 http_addr=10.14.0.12:5984 \
         grpc_addr=10.14.0.12:6984 data_dir=/var/lib/sessionfleet/spoke\n"
    ));
    assert!(out.ends_with("databases=[\"sessions\",\"csrf_tokens\"]"));
    assert_eq!(out.matches(" role=spoke ").count(), 50);
}
