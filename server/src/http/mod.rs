//! The CouchDB-compatible HTTP API.

mod auth;
mod body;
mod bulk;
mod changes;
mod db;
mod doc;
mod error;
mod fleet;
mod local;
mod query;
mod replicate;
mod revoke;
mod router;
mod server_info;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::node::Shared;
pub(crate) use body::Body;
use router::Endpoint;

/// The HTTP API speaks HTTP/1.1, as CouchDB does; ALPN must not offer h2.
const HTTP_ALPN: &[&[u8]] = &[proto::tls::ALPN_HTTP11];

/// Connections beyond `max_connections` answered with a 503 at once; beyond these
/// too, a connection is closed without an answer.
const OVERFLOW_CONNECTIONS: usize = 256;

/// Accepts connections until shutdown, then waits (bounded) for in-flight requests.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let limits = &shared.config.limits;
    let (header_timeout, max_connections) = (limits.header_timeout, limits.max_connections);
    let permits = Arc::new(Semaphore::new(max_connections));
    let overflow = Arc::new(Semaphore::new(OVERFLOW_CONNECTIONS));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        // Over the connection limit a client is told so (503, Retry-After) rather than
        // left hanging in the kernel's backlog; an excess beyond that is closed at once.
        let (permit, at_capacity) = match permits.clone().try_acquire_owned() {
            Ok(p) => (p, false),
            Err(_) => match overflow.clone().try_acquire_owned() {
                Ok(p) => (p, true),
                Err(_) => {
                    metrics::counter!("http_connections_refused_total", "answer" => "closed").increment(1);
                    drop(stream);
                    continue;
                }
            },
        };
        if at_capacity {
            metrics::counter!("http_connections_refused_total", "answer" => "503").increment(1);
        }
        let shared2 = shared.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // The handshake runs here, not in the accept loop: a client that never
            // finishes it holds up only its own connection (and its permit, until the
            // handshake timeout).
            let conn = match shared2.transport.secure(stream, peer, HTTP_ALPN).await {
                Ok(c) => c,
                Err(e) => return crate::transport::handshake_failed("http", peer, &e),
            };
            let caller = conn.peer().clone();
            let service = service_fn(move |mut req: Request<Incoming>| {
                let shared = shared2.clone();
                req.extensions_mut().insert(caller.clone());
                async move {
                    if at_capacity {
                        let reason = format!(
                            "the node has its maximum of {max_connections} connections open; retry after {} s or use another node",
                            crate::admission::Overloaded::RETRY_AFTER_SECS
                        );
                        let e = error::ApiError {
                            retry_after: Some(crate::admission::Overloaded::RETRY_AFTER_SECS),
                            ..error::ApiError::new(
                                hyper::StatusCode::SERVICE_UNAVAILABLE,
                                "service_unavailable",
                                reason,
                            )
                        };
                        return Ok::<_, Infallible>(e.into_response());
                    }
                    Ok::<_, Infallible>(handle(&shared, req).await)
                }
            });
            let http = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(!at_capacity)
                .serve_connection(TokioIo::new(conn), service);
            if let Err(e) = watcher.watch(http).await {
                tracing::debug!(%peer, error = %e, "connection ended with error");
            }
            drop(permit);
        });
    }
    drop(listener);
    let grace = shared.config.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            ?grace,
            "HTTP connections still open after the grace period; closing"
        );
    }
}

/// The metrics label of the endpoint a request goes to, or the error it gets.
pub(crate) fn route(method: &hyper::Method, uri: &hyper::Uri) -> Result<&'static str, error::ApiError> {
    Endpoint::parse(method, uri).map(|e| e.label())
}

/// Refuses a caller without the role `endpoint` needs (nothing to check when the
/// node has no authenticator).
async fn authorize(
    shared: &Shared,
    endpoint: &Endpoint,
    req: &Request<Incoming>,
) -> Result<(), error::ApiError> {
    if shared.config.auth.is_none() {
        return Ok(());
    }
    let need = endpoint.needs(req.method());
    if need == crate::auth::Need::Anyone {
        return Ok(());
    }
    let principal = auth::principal(shared, req).await?;
    crate::auth::check(principal.as_ref(), need, || {
        format!("{} {}", req.method(), endpoint.label())
    })?;
    Ok(())
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let endpoint = Endpoint::parse(req.method(), req.uri());
    let label = endpoint.as_ref().map_or("unknown", Endpoint::label);
    let method = req.method().clone();
    // Feeds wait for changes without working: they are not counted against capacity.
    let admitted = match &endpoint {
        Ok(Endpoint::Changes { .. }) | Err(_) => None,
        Ok(_) => Some(shared.admission.try_admit("http")),
    };
    let response = match (endpoint, admitted) {
        (_, Some(Err(overloaded))) => error::ApiError::overloaded(overloaded).into_response(),
        (Ok(e), _admitted) => match authorize(shared, &e, &req).await {
            Ok(()) => match e.handle(shared, req).await {
                Ok(r) => r,
                Err(e) => e.into_response(),
            },
            Err(e) => e.into_response(),
        },
        (Err(e), _) => e.into_response(),
    };
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "endpoint" => label, "method" => method.to_string(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "endpoint" => label)
        .record(started.elapsed().as_secs_f64());
    response
}
