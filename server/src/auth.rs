//! Who is calling, and whether they may: a request's credentials become a
//! [`Principal`], checked against the [`Role`] its endpoint needs.
//!
//! Credentials are looked at in this order: `Authorization: Bearer` (a token of the
//! secrets file, or a node token on a fleet without TLS), `Authorization: Basic` (a user
//! of the secrets file; HTTP only, as password hashing is too slow for gRPC's
//! synchronous interceptors), the `AuthSession` cookie (HTTP only), then the client
//! certificate the TLS handshake verified. Credentials that are present but wrong are
//! refused, never downgraded to anonymous — except an expired or foreign cookie, which
//! CouchDB also ignores.
//!
//! Password checks are slow on purpose (PBKDF2); a successful one is remembered for
//! [`VERIFIED_TTL`] under an HMAC of name and password with a per-process key, so a
//! replicator sending Basic credentials on every request pays once. Failed logins slow
//! down the next attempt from the same address ([`security::LoginThrottle`]).
//!
//! The secrets file is re-read when it changes and on SIGHUP; an invalid new file is
//! logged and counted and the old one stays in force. Nothing here logs a credential.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use proto::tls::Identity;
use security::{LoginThrottle, Principal, Role, Secrets, SecretsError};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

/// Counts refused credentials and missing roles, by `reason`.
pub const AUTH_FAILURES_METRIC: &str = "sessionfleet_auth_failures_total";
/// Counts secrets-file reloads that failed (the old secrets stay in force).
pub const SECRETS_RELOAD_FAILURES_METRIC: &str = "sessionfleet_secrets_reload_failures_total";
/// How long a verified password is remembered.
pub const VERIFIED_TTL: Duration = Duration::from_secs(300);
/// Most remembered passwords; the memory is cleared when full.
const VERIFIED_MAX: usize = 10_000;

/// The credential of an `Authorization` header.
#[derive(Debug)]
pub(crate) enum Credential<'a> {
    /// `Bearer <token>`.
    Bearer(&'a str),
    /// `Basic`, decoded into name and password.
    Basic(String, String),
}

/// Why a caller was refused: 401 / `UNAUTHENTICATED` or 403 / `PERMISSION_DENIED`.
/// The reason is safe to show: it never quotes a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    Unauthenticated(String),
    Forbidden(String),
}

impl Refusal {
    pub fn count(self, reason: &'static str) -> Refusal {
        metrics::counter!(AUTH_FAILURES_METRIC, "reason" => reason).increment(1);
        self
    }
}

/// Parses an `Authorization` header value. `Err` for a scheme we do not take or a
/// malformed Basic value.
pub(crate) fn parse_authorization(value: &str) -> Result<Credential<'_>, Refusal> {
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        return Ok(Credential::Bearer(rest));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD
            .decode(rest)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| Refusal::Unauthenticated("malformed Basic credentials".into()))?;
        let (name, password) = decoded
            .split_once(':')
            .ok_or_else(|| Refusal::Unauthenticated("malformed Basic credentials".into()))?;
        return Ok(Credential::Basic(name.to_owned(), password.to_owned()));
    }
    Err(Refusal::Unauthenticated(
        "the Authorization header must be Basic or Bearer".into(),
    ))
}

/// The value of cookie `name` in a `Cookie` header.
pub(crate) fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v.trim_matches('"'))
    })
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The node's secrets and everything derived from them.
pub struct Authenticator {
    secrets: RwLock<Arc<Secrets>>,
    throttle: LoginThrottle,
    verified: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
    /// Keys the remembered-password map, so its keys reveal nothing outside this process.
    cache_key: [u8; 32],
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("secrets", &self.secrets())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Authentication with `secrets`.
    pub fn new(secrets: Secrets) -> Authenticator {
        Authenticator {
            secrets: RwLock::new(Arc::new(secrets)),
            throttle: LoginThrottle::new(),
            verified: Mutex::new(HashMap::new()),
            cache_key: rand::random(),
        }
    }

    /// Reads the secrets file at `path`.
    pub fn load(path: &Path) -> Result<Authenticator, SecretsError> {
        Secrets::load(path).map(Authenticator::new)
    }

    /// The secrets in force.
    pub fn secrets(&self) -> Arc<Secrets> {
        self.secrets.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts new secrets in force and forgets remembered passwords.
    pub fn replace(&self, secrets: Secrets) {
        *self.secrets.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(secrets);
        self.verified.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Re-reads the file the secrets came from; keeps the old ones if it is invalid.
    pub fn reload(&self) -> bool {
        let path = self.secrets().path().to_owned();
        match Secrets::load(&path) {
            Ok(s) => {
                self.replace(s);
                tracing::info!(path = %path.display(), "secrets file reloaded");
                true
            }
            Err(e) => {
                metrics::counter!(SECRETS_RELOAD_FAILURES_METRIC).increment(1);
                tracing::error!(error = %e, "secrets file not reloaded; the previous secrets stay in force");
                false
            }
        }
    }

    /// Re-reads the secrets file when it changes (polled every `every`) and on SIGHUP,
    /// until `cancel`.
    pub fn spawn_watcher(self: &Arc<Self>, every: Duration, cancel: CancellationToken) {
        let this = self.clone();
        tokio::spawn(async move {
            let path: PathBuf = this.secrets().path().to_owned();
            let stamp = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.modified().ok(), m.len()));
            let mut seen = stamp(&path);
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let hup_recv = async {
                    match hup.as_mut() {
                        Some(s) => s.recv().await,
                        None => std::future::pending().await,
                    }
                };
                let forced = tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => false,
                    _ = hup_recv => true,
                };
                let now = stamp(&path);
                if forced || now != seen {
                    seen = now;
                    let t = this.clone();
                    let _ = tokio::task::spawn_blocking(move || t.reload()).await;
                }
            }
        });
    }

    /// The principal of a bearer token of the secrets file (node tokens are
    /// [`Authenticator::node`]'s).
    pub fn bearer(&self, token: &str) -> Option<Principal> {
        self.secrets().verify_token(token)
    }

    /// The fleet node a node token stands for (whose identity the caller must still
    /// admit, as it would a certificate's).
    pub fn node(&self, token: &str) -> Option<Identity> {
        self.secrets().verify_node_token(token)
    }

    /// The principal of a valid, unexpired `AuthSession` cookie.
    pub fn cookie(&self, value: &str) -> Option<Principal> {
        self.secrets().verify_cookie(value, unix_now())
    }

    /// A new `AuthSession` cookie value for `user`.
    pub fn issue_cookie(&self, user: &str) -> Option<String> {
        self.secrets().cookie().issue(user, unix_now()).ok()
    }

    /// The `Set-Cookie` value carrying `value`.
    pub fn set_cookie_header(&self, value: &str, secure: bool) -> String {
        self.secrets().cookie().set_cookie_header(value, secure)
    }

    fn verified_key(&self, name: &str, password: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.cache_key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The principal of `name` and `password` from `ip`: remembered if verified
    /// lately, else verified off the async runtime after the throttle's delay for `ip`.
    pub async fn password(&self, ip: IpAddr, name: &str, password: &str) -> Option<Principal> {
        let key = self.verified_key(name, password);
        {
            let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            match verified.get(&key) {
                Some((p, at)) if at.elapsed() < VERIFIED_TTL => return Some(p.clone()),
                Some(_) => {
                    verified.remove(&key);
                }
                None => {}
            }
        }
        let delay = self.throttle.delay_for(ip);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let secrets = self.secrets();
        let (name_owned, password_owned) = (name.to_owned(), password.to_owned());
        let found =
            tokio::task::spawn_blocking(move || secrets.verify_password(&name_owned, &password_owned))
                .await
                .ok()
                .flatten();
        match &found {
            Some(p) => {
                self.throttle.record_success(ip);
                let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
                if verified.len() >= VERIFIED_MAX {
                    verified.clear();
                }
                verified.insert(key, (p.clone(), Instant::now()));
            }
            None => self.throttle.record_failure(ip),
        }
        found
    }
}

/// A fleet node's principal (a replicator): a hub always, a spoke if the current
/// topology names it.
pub(crate) fn node_principal(fleet: &crate::fleet::Fleet, identity: &Identity) -> Result<Principal, Refusal> {
    if matches!(identity, Identity::Hub { .. }) {
        return Ok(Principal::from_identity(identity));
    }
    fleet
        .admit(identity)
        .map(|_| Principal::from_identity(identity))
        .map_err(|reason| Refusal::Forbidden(reason).count("node_not_admitted"))
}

/// What an endpoint needs of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// Anyone, authenticated or not.
    Anyone,
    /// A principal holding a role that grants this one.
    Role(Role),
}

/// Checks `principal` (None: anonymous) against `need`; `what` names the endpoint in
/// the refusal (only built when refusing).
pub(crate) fn check(
    principal: Option<&Principal>,
    need: Need,
    what: impl FnOnce() -> String,
) -> Result<(), Refusal> {
    let Need::Role(role) = need else {
        return Ok(());
    };
    match principal {
        None => Err(Refusal::Unauthenticated(format!(
            "{} needs the {role} role: authenticate with Basic credentials, a bearer token, \
             an AuthSession cookie or a client certificate",
            what()
        ))
        .count("anonymous")),
        Some(p) if p.may(role) => Ok(()),
        Some(p) => Err(Refusal::Forbidden(format!(
            "{} may not use {}: it needs the {role} role",
            p.name,
            what()
        ))
        .count("forbidden")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_headers() {
        assert!(matches!(
            parse_authorization("Bearer abc"),
            Ok(Credential::Bearer("abc"))
        ));
        assert!(matches!(
            parse_authorization("bearer  abc "),
            Ok(Credential::Bearer("abc"))
        ));
        let basic = format!("Basic {}", STANDARD.encode("admin:pa:ss"));
        match parse_authorization(&basic) {
            Ok(Credential::Basic(n, p)) => assert_eq!((n.as_str(), p.as_str()), ("admin", "pa:ss")),
            other => panic!("{other:?}"),
        }
        for bad in ["Basic !!!", "Basic bm9jb2xvbg==", "Digest x", "Bearer", ""] {
            assert!(parse_authorization(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cookies_and_checks() {
        assert_eq!(cookie("a=1; AuthSession=xyz; b=2", "AuthSession"), Some("xyz"));
        assert_eq!(cookie("AuthSession=\"q\"", "AuthSession"), Some("q"));
        assert_eq!(cookie("a=1", "AuthSession"), None);
        let app = Principal {
            name: "web".into(),
            roles: vec![Role::App],
            via: security::AuthMethod::Token,
        };
        let x = || "x".to_string();
        assert_eq!(check(None, Need::Anyone, x), Ok(()));
        assert!(matches!(
            check(None, Need::Role(Role::App), x),
            Err(Refusal::Unauthenticated(_))
        ));
        assert_eq!(check(Some(&app), Need::Role(Role::App), x), Ok(()));
        assert!(matches!(
            check(Some(&app), Need::Role(Role::Admin), || "DELETE /db".into()),
            Err(Refusal::Forbidden(r)) if r.contains("web") && r.contains("admin")
        ));
    }
}
