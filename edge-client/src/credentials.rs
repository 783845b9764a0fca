//! How an app server proves who it is: a client certificate (mutual TLS) or a
//! bearer token, sent with every call.

use std::fmt;
use std::sync::Arc;

use proto::tls::ReloadingTls;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;

use crate::error::ClientError;

/// An app server's credentials. Without any, a fleet with authentication
/// answers every call `UNAUTHENTICATED`.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use proto::tls::{ReloadingTls, TlsPaths};
/// # use edge_client::Credentials;
/// // A token minted with `sessionfleet secrets token --role app`:
/// let by_token = Credentials::token(std::fs::read_to_string("/etc/sessionfleet/app-token")?.trim())?;
/// // Or a certificate from `sessionfleet certs client --role app`:
/// let tls = ReloadingTls::load(TlsPaths {
///     ca: "/etc/sessionfleet/tls/ca.pem".into(),
///     cert: Some("/etc/sessionfleet/tls/app-1.pem".into()),
///     key: Some("/etc/sessionfleet/tls/app-1.key".into()),
/// })?;
/// let by_cert = Credentials::certificate(Arc::new(tls));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct Credentials {
    pub(crate) tls: Option<Arc<ReloadingTls>>,
    pub(crate) token: Option<Bearer>,
}

impl Credentials {
    /// No credentials (a loopback fleet without authentication).
    pub fn none() -> Credentials {
        Credentials::default()
    }

    /// A client certificate and the fleet CA.
    pub fn certificate(tls: Arc<ReloadingTls>) -> Credentials {
        Credentials {
            tls: Some(tls),
            token: None,
        }
    }

    /// A bearer token, sent as `authorization: Bearer <token>`.
    pub fn token(token: &str) -> Result<Credentials, ClientError> {
        Ok(Credentials {
            tls: None,
            token: Some(Bearer::new(token)?),
        })
    }

    /// These credentials plus a bearer token.
    pub fn with_token(mut self, token: &str) -> Result<Credentials, ClientError> {
        self.token = Some(Bearer::new(token)?);
        Ok(self)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("certificate", &self.tls.is_some())
            .field("token", &self.token)
            .finish()
    }
}

/// A bearer token ready to send; never printed.
#[derive(Clone)]
pub(crate) struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bearer(<redacted>)")
    }
}

impl Bearer {
    fn new(token: &str) -> Result<Bearer, ClientError> {
        let mut value = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| ClientError::Config("the token has characters a header cannot carry".into()))?;
        value.set_sensitive(true);
        Ok(Bearer(value))
    }
}

/// Adds the bearer token (if any) to every call.
#[derive(Clone, Default)]
pub(crate) struct Authorize(pub Option<Bearer>);

impl Interceptor for Authorize {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(Bearer(v)) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// The channel every Sessions call goes over.
pub(crate) type AuthChannel = InterceptedService<Channel, Authorize>;
