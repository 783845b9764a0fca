//! Typed, located access to a parsed TOML tree: the generic half of reading a topology file.
//!
//! The tree comes from `toml::de::DeTable::parse_recoverable`, which keeps a byte span on every
//! key and value. Walking it by hand (rather than with serde derive, which stops at the first
//! problem) lets one pass report every unknown key, wrong type and missing field, each at its
//! own line and column.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::error::Diagnostics;

/// A value in the tree, with its span.
pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// A table in the tree, with where it is (span) and how to name it in errors (path).
#[derive(Clone)]
pub(crate) struct TableView<'a, 'i> {
    pub table: &'a DeTable<'i>,
    /// The table's header (`[hub]`, `[[datacentre]]`), or for an implicit table the key naming it:
    /// where "missing field" errors point.
    pub span: Range<usize>,
    /// `hub`, `datacentre[1].spoke[0]`, or empty for the document root.
    pub path: String,
}

impl<'a, 'i> TableView<'a, 'i> {
    /// The field path of `key` inside this table.
    pub fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub fn get(&self, key: &str) -> Option<&'a Value<'i>> {
        self.table.get(key)
    }

    /// Reports every key not in `allowed`, with a "did you mean" where one is close, or the
    /// explanation `hint` gives for keys that are known mistakes.
    pub fn check_keys(
        &self,
        diag: &mut Diagnostics<'_>,
        allowed: &[&str],
        hint: impl Fn(&str) -> Option<String>,
    ) {
        for (key, _) in self.table.iter() {
            let name = key.get_ref().as_ref();
            if allowed.contains(&name) {
                continue;
            }
            let mut message = format!("unknown key `{name}`");
            if let Some(h) = hint(name) {
                message.push_str(&format!("; {h}"));
            } else if let Some(close) = closest(name, allowed) {
                message.push_str(&format!("; did you mean `{close}`?"));
            } else {
                message.push_str(&format!("; expected one of: {}", allowed.join(", ")));
            }
            diag.error(&key.span(), self.field(name), message);
        }
    }
}

/// The root of the document as a table view.
pub(crate) fn root<'a, 'i>(doc: &'a Spanned<DeTable<'i>>) -> TableView<'a, 'i> {
    TableView {
        table: doc.get_ref(),
        span: 0..0,
        path: String::new(),
    }
}

/// Reads `key` from `t` and converts it with `convert`, reporting a missing required key (at the
/// table) or a conversion failure (at the value). `None` means absent or wrong; the caller only
/// needs to know there is nothing to use, since the mistake is already reported.
pub(crate) fn read<T>(
    diag: &mut Diagnostics<'_>,
    t: &TableView<'_, '_>,
    key: &str,
    required: bool,
    convert: impl FnOnce(&DeValue<'_>) -> Result<T, String>,
) -> Option<Spanned<T>> {
    let Some(value) = t.get(key) else {
        if required {
            let what = if t.path.is_empty() {
                "the document".to_string()
            } else {
                format!("[{}]", t.path)
            };
            diag.error(
                &t.span,
                t.field(key),
                format!("missing required field `{key}` in {what}"),
            );
        }
        return None;
    };
    match convert(value.get_ref()) {
        Ok(v) => Some(Spanned::new(value.span(), v)),
        Err(message) => {
            diag.error(&value.span(), t.field(key), message);
            None
        }
    }
}

/// Reads a sub-table (`[hub]`, `[links.override]`); an absent one is reported only if `required`.
pub(crate) fn table<'a, 'i>(
    diag: &mut Diagnostics<'_>,
    parent: &TableView<'a, 'i>,
    key: &str,
    required_message: Option<&str>,
) -> Option<TableView<'a, 'i>> {
    let Some(value) = parent.get(key) else {
        if let Some(message) = required_message {
            diag.error(&parent.span, parent.field(key), message);
        }
        return None;
    };
    match value.get_ref() {
        DeValue::Table(table) => Some(TableView {
            table,
            span: value.span(),
            path: parent.field(key),
        }),
        other => {
            diag.error(
                &value.span(),
                parent.field(key),
                format!(
                    "expected a table ([{}]), found {}",
                    parent.field(key),
                    describe(other)
                ),
            );
            None
        }
    }
}

/// Reads an array of tables (`[[datacentre]]`), naming element `i` `key[i]`.
pub(crate) fn array_of_tables<'a, 'i>(
    diag: &mut Diagnostics<'_>,
    parent: &TableView<'a, 'i>,
    key: &str,
) -> Vec<TableView<'a, 'i>> {
    let Some(value) = parent.get(key) else {
        return Vec::new();
    };
    let header = format!("[[{}]]", parent.field(key).split('[').next().unwrap_or(key));
    let DeValue::Array(items) = value.get_ref() else {
        diag.error(
            &value.span(),
            parent.field(key),
            format!(
                "expected an array of tables ({header}), found {}",
                describe(value.get_ref())
            ),
        );
        return Vec::new();
    };
    let mut tables = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}[{i}]", parent.field(key));
        match item.get_ref() {
            DeValue::Table(table) => tables.push(TableView {
                table,
                span: item.span(),
                path,
            }),
            other => diag.error(
                &item.span(),
                path,
                format!("expected a table ({header}), found {}", describe(other)),
            ),
        }
    }
    tables
}

/// "integer", "a table", ...: how a wrong value is named in "expected X, found Y".
pub(crate) fn describe(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) => format!("string \"{}\"", s.escape_debug()),
        DeValue::Integer(i) => format!("integer {i}"),
        DeValue::Float(f) => format!("float {f}"),
        DeValue::Boolean(b) => format!("boolean {b}"),
        DeValue::Datetime(d) => format!("datetime {d}"),
        DeValue::Array(_) => "an array".to_string(),
        DeValue::Table(_) => "a table".to_string(),
    }
}

/// A string.
pub(crate) fn string(value: &DeValue<'_>) -> Result<String, String> {
    match value {
        DeValue::String(s) => Ok(s.to_string()),
        other => Err(format!("expected a string, found {}", describe(other))),
    }
}

/// A non-empty string with no control characters (it ends up in logs, paths and inventories).
pub(crate) fn text(value: &DeValue<'_>) -> Result<String, String> {
    let s = string(value)?;
    if s.trim().is_empty() {
        return Err("must not be empty".to_string());
    }
    if s.chars().any(char::is_control) {
        return Err(format!("\"{}\" contains a control character", s.escape_debug()));
    }
    Ok(s)
}

/// An integer between `min` and `max` inclusive.
pub(crate) fn integer(value: &DeValue<'_>, min: u64, max: u64) -> Result<u64, String> {
    let DeValue::Integer(int) = value else {
        return Err(format!("expected an integer, found {}", describe(value)));
    };
    // i128 holds every TOML integer (which are i64), so the range check below sees its sign.
    let n = i128::from_str_radix(int.as_str(), int.radix())
        .map_err(|_| format!("integer {int} is out of range"))?;
    if n < i128::from(min) {
        return Err(match (n < 0, min) {
            (true, 0) => format!("must not be negative, found {n}"),
            (_, 1) => format!("must be at least 1, found {n}"),
            _ => format!("must be at least {min}, found {n}"),
        });
    }
    u64::try_from(n)
        .ok()
        .filter(|v| *v <= max)
        .ok_or_else(|| format!("must be at most {max}, found {n}"))
}

/// A socket address that a peer can dial: `ip:port`, no host names, no wildcard IP, no port 0.
pub(crate) fn address(value: &DeValue<'_>) -> Result<SocketAddr, String> {
    let DeValue::String(s) = value else {
        return Err(format!(
            "expected an address string like \"10.0.0.1:5984\", found {}",
            describe(value)
        ));
    };
    let addr: SocketAddr = s.parse().map_err(|_| {
        let hint = if s.parse::<IpAddr>().is_ok() {
            "it has no port"
        } else if s.contains(':') && s.chars().any(|c| c.is_ascii_alphabetic()) && !s.contains('[') {
            "host names are not accepted; give the IP address"
        } else {
            "expected IP:PORT, e.g. \"10.0.0.1:5984\" or \"[fd00::1]:5984\""
        };
        format!("bad address \"{}\": {hint}", s.escape_debug())
    })?;
    if addr.port() == 0 {
        return Err(format!("bad address {addr}: port 0 cannot be dialled"));
    }
    if addr.ip().is_unspecified() {
        return Err(format!(
            "bad address {addr}: {} is a wildcard, not an address peers can dial",
            addr.ip()
        ));
    }
    Ok(addr)
}

/// An array of strings, each with its own span so that a bad entry is pointed at exactly.
pub(crate) fn string_list(
    diag: &mut Diagnostics<'_>,
    t: &TableView<'_, '_>,
    key: &str,
) -> Vec<Spanned<String>> {
    let Some(value) = t.get(key) else {
        return Vec::new();
    };
    let DeValue::Array(items) = value.get_ref() else {
        diag.error(
            &value.span(),
            t.field(key),
            format!(
                "expected an array of strings, found {}",
                describe(value.get_ref())
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item.get_ref() {
            DeValue::String(s) => out.push(Spanned::new(item.span(), s.to_string())),
            other => diag.error(
                &item.span(),
                format!("{}[{i}]", t.field(key)),
                format!("expected a string, found {}", describe(other)),
            ),
        }
    }
    out
}

/// The allowed key closest to a mistyped one, if it is close enough to be a likely typo or a
/// key with its unit suffix left off (`deadline` for `deadline_ms`).
fn closest<'k>(key: &str, allowed: &[&'k str]) -> Option<&'k str> {
    let key_lower = key.to_ascii_lowercase().replace('-', "_");
    let prefix = allowed
        .iter()
        .find(|a| key_lower.len() >= 3 && a.starts_with(&format!("{key_lower}_")));
    if let Some(a) = prefix {
        return Some(a);
    }
    allowed
        .iter()
        .map(|a| (edit_distance(&key_lower, a), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

/// Levenshtein distance; keys are short, so the quadratic table is fine.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur.push(substitute.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_suggests_typos_only() {
        let allowed = ["datacentre", "database", "hub", "fleet"];
        assert_eq!(closest("datacenter", &allowed), Some("datacentre"));
        assert_eq!(closest("Hub", &allowed), Some("hub"));
        assert_eq!(closest("spoke", &allowed), None);
        assert_eq!(
            closest("deadline", &["deadline_ms", "cache_bytes"]),
            Some("deadline_ms")
        );
    }

    #[test]
    fn addresses_are_checked() {
        let s = |x: &str| DeValue::String(x.to_string().into());
        assert_eq!(
            address(&s("10.0.0.1:5984")),
            Ok("10.0.0.1:5984".parse().expect("valid"))
        );
        assert!(address(&s("[fd00::1]:5984")).is_ok());
        let err = |x: &str| address(&s(x)).expect_err(x);
        assert!(err("10.0.0.1").contains("no port"));
        assert!(err("hub.example.com:5984").contains("host names"));
        assert!(err("10.0.0.1:0").contains("port 0"));
        assert!(err("0.0.0.0:5984").contains("wildcard"));
        assert!(err("10.0.0.300:1").contains("IP:PORT"));
    }
}
