//! Every class of mistake is reported with its line, column and field, and all of them at once.

use topology::{Topology, TopologyError};

const BASE: &str = r#"[fleet]
name = "t"

[hub]
name = "london"
http = "127.0.0.1:5984"
grpc = "127.0.0.1:6984"

[[datacentre]]
name = "eu-west"
failover = ["london", "us-east"]
  [[datacentre.spoke]]
  name = "eu-west-1"
  http = "127.0.0.1:5985"
  grpc = "127.0.0.1:6985"

[[datacentre]]
name = "us-east"
  [[datacentre.spoke]]
  name = "us-east-1"
  http = "127.0.0.1:5986"
  grpc = "127.0.0.1:6986"

[[database]]
name = "sessions"
"#;

/// `BASE` with each `(from, to)` replacement made once (each `from` must occur).
fn with(edits: &[(&str, &str)]) -> String {
    let mut text = BASE.to_string();
    for (from, to) in edits {
        assert!(text.contains(from), "test edit: {from:?} not in text");
        text = text.replacen(from, to, 1);
    }
    text
}

fn must_fail(text: &str) -> Vec<TopologyError> {
    match Topology::parse(text, "t.toml") {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => {
            assert_eq!(e.file, "t.toml");
            e.errors
        }
    }
}

/// 1-based line and column of the `nth` (0-based) occurrence of `needle` in `text`.
fn position(text: &str, needle: &str, nth: usize) -> (usize, usize) {
    let offset = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("{needle:?} #{nth} not in text"))
        .0;
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Asserts an error exists at the `nth` occurrence of `at`, for `field`, whose message contains
/// `message`; and that its Display names file, line, column and field.
fn assert_error(errors: &[TopologyError], text: &str, (at, nth): (&str, usize), field: &str, message: &str) {
    let (line, column) = position(text, at, nth);
    let found = errors
        .iter()
        .find(|e| e.line == line && e.field == field && e.message.contains(message));
    let Some(e) = found else {
        let all: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        panic!(
            "no error at line {line} for {field} containing {message:?}; got:\n{}",
            all.join("\n")
        );
    };
    assert_eq!(e.column, column, "column of {e}");
    assert!(
        e.to_string().starts_with(&format!("{line}:{column}: {field}: ")),
        "{e}"
    );
}

#[test]
fn base_is_valid() {
    Topology::parse(BASE, "t.toml").unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn toml_syntax_error_names_line_and_enclosing_table() {
    let text = with(&[("  name = \"us-east-1\"", "  name = ")]);
    let errors = must_fail(&text);
    let (line, _) = position(&text, "  name = \n", 0);
    let e = errors
        .iter()
        .find(|e| e.line == line)
        .unwrap_or_else(|| panic!("{errors:?}"));
    assert_eq!(e.field, "[[datacentre.spoke]]");
    assert!(e.message.starts_with("TOML syntax error"), "{e}");
    let text = with(&[("[[database]]", "[[database]]\nname = \"x\"")]);
    let errors = must_fail(&text);
    assert!(
        errors.iter().any(|e| e.message.contains("duplicate key")),
        "{errors:?}"
    );
}

#[test]
fn unknown_keys_are_reported_everywhere_with_suggestions() {
    let text = with(&[
        ("[fleet]", "datacenters = 1\n[fleet]"),
        ("grpc = \"127.0.0.1:6984\"", "grpc = \"127.0.0.1:6984\"\nadress = \"x\""),
        ("  grpc = \"127.0.0.1:6985\"", "  grpc = \"127.0.0.1:6985\"\n  port = 1"),
        ("name = \"sessions\"", "name = \"sessions\"\nttl = 5"),
    ]) + "[links]\nbatchsize = 5\n[links.override.eu-west]\nbogus = 1\n[client]\ndeadline = 5\n[tls]\nca = \"a\"\ncert = \"b{node}\"\nkey = \"c{node}\"\ncafile = \"d\"\n";
    let errors = must_fail(&text);
    assert_error(
        &errors,
        &text,
        ("datacenters", 0),
        "datacenters",
        "did you mean `datacentre`?",
    );
    assert_error(
        &errors,
        &text,
        ("adress", 0),
        "hub.adress",
        "unknown key `adress`",
    );
    assert_error(
        &errors,
        &text,
        ("port", 0),
        "datacentre[0].spoke[0].port",
        "unknown key",
    );
    assert_error(&errors, &text, ("ttl", 0), "database[0].ttl", "unknown key");
    assert_error(
        &errors,
        &text,
        ("batchsize", 0),
        "links.batchsize",
        "did you mean `batch_size`?",
    );
    assert_error(
        &errors,
        &text,
        ("bogus", 0),
        "links.override.eu-west.bogus",
        "unknown key",
    );
    assert_error(
        &errors,
        &text,
        ("deadline =", 0),
        "client.deadline",
        "did you mean `deadline_ms`?",
    );
    assert_error(&errors, &text, ("cafile", 0), "tls.cafile", "unknown key");
    assert_eq!(errors.len(), 8, "{errors:?}");
}

#[test]
fn wrong_types_are_reported_at_the_value() {
    let text = with(&[
        ("http = \"127.0.0.1:5984\"", "http = 5984"),
        ("failover = [\"london\", \"us-east\"]", "failover = \"london\""),
        ("  name = \"us-east-1\"", "  name = 7"),
    ]) + "revs_limit = \"10\"\n[client]\ndeadline_ms = 1.5\nhedge_after_ms = true\n";
    let errors = must_fail(&text);
    assert_error(
        &errors,
        &text,
        ("5984", 0),
        "hub.http",
        "expected an address string",
    );
    assert_error(
        &errors,
        &text,
        ("\"london\"", 1),
        "datacentre[0].failover",
        "expected an array of strings",
    );
    assert_error(
        &errors,
        &text,
        ("7\n", 0),
        "datacentre[1].spoke[0].name",
        "expected a string, found integer 7",
    );
    assert_error(
        &errors,
        &text,
        ("\"10\"", 0),
        "database[0].revs_limit",
        "expected an integer, found string",
    );
    assert_error(
        &errors,
        &text,
        ("1.5", 0),
        "client.deadline_ms",
        "found float 1.5",
    );
    assert_error(
        &errors,
        &text,
        ("true", 0),
        "client.hedge_after_ms",
        "found boolean",
    );
    let text = "hub = []\n".to_string()
        + &BASE.replace(
            "[hub]\nname = \"london\"\nhttp = \"127.0.0.1:5984\"\ngrpc = \"127.0.0.1:6984\"\n",
            "",
        );
    let errors = must_fail(&text);
    assert_error(
        &errors,
        &text,
        ("[]", 0),
        "hub",
        "no hubs: a fleet needs at least one [[hub]]",
    );
    let text = "links = 5\ndatabase = [\"x\"]\n".to_string()
        + &BASE.replace("[[database]]\nname = \"sessions\"\n", "");
    let errors = must_fail(&text);
    assert_error(
        &errors,
        &text,
        ("5\n", 0),
        "links",
        "expected a table ([links]), found integer 5",
    );
    assert_error(
        &errors,
        &text,
        ("\"x\"", 0),
        "database[0]",
        "expected a table ([[database]]), found string",
    );
}

#[test]
fn missing_required_fields_point_at_their_table() {
    let text = with(&[
        ("grpc = \"127.0.0.1:6984\"\n", ""),
        ("  name = \"us-east-1\"\n", ""),
        ("name = \"t\"", ""),
    ]) + "[[database]]\nexpiry_field = \"e\"\n[tls]\nca = \"ca.pem\"\n";
    let errors = must_fail(&text);
    assert_error(
        &errors,
        &text,
        ("[hub]", 0),
        "hub.grpc",
        "missing required field `grpc`",
    );
    assert_error(
        &errors,
        &text,
        ("[[datacentre.spoke]]", 1),
        "datacentre[1].spoke[0].name",
        "missing required field",
    );
    assert_error(
        &errors,
        &text,
        ("[fleet]", 0),
        "fleet.name",
        "missing required field `name`",
    );
    assert_error(
        &errors,
        &text,
        ("[[database]]", 1),
        "database[1].name",
        "missing required field",
    );
    assert_error(
        &errors,
        &text,
        ("[tls]", 0),
        "tls.cert",
        "missing required field `cert`",
    );
    assert_error(
        &errors,
        &text,
        ("[tls]", 0),
        "tls.key",
        "missing required field `key`",
    );
}

#[test]
fn no_hub_and_no_fleet_are_errors() {
    let text = BASE.replace(
        "[hub]\nname = \"london\"\nhttp = \"127.0.0.1:5984\"\ngrpc = \"127.0.0.1:6984\"\n",
        "",
    );
    let errors = must_fail(&text);
    let e = errors
        .iter()
        .find(|e| e.field == "hub")
        .unwrap_or_else(|| panic!("{errors:?}"));
    assert_eq!((e.line, e.column), (1, 1));
    assert!(e.message.contains("missing [hub] section"), "{e}");
    // The failover list names "london", which cannot be resolved without a hub: not reported
    // twice.
    assert_eq!(errors.len(), 1, "{errors:?}");
    let text = BASE.replace("[fleet]\nname = \"t\"\n", "");
    let errors = must_fail(&text);
    assert!(
        errors.iter().any(|e| e.field == "fleet" && e.line == 1),
        "{errors:?}"
    );
}

#[test]
fn duplicate_names_are_reported_with_the_first_use() {
    let text = with(&[
        ("name = \"us-east\"", "name = \"eu-west\""),
        ("  name = \"us-east-1\"", "  name = \"eu-west-1\""),
    ]) + "[[database]]\nname = \"sessions\"\n";
    let errors = must_fail(&text);
    assert_error(
        &errors,
        &text,
        ("\"eu-west\"", 1),
        "datacentre[1].name",
        "already used by datacentre[0]",
    );
    assert_error(
        &errors,
        &text,
        ("\"eu-west-1\"", 1),
        "datacentre[1].spoke[0].name",
        "node name `eu-west-1` is already used by datacentre[0].spoke[0]",
    );
    assert_error(
        &errors,
        &text,
        ("\"sessions\"", 1),
        "database[1].name",
        "already defined by database[0]",
    );

    let text = with(&[
        ("  name = \"us-east-1\"", "  name = \"london\""),
        ("name = \"us-east\"", "name = \"london\""),
    ]);
    let errors = must_fail(&text);
    assert_error(
        &errors,
        &text,
        ("\"london\"", 3),
        "datacentre[1].spoke[0].name",
        "already used by hub",
    );
    assert_error(
        &errors,
        &text,
        ("\"london\"", 2),
        "datacentre[1].name",
        "also a hub's name",
    );
}

#[test]
fn duplicate_addresses_are_reported_with_the_first_use() {
    let text = with(&[
        ("grpc = \"127.0.0.1:6986\"", "grpc = \"127.0.0.1:6985\""),
        ("http = \"127.0.0.1:5986\"", "http = \"127.0.0.1:5984\""),
    ]);
    let errors = must_fail(&text);
    assert_error(
        &errors,
        &text,
        ("\"127.0.0.1:6985\"", 1),
        "datacentre[1].spoke[0].grpc",
        "address 127.0.0.1:6985 is already used by datacentre[0].spoke[0].grpc",
    );
    assert_error(
        &errors,
        &text,
        ("\"127.0.0.1:5984\"", 1),
        "datacentre[1].spoke[0].http",
        "already used by hub.http",
    );
    // One node's http and grpc clash with each other too.
    let text = with(&[("grpc = \"127.0.0.1:6984\"", "grpc = \"127.0.0.1:5984\"")]);
    let errors = must_fail(&text);
    assert_error(
        &errors,
        &text,
        ("\"127.0.0.1:5984\"", 1),
        "hub.grpc",
        "already used by hub.http",
    );
    let rendered = Topology::parse(&text, "topology/examples/local.toml")
        .expect_err("invalid")
        .to_string();
    assert_eq!(
        rendered,
        "topology/examples/local.toml:7:8: hub.grpc: address 127.0.0.1:5984 is already used by hub.http"
    );
}

#[test]
fn bad_failover_entries_are_reported_each() {
    let text = with(&[(
        "failover = [\"london\", \"us-east\"]",
        "failover = [\"london\", \"us-wset\", \"eu-west\", \"london\", \"us-east-1\"]",
    )]);
    let errors = must_fail(&text);
    assert_error(
        &errors,
        &text,
        ("\"us-wset\"", 0),
        "datacentre[0].failover[1]",
        "unknown datacentre `us-wset` (known: hub `london`; datacentres `eu-west`, `us-east`)",
    );
    assert_error(
        &errors,
        &text,
        ("\"eu-west\"", 1),
        "datacentre[0].failover[2]",
        "cannot fail over to itself",
    );
    assert_error(
        &errors,
        &text,
        ("\"london\"", 2),
        "datacentre[0].failover[3]",
        "listed twice (first at failover[0])",
    );
    assert_error(
        &errors,
        &text,
        ("\"us-east-1\"", 0),
        "datacentre[0].failover[4]",
        "is a spoke",
    );
    assert_eq!(errors.len(), 4, "{errors:?}");
}

#[test]
fn spokes_must_belong_to_a_datacentre_and_datacentres_need_spokes() {
    let text = BASE.to_string() + "[[spoke]]\nname = \"lost\"\n[[datacentre]]\nname = \"empty\"\n";
    let errors = must_fail(&text);
    assert_error(
        &errors,
        &text,
        ("spoke]]\nname = \"lost\"", 0),
        "spoke",
        "spokes must be nested under their datacentre",
    );
    assert_error(
        &errors,
        &text,
        ("[[datacentre]]\nname = \"empty\"", 0),
        "datacentre[2].spoke",
        "has no spokes",
    );
}

#[test]
fn bad_addresses_say_why() {
    let text = with(&[
        ("http = \"127.0.0.1:5984\"", "http = \"hub.example.com:5984\""),
        ("grpc = \"127.0.0.1:6984\"", "grpc = \"127.0.0.1\""),
        ("http = \"127.0.0.1:5985\"", "http = \"0.0.0.0:5985\""),
        ("grpc = \"127.0.0.1:6985\"", "grpc = \"127.0.0.1:0\""),
        ("http = \"127.0.0.1:5986\"", "http = \"127.0.0.1:99999\""),
    ]);
    let errors = must_fail(&text);
    assert_error(
        &errors,
        &text,
        ("\"hub.example", 0),
        "hub.http",
        "host names are not accepted",
    );
    assert_error(&errors, &text, ("\"127.0.0.1\"", 0), "hub.grpc", "no port");
    assert_error(
        &errors,
        &text,
        ("\"0.0.0.0", 0),
        "datacentre[0].spoke[0].http",
        "wildcard",
    );
    assert_error(
        &errors,
        &text,
        ("\"127.0.0.1:0\"", 0),
        "datacentre[0].spoke[0].grpc",
        "port 0",
    );
    assert_error(
        &errors,
        &text,
        ("\"127.0.0.1:99999\"", 0),
        "datacentre[1].spoke[0].http",
        "bad address",
    );
}

#[test]
fn bad_names_are_reported() {
    let text = with(&[
        ("name = \"sessions\"", "name = \"Sessions\""),
        ("name = \"eu-west\"", "name = \"EU_West\""),
    ]) + "[[database]]\nname = \"_users\"\nexpiry_field = \"_exp\"\n";
    let errors = must_fail(&text);
    assert_error(
        &errors,
        &text,
        ("\"Sessions\"", 0),
        "database[0].name",
        "invalid database name `Sessions`",
    );
    assert_error(
        &errors,
        &text,
        ("\"_users\"", 0),
        "database[1].name",
        "must start with a lowercase letter",
    );
    assert_error(
        &errors,
        &text,
        ("\"_exp\"", 0),
        "database[1].expiry_field",
        "CouchDB reserves",
    );
    assert_error(
        &errors,
        &text,
        ("\"EU_West\"", 0),
        "datacentre[0].name",
        "lowercase letters",
    );
}

#[test]
fn nonsense_numbers_are_reported() {
    let text = BASE.replace("name = \"sessions\"", "name = \"sessions\"\nrevs_limit = 0")
        + "[links]\nbatch_size = 0\nbackoff_initial_ms = -1\n[links.override.us-east]\nbackoff_max_ms = 50\n\
           [client]\ndeadline_ms = 0\ncache_bytes = -5\n";
    let errors = must_fail(&text);
    assert_error(
        &errors,
        &text,
        ("0\n", 0),
        "database[0].revs_limit",
        "must be at least 1, found 0",
    );
    assert_error(
        &errors,
        &text,
        ("0\nbackoff", 0),
        "links.batch_size",
        "must be at least 1",
    );
    assert_error(
        &errors,
        &text,
        ("-1\n", 0),
        "links.backoff_initial_ms",
        "must be at least 1, found -1",
    );
    assert_error(
        &errors,
        &text,
        ("50\n", 0),
        "links.override.us-east.backoff_max_ms",
        "below backoff_initial_ms 100",
    );
    assert_error(
        &errors,
        &text,
        ("0\ncache", 0),
        "client.deadline_ms",
        "at least 1",
    );
    assert_error(
        &errors,
        &text,
        ("-5", 0),
        "client.cache_bytes",
        "must not be negative",
    );

    let text = BASE.to_string() + "[client]\ndeadline_ms = 30\nhedge_after_ms = 30\n";
    let errors = must_fail(&text);
    assert_error(
        &errors,
        &text,
        ("30\n", 1),
        "client.hedge_after_ms",
        "must be below deadline_ms 30",
    );
}

#[test]
fn overrides_must_name_a_datacentre() {
    let text = BASE.to_string()
        + "[links.override.eu-wset]\nbatch_size = 5\n[links.override.london]\nbatch_size = 5\n";
    let errors = must_fail(&text);
    assert_error(
        &errors,
        &text,
        ("eu-wset", 0),
        "links.override.eu-wset",
        "unknown datacentre `eu-wset`",
    );
    assert_error(
        &errors,
        &text,
        ("london]", 0),
        "links.override.london",
        "the hub's links",
    );
}

#[test]
fn every_mistake_is_reported_at_once_in_file_order() {
    let text = with(&[
        ("name = \"t\"", "name = \"t\"\ncolour = \"blue\""),
        ("http = \"127.0.0.1:5984\"", "http = \"nope\""),
        ("failover = [\"london\", \"us-east\"]", "failover = [\"mars\"]"),
        ("grpc = \"127.0.0.1:6986\"", "grpc = \"127.0.0.1:6985\""),
        ("name = \"sessions\"", "name = \"sessions\"\nrevs_limit = 0"),
    ]);
    let err = Topology::parse(&text, "fleet.toml").expect_err("five mistakes");
    assert_eq!(err.errors.len(), 5, "{err}");
    let lines: Vec<usize> = err.errors.iter().map(|e| e.line).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
    let rendered = err.to_string();
    assert_eq!(rendered.lines().count(), 5);
    assert!(
        rendered.lines().all(|l| l.starts_with("fleet.toml:")),
        "{rendered}"
    );
}

#[test]
fn load_reports_unreadable_files_and_resolves_tls_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.toml");
    let err = Topology::load(&missing).expect_err("no file");
    assert!(err.to_string().contains("cannot read topology file"), "{err}");
    assert_eq!(err.errors[0].line, 0);

    let path = dir.path().join("fleet.toml");
    let text =
        BASE.to_string() + "[tls]\nca = \"tls/ca.pem\"\ncert = \"/etc/{node}.pem\"\nkey = \"{node}.key\"\n[auth]\nsecrets = \"secrets.toml\"\n";
    std::fs::write(&path, text).expect("write");
    let t = Topology::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let tls = t.tls.expect("tls section");
    assert_eq!(tls.ca, dir.path().join("tls/ca.pem"));
    assert_eq!(tls.cert, "/etc/{node}.pem");
    let node = topology::NodeName::new("london").unwrap();
    assert_eq!(tls.for_node(&node).key, dir.path().join("london.key"));
    assert_eq!(
        t.auth.expect("auth section").secrets,
        dir.path().join("secrets.toml")
    );
}

#[test]
fn a_plaintext_fleet_must_stay_on_one_host() {
    let text = BASE.replace("127.0.0.1:5985", "10.1.2.3:5985");
    let errors = must_fail(&text);
    assert_error(
        &errors,
        &text,
        ("\"10.1.2.3:5985\"", 0),
        "datacentre[0].spoke[0].http",
        "not a loopback address, and the file has no [tls] section",
    );
    let secured = text + "[tls]\nca = \"ca.pem\"\ncert = \"{node}.pem\"\nkey = \"{node}.key\"\n";
    Topology::parse(&secured, "fleet.toml").unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn no_secret_is_inline() {
    let text = BASE.to_string() + "[auth]\npassword = \"hunter2\"\n";
    let errors = must_fail(&text);
    assert_error(
        &errors,
        &text,
        ("password", 0),
        "auth.password",
        "credentials never go in the topology",
    );
    assert!(
        errors.iter().all(|e| !e.to_string().contains("hunter2")),
        "{errors:?}"
    );
}

/// A hub pair: `[[hub]]` twice, and `BASE`'s `eu-west` preferring the second.
fn pair(edits: &[(&str, &str)]) -> String {
    let mut text = with(&[
        ("[hub]", "[[hub]]"),
        (
            "grpc = \"127.0.0.1:6984\"\n",
            "grpc = \"127.0.0.1:6984\"\n\n[[hub]]\nname = \"london-b\"\nhttp = \"127.0.0.1:5994\"\ngrpc = \"127.0.0.1:6994\"\n",
        ),
        ("name = \"eu-west\"\n", "name = \"eu-west\"\nhub = \"london-b\"\n"),
    ]);
    for (from, to) in edits {
        assert!(text.contains(from), "test edit: {from:?} not in text");
        text = text.replacen(from, to, 1);
    }
    text
}

#[test]
fn a_hub_pair_is_two_hub_tables_and_each_datacentre_may_prefer_one() {
    let t = Topology::parse(&pair(&[]), "pair.toml").unwrap_or_else(|e| panic!("{e}"));
    let names = |hubs: Vec<&topology::Hub>| hubs.iter().map(|h| h.name.to_string()).collect::<Vec<_>>();
    let dc = |n: &str| topology::DatacentreName::new(n).unwrap();
    assert_eq!(names(t.hubs_for(&dc("eu-west"))), ["london-b", "london"]);
    assert_eq!(names(t.hubs_for(&dc("us-east"))), ["london", "london-b"]);
    assert_eq!(names(t.peer_hubs("london")), ["london-b"]);
    // Every hub is in every chain, in the datacentre's hub order after what it names.
    let chain = |d: &str| {
        t.failover_chain(&dc(d))
            .into_iter()
            .map(|x| x.node.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(chain("eu-west"), ["eu-west-1", "london", "us-east-1", "london-b"]);
    assert_eq!(chain("us-east"), ["us-east-1", "london", "london-b"]);
    // A failover list may name the second hub.
    let text = pair(&[(
        "failover = [\"london\", \"us-east\"]",
        "failover = [\"london-b\"]",
    )]);
    let t = Topology::parse(&text, "pair.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        t.failover_chain(&dc("eu-west"))
            .into_iter()
            .map(|x| x.node.to_string())
            .collect::<Vec<_>>(),
        ["eu-west-1", "london-b", "london"]
    );
}

#[test]
fn a_hub_pair_is_checked_like_one_hub() {
    let text = pair(&[("hub = \"london-b\"", "hub = \"london-c\"")]);
    let errors = must_fail(&text);
    assert_error(
        &errors,
        &text,
        ("\"london-c\"", 0),
        "datacentre[0].hub",
        "unknown hub `london-c` (hubs: `london`, `london-b`)",
    );
    let text = pair(&[("name = \"london-b\"", "name = \"london\"")]);
    let errors = must_fail(&text);
    assert_error(
        &errors,
        &text,
        ("\"london\"", 1),
        "hub[1].name",
        "node name `london` is already used by hub[0]",
    );
    let text = pair(&[("127.0.0.1:6994", "127.0.0.1:6984")]);
    let errors = must_fail(&text);
    assert_error(
        &errors,
        &text,
        ("\"127.0.0.1:6984\"", 1),
        "hub[1].grpc",
        "already used by hub[0].grpc",
    );
    let text = pair(&[("name = \"us-east\"", "name = \"london-b\"")]);
    let errors = must_fail(&text);
    assert_error(
        &errors,
        &text,
        ("\"london-b\"", 2),
        "datacentre[1].name",
        "also a hub's name",
    );
}

#[test]
fn a_datacentre_may_not_be_called_hub() {
    let text = with(&[
        ("name = \"us-east\"", "name = \"hub\""),
        ("\"london\", \"us-east\"", "\"london\", \"hub\""),
    ]);
    let errors = must_fail(&text);
    assert_error(&errors, &text, ("\"hub\"", 1), "datacentre[1].name", "reserved");
}
