//! The gRPC API: `Sessions` for edge-clients, `Replication` for fleet nodes.

mod replication;
mod sessions;
mod status;

use std::sync::Arc;

use proto::tls::Identity;
use security::{Principal, Role};
use tonic::{Request, Status};

use proto::v1::replication_server::ReplicationServer;
use proto::v1::sessions_server::SessionsServer;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;

use crate::auth::{check, Need, Refusal};
use crate::node::Shared;
use crate::transport::Peer;

pub(crate) use replication::merge_revisions;
pub(crate) use status::to_status;

impl From<Refusal> for Status {
    fn from(r: Refusal) -> Status {
        match r {
            Refusal::Unauthenticated(reason) => Status::unauthenticated(reason),
            Refusal::Forbidden(reason) => Status::permission_denied(reason),
        }
    }
}

/// What a gRPC caller presented.
pub(crate) enum Caller {
    /// A verified identity: a client certificate's, or a fleet node's certificate or
    /// node token. Node identities still need the fleet's admission.
    Identity(Identity),
    /// A bearer token of the secrets file.
    Token(Principal),
    Anonymous,
}

/// Who sent `req`. gRPC takes bearer tokens and certificates; Basic credentials are
/// refused (verifying a password cannot happen in a synchronous interceptor).
pub(crate) fn caller<T>(shared: &Shared, req: &Request<T>) -> Result<Caller, Refusal> {
    let identity = req.extensions().get::<Peer>().and_then(|p| p.identity.clone());
    let (Some(auth), Some(value)) = (&shared.config.auth, req.metadata().get("authorization")) else {
        return Ok(identity.map_or(Caller::Anonymous, Caller::Identity));
    };
    let value = value
        .to_str()
        .map_err(|_| Refusal::Unauthenticated("the authorization metadata is not text".into()))?;
    match crate::auth::parse_authorization(value).map_err(|r| r.count("malformed"))? {
        crate::auth::Credential::Bearer(token) => match auth.node(token) {
            Some(node) => Ok(Caller::Identity(node)),
            None => auth.bearer(token).map(Caller::Token).ok_or_else(|| {
                Refusal::Unauthenticated("the bearer token is not valid".into()).count("bad_token")
            }),
        },
        _ => Err(Refusal::Unauthenticated(
            "gRPC calls authenticate with a bearer token or a client certificate".into(),
        )
        .count("malformed")),
    }
}

/// Admits a call needing `role` on a service named `what`.
fn authorize(shared: &Shared, req: Request<()>, role: Role, what: &str) -> Result<Request<()>, Status> {
    if shared.config.auth.is_none() {
        return Ok(req);
    }
    let principal = match caller(shared, &req)? {
        Caller::Identity(id @ Identity::Client { .. }) => Some(Principal::from_identity(&id)),
        Caller::Identity(node) => Some(crate::auth::node_principal(&shared.fleet, &node)?),
        Caller::Token(p) => Some(p),
        Caller::Anonymous => None,
    };
    check(principal.as_ref(), Need::Role(role), || what.to_owned())?;
    Ok(req)
}

/// Serves gRPC until shutdown.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let shutdown = shared.shutdown.clone();
    let sessions = InterceptedService::new(
        SessionsServer::new(sessions::SessionsService::new(shared.clone()))
            .max_decoding_message_size(shared.config.limits.max_body_bytes),
        {
            let shared = shared.clone();
            move |req| authorize(&shared, req, Role::App, "Sessions")
        },
    );
    let result = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)))
        .add_service(sessions)
        .add_service(InterceptedService::new(
            ReplicationServer::new(replication::ReplicationService::new(shared.clone()))
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
            {
                let shared = shared.clone();
                move |req| replication::admit(&shared, req)
            },
        ))
        .serve_with_incoming_shutdown(
            shared
                .transport
                .clone()
                .incoming(listener, proto::tls::ALPN_GRPC, "grpc", shutdown.clone()),
            shutdown.cancelled_owned(),
        )
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "gRPC server failed");
    }
}
