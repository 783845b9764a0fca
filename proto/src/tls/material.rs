//! TLS material read from PEM files, and the rustls configs built from it.
//!
//! A node has a CA bundle plus its own certificate chain and key; a client may have
//! only the CA bundle. Configs use the `ring` provider explicitly and TLS 1.3 and 1.2
//! only, so nothing depends on a process-wide default provider.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::FromDer;

use super::{Identity, TlsError};

/// Where a node's or client's TLS files are. Certificate and key go together; a
/// client that only verifies servers has just the CA bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPaths {
    /// PEM bundle of the fleet CA certificate(s) (several during a CA rotation).
    pub ca: PathBuf,
    /// PEM chain of this holder's certificate, leaf first.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1) of `cert`.
    pub key: Option<PathBuf>,
}

impl TlsPaths {
    /// The files that make up this material, for change detection.
    pub fn files(&self) -> Vec<&Path> {
        let mut v = vec![self.ca.as_path()];
        v.extend(self.cert.as_deref());
        v.extend(self.key.as_deref());
        v
    }
}

/// Whether a server asks for client certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientAuth {
    /// A client may present a certificate (verified against the CA) or none at all
    /// (applications may use bearer tokens instead).
    Optional,
    /// A client must present a certificate issued by the CA (node-to-node links).
    Required,
}

/// The process's own certificate chain and key, with what it says.
struct Own {
    key: Arc<CertifiedKey>,
    identity: Identity,
    not_after: i64,
}

/// CA roots plus, optionally, the holder's own certificate and key, loaded and checked.
///
/// `Debug` shows the identity and expiry, never key material.
pub struct TlsMaterial {
    roots: Arc<RootCertStore>,
    ca_count: usize,
    own: Option<Own>,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca_certs", &self.ca_count)
            .field("identity", &self.own.as_ref().map(|o| o.identity.to_uri()))
            .field("not_after", &self.own.as_ref().map(|o| o.not_after))
            .field("key", &self.own.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The crypto provider every Sessionfleet config uses: rustls' `ring`.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.3 and 1.2; nothing older.
const VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })
}

fn pem_err(path: &Path, what: impl Into<String>) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        what: what.into(),
    }
}

/// Parses every `CERTIFICATE` section of a PEM file; at least one must be there.
fn parse_certs(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(path, format!("not a valid PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(pem_err(path, "contains no PEM CERTIFICATE"));
    }
    Ok(certs)
}

/// Parses the first private key of a PEM file. The error never quotes the file: a
/// PEM parser's message can echo a line of it.
fn parse_key(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| {
        let why = match e {
            rustls_pki_types::pem::Error::NoItemsFound => "contains no PEM private key",
            _ => "is not a valid PEM private key",
        };
        pem_err(path, format!("{why} (expected PKCS#8, SEC1 or PKCS#1)"))
    })
}

/// Seconds since the Unix epoch of a DER certificate's notAfter.
pub(crate) fn cert_not_after(der: &[u8]) -> Result<i64, TlsError> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| TlsError::BadCertificate(format!("cannot parse certificate: {e}")))?;
    Ok(cert.validity().not_after.timestamp())
}

impl TlsMaterial {
    /// Reads and checks the files: the CA bundle (at least one certificate), and if given
    /// the certificate chain and the key, which must match and whose leaf must carry a
    /// Sessionfleet identity. An expired own certificate is loaded (peers will refuse it);
    /// see [`TlsMaterial::not_after`].
    pub fn load(paths: &TlsPaths) -> Result<TlsMaterial, TlsError> {
        let ca = read(&paths.ca)?;
        let mut own_files = None;
        match (&paths.cert, &paths.key) {
            (Some(c), Some(k)) => own_files = Some((c.as_path(), read(c)?, k.as_path(), read(k)?)),
            (None, None) => {}
            (Some(_), None) => return Err(TlsError::HalfPair("certificate")),
            (None, Some(_)) => return Err(TlsError::HalfPair("key")),
        }
        Self::from_pem(
            &paths.ca,
            &ca,
            own_files
                .as_ref()
                .map(|(c, cb, k, kb)| (*c, &cb[..], *k, &kb[..])),
        )
    }

    /// As [`TlsMaterial::load`], from bytes already read (`own` = cert path, cert PEM,
    /// key path, key PEM; the paths only name the files in errors).
    pub(crate) fn from_pem(
        ca_path: &Path,
        ca: &[u8],
        own: Option<(&Path, &[u8], &Path, &[u8])>,
    ) -> Result<TlsMaterial, TlsError> {
        let ca_certs = parse_certs(ca_path, ca)?;
        let mut roots = RootCertStore::empty();
        for (i, c) in ca_certs.iter().enumerate() {
            roots
                .add(c.clone())
                .map_err(|e| pem_err(ca_path, format!("CA certificate #{} is unusable: {e}", i + 1)))?;
        }
        let own = match own {
            None => None,
            Some((cert_path, cert_pem, key_path, key_pem)) => {
                let chain = parse_certs(cert_path, cert_pem)?;
                let key = parse_key(key_path, key_pem)?;
                let key =
                    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| TlsError::KeyMismatch {
                        cert: cert_path.to_owned(),
                        key: key_path.to_owned(),
                        why: e.to_string(),
                    })?;
                let leaf = key.cert[0].as_ref();
                let identity =
                    Identity::from_cert_der(leaf).map_err(|e| pem_err(cert_path, e.to_string()))?;
                let not_after = cert_not_after(leaf).map_err(|e| pem_err(cert_path, e.to_string()))?;
                Some(Own {
                    key: Arc::new(key),
                    identity,
                    not_after,
                })
            }
        };
        Ok(TlsMaterial {
            roots: Arc::new(roots),
            ca_count: ca_certs.len(),
            own,
        })
    }

    /// The identity of the own certificate, if there is one.
    pub fn identity(&self) -> Option<&Identity> {
        self.own.as_ref().map(|o| &o.identity)
    }

    /// The own certificate's notAfter in seconds since the Unix epoch, if there is one.
    pub fn not_after(&self) -> Option<i64> {
        self.own.as_ref().map(|o| o.not_after)
    }

    /// The CA roots peers are verified against.
    pub fn roots(&self) -> &Arc<RootCertStore> {
        &self.roots
    }

    /// A server config presenting the own certificate, verifying client certificates
    /// against the CA roots as `client_auth` says, offering `alpn` in preference order.
    pub fn server_config(
        &self,
        client_auth: ClientAuth,
        alpn: &[&[u8]],
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let own = self.own.as_ref().ok_or(TlsError::NoOwnCertificate)?;
        let provider = provider();
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider.clone());
        let verifier = match client_auth {
            ClientAuth::Optional => verifier.allow_unauthenticated(),
            ClientAuth::Required => verifier,
        }
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(VERSIONS)
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(own.key.clone())));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// A client config verifying servers against the CA roots, presenting the own
    /// certificate if there is one, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = provider();
        let verifier = WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(VERSIONS)
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_webpki_verifier(verifier);
        let mut config = match &self.own {
            Some(own) => builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(own.key.clone()))),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}
