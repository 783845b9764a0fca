//! A node's TLS from flags or the topology's `[tls]`, the refusal to serve
//! plaintext beyond loopback, and the node's secrets file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use proto::tls::{ReloadingTls, TlsPaths};
use server::Authenticator;
use tokio_util::sync::CancellationToken;
use topology::{NodeName, Topology};

/// How often certificate, key and CA files are checked for changes (SIGHUP
/// forces a check).
const TLS_POLL: Duration = Duration::from_secs(1);

/// TLS files given as flags; they override the topology's `[tls]`.
#[derive(Args, Clone, Debug, Default)]
pub(crate) struct TlsArgs {
    /// The fleet's CA bundle (PEM) that peers are verified against
    /// [default: the topology's `[tls] ca`].
    #[arg(long, env = "SESSIONFLEET_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// This process's certificate chain (PEM), from `sessionfleet certs`.
    #[arg(
        long,
        env = "SESSIONFLEET_TLS_CERT",
        requires = "tls_key",
        requires = "tls_ca"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM, mode 0600).
    #[arg(long, env = "SESSIONFLEET_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The flags' files, else node `node`'s files of the topology's `[tls]`.
    fn paths(&self, topology: Option<&Topology>, node: &str) -> anyhow::Result<Option<TlsPaths>> {
        if let Some(ca) = &self.tls_ca {
            return Ok(Some(TlsPaths {
                ca: ca.clone(),
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
            }));
        }
        let Some(files) = topology.and_then(|t| t.tls.as_ref()) else {
            return Ok(None);
        };
        let name = NodeName::new(node).map_err(|e| anyhow::anyhow!("node name {node:?}: {e}"))?;
        let f = files.for_node(&name);
        Ok(Some(TlsPaths {
            ca: f.ca,
            cert: Some(f.cert),
            key: Some(f.key),
        }))
    }

    /// TLS for a serving node named `node` listening on `addrs`, following
    /// rotations until `shutdown`. Without TLS, refuses any non-loopback address
    /// unless `insecure_plaintext`.
    pub fn for_node(
        &self,
        topology: Option<&Topology>,
        node: &str,
        addrs: &[SocketAddr],
        insecure_plaintext: bool,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Option<Arc<ReloadingTls>>> {
        match self.paths(topology, node)? {
            Some(paths) => {
                anyhow::ensure!(
                    paths.cert.is_some() && paths.key.is_some(),
                    "a node needs its own certificate: give --tls-cert and --tls-key with --tls-ca"
                );
                Ok(Some(self.load(paths, shutdown)?))
            }
            None => {
                if let Some(addr) = addrs.iter().find(|a| !a.ip().is_loopback()) {
                    anyhow::ensure!(
                        insecure_plaintext,
                        "refusing to serve plaintext on {addr}, which is not a loopback address: \
                         give the topology a [tls] section or --tls-ca/--tls-cert/--tls-key \
                         (make the files with `sessionfleet certs`), or --insecure-plaintext to \
                         accept anyone on the network reading and writing sessions"
                    );
                    tracing::warn!(%addr, "serving PLAINTEXT on a non-loopback address (--insecure-plaintext): sessions cross the network unencrypted");
                }
                Ok(None)
            }
        }
    }

    /// TLS for a client (CLI tools): the flags' CA (and certificate, if given),
    /// else the topology's CA.
    pub fn for_client(&self, topology: Option<&Topology>) -> anyhow::Result<Option<Arc<ReloadingTls>>> {
        let paths = match (&self.tls_ca, topology.and_then(|t| t.tls.as_ref())) {
            (Some(_), _) => self.paths(None, "")?,
            (None, Some(files)) => Some(TlsPaths {
                ca: files.ca.clone(),
                cert: None,
                key: None,
            }),
            (None, None) => None,
        };
        paths
            .map(|p| {
                let shown = p.ca.display().to_string();
                ReloadingTls::load(p)
                    .map(Arc::new)
                    .with_context(|| format!("loading TLS material (CA {shown})"))
            })
            .transpose()
    }

    fn load(&self, paths: TlsPaths, shutdown: &CancellationToken) -> anyhow::Result<Arc<ReloadingTls>> {
        let shown = format!(
            "CA {}, certificate {}",
            paths.ca.display(),
            paths
                .cert
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
        let tls =
            Arc::new(ReloadingTls::load(paths).with_context(|| format!("loading TLS material ({shown})"))?);
        tls.spawn_watcher(TLS_POLL, shutdown.clone());
        tracing::info!(files = %shown, "TLS on: certificates are re-read when they change and on SIGHUP");
        Ok(tls)
    }
}

/// How often the secrets file is checked for changes (SIGHUP forces a check).
const SECRETS_POLL: Duration = Duration::from_secs(1);

/// The node's secrets: `--secrets`, else the topology's `[auth] secrets`, else
/// `<data_dir>/secrets.toml`, generated at first start with a random admin password
/// (written beside it, mode 0600: the log says where, never what). Followed for
/// changes until `shutdown`.
pub(crate) fn node_auth(
    flag: Option<&Path>,
    topology: Option<&Topology>,
    data_dir: &Path,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<Authenticator>> {
    let configured = flag
        .map(Path::to_owned)
        .or_else(|| topology.and_then(|t| t.auth.as_ref()).map(|a| a.secrets.clone()));
    let path = match configured {
        Some(p) => p,
        None => {
            let p = data_dir.join(security::secrets::SECRETS_FILE);
            if p.exists() {
                p
            } else {
                std::fs::create_dir_all(data_dir)
                    .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
                let (p, admin) = security::Secrets::generate(data_dir)?;
                tracing::warn!(
                    secrets = %p.display(),
                    password_file = %admin.password_file.display(),
                    user = %admin.name,
                    "no secrets file configured: generated one with an admin user; its password is in the password file"
                );
                p
            }
        }
    };
    let auth = Arc::new(Authenticator::load(&path)?);
    let secrets = auth.secrets();
    if !secrets.has_admin() {
        tracing::warn!(secrets = %path.display(), "the secrets file names no admin: databases cannot be created or deleted over HTTP");
    }
    tracing::info!(secrets = %path.display(), users = secrets.user_names().count(), "authentication on");
    auth.spawn_watcher(SECRETS_POLL, shutdown.clone());
    Ok(auth)
}
