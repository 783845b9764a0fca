//! Validated names: database names and document ids.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// CouchDB's system databases, the only names that may start with `_`.
const SYSTEM_DBS: &[&str] = &["_replicator", "_users"];

/// Longest database name CouchDB accepts.
const MAX_DB_NAME: usize = 238;
/// Longest document id we accept, in bytes.
pub const MAX_DOC_ID: usize = 1024;

/// A database name following CouchDB's rule `^[a-z][a-z0-9_$()+/-]*$`.
///
/// ```
/// use store::DbName;
/// assert!(DbName::new("sessions").is_ok());
/// assert!(DbName::new("Sessions").is_err());
/// assert!(DbName::new("_private").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DbName(String);

impl DbName {
    /// Validates a database name.
    pub fn new(name: &str) -> Result<DbName, Error> {
        let invalid = |reason| Error::InvalidDbName {
            name: name.chars().take(100).collect(),
            reason,
        };
        // CouchDB's system databases keep their reserved names.
        if SYSTEM_DBS.contains(&name) {
            return Ok(DbName(name.to_owned()));
        }
        let mut bytes = name.bytes();
        match bytes.next() {
            None => return Err(invalid("name is empty")),
            Some(b) if !b.is_ascii_lowercase() => {
                return Err(invalid("name must begin with a lowercase letter (a-z)"))
            }
            Some(_) => {}
        }
        if name.len() > MAX_DB_NAME {
            return Err(invalid("name is longer than 238 characters"));
        }
        if !bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_$()+/-".contains(&b)) {
            return Err(invalid(
                "only lowercase characters (a-z), digits (0-9) and _ $ ( ) + - / are allowed",
            ));
        }
        Ok(DbName(name.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DbName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DbName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A document id: non-empty, at most 1024 bytes, and not starting with `_`
/// unless it is a design document (`_design/...`). `_local/` ids are a separate
/// namespace handled by [`crate::Database::put_local`].
///
/// ```
/// use store::DocId;
/// assert!(DocId::new("user:42").is_ok());
/// assert!(DocId::new("_design/app").is_ok());
/// assert!(DocId::new("_secret").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DocId(String);

impl DocId {
    /// Validates a document id.
    pub fn new(id: &str) -> Result<DocId, Error> {
        let invalid = |reason| Error::InvalidDocId {
            id: id.chars().take(100).collect(),
            reason,
        };
        if id.is_empty() {
            return Err(invalid("document id must not be empty"));
        }
        if id.len() > MAX_DOC_ID {
            return Err(invalid("document id is longer than 1024 bytes"));
        }
        if id.starts_with('_') && !id.starts_with("_design/") {
            return Err(invalid("only reserved document ids may start with underscore"));
        }
        Ok(DocId(id.to_owned()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The id of a `_local` document (without the `_local/` prefix): any non-empty
/// string up to 1024 bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LocalId(String);

impl LocalId {
    /// Validates a local document id.
    pub fn new(id: &str) -> Result<LocalId, Error> {
        if id.is_empty() || id.len() > MAX_DOC_ID {
            return Err(Error::InvalidDocId {
                id: id.chars().take(100).collect(),
                reason: "local document id must be 1 to 1024 bytes",
            });
        }
        Ok(LocalId(id.to_owned()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LocalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_names_follow_couchdb_rule() {
        for ok in ["a", "sessions", "a0_$()+-/b", "eu-west/sessions"] {
            assert!(DbName::new(ok).is_ok(), "{ok}");
        }
        assert!(DbName::new("_replicator").is_ok());
        for bad in ["", "A", "0a", "_other", "a b", "a.b", "é", "a\u{0}"] {
            assert!(DbName::new(bad).is_err(), "{bad:?}");
        }
        assert!(DbName::new(&"a".repeat(239)).is_err());
    }

    #[test]
    fn doc_ids() {
        assert!(DocId::new("x").is_ok());
        assert!(DocId::new("ünïcode ☃").is_ok());
        assert!(DocId::new("").is_err());
        assert!(DocId::new("_local/x").is_err());
        assert!(DocId::new(&"x".repeat(1025)).is_err());
    }
}
