//! CouchDB-style `AuthSession` cookies.
//!
//! The value is base64url (no padding) of `user:HEXTIME:MAC`, where HEXTIME is the issue
//! time in seconds since the Unix epoch in uppercase hex and MAC is the raw
//! HMAC-SHA256 of `user:HEXTIME`. A cookie is valid for `timeout_secs` from HEXTIME.
//!
//! Difference from CouchDB: CouchDB keys the HMAC with the server secret concatenated
//! with the user's password salt (so a password change invalidates the user's cookies)
//! and uses SHA-1 by default; we key it with the `[cookie] secret` of the secrets file
//! alone, so cookies survive password changes until they expire, and every node sharing
//! the secrets file accepts every node's cookies. Clients treat the value as opaque, so
//! PouchDB and CouchDB replicators are unaffected.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Name of the cookie, as CouchDB calls it.
pub const COOKIE_NAME: &str = "AuthSession";
/// How far in the future an issue time may lie (clock skew between nodes).
pub const MAX_SKEW_SECS: u64 = 60;
/// CouchDB's default session timeout.
pub const DEFAULT_TIMEOUT_SECS: u64 = 600;

/// Why a cookie was refused. Never carries the cookie or the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    /// Not base64url of `user:HEXTIME:MAC`.
    #[error("malformed AuthSession cookie")]
    Malformed,
    /// The MAC does not match (forged or issued with another secret).
    #[error("AuthSession cookie signature mismatch")]
    BadMac,
    /// Issued more than the timeout ago.
    #[error("AuthSession cookie expired")]
    Expired,
    /// Issued further in the future than clock skew explains.
    #[error("AuthSession cookie issued in the future")]
    Future,
    /// The user name cannot be put in a cookie (empty or contains ':').
    #[error("user name cannot be carried in an AuthSession cookie")]
    BadUser,
}

/// Issues and verifies `AuthSession` cookies with one HMAC secret.
///
/// `Debug` shows the timeout only.
#[derive(Clone)]
pub struct CookieAuthority {
    secret: Vec<u8>,
    timeout_secs: u64,
}

impl fmt::Debug for CookieAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieAuthority")
            .field("secret", &"<redacted>")
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

type HmacSha256 = Hmac<Sha256>;

impl CookieAuthority {
    /// An authority with `secret` (callers ensure ≥ 32 bytes) and `timeout_secs`.
    pub fn new(secret: Vec<u8>, timeout_secs: u64) -> CookieAuthority {
        CookieAuthority { secret, timeout_secs }
    }

    /// An authority with a fresh random 32-byte secret: cookies do not survive a restart
    /// and are not shared with other nodes.
    pub fn random(timeout_secs: u64) -> CookieAuthority {
        CookieAuthority::new(rand::random::<[u8; 32]>().to_vec(), timeout_secs)
    }

    /// How long a cookie is valid, in seconds.
    pub fn timeout_secs(&self) -> u64 {
        self.timeout_secs
    }

    fn mac(&self, data: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(data);
        mac
    }

    /// The raw HMAC of `data` under this secret (node tokens use it with a label of
    /// their own).
    pub(crate) fn tag(&self, data: &[u8]) -> Vec<u8> {
        self.mac(data).finalize().into_bytes().to_vec()
    }

    /// Whether `tag` is the HMAC of `data`, compared in constant time.
    pub(crate) fn verify_tag(&self, data: &[u8], tag: &[u8]) -> bool {
        self.mac(data).verify_slice(tag).is_ok()
    }

    /// The cookie value for `user` issued at `now` (seconds since the Unix epoch).
    pub fn issue(&self, user: &str, now: u64) -> Result<String, CookieError> {
        if user.is_empty() || user.contains(':') {
            return Err(CookieError::BadUser);
        }
        let data = format!("{user}:{now:X}");
        let tag = self.mac(data.as_bytes()).finalize().into_bytes();
        let mut raw = data.into_bytes();
        raw.push(b':');
        raw.extend_from_slice(&tag);
        Ok(URL_SAFE_NO_PAD.encode(raw))
    }

    /// The user a cookie value was issued to, if its MAC matches (compared in constant
    /// time) and it was issued no more than the timeout before `now` and not more than
    /// [`MAX_SKEW_SECS`] after it.
    pub fn verify(&self, value: &str, now: u64) -> Result<String, CookieError> {
        let raw = URL_SAFE_NO_PAD
            .decode(value.trim_end_matches('='))
            .map_err(|_| CookieError::Malformed)?;
        let first = raw
            .iter()
            .position(|&b| b == b':')
            .ok_or(CookieError::Malformed)?;
        let second = raw[first + 1..]
            .iter()
            .position(|&b| b == b':')
            .ok_or(CookieError::Malformed)?
            + first
            + 1;
        let (user, hextime, tag) = (&raw[..first], &raw[first + 1..second], &raw[second + 1..]);
        if user.is_empty() || hextime.is_empty() || hextime.len() > 16 {
            return Err(CookieError::Malformed);
        }
        self.mac(&raw[..second])
            .verify_slice(tag)
            .map_err(|_| CookieError::BadMac)?;
        let user = std::str::from_utf8(user).map_err(|_| CookieError::Malformed)?;
        let hextime = std::str::from_utf8(hextime).map_err(|_| CookieError::Malformed)?;
        let issued = u64::from_str_radix(hextime, 16).map_err(|_| CookieError::Malformed)?;
        if issued > now.saturating_add(MAX_SKEW_SECS) {
            return Err(CookieError::Future);
        }
        if now >= issued.saturating_add(self.timeout_secs) {
            return Err(CookieError::Expired);
        }
        Ok(user.to_owned())
    }

    /// A `Set-Cookie` header value carrying `value`, as CouchDB sends it (plus `Secure`
    /// when served over TLS, and `Max-Age` of the timeout).
    pub fn set_cookie_header(&self, value: &str, secure: bool) -> String {
        let secure = if secure { "; Secure" } else { "" };
        format!(
            "{COOKIE_NAME}={value}; Version=1; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
            self.timeout_secs
        )
    }

    /// The `Set-Cookie` header value that deletes the cookie (`DELETE /_session`).
    pub fn clear_cookie_header(secure: bool) -> String {
        let secure = if secure { "; Secure" } else { "" };
        format!("{COOKIE_NAME}=; Version=1; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{secure}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> CookieAuthority {
        CookieAuthority::new(vec![7; 32], 600)
    }

    #[test]
    fn round_trip_and_expiry() {
        let a = auth();
        let c = a.issue("admin", 1_700_000_000).unwrap();
        assert!(!c.contains('='));
        assert_eq!(a.verify(&c, 1_700_000_000).unwrap(), "admin");
        assert_eq!(a.verify(&c, 1_700_000_599).unwrap(), "admin");
        assert_eq!(a.verify(&c, 1_700_000_600), Err(CookieError::Expired));
        assert_eq!(a.verify(&c, 1_700_000_000 - 60).unwrap(), "admin");
        assert_eq!(a.verify(&c, 1_700_000_000 - 61), Err(CookieError::Future));
        let raw = URL_SAFE_NO_PAD.decode(&c).unwrap();
        assert!(
            raw.starts_with(b"admin:6553F100:"),
            "{:?}",
            String::from_utf8_lossy(&raw)
        );
    }

    #[test]
    fn tampering_is_refused() {
        let a = auth();
        let c = a.issue("app", 1000).unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(&c).unwrap();
        // Another user with the same MAC.
        let mut forged = b"adm".to_vec();
        forged.extend_from_slice(&raw[3..]);
        assert_eq!(
            a.verify(&URL_SAFE_NO_PAD.encode(&forged), 1000),
            Err(CookieError::BadMac)
        );
        // A later time with the same MAC.
        raw[5] = b'9';
        assert_eq!(
            a.verify(&URL_SAFE_NO_PAD.encode(&raw), 1000),
            Err(CookieError::BadMac)
        );
        // Another secret.
        let other = CookieAuthority::new(vec![8; 32], 600);
        assert_eq!(other.verify(&c, 1000), Err(CookieError::BadMac));
        for junk in [
            "",
            "!!!",
            &URL_SAFE_NO_PAD.encode("nocolons"),
            &URL_SAFE_NO_PAD.encode("a:1"),
        ] {
            assert_eq!(a.verify(junk, 1000), Err(CookieError::Malformed), "{junk}");
        }
        assert_eq!(a.issue("a:b", 1), Err(CookieError::BadUser));
    }

    #[test]
    fn debug_hides_the_secret() {
        let a = CookieAuthority::new(b"super-secret-cookie-key-0123456789".to_vec(), 600);
        let d = format!("{a:?}");
        assert!(!d.contains("super") && !d.contains("115"), "{d}");
    }
}
