//! The secrets file: users with password hashes, hashed bearer tokens, and the
//! `AuthSession` cookie secret; and verifying passwords and tokens against it.
//!
//! ```toml
//! [[user]]                      # HTTP Basic and POST /_session
//! name = "admin"
//! password = "-pbkdf2:sha256-<hex derived>,<salt>,<iterations>"
//! roles = ["admin"]
//! [[token]]                     # bearer tokens for apps
//! name = "app-eu-west"
//! sha256 = "<hex sha256 of the token>"
//! roles = ["app"]
//! [cookie]
//! secret = "<hex, at least 32 bytes>"
//! timeout_secs = 600
//! ```
//!
//! Password hashes are CouchDB's: `-pbkdf2:sha256-…` (CouchDB 3.4), `-pbkdf2-…`
//! (PBKDF2-HMAC-SHA1, CouchDB up to 3.3), where, as in CouchDB, the salt is used as the
//! text written (not hex-decoded) and the derived key is hex; or an argon2 PHC string
//! `$argon2id$…`. Plaintext passwords are refused. Tokens are random 256-bit values, so a
//! single SHA-256 is the right hash; they are compared in constant time against every
//! token. Password verification is deliberately slow (600 000 iterations by default):
//! call it off the async runtime (`spawn_blocking`).
//!
//! Errors name the file, the line and the field, never a secret value.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use toml::Spanned;

use proto::tls::Identity;

use crate::cookie::{CookieAuthority, DEFAULT_TIMEOUT_SECS};
use crate::files::write_file;
use crate::role::{AuthMethod, Principal, Role};

/// PBKDF2 iterations of new password hashes: CouchDB 3.4's default.
pub const DEFAULT_ITERATIONS: u32 = 600_000;
/// Shortest accepted cookie secret, in bytes.
pub const MIN_COOKIE_SECRET: usize = 32;
/// File name of a generated secrets file.
pub const SECRETS_FILE: &str = "secrets.toml";
/// File name of the generated admin's plaintext password.
pub const ADMIN_PASSWORD_FILE: &str = "admin-password";

/// Fields whose values are secret: their parse errors never quote the serde message.
const SECRET_FIELDS: &[&str] = &["password", "sha256", "secret"];

/// Why the secrets file could not be loaded or written. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is already there (generation never replaces one).
    #[error("{} already exists", .0.display())]
    Exists(PathBuf),
    /// The file's content is wrong.
    #[error("{}:{line}: {}{message}", path.display(), field.as_deref().map(|f| format!("{f}: ")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The field, where known.
        field: Option<String>,
        /// What is wrong (never the value of a secret field).
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    user: Vec<RawUser>,
    #[serde(default)]
    token: Vec<RawToken>,
    cookie: Option<RawCookie>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: Spanned<String>,
    password: Spanned<String>,
    roles: Spanned<Vec<Role>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: Spanned<String>,
    sha256: Spanned<String>,
    roles: Spanned<Vec<Role>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCookie {
    secret: Spanned<String>,
    #[serde(default = "default_timeout")]
    timeout_secs: Spanned<u64>,
}

fn default_timeout() -> Spanned<u64> {
    Spanned::new(0..0, DEFAULT_TIMEOUT_SECS)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prf {
    Sha1,
    Sha256,
}

#[derive(Clone)]
enum PasswordHash {
    Pbkdf2 {
        prf: Prf,
        derived: Vec<u8>,
        salt: String,
        iterations: u32,
    },
    Argon2(String),
}

impl PasswordHash {
    fn parse(s: &str) -> Result<PasswordHash, String> {
        if s.starts_with("$argon2") {
            argon2::PasswordHash::new(s).map_err(|_| "not a valid argon2 PHC string".to_string())?;
            return Ok(PasswordHash::Argon2(s.to_owned()));
        }
        let (prf, rest) = if let Some(r) = s.strip_prefix("-pbkdf2:sha256-") {
            (Prf::Sha256, r)
        } else if let Some(r) = s
            .strip_prefix("-pbkdf2:sha1-")
            .or_else(|| s.strip_prefix("-pbkdf2-"))
        {
            (Prf::Sha1, r)
        } else {
            return Err(
                "not a recognised password hash (expected -pbkdf2:sha256-…, -pbkdf2-… or \
                        $argon2id$…; plaintext passwords are not accepted)"
                    .into(),
            );
        };
        let parts: Vec<&str> = rest.split(',').collect();
        let [derived, salt, iterations] = parts.as_slice() else {
            return Err("pbkdf2 hash must be <hex derived key>,<salt>,<iterations>".into());
        };
        let derived = hex::decode(derived).map_err(|_| "pbkdf2 derived key is not hex".to_string())?;
        if derived.len() < 16 {
            return Err("pbkdf2 derived key is shorter than 16 bytes".into());
        }
        if salt.is_empty() {
            return Err("pbkdf2 salt is empty".into());
        }
        let iterations = iterations
            .parse::<u32>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| "pbkdf2 iterations must be a positive integer".to_string())?;
        Ok(PasswordHash::Pbkdf2 {
            prf,
            derived,
            salt: (*salt).to_owned(),
            iterations,
        })
    }

    fn verify(&self, password: &str) -> bool {
        match self {
            PasswordHash::Pbkdf2 {
                prf,
                derived,
                salt,
                iterations,
            } => {
                let mut out = vec![0u8; derived.len()];
                pbkdf2_into(*prf, password.as_bytes(), salt.as_bytes(), *iterations, &mut out);
                out.ct_eq(derived).into()
            }
            PasswordHash::Argon2(phc) => {
                use argon2::PasswordVerifier;
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), phc.as_str())
                    .is_ok()
            }
        }
    }
}

fn pbkdf2_into(prf: Prf, password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
    match prf {
        Prf::Sha1 => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, out),
        Prf::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, out),
    }
}

#[derive(Clone)]
struct User {
    name: String,
    hash: PasswordHash,
    roles: Vec<Role>,
}

#[derive(Clone)]
struct Token {
    name: String,
    sha256: [u8; 32],
    roles: Vec<Role>,
}

/// The loaded secrets file. `Debug` lists names and roles, never hashes or secrets.
#[derive(Clone)]
pub struct Secrets {
    path: PathBuf,
    users: Vec<User>,
    tokens: Vec<Token>,
    cookie: CookieAuthority,
    cookie_from_file: bool,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users: Vec<_> = self.users.iter().map(|u| (&u.name, &u.roles)).collect();
        let tokens: Vec<_> = self.tokens.iter().map(|t| (&t.name, &t.roles)).collect();
        f.debug_struct("Secrets")
            .field("path", &self.path)
            .field("users", &users)
            .field("tokens", &tokens)
            .field("cookie", &self.cookie)
            .field("cookie_from_file", &self.cookie_from_file)
            .finish()
    }
}

/// The first-start admin credentials [`Secrets::generate`] made.
///
/// `Debug` hides the password.
pub struct GeneratedAdmin {
    /// User name (`admin`).
    pub name: String,
    /// The plaintext password, shown to nobody but the operator.
    pub password: String,
    /// The 0600 file holding the plaintext password, for the operator to read.
    pub password_file: PathBuf,
}

impl fmt::Debug for GeneratedAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedAdmin")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("password_file", &self.password_file)
            .finish()
    }
}

fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// The key of the `key = value` line at `offset`, if it is one.
fn key_at(src: &str, offset: usize) -> Option<String> {
    let offset = offset.min(src.len());
    let start = src[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = src[offset..].find('\n').map_or(src.len(), |i| offset + i);
    let line = &src[start..end];
    let key = line.split_once('=')?.0.trim().trim_matches('"');
    (!key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
    .then(|| key.to_owned())
}

/// The field a serde message names (`missing field `x``, `unknown field `x``).
fn field_in_message(msg: &str) -> Option<String> {
    for pat in ["missing field `", "unknown field `"] {
        if let Some(i) = msg.find(pat) {
            let rest = &msg[i + pat.len()..];
            return rest.find('`').map(|j| rest[..j].to_owned());
        }
    }
    None
}

fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Secrets {
    /// Reads and checks the secrets file at `path`.
    pub fn load(path: &Path) -> Result<Secrets, SecretsError> {
        let src = std::fs::read_to_string(path).map_err(|source| SecretsError::Io {
            path: path.to_owned(),
            source,
        })?;
        Secrets::parse(&src, path)
    }

    /// Parses secrets-file text; `path` only names it in errors.
    pub fn parse(src: &str, path: &Path) -> Result<Secrets, SecretsError> {
        let invalid = |span: std::ops::Range<usize>, field: &str, message: String| SecretsError::Invalid {
            path: path.to_owned(),
            line: line_of(src, span.start),
            field: Some(field.to_owned()),
            message,
        };
        let raw: RawFile = toml::from_str(src).map_err(|e| {
            let start = e.span().map_or(0, |s| s.start);
            let field = field_in_message(e.message()).or_else(|| key_at(src, start));
            let message = match &field {
                Some(f)
                    if SECRET_FIELDS.contains(&f.as_str()) && !e.message().starts_with("missing field") =>
                {
                    "invalid value (not shown: the field is secret)".to_owned()
                }
                _ => e.message().trim().to_owned(),
            };
            SecretsError::Invalid {
                path: path.to_owned(),
                line: line_of(src, start),
                field,
                message,
            }
        })?;

        let check_name = |name: &Spanned<String>| {
            let n = name.get_ref();
            if n.is_empty() || n.len() > 256 || n.contains(':') || n.chars().any(char::is_control) {
                Err(invalid(
                    name.span(),
                    "name",
                    format!("{n:?} must be 1-256 characters without ':'"),
                ))
            } else {
                Ok(n.clone())
            }
        };
        let check_roles = |roles: &Spanned<Vec<Role>>| {
            if roles.get_ref().is_empty() {
                Err(invalid(
                    roles.span(),
                    "roles",
                    "at least one role is needed".into(),
                ))
            } else {
                Ok(roles.get_ref().clone())
            }
        };

        let mut users: Vec<User> = Vec::new();
        for u in &raw.user {
            let name = check_name(&u.name)?;
            if users.iter().any(|x| x.name == name) {
                return Err(invalid(
                    u.name.span(),
                    "name",
                    format!("user {name:?} appears twice"),
                ));
            }
            let hash = PasswordHash::parse(u.password.get_ref())
                .map_err(|m| invalid(u.password.span(), "password", m))?;
            users.push(User {
                name,
                hash,
                roles: check_roles(&u.roles)?,
            });
        }
        let mut tokens: Vec<Token> = Vec::new();
        for t in &raw.token {
            let name = check_name(&t.name)?;
            if tokens.iter().any(|x| x.name == name) {
                return Err(invalid(
                    t.name.span(),
                    "name",
                    format!("token {name:?} appears twice"),
                ));
            }
            let sha256 = hex::decode(t.sha256.get_ref().trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    invalid(
                        t.sha256.span(),
                        "sha256",
                        "must be 64 hex digits (a SHA-256)".into(),
                    )
                })?;
            tokens.push(Token {
                name,
                sha256,
                roles: check_roles(&t.roles)?,
            });
        }
        let (cookie, cookie_from_file) = match &raw.cookie {
            Some(c) => {
                let secret = hex::decode(c.secret.get_ref().trim())
                    .map_err(|_| invalid(c.secret.span(), "secret", "must be hex".into()))?;
                if secret.len() < MIN_COOKIE_SECRET {
                    return Err(invalid(
                        c.secret.span(),
                        "secret",
                        format!(
                            "must be at least {MIN_COOKIE_SECRET} bytes ({} hex digits)",
                            2 * MIN_COOKIE_SECRET
                        ),
                    ));
                }
                let timeout = *c.timeout_secs.get_ref();
                if timeout == 0 {
                    return Err(invalid(
                        c.timeout_secs.span(),
                        "timeout_secs",
                        "must be positive".into(),
                    ));
                }
                (CookieAuthority::new(secret, timeout), true)
            }
            None => (CookieAuthority::random(DEFAULT_TIMEOUT_SECS), false),
        };
        if !cookie_from_file {
            tracing::info!(path = %path.display(), "no [cookie] secret in the secrets file: AuthSession cookies use a random per-process secret");
        }
        Ok(Secrets {
            path: path.to_owned(),
            users,
            tokens,
            cookie,
            cookie_from_file,
        })
    }

    /// The file these secrets were read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names of the users.
    pub fn user_names(&self) -> impl Iterator<Item = &str> {
        self.users.iter().map(|u| u.name.as_str())
    }

    /// Whether any user or token holds the admin role.
    pub fn has_admin(&self) -> bool {
        self.users.iter().any(|u| u.roles.contains(&Role::Admin))
            || self.tokens.iter().any(|t| t.roles.contains(&Role::Admin))
    }

    /// The cookie authority: from the `[cookie]` section, or a random per-process secret
    /// when the file has none (see [`Secrets::cookie_from_file`]).
    pub fn cookie(&self) -> &CookieAuthority {
        &self.cookie
    }

    /// Whether the cookie secret came from the file (shared by nodes, survives restarts).
    pub fn cookie_from_file(&self) -> bool {
        self.cookie_from_file
    }

    /// The principal for `name` if `password` matches its hash. Slow by design; an
    /// unknown name costs about as much as a wrong password.
    pub fn verify_password(&self, name: &str, password: &str) -> Option<Principal> {
        match self.users.iter().find(|u| u.name == name) {
            Some(u) => u.hash.verify(password).then(|| Principal {
                name: u.name.clone(),
                roles: u.roles.clone(),
                via: AuthMethod::Password,
            }),
            None => {
                if let Some(PasswordHash::Pbkdf2 {
                    prf,
                    derived,
                    iterations,
                    ..
                }) = self.users.first().map(|u| &u.hash)
                {
                    let mut out = vec![0u8; derived.len()];
                    pbkdf2_into(*prf, password.as_bytes(), b"no-such-user", *iterations, &mut out);
                }
                None
            }
        }
    }

    /// The principal of a bearer token: its SHA-256 is compared in constant time with
    /// every token's, without stopping at a match.
    pub fn verify_token(&self, token: &str) -> Option<Principal> {
        let digest = token_digest(token);
        let mut found = None;
        for (i, t) in self.tokens.iter().enumerate() {
            if bool::from(t.sha256.ct_eq(&digest)) {
                found = Some(i);
            }
        }
        found.map(|i| {
            let t = &self.tokens[i];
            Principal {
                name: t.name.clone(),
                roles: t.roles.clone(),
                via: AuthMethod::Token,
            }
        })
    }

    /// The principal of a valid `AuthSession` cookie (the user must still exist).
    pub fn verify_cookie(&self, value: &str, now: u64) -> Option<Principal> {
        let user = self.cookie.verify(value, now).ok()?;
        let u = self.users.iter().find(|u| u.name == user)?;
        Some(Principal {
            name: u.name.clone(),
            roles: u.roles.clone(),
            via: AuthMethod::Cookie,
        })
    }

    /// The token a fleet node presents as `identity` when there is no TLS to carry its
    /// certificate; `None` when the file has no `[cookie] secret` (a per-process secret
    /// is known to no other node).
    pub fn node_token(&self, identity: &Identity) -> Option<String> {
        self.cookie_from_file
            .then(|| crate::node_token::mint(&self.cookie, identity))
    }

    /// The node identity a node token stands for, if it was minted with this file's
    /// secret.
    pub fn verify_node_token(&self, token: &str) -> Option<Identity> {
        if !self.cookie_from_file {
            return None;
        }
        crate::node_token::verify(&self.cookie, token)
    }

    /// Writes a first-start secrets file `<dir>/secrets.toml` (mode 0600, never replacing
    /// one) with user `admin` holding a random password and the admin role, and a random
    /// cookie secret. The plaintext password is also written to `<dir>/admin-password`
    /// (0600): that file is what the operator reads (the binary logs its path, never the
    /// password) and may delete once the password is stored elsewhere.
    pub fn generate(dir: &Path) -> Result<(PathBuf, GeneratedAdmin), SecretsError> {
        Secrets::generate_with_iterations(dir, DEFAULT_ITERATIONS)
    }

    /// [`Secrets::generate`] with a chosen PBKDF2 iteration count (tests use few).
    pub fn generate_with_iterations(
        dir: &Path,
        iterations: u32,
    ) -> Result<(PathBuf, GeneratedAdmin), SecretsError> {
        let secrets_path = dir.join(SECRETS_FILE);
        let password_path = dir.join(ADMIN_PASSWORD_FILE);
        for p in [&secrets_path, &password_path] {
            if p.symlink_metadata().is_ok() {
                return Err(SecretsError::Exists(p.clone()));
            }
        }
        let password = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 18]>());
        let body = format!(
            "# Generated by Sessionfleet at first start; the admin password is in {ADMIN_PASSWORD_FILE}.\n{}",
            crate::compose::SecretsFile::new()
                .user("admin", &password, &[Role::Admin], iterations)
                .render()
        );
        let io = |p: &Path, source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                SecretsError::Exists(p.to_owned())
            } else {
                SecretsError::Io {
                    path: p.to_owned(),
                    source,
                }
            }
        };
        write_file(&password_path, format!("{password}\n").as_bytes(), 0o600, false)
            .map_err(|e| io(&password_path, e))?;
        if let Err(e) = write_file(&secrets_path, body.as_bytes(), 0o600, false) {
            let _ = std::fs::remove_file(&password_path);
            return Err(io(&secrets_path, e));
        }
        Ok((
            secrets_path,
            GeneratedAdmin {
                name: "admin".into(),
                password,
                password_file: password_path,
            },
        ))
    }
}

/// A CouchDB 3.4-style hash of `password`: `-pbkdf2:sha256-<hex>,<salt>,600000` with a
/// random 16-byte salt (written as 32 hex digits, used as text as CouchDB does).
pub fn hash_password(password: &str) -> String {
    hash_password_with(password, DEFAULT_ITERATIONS)
}

/// [`hash_password`] with a chosen iteration count.
pub fn hash_password_with(password: &str, iterations: u32) -> String {
    let salt = hex::encode(rand::random::<[u8; 16]>());
    let mut derived = [0u8; 32];
    pbkdf2_into(
        Prf::Sha256,
        password.as_bytes(),
        salt.as_bytes(),
        iterations.max(1),
        &mut derived,
    );
    format!(
        "-pbkdf2:sha256-{},{salt},{}",
        hex::encode(derived),
        iterations.max(1)
    )
}

/// A new bearer token: `(plaintext, hex SHA-256)`. The plaintext (`sft_` and 256 random
/// bits in base64url) goes to the application; only the hash goes in the secrets file.
pub fn new_token() -> (String, String) {
    let token = format!("sft_{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()));
    let digest = hex::encode(token_digest(&token));
    (token, digest)
}

#[cfg(test)]
mod tests;
