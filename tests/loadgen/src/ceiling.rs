//! Ceilings: bare servers that answer the hot paths with one fixed session, so a
//! benchmark can show what a real node achieves beside the most the same stack
//! allows on the same machine, driven by the same load generator in the same run.
//!
//! The HTTP ceiling is hyper's HTTP/1.1 server answering every `GET` (any path) with
//! the session as the hub's `GET /{db}/{id}` returns it; the gRPC ceiling is tonic
//! serving `Sessions`, whose `Get` returns the session as the hub's does (any db and
//! id) and whose other methods are unimplemented. Connection settings are the real
//! server's (nodelay, keep-alive with a header timeout, HTTP/2 keepalive); there is
//! no storage, authentication, admission control or metrics. Nothing needs
//! preloading, and a bearer token is ignored.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, ETAG};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use proto::v1::sessions_server::{Sessions, SessionsServer};
use proto::v1::{
    BatchGetRequest, BatchGetResponse, DeleteRequest, DeleteResponse, GetRequest, GetResponse, PutRequest,
    PutResponse, RevokeRequest, RevokeResponse, Session, WatchEvent, WatchRequest,
};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::Status;

use crate::config::{body, key};
use crate::BenchError;

/// Where the ceilings listen and what they serve.
#[derive(Clone, Debug)]
pub struct CeilingConfig {
    /// The HTTP/1.1 ceiling's address.
    pub http: SocketAddr,
    /// The gRPC ceiling's address.
    pub grpc: SocketAddr,
    /// Bytes of the session body, as the benchmark's `--value-size`.
    pub value_size: usize,
}

/// The fixed session's revision: a first revision, as preloading creates.
const REV: &str = "1-967a00dff5e02add41819138abb3284d";
const ETAG_VALUE: &str = "\"1-967a00dff5e02add41819138abb3284d\"";
/// The expiry [`body`] writes.
const EXPIRES_AT: u64 = 4_102_444_800;
/// The hub's sequence after a 10,000-session preload.
const UPDATE_SEQ: u64 = 10_000;
/// The real server's default `--header-timeout-secs`.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The real server's HTTP/2 keepalive interval.
const HTTP2_KEEPALIVE: Duration = Duration::from_secs(20);

/// The session as the hub's HTTP `GET` returns it: `_id`, `_rev`, then the body's members.
pub fn session_json(value_size: usize) -> Bytes {
    let mut doc = body(value_size, 0);
    let head = format!("{{\"_id\":\"{}\",\"_rev\":\"{REV}\",", key(0));
    doc.splice(0..1, head.into_bytes());
    doc.into()
}

/// The session as the hub's `Sessions.Get` returns it.
pub fn get_response(value_size: usize) -> GetResponse {
    GetResponse {
        session: Some(Session {
            id: key(0),
            rev: REV.to_owned(),
            body: body(value_size, 0).into(),
            expires_at: EXPIRES_AT,
        }),
        update_seq: UPDATE_SEQ,
        not_found_reason: String::new(),
    }
}

/// Binds both listeners, calls `on_ready` with their addresses, then serves until
/// `shutdown` completes or a server fails.
pub async fn serve(
    cfg: &CeilingConfig,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(SocketAddr, SocketAddr),
) -> Result<(), BenchError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| BenchError::Serve(format!("{what}: {e}"));
    let http = TcpListener::bind(cfg.http)
        .await
        .map_err(|e| fail(&format!("binding {}", cfg.http), &e))?;
    let grpc = TcpListener::bind(cfg.grpc)
        .await
        .map_err(|e| fail(&format!("binding {}", cfg.grpc), &e))?;
    let http_addr = http.local_addr().map_err(|e| fail("HTTP address", &e))?;
    let grpc_addr = grpc.local_addr().map_err(|e| fail("gRPC address", &e))?;
    let sessions = FixedSessions {
        response: get_response(cfg.value_size),
    };
    let grpc_server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE))
        .add_service(SessionsServer::new(sessions))
        .serve_with_incoming(TcpIncoming::from(grpc).with_nodelay(Some(true)));
    on_ready(http_addr, grpc_addr);
    tokio::select! {
        r = serve_http(http, session_json(cfg.value_size)) => r,
        r = grpc_server => r.map_err(|e| fail("gRPC", &e)),
        () = shutdown => Ok(()),
    }
}

/// Accepts HTTP/1.1 connections for ever, each served in a task of its own.
async fn serve_http(listener: TcpListener, doc: Bytes) -> Result<(), BenchError> {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(_) => {
                // Out of descriptors, say: back off rather than spin, as a server would.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let doc = doc.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let r = answer(req.method(), &doc);
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `GET` of anything: the session, with the headers the hub sends; else 405.
fn answer(method: &Method, doc: &Bytes) -> Response<Full<Bytes>> {
    if method != Method::GET {
        let mut r = Response::new(Full::default());
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        return r;
    }
    let mut r = Response::new(Full::new(doc.clone()));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(ETAG, HeaderValue::from_static(ETAG_VALUE));
    r
}

/// `Sessions` with one fixed answer to `Get`.
struct FixedSessions {
    response: GetResponse,
}

#[tonic::async_trait]
impl Sessions for FixedSessions {
    async fn get(&self, _req: tonic::Request<GetRequest>) -> Result<tonic::Response<GetResponse>, Status> {
        Ok(tonic::Response::new(self.response.clone()))
    }

    async fn batch_get(
        &self,
        _req: tonic::Request<BatchGetRequest>,
    ) -> Result<tonic::Response<BatchGetResponse>, Status> {
        Err(Status::unimplemented("the ceiling serves Get only"))
    }

    async fn put(&self, _req: tonic::Request<PutRequest>) -> Result<tonic::Response<PutResponse>, Status> {
        Err(Status::unimplemented("the ceiling serves Get only"))
    }

    async fn delete(
        &self,
        _req: tonic::Request<DeleteRequest>,
    ) -> Result<tonic::Response<DeleteResponse>, Status> {
        Err(Status::unimplemented("the ceiling serves Get only"))
    }

    type WatchStream = tonic::codegen::BoxStream<WatchEvent>;

    async fn watch(
        &self,
        _req: tonic::Request<WatchRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("the ceiling serves Get only"))
    }

    async fn revoke(
        &self,
        _req: tonic::Request<RevokeRequest>,
    ) -> Result<tonic::Response<RevokeResponse>, Status> {
        Err(Status::unimplemented("the ceiling serves Get only"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_is_a_json_object_of_about_the_value_size() {
        let doc = session_json(1024);
        let v: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        assert_eq!(v["_id"], key(0));
        assert_eq!(v["_rev"], REV);
        assert_eq!(v["expires_at"], EXPIRES_AT);
        assert!((1024..1200).contains(&doc.len()), "{} bytes", doc.len());
        assert_eq!(ETAG_VALUE, format!("\"{REV}\""));
    }

    /// The load generator drives the ceilings without preloading, gRPC with several
    /// streams per connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_load_generator_drives_both_ceilings() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let cfg = CeilingConfig {
            http: any,
            grpc: any,
            value_size: 1024,
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            serve(
                &cfg,
                async {
                    let _ = stopped.await;
                },
                |h, g| {
                    let _ = tx.send((h, g));
                },
            )
            .await
        });
        let (http, grpc) = rx.await.unwrap();
        for (workload, connections, streams) in
            [(crate::Workload::HttpGet, 2, 1), (crate::Workload::GrpcGet, 2, 3)]
        {
            let bench = crate::BenchConfig {
                http,
                grpc,
                db: "bench".into(),
                connections,
                streams,
                duration: Duration::from_millis(300),
                keys: 10,
                value_size: 1024,
                workload,
                token: Some("ignored".into()),
                tls: None,
            };
            let r = crate::run(&bench).await.unwrap();
            assert!(r.ops > 0, "{workload:?}: no operations");
            assert_eq!(r.errors, 0, "{workload:?}");
            assert_eq!(r.streams, streams, "{workload:?}");
        }
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}
