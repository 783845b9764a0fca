//! Roles and principals: who an authenticated caller is and what that lets them do.
//!
//! A [`Role`] is one of the four client roles certificates carry (proto's
//! [`ClientRole`]); [`Role::grants`] says which roles imply which. The server maps each
//! endpoint to the role it needs and asks [`Principal::may`].

use std::fmt;
use std::str::FromStr;

use proto::tls::{ClientRole, Identity, UnknownRole};

/// What a caller may do. The same four names as certificate client roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read and write session documents.
    App,
    /// The Replication service and the CouchDB replication endpoints (and what `app` may).
    Replicator,
    /// Everything: databases, `_replicate`, `_replicator`, `_compact`, options.
    Admin,
    /// Read-only operations: `/_metrics`, `/_active_tasks`, `/_fleet`.
    Ops,
}

impl Role {
    /// Whether holding `self` is enough for an endpoint that needs `need`: admin grants
    /// everything; replicator grants replicator, app and ops; app grants app; ops grants ops.
    pub fn grants(self, need: Role) -> bool {
        match self {
            Role::Admin => true,
            Role::Replicator => matches!(need, Role::Replicator | Role::App | Role::Ops),
            Role::App => need == Role::App,
            Role::Ops => need == Role::Ops,
        }
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        ClientRole::from(self).as_str()
    }
}

impl From<ClientRole> for Role {
    fn from(r: ClientRole) -> Role {
        match r {
            ClientRole::App => Role::App,
            ClientRole::Replicator => Role::Replicator,
            ClientRole::Admin => Role::Admin,
            ClientRole::Ops => Role::Ops,
        }
    }
}

impl From<Role> for ClientRole {
    fn from(r: Role) -> ClientRole {
        match r {
            Role::App => ClientRole::App,
            Role::Replicator => ClientRole::Replicator,
            Role::Admin => ClientRole::Admin,
            Role::Ops => ClientRole::Ops,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        s.parse::<ClientRole>().map(Role::from)
    }
}

/// How a principal proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// A client certificate verified against the fleet CA.
    Certificate,
    /// A bearer token from the secrets file.
    Token,
    /// A user name and password (HTTP Basic, `POST /_session`).
    Password,
    /// An `AuthSession` cookie.
    Cookie,
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// User, token or certificate name (a node's identity URI for node certificates).
    pub name: String,
    /// Roles held.
    pub roles: Vec<Role>,
    /// How it authenticated.
    pub via: AuthMethod,
}

impl Principal {
    /// Whether any held role grants `need`.
    pub fn may(&self, need: Role) -> bool {
        self.roles.iter().any(|r| r.grants(need))
    }

    /// The principal a verified certificate identity stands for: a client with its role
    /// and name; a fleet node (hub or spoke) as a replicator named by its identity URI.
    /// Whether the topology admits that node is the caller's check.
    pub fn from_identity(identity: &Identity) -> Principal {
        match identity {
            Identity::Client { role, name } => Principal {
                name: name.clone(),
                roles: vec![(*role).into()],
                via: AuthMethod::Certificate,
            },
            node => Principal {
                name: node.to_uri(),
                roles: vec![Role::Replicator],
                via: AuthMethod::Certificate,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_table() {
        use Role::*;
        let all = [App, Replicator, Admin, Ops];
        for need in all {
            assert!(Admin.grants(need));
        }
        assert!(Replicator.grants(Replicator) && Replicator.grants(App) && Replicator.grants(Ops));
        assert!(!Replicator.grants(Admin));
        assert!(App.grants(App));
        for need in [Replicator, Admin, Ops] {
            assert!(!App.grants(need));
        }
        assert!(Ops.grants(Ops));
        for need in [App, Replicator, Admin] {
            assert!(!Ops.grants(need));
        }
    }

    #[test]
    fn principal_may_and_identities() {
        let p = Principal {
            name: "x".into(),
            roles: vec![Role::Ops, Role::App],
            via: AuthMethod::Token,
        };
        assert!(p.may(Role::App) && p.may(Role::Ops) && !p.may(Role::Admin));
        let spoke = Identity::spoke("eu", "n1").unwrap();
        let sp = Principal::from_identity(&spoke);
        assert_eq!(sp.name, "sessionfleet:spoke/eu/n1");
        assert!(sp.may(Role::Replicator) && !sp.may(Role::Admin));
        let c = Principal::from_identity(&Identity::client(ClientRole::Admin, "root-ops").unwrap());
        assert_eq!((c.name.as_str(), c.may(Role::Admin)), ("root-ops", true));
        assert_eq!("replicator".parse::<Role>().unwrap(), Role::Replicator);
    }
}
