//! Who a certificate says its holder is.
//!
//! Every Sessionfleet certificate carries exactly one URI SubjectAltName with the
//! `sessionfleet:` scheme naming its holder: the hub, a spoke of a datacentre, or a
//! client of some role. This module parses and prints those URIs and reads them from
//! DER certificates; it does not verify certificates (rustls does that).

use std::fmt;
use std::str::FromStr;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use super::TlsError;

/// URI scheme prefix of every Sessionfleet identity.
const SCHEME: &str = "sessionfleet:";

/// What kind of client a `Client` identity is; decides what it may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientRole {
    /// An application server: reads and writes session documents.
    App,
    /// A replicator: the Replication service and CouchDB replication endpoints.
    Replicator,
    /// An administrator: everything.
    Admin,
    /// Read-only operations access (metrics, active tasks, fleet view).
    Ops,
}

impl ClientRole {
    /// All roles, in declaration order.
    pub const ALL: [ClientRole; 4] = [
        ClientRole::App,
        ClientRole::Replicator,
        ClientRole::Admin,
        ClientRole::Ops,
    ];

    /// The lowercase name used in URIs, files and configs.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientRole::App => "app",
            ClientRole::Replicator => "replicator",
            ClientRole::Admin => "admin",
            ClientRole::Ops => "ops",
        }
    }
}

impl fmt::Display for ClientRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of `app`, `replicator`, `admin`, `ops`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?} (expected app, replicator, admin or ops)")]
pub struct UnknownRole(pub String);

impl FromStr for ClientRole {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ClientRole::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// The holder of a Sessionfleet certificate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// The hub node `node`: `sessionfleet:hub/<node>`.
    Hub {
        /// Node name.
        node: String,
    },
    /// Node `node` of spoke datacentre `datacentre`: `sessionfleet:spoke/<dc>/<node>`.
    Spoke {
        /// Datacentre name.
        datacentre: String,
        /// Node name.
        node: String,
    },
    /// A client: `sessionfleet:client/<role>/<name>`.
    Client {
        /// What the client may do.
        role: ClientRole,
        /// The client's name.
        name: String,
    },
}

/// Whether `s` follows the label rule: 1..=63 chars of `a-z 0-9 -`, not starting or
/// ending with `-`.
pub fn is_valid_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn label(what: &'static str, s: &str) -> Result<String, TlsError> {
    if is_valid_label(s) {
        Ok(s.to_owned())
    } else {
        Err(TlsError::BadIdentity(format!(
            "{what} {s:?} must be 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'"
        )))
    }
}

impl Identity {
    /// The hub identity, checking the label rule.
    pub fn hub(node: &str) -> Result<Identity, TlsError> {
        Ok(Identity::Hub {
            node: label("node", node)?,
        })
    }

    /// A spoke identity, checking the label rule.
    pub fn spoke(datacentre: &str, node: &str) -> Result<Identity, TlsError> {
        Ok(Identity::Spoke {
            datacentre: label("datacentre", datacentre)?,
            node: label("node", node)?,
        })
    }

    /// A client identity, checking the label rule.
    pub fn client(role: ClientRole, name: &str) -> Result<Identity, TlsError> {
        Ok(Identity::Client {
            role,
            name: label("client name", name)?,
        })
    }

    /// Whether this is a fleet node (hub or spoke) rather than a client.
    pub fn is_node(&self) -> bool {
        matches!(self, Identity::Hub { .. } | Identity::Spoke { .. })
    }

    /// The `sessionfleet:` URI carried as SubjectAltName.
    pub fn to_uri(&self) -> String {
        self.to_string()
    }

    /// Parses a `sessionfleet:` URI, checking every name against the label rule.
    pub fn parse_uri(uri: &str) -> Result<Identity, TlsError> {
        let bad = |why: &str| TlsError::BadIdentity(format!("{uri:?}: {why}"));
        let rest = uri
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad("does not start with sessionfleet:"))?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["hub", node] => Identity::hub(node),
            ["spoke", dc, node] => Identity::spoke(dc, node),
            ["client", role, name] => {
                let role = role.parse::<ClientRole>().map_err(|e| bad(&e.to_string()))?;
                Identity::client(role, name)
            }
            _ => Err(bad(
                "expected hub/<node>, spoke/<datacentre>/<node> or client/<role>/<name>",
            )),
        }
    }

    /// Reads the identity from a DER certificate: it must carry exactly one
    /// `sessionfleet:` URI SubjectAltName.
    pub fn from_cert_der(der: &[u8]) -> Result<Identity, TlsError> {
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
            .map_err(|e| TlsError::BadCertificate(format!("cannot parse certificate: {e}")))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| TlsError::BadCertificate(format!("bad SubjectAltName extension: {e}")))?;
        let mut found = Vec::new();
        if let Some(san) = san {
            for name in &san.value.general_names {
                if let GeneralName::URI(uri) = name {
                    if uri.starts_with(SCHEME) {
                        found.push(*uri);
                    }
                }
            }
        }
        match found.as_slice() {
            [uri] => Identity::parse_uri(uri),
            [] => Err(TlsError::BadIdentity(
                "certificate has no sessionfleet: URI SubjectAltName".into(),
            )),
            many => Err(TlsError::BadIdentity(format!(
                "certificate has {} sessionfleet: URI SubjectAltNames, expected exactly one",
                many.len()
            ))),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Hub { node } => write!(f, "{SCHEME}hub/{node}"),
            Identity::Spoke { datacentre, node } => write!(f, "{SCHEME}spoke/{datacentre}/{node}"),
            Identity::Client { role, name } => write!(f, "{SCHEME}client/{role}/{name}"),
        }
    }
}

impl FromStr for Identity {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Identity::parse_uri(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip() {
        for id in [
            Identity::hub("hub-1").unwrap(),
            Identity::spoke("eu-west", "n0").unwrap(),
            Identity::client(ClientRole::Replicator, "couch-mig").unwrap(),
            Identity::client(ClientRole::Ops, "grafana").unwrap(),
        ] {
            assert_eq!(Identity::parse_uri(&id.to_uri()).unwrap(), id);
        }
        assert_eq!(
            Identity::spoke("a", "b").unwrap().to_uri(),
            "sessionfleet:spoke/a/b"
        );
    }

    #[test]
    fn bad_uris_are_refused() {
        for uri in [
            "sessionfleet:hub",
            "sessionfleet:hub/",
            "sessionfleet:hub/a/b",
            "sessionfleet:spoke/eu",
            "sessionfleet:client/root/x",
            "sessionfleet:client/app/-x",
            "sessionfleet:client/app/x-",
            "sessionfleet:spoke/EU/n0",
            "sessionfleet:spoke/eu_w/n0",
            "spiffe://x/y",
            "hub/n0",
        ] {
            assert!(Identity::parse_uri(uri).is_err(), "{uri}");
        }
        assert!(Identity::hub(&"a".repeat(63)).is_ok());
        assert!(Identity::hub(&"a".repeat(64)).is_err());
    }

    #[test]
    fn roles_parse_and_print_lowercase() {
        for r in ClientRole::ALL {
            assert_eq!(r.to_string().parse::<ClientRole>().unwrap(), r);
        }
        assert!("Admin".parse::<ClientRole>().is_err());
    }
}
