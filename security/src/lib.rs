//! Sessionfleet's credentials and who may do what.
//!
//! Owns: certificate minting for `sessionfleet certs` ([`mint`]); the secrets file with
//! users' password hashes, hashed bearer tokens and the cookie secret, and verifying
//! passwords and tokens against it ([`secrets`]); CouchDB-style `AuthSession` cookies
//! ([`cookie`]); composing new secrets files ([`compose`]); node tokens for fleets without TLS ([`node_token`]); slowing down repeated failed logins ([`throttle`]); roles, principals
//! and which role grants which ([`role`]). Credential files are written with their final
//! modes by [`files`].
//!
//! Certificate identities and TLS configs are proto's ([`proto::tls`]); this crate only
//! mints certificates carrying those identities.
//!
//! Must not know HTTP routing or gRPC services: the server maps endpoints to the
//! [`Role`] they need, extracts credentials from requests, calls this crate, and counts
//! `sessionfleet_auth_failures_total`. Nor storage, replication or topology: callers pass
//! the secrets file's path and decide which identities a topology admits.
//!
//! Secrets (keys, passwords, tokens, hashes, the cookie secret) never appear in `Debug`
//! output, logs or error messages of this crate.
#![deny(missing_docs)]

pub mod compose;
pub mod cookie;
pub mod files;
pub mod mint;
pub mod node_token;
pub mod role;
pub mod secrets;
pub mod throttle;

pub use cookie::{CookieAuthority, CookieError, COOKIE_NAME};
pub use mint::{describe, describe_all, describe_file, Ca, CertInfo, Issued, MintError};
pub use role::{AuthMethod, Principal, Role};
pub use secrets::{hash_password, hash_password_with, new_token, GeneratedAdmin, Secrets, SecretsError};
pub use throttle::LoginThrottle;
