//! The topology file's schema: which sections and keys exist, their types and per-field rules.
//!
//! Reading produces a [`Draft`]: every value that was present and well-formed, each with its
//! span, and every mistake reported. Rules that relate fields to each other (unique names and
//! addresses, failover targets) are `validate`'s job, which needs the spans kept here.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::error::Diagnostics;
use crate::model::{
    AuthFiles, ClientSettings, DatacentreName, FleetName, LinkOverride, LinkSettings, NodeName, TlsFiles,
    DEFAULT_REVS_LIMIT,
};
use crate::reader::{self, TableView};

const ROOT_KEYS: &[&str] = &[
    "fleet",
    "hub",
    "datacentre",
    "database",
    "links",
    "client",
    "tls",
    "auth",
];
const FLEET_KEYS: &[&str] = &["name"];
const NODE_KEYS: &[&str] = &["name", "http", "grpc", "data_dir"];
const DATACENTRE_KEYS: &[&str] = &["name", "hub", "failover", "spoke"];
const DATABASE_KEYS: &[&str] = &["name", "expiry_field", "revs_limit"];
const LINK_KEYS: &[&str] = &[
    "batch_size",
    "backoff_initial_ms",
    "backoff_max_ms",
    "checkpoint_interval_ms",
    "connect_timeout_ms",
];
const CLIENT_KEYS: &[&str] = &[
    "deadline_ms",
    "hedge_after_ms",
    "max_staleness_ms",
    "cache_bytes",
    "negative_ttl_ms",
];
const TLS_KEYS: &[&str] = &["ca", "cert", "key"];
const AUTH_KEYS: &[&str] = &["secrets"];

/// Generous ceiling for millisecond settings (a week): larger values are unit mistakes.
const MAX_MS: u64 = 7 * 24 * 3600 * 1000;

/// What was read from the file, before cross-field checks. `None` fields were absent or wrong
/// (and already reported where required).
pub(crate) struct Draft {
    pub fleet: Option<Spanned<FleetName>>,
    /// `[hub]` or each `[[hub]]`; empty (and reported) when missing.
    pub hubs: Vec<DraftNode>,
    pub datacentres: Vec<DraftDatacentre>,
    pub databases: Vec<DraftDatabase>,
    pub links: LinkSettings,
    pub overrides: Vec<DraftOverride>,
    pub client: ClientSettings,
    pub tls: Option<TlsFiles>,
    pub auth: Option<AuthFiles>,
}

/// The hub or a spoke.
pub(crate) struct DraftNode {
    pub path: String,
    pub name: Option<Spanned<NodeName>>,
    pub http: Option<Spanned<SocketAddr>>,
    pub grpc: Option<Spanned<SocketAddr>>,
    pub data_dir: Option<PathBuf>,
}

pub(crate) struct DraftDatacentre {
    pub path: String,
    pub span: Range<usize>,
    pub name: Option<Spanned<DatacentreName>>,
    /// The preferred hub as written (checked against the hubs by `validate`).
    pub hub: Option<Spanned<NodeName>>,
    pub failover: Vec<Spanned<String>>,
    pub spokes: Vec<DraftNode>,
}

pub(crate) struct DraftDatabase {
    pub path: String,
    pub name: Option<Spanned<String>>,
    pub expiry_field: Option<String>,
    pub revs_limit: u32,
}

/// `[links.override.<datacentre>]`.
pub(crate) struct DraftOverride {
    pub path: String,
    /// The datacentre name as written (checked against the datacentres by `validate`).
    pub datacentre: Spanned<String>,
    pub settings: LinkOverride,
}

/// Reads the whole document, reporting every mistake into `diag`.
pub(crate) fn read_document(diag: &mut Diagnostics<'_>, doc: &Spanned<DeTable<'_>>) -> Draft {
    let root = reader::root(doc);
    root.check_keys(diag, ROOT_KEYS, |key| match key {
        "spoke" | "spokes" => Some(
            "spokes must be nested under their datacentre, as [[datacentre.spoke]] after its [[datacentre]]"
                .into(),
        ),
        "hubs" => Some("write one hub as [hub], or each hub of a pair as [[hub]]".into()),
        _ => None,
    });

    let fleet = reader::table(
        diag,
        &root,
        "fleet",
        Some("missing [fleet] section (it names the fleet)"),
    )
    .and_then(|t| {
        t.check_keys(diag, FLEET_KEYS, |_| None);
        read_label(diag, &t, "name", FleetName::new)
    });
    // One hub is `[hub]`; a pair (or more) is `[[hub]]`, each a table of the same keys.
    let hubs = match root.get("hub").map(|v| v.get_ref()) {
        Some(DeValue::Array(items)) => {
            if items.is_empty() {
                if let Some(v) = root.get("hub") {
                    diag.error(&v.span(), "hub", "no hubs: a fleet needs at least one [[hub]]");
                }
            }
            reader::array_of_tables(diag, &root, "hub")
                .iter()
                .map(|t| read_node(diag, t))
                .collect()
        }
        _ => reader::table(
            diag,
            &root,
            "hub",
            Some("missing [hub] section: every fleet has at least one hub ([hub], or [[hub]] for each of a pair)"),
        )
        .map(|t| vec![read_node(diag, &t)])
        .unwrap_or_default(),
    };
    let datacentres = reader::array_of_tables(diag, &root, "datacentre")
        .iter()
        .map(|t| read_datacentre(diag, t))
        .collect();
    let databases = reader::array_of_tables(diag, &root, "database")
        .iter()
        .map(|t| read_database(diag, t))
        .collect();

    let (links, overrides) = read_links(diag, &root);

    let client = reader::table(diag, &root, "client", None)
        .map(|t| read_client(diag, &t))
        .unwrap_or_default();
    let tls = reader::table(diag, &root, "tls", None).and_then(|t| read_tls(diag, &t));
    let auth = reader::table(diag, &root, "auth", None).and_then(|t| read_auth(diag, &t));

    Draft {
        fleet,
        hubs,
        datacentres,
        databases,
        links,
        overrides,
        client,
        tls,
        auth,
    }
}

/// `[links]` (applied to the built-in defaults) and its `[links.override.<datacentre>]` tables.
fn read_links(diag: &mut Diagnostics<'_>, root: &TableView<'_, '_>) -> (LinkSettings, Vec<DraftOverride>) {
    let mut links = LinkSettings::default();
    let mut overrides = Vec::new();
    if let Some(t) = reader::table(diag, root, "links", None) {
        let mut allowed = LINK_KEYS.to_vec();
        allowed.push("override");
        t.check_keys(diag, &allowed, |_| None);
        links = read_link_override(diag, &t).apply(links);
        check_backoff(diag, &t, &links, "");
        if let Some(o) = reader::table(diag, &t, "override", None) {
            for (key, value) in o.table.iter() {
                let path = o.field(key.get_ref());
                let DeValue::Table(table) = value.get_ref() else {
                    diag.error(
                        &value.span(),
                        path,
                        format!(
                            "expected a table of link settings for datacentre `{}`, found {}",
                            key.get_ref(),
                            reader::describe(value.get_ref())
                        ),
                    );
                    continue;
                };
                let view = TableView {
                    table,
                    span: value.span(),
                    path: path.clone(),
                };
                view.check_keys(diag, LINK_KEYS, |_| None);
                let settings = read_link_override(diag, &view);
                check_backoff(
                    diag,
                    &view,
                    &settings.apply(links),
                    " (after applying the [links] defaults)",
                );
                overrides.push(DraftOverride {
                    path,
                    datacentre: Spanned::new(key.span(), key.get_ref().to_string()),
                    settings,
                });
            }
        }
    }
    (links, overrides)
}

fn read_label<T>(
    diag: &mut Diagnostics<'_>,
    t: &TableView<'_, '_>,
    key: &str,
    make: impl FnOnce(String) -> Result<T, String>,
) -> Option<Spanned<T>> {
    reader::read(diag, t, key, true, |v| reader::string(v).and_then(make))
}

fn read_node(diag: &mut Diagnostics<'_>, t: &TableView<'_, '_>) -> DraftNode {
    t.check_keys(diag, NODE_KEYS, |key| match key {
        "address" | "addr" | "listen" => Some("give `http` and `grpc` addresses".into()),
        _ => None,
    });
    DraftNode {
        path: t.path.clone(),
        name: read_label(diag, t, "name", NodeName::new),
        http: reader::read(diag, t, "http", true, reader::address),
        grpc: reader::read(diag, t, "grpc", true, reader::address),
        data_dir: reader::read(diag, t, "data_dir", false, reader::text)
            .map(|p| PathBuf::from(p.into_inner())),
    }
}

fn read_datacentre(diag: &mut Diagnostics<'_>, t: &TableView<'_, '_>) -> DraftDatacentre {
    t.check_keys(diag, DATACENTRE_KEYS, |key| match key {
        "spokes" => Some("write each spoke as a [[datacentre.spoke]] table".into()),
        _ => None,
    });
    let spokes = reader::array_of_tables(diag, t, "spoke")
        .iter()
        .map(|s| read_node(diag, s))
        .collect();
    DraftDatacentre {
        path: t.path.clone(),
        span: t.span.clone(),
        name: read_label(diag, t, "name", DatacentreName::new),
        hub: reader::read(diag, t, "hub", false, |v| {
            reader::string(v).and_then(NodeName::new)
        }),
        failover: reader::string_list(diag, t, "failover"),
        spokes,
    }
}

fn read_database(diag: &mut Diagnostics<'_>, t: &TableView<'_, '_>) -> DraftDatabase {
    t.check_keys(diag, DATABASE_KEYS, |_| None);
    let name = reader::read(diag, t, "name", true, |v| {
        reader::string(v).and_then(check_db_name)
    });
    let expiry_field = reader::read(diag, t, "expiry_field", false, |v| {
        let field = reader::text(v)?;
        if field.starts_with('_') {
            // CouchDB reserves top-level `_` members; a document body cannot carry one of its own.
            return Err(format!(
                "expiry field `{field}` starts with `_`, which CouchDB reserves"
            ));
        }
        Ok(field)
    });
    let revs_limit = reader::read(diag, t, "revs_limit", false, |v| {
        reader::integer(v, 1, u64::from(u32::MAX))
    });
    DraftDatabase {
        path: t.path.clone(),
        name,
        expiry_field: expiry_field.map(Spanned::into_inner),
        revs_limit: revs_limit
            .and_then(|r| u32::try_from(r.into_inner()).ok())
            .unwrap_or(DEFAULT_REVS_LIMIT),
    }
}

/// CouchDB's database-name rule: `^[a-z][a-z0-9_$()+/-]*$`, at most 238 characters.
pub(crate) fn check_db_name(name: String) -> Result<String, String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_bad = chars.find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "_$()+/-".contains(*c)));
    if !first_ok {
        return Err(format!(
            "invalid database name `{name}`: it must start with a lowercase letter a-z"
        ));
    }
    if let Some(bad) = rest_bad {
        return Err(format!(
            "invalid database name `{name}`: {bad:?} is not allowed (CouchDB allows a-z, 0-9 and _$()+/-)"
        ));
    }
    if name.len() > 238 {
        return Err(format!(
            "invalid database name: {} characters, at most 238 allowed",
            name.len()
        ));
    }
    Ok(name)
}

/// The link keys present in `t`; used for both `[links]` (applied to the defaults) and overrides.
fn read_link_override(diag: &mut Diagnostics<'_>, t: &TableView<'_, '_>) -> LinkOverride {
    let ms = |diag: &mut Diagnostics<'_>, key: &str| {
        reader::read(diag, t, key, false, |v| reader::integer(v, 1, MAX_MS)).map(Spanned::into_inner)
    };
    let batch_size = reader::read(diag, t, "batch_size", false, |v| {
        reader::integer(v, 1, u64::from(u32::MAX))
    })
    .and_then(|b| u32::try_from(b.into_inner()).ok());
    LinkOverride {
        batch_size,
        backoff_initial_ms: ms(diag, "backoff_initial_ms"),
        backoff_max_ms: ms(diag, "backoff_max_ms"),
        checkpoint_interval_ms: ms(diag, "checkpoint_interval_ms"),
        connect_timeout_ms: ms(diag, "connect_timeout_ms"),
    }
}

/// Retry delays grow from `backoff_initial_ms` up to `backoff_max_ms`; the other way round is a typo.
fn check_backoff(diag: &mut Diagnostics<'_>, t: &TableView<'_, '_>, merged: &LinkSettings, note: &str) {
    if merged.backoff_max_ms >= merged.backoff_initial_ms {
        return;
    }
    let (field, value) = match (t.get("backoff_max_ms"), t.get("backoff_initial_ms")) {
        (Some(v), _) => ("backoff_max_ms", Some(v)),
        (None, v) => ("backoff_initial_ms", v),
    };
    diag.error(
        &value.map_or(t.span.clone(), |v| v.span()),
        t.field(field),
        format!(
            "backoff_max_ms {} is below backoff_initial_ms {}{note}",
            merged.backoff_max_ms, merged.backoff_initial_ms
        ),
    );
}

fn read_client(diag: &mut Diagnostics<'_>, t: &TableView<'_, '_>) -> ClientSettings {
    t.check_keys(diag, CLIENT_KEYS, |_| None);
    let defaults = ClientSettings::default();
    let mut get =
        |key: &str, min: u64, max: u64| reader::read(diag, t, key, false, |v| reader::integer(v, min, max));
    let deadline = get("deadline_ms", 1, MAX_MS);
    let hedge = get("hedge_after_ms", 1, MAX_MS);
    let settings = ClientSettings {
        deadline_ms: deadline.as_ref().map_or(defaults.deadline_ms, |d| *d.get_ref()),
        hedge_after_ms: hedge.as_ref().map(|h| *h.get_ref()),
        max_staleness_ms: get("max_staleness_ms", 0, MAX_MS)
            .map_or(defaults.max_staleness_ms, Spanned::into_inner),
        cache_bytes: get("cache_bytes", 0, u64::MAX).map_or(defaults.cache_bytes, Spanned::into_inner),
        negative_ttl_ms: get("negative_ttl_ms", 0, MAX_MS)
            .map_or(defaults.negative_ttl_ms, Spanned::into_inner),
    };
    if let (Some(h), Some(hedge_ms)) = (&hedge, settings.hedge_after_ms) {
        if hedge_ms >= settings.deadline_ms {
            diag.error(
                &h.span(),
                t.field("hedge_after_ms"),
                format!(
                    "hedge_after_ms {hedge_ms} must be below deadline_ms {}: a hedge sent at or after the \
                     deadline can never answer in time",
                    settings.deadline_ms
                ),
            );
        }
    }
    settings
}

fn read_tls(diag: &mut Diagnostics<'_>, t: &TableView<'_, '_>) -> Option<TlsFiles> {
    t.check_keys(diag, TLS_KEYS, |key| match key {
        "ca_cert" | "ca_file" | "cacert" => Some("the CA bundle's key is `ca`".into()),
        _ => None,
    });
    let ca = reader::read(diag, t, "ca", true, reader::text).map(|p| PathBuf::from(p.into_inner()));
    // Each node has a certificate of its own: either the path holds `{node}` (one directory with
    // every node's files, as `sessionfleet certs nodes` writes them), or each host has its own
    // file at the same path (as the ansible role installs them).
    let mut per_node = |key: &str| reader::read(diag, t, key, true, reader::text).map(|v| v.into_inner());
    let (cert, key) = (per_node("cert"), per_node("key"));
    Some(TlsFiles {
        ca: ca?,
        cert: cert?,
        key: key?,
    })
}

fn read_auth(diag: &mut Diagnostics<'_>, t: &TableView<'_, '_>) -> Option<AuthFiles> {
    t.check_keys(diag, AUTH_KEYS, |key| match key {
        "password" | "token" | "users" | "tokens" => {
            Some("credentials never go in the topology: `secrets` names the file that holds them".into())
        }
        _ => None,
    });
    let secrets = reader::read(diag, t, "secrets", true, reader::text)?;
    Some(AuthFiles {
        secrets: PathBuf::from(secrets.into_inner()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_follow_couchdb() {
        for ok in ["sessions", "a", "s3$(x)+y/z-_1"] {
            assert_eq!(check_db_name(ok.to_string()).as_deref(), Ok(ok));
        }
        for bad in ["", "Sessions", "1st", "_users", "sess ions", "sessïons"] {
            assert!(
                check_db_name(bad.to_string()).is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert!(check_db_name("a".repeat(239)).is_err());
    }
}
