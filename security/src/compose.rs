//! Writing secrets files: what first start, `sessionfleet secrets` and the demo put
//! on disk. Only hashes go in the file; plaintext passwords and tokens are handed back
//! to the caller, once.
//!
//! ```
//! use security::{compose::SecretsFile, Role};
//! let mut file = SecretsFile::new();
//! file.user("admin", "correct horse battery staple", &[Role::Admin], 1_000);
//! let token = file.token("app-eu-west", &[Role::App]);
//! let text = file.render();
//! let secrets = security::Secrets::parse(&text, "secrets.toml".as_ref()).unwrap();
//! assert!(secrets.verify_token(&token).is_some());
//! ```

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use crate::cookie::DEFAULT_TIMEOUT_SECS;
use crate::files::write_file;
use crate::role::Role;
use crate::secrets::{hash_password_with, new_token};

/// A secrets file being put together. `Debug` is not implemented: it holds hashes.
pub struct SecretsFile {
    body: String,
    cookie_secret: String,
}

impl Default for SecretsFile {
    fn default() -> SecretsFile {
        SecretsFile::new()
    }
}

fn roles_list(roles: &[Role]) -> String {
    let names: Vec<String> = roles.iter().map(|r| format!("\"{r}\"")).collect();
    format!("[{}]", names.join(", "))
}

/// A TOML basic string of `s` (names are the caller's; quote them safely).
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl SecretsFile {
    /// An empty file with a fresh random cookie secret.
    pub fn new() -> SecretsFile {
        SecretsFile {
            body: String::new(),
            cookie_secret: hex::encode(rand::random::<[u8; 32]>()),
        }
    }

    /// Adds a user whose password is hashed with `iterations` of PBKDF2-SHA256.
    pub fn user(&mut self, name: &str, password: &str, roles: &[Role], iterations: u32) -> &mut SecretsFile {
        self.body.push_str(&user_entry(name, password, roles, iterations));
        self
    }

    /// Adds a new random token and returns its plaintext (the file keeps its hash).
    pub fn token(&mut self, name: &str, roles: &[Role]) -> String {
        let (token, entry) = token_entry(name, roles);
        self.body.push_str(&entry);
        token
    }

    /// The file's text.
    pub fn render(&self) -> String {
        format!(
            "# Sessionfleet secrets: password hashes, token hashes and the cookie secret.\n\
             # Keep it mode 0600; nodes re-read it when it changes.\n\n{}\
             [cookie]\nsecret = \"{}\"\ntimeout_secs = {DEFAULT_TIMEOUT_SECS}\n",
            self.body, self.cookie_secret
        )
    }

    /// Writes the file with mode 0600, never replacing one.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        write_file(path, self.render().as_bytes(), 0o600, false)
    }
}

/// A `[[user]]` table.
pub fn user_entry(name: &str, password: &str, roles: &[Role], iterations: u32) -> String {
    format!(
        "[[user]]\nname = {}\npassword = \"{}\"\nroles = {}\n\n",
        quoted(name),
        hash_password_with(password, iterations),
        roles_list(roles)
    )
}

/// A new random token's plaintext and its `[[token]]` table.
pub fn token_entry(name: &str, roles: &[Role]) -> (String, String) {
    let (token, digest) = new_token();
    let entry = format!(
        "[[token]]\nname = {}\nsha256 = \"{digest}\"\nroles = {}\n\n",
        quoted(name),
        roles_list(roles)
    );
    (token, entry)
}

/// Appends `entry` (from [`user_entry`] or [`token_entry`]) to the secrets file at
/// `path`, after checking that the result still parses; the file keeps its mode.
pub fn append(path: &Path, entry: &str) -> Result<(), crate::SecretsError> {
    let io_err = |source| crate::SecretsError::Io {
        path: path.to_owned(),
        source,
    };
    let mut text = std::fs::read_to_string(path).map_err(io_err)?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push('\n');
    text.push_str(entry);
    crate::Secrets::parse(&text, path)?;
    let tmp = path.with_extension("toml.new");
    let _ = std::fs::remove_file(&tmp);
    write_file(&tmp, text.as_bytes(), 0o600, false).map_err(io_err)?;
    std::fs::rename(&tmp, path).map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composed_files_parse_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.toml");
        let mut f = SecretsFile::new();
        f.user("ad\"min", "pw", &[Role::Admin], 10);
        let t = f.token("app", &[Role::App]);
        f.write(&path).unwrap();
        let s = crate::Secrets::load(&path).unwrap();
        assert!(s.verify_password("ad\"min", "pw").is_some());
        assert_eq!(s.verify_token(&t).unwrap().roles, vec![Role::App]);
        assert!(s.cookie_from_file());
        let (ops, entry) = token_entry("ops", &[Role::Ops]);
        append(&path, &entry).unwrap();
        let s = crate::Secrets::load(&path).unwrap();
        assert_eq!(s.verify_token(&ops).unwrap().name, "ops");
        assert!(s.verify_token(&t).is_some(), "earlier entries kept");
        assert!(
            !std::fs::read_to_string(&path).unwrap().contains(&ops),
            "only the hash is stored"
        );
        // An entry that would break the file is refused and the file is unchanged.
        let before = std::fs::read(&path).unwrap();
        assert!(append(&path, "[[user]]\nname = 1\n").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
