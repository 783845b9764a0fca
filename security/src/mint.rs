//! Certificate minting for `sessionfleet certs`: the fleet CA and the certificates it
//! issues to nodes and clients, written with the right file modes, and `certs show`.
//!
//! All keys are ECDSA P-256. The CA is self-signed, `CA:true, pathlen:0`, and may only
//! sign certificates and CRLs. Issued certificates carry their [`Identity`] as a
//! `sessionfleet:` URI SubjectAltName plus any IP and DNS SANs; node certificates
//! (hub, spoke) may serve and connect, client certificates may only connect.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use proto::tls::Identity;

use crate::files::write_file;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;
use x509_parser::prelude::FromDer;

/// CA certificate file name inside a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// CA key file name inside a CA directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// How far in the past `not_before` is put, so peers with a slightly slow clock accept
/// a fresh certificate.
const BACKDATE: Duration = Duration::from_secs(300);

/// Why minting, loading, writing or describing a certificate failed. Never contains
/// key material.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// rcgen could not build or sign the certificate.
    #[error("certificate generation: {0}")]
    Generate(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file is already there and overwriting was not asked for.
    #[error("{} already exists (pass overwrite to replace it)", .0.display())]
    Exists(PathBuf),
    /// A file does not hold what it should.
    #[error("{}: {what}", path.display())]
    Invalid {
        /// The file (or `<input>` for in-memory PEM).
        path: PathBuf,
        /// What is wrong (never the contents).
        what: String,
    },
    /// A name or SAN is not acceptable.
    #[error("{0}")]
    BadInput(String),
}

fn gen_err(e: rcgen::Error) -> MintError {
    MintError::Generate(e.to_string())
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive INTEGER
    bytes[0] |= 0x01; // and no leading zero byte to strip
    SerialNumber::from_slice(&bytes)
}

fn new_key() -> Result<KeyPair, MintError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)
}

fn odt(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}

/// The fleet certificate authority: its certificate and signing key.
///
/// `Debug` shows the certificate's subject, never the key.
pub struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subject = describe(&self.cert_pem).map(|i| i.subject).unwrap_or_default();
        f.debug_struct("Ca")
            .field("subject", &subject)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Ca {
    /// A new self-signed CA `Sessionfleet CA <fleet>`, valid from a few minutes ago for
    /// `validity`.
    pub fn generate(fleet: &str, validity: Duration) -> Result<Ca, MintError> {
        if fleet.trim().is_empty() {
            return Err(MintError::BadInput("fleet name must not be empty".into()));
        }
        let now = SystemTime::now();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Sessionfleet");
        dn.push(DnType::CommonName, format!("Sessionfleet CA {fleet}"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = odt(now - BACKDATE);
        params.not_after = odt(now + validity);
        params.serial_number = Some(random_serial());
        let key = new_key()?;
        let cert = params.self_signed(&key).map_err(gen_err)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads `ca.pem` and `ca.key` from `dir`, checking the key belongs to the certificate.
    pub fn load(dir: &Path) -> Result<Ca, MintError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = read_string(&cert_path)?;
        let key_pem = read_string(&key_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|_| MintError::Invalid {
            path: key_path.clone(),
            what: "is not a PEM private key rcgen can use".into(),
        })?;
        let invalid = |what: String| MintError::Invalid {
            path: cert_path.clone(),
            what,
        };
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| invalid(format!("not a PEM certificate: {e}")))?;
        let cert = pem
            .parse_x509()
            .map_err(|e| invalid(format!("cannot parse certificate: {e}")))?;
        if !cert.is_ca() {
            return Err(invalid("is not a CA certificate".into()));
        }
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(MintError::Invalid {
                path: key_path,
                what: format!("does not belong to {}", cert_path.display()),
            });
        }
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(gen_err)?;
        Ok(Ca { cert_pem, issuer })
    }

    /// Writes `ca.pem` (0644) and `ca.key` (0600) into `dir` (which must exist). Refuses
    /// to replace existing files unless `overwrite`.
    pub fn write(&self, dir: &Path, overwrite: bool) -> Result<(PathBuf, PathBuf), MintError> {
        write_pair(
            dir,
            CA_CERT_FILE,
            &self.cert_pem,
            CA_KEY_FILE,
            &self.issuer.key().serialize_pem(),
            overwrite,
        )
    }

    /// The CA certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate for `identity` valid from a few minutes ago for `validity`, with
    /// the identity URI plus `ips` and `dns` as SubjectAltNames.
    pub fn issue(
        &self,
        identity: &Identity,
        ips: &[IpAddr],
        dns: &[String],
        validity: Duration,
    ) -> Result<Issued, MintError> {
        let now = SystemTime::now();
        self.issue_with_validity(identity, ips, dns, now - BACKDATE, now + validity)
    }

    /// As [`Ca::issue`] with explicit validity bounds (tests mint expired certificates
    /// with a `not_after` in the past).
    pub fn issue_with_validity(
        &self,
        identity: &Identity,
        ips: &[IpAddr],
        dns: &[String],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Issued, MintError> {
        if not_after <= not_before {
            return Err(MintError::BadInput(
                "not_after must be later than not_before".into(),
            ));
        }
        let uri = identity.to_uri();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Sessionfleet");
        dn.push(DnType::CommonName, uri.clone());
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        let ia5 = |s: String| {
            rcgen::string::Ia5String::try_from(s.clone())
                .map_err(|_| MintError::BadInput(format!("{s:?} is not an ASCII name")))
        };
        params.subject_alt_names.push(SanType::URI(ia5(uri)?));
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        for d in dns {
            params.subject_alt_names.push(SanType::DnsName(ia5(d.clone())?));
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = if identity.is_node() {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        params.use_authority_key_identifier_extension = true;
        params.not_before = odt(not_before);
        params.not_after = odt(not_after);
        params.serial_number = Some(random_serial());
        let key = new_key()?;
        let cert = params.signed_by(&key, &self.issuer).map_err(gen_err)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A freshly issued certificate and its private key, both PEM.
///
/// `Debug` shows the certificate, never the key.
#[derive(Clone)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM). Secret.
    pub key_pem: String,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl Issued {
    /// Writes `<stem>.pem` (0644) and `<stem>.key` (0600) into `dir`. Refuses to replace
    /// existing files unless `overwrite`; an overwrite writes a temporary file with the
    /// final mode and renames it into place, so readers never see a half-written file.
    pub fn write(&self, dir: &Path, stem: &str, overwrite: bool) -> Result<(PathBuf, PathBuf), MintError> {
        if stem.is_empty() || stem.contains('/') || stem.starts_with('.') {
            return Err(MintError::BadInput(format!("{stem:?} is not a plain file stem")));
        }
        write_pair(
            dir,
            &format!("{stem}.pem"),
            &self.cert_pem,
            &format!("{stem}.key"),
            &self.key_pem,
            overwrite,
        )
    }
}

fn read_string(path: &Path) -> Result<String, MintError> {
    std::fs::read_to_string(path).map_err(|source| MintError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write_pair(
    dir: &Path,
    cert_name: &str,
    cert: &str,
    key_name: &str,
    key: &str,
    overwrite: bool,
) -> Result<(PathBuf, PathBuf), MintError> {
    let cert_path = dir.join(cert_name);
    let key_path = dir.join(key_name);
    if !overwrite {
        for p in [&cert_path, &key_path] {
            if p.symlink_metadata().is_ok() {
                return Err(MintError::Exists(p.clone()));
            }
        }
    }
    // Key first: a watcher seeing the new key beside the old certificate refuses the pair
    // and retries; the other order would too. Either way both land before anyone is told.
    let io = |source: std::io::Error, p: &Path| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            MintError::Exists(p.to_owned())
        } else {
            MintError::Io {
                path: p.to_owned(),
                source,
            }
        }
    };
    write_file(&key_path, key.as_bytes(), 0o600, overwrite).map_err(|e| io(e, &key_path))?;
    write_file(&cert_path, cert.as_bytes(), 0o644, overwrite).map_err(|e| io(e, &cert_path))?;
    Ok((cert_path, key_path))
}

/// What `sessionfleet certs show` prints about a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// The `sessionfleet:` identity, if the certificate carries exactly one (a CA has none).
    pub identity: Option<Identity>,
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Start of validity, seconds since the Unix epoch.
    pub not_before: i64,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
    /// Whether this is a CA certificate.
    pub is_ca: bool,
    /// IP and DNS SubjectAltNames.
    pub names: Vec<String>,
}

impl fmt::Display for CertInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let when = |t: i64| {
            OffsetDateTime::from_unix_timestamp(t)
                .ok()
                .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
                .unwrap_or_else(|| t.to_string())
        };
        match &self.identity {
            Some(id) => writeln!(f, "identity:   {id}")?,
            None if self.is_ca => writeln!(f, "identity:   (certificate authority)")?,
            None => writeln!(f, "identity:   (none)")?,
        }
        writeln!(f, "subject:    {}", self.subject)?;
        writeln!(f, "issuer:     {}", self.issuer)?;
        writeln!(f, "serial:     {}", self.serial)?;
        writeln!(f, "not before: {}", when(self.not_before))?;
        writeln!(f, "not after:  {}", when(self.not_after))?;
        if !self.names.is_empty() {
            writeln!(f, "names:      {}", self.names.join(", "))?;
        }
        Ok(())
    }
}

/// Describes the first certificate of a PEM text.
pub fn describe(cert_pem: &str) -> Result<CertInfo, MintError> {
    describe_all(cert_pem)?
        .into_iter()
        .next()
        .ok_or_else(|| MintError::Invalid {
            path: "<input>".into(),
            what: "contains no certificate".into(),
        })
}

/// Describes every certificate of a PEM text (a chain or a CA bundle).
pub fn describe_all(pem_text: &str) -> Result<Vec<CertInfo>, MintError> {
    let invalid = |what: String| MintError::Invalid {
        path: "<input>".into(),
        what,
    };
    let mut out = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(pem_text.as_bytes()) {
        let pem = pem.map_err(|e| invalid(format!("not valid PEM: {e}")))?;
        if pem.label != "CERTIFICATE" {
            continue;
        }
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&pem.contents)
            .map_err(|e| invalid(format!("cannot parse certificate: {e}")))?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => names.push(d.to_string()),
                    x509_parser::extensions::GeneralName::IPAddress(b) => {
                        match b.len() {
                            4 => names
                                .push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default()).to_string()),
                            16 => names
                                .push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default()).to_string()),
                            _ => {}
                        }
                    }
                    _ => {}
                }
            }
        }
        out.push(CertInfo {
            identity: Identity::from_cert_der(&pem.contents).ok(),
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: hex::encode(cert.raw_serial()),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            is_ca: cert.is_ca(),
            names,
        });
    }
    Ok(out)
}

/// Reads a PEM file and describes its certificates.
pub fn describe_file(path: &Path) -> Result<Vec<CertInfo>, MintError> {
    let text = read_string(path)?;
    describe_all(&text).map_err(|e| match e {
        MintError::Invalid { what, .. } => MintError::Invalid {
            path: path.to_owned(),
            what,
        },
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const DAY: Duration = Duration::from_secs(86_400);

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn mint_write_load_describe() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate("test-fleet", 365 * DAY).unwrap();
        let (cp, kp) = ca.write(dir.path(), false).unwrap();
        assert_eq!((mode(&cp), mode(&kp)), (0o644, 0o600));
        assert!(matches!(ca.write(dir.path(), false), Err(MintError::Exists(_))));

        let ca = Ca::load(dir.path()).unwrap();
        let info = describe(ca.cert_pem()).unwrap();
        assert!(info.is_ca && info.identity.is_none());
        assert!(
            info.subject.contains("Sessionfleet CA test-fleet"),
            "{}",
            info.subject
        );

        let id = Identity::spoke("eu-west", "n1").unwrap();
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let issued = ca
            .issue(&id, &[ip], &["n1.eu-west.example".into()], 30 * DAY)
            .unwrap();
        let (cp, kp) = issued.write(dir.path(), "n1", false).unwrap();
        assert_eq!((mode(&cp), mode(&kp)), (0o644, 0o600));
        assert!(matches!(
            issued.write(dir.path(), "n1", false),
            Err(MintError::Exists(_))
        ));
        issued.write(dir.path(), "n1", true).unwrap();
        assert_eq!((mode(&cp), mode(&kp)), (0o644, 0o600));

        let info = describe_file(&cp).unwrap().remove(0);
        assert_eq!(info.identity, Some(id));
        assert_eq!(info.issuer, describe(ca.cert_pem()).unwrap().subject);
        assert!(!info.is_ca);
        assert_eq!(
            info.names,
            vec!["10.0.0.7".to_string(), "n1.eu-west.example".to_string()]
        );
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(info.not_before <= now && info.not_after > now + 29 * 86_400);
        assert!(info.to_string().contains("sessionfleet:spoke/eu-west/n1"));
    }

    #[test]
    fn load_refuses_a_foreign_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = Ca::generate("a", DAY).unwrap();
        let b = Ca::generate("b", DAY).unwrap();
        a.write(dir.path(), false).unwrap();
        let other = tempfile::tempdir().unwrap();
        b.write(other.path(), false).unwrap();
        std::fs::copy(other.path().join(CA_KEY_FILE), dir.path().join(CA_KEY_FILE)).unwrap();
        let e = Ca::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("does not belong"), "{e}");
    }

    #[test]
    fn expired_certificates_can_be_minted() {
        let ca = Ca::generate("t", DAY).unwrap();
        let now = SystemTime::now();
        let id = Identity::hub("hub").unwrap();
        let issued = ca
            .issue_with_validity(&id, &[], &[], now - 2 * DAY, now - DAY)
            .unwrap();
        let info = describe(&issued.cert_pem).unwrap();
        assert!(info.not_after < now.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64);
        assert!(ca.issue_with_validity(&id, &[], &[], now, now).is_err());
    }

    #[test]
    fn debug_hides_keys() {
        let ca = Ca::generate("t", DAY).unwrap();
        let issued = ca.issue(&Identity::hub("h").unwrap(), &[], &[], DAY).unwrap();
        let body: String = issued
            .key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        for dbg in [format!("{issued:?}"), format!("{ca:?}")] {
            assert!(
                !dbg.contains("PRIVATE KEY") && !dbg.contains(&body[..40]),
                "{dbg}"
            );
        }
    }
}
