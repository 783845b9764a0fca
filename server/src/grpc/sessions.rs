//! `Sessions`: Get, BatchGet, Put, Delete, and the Watch invalidation stream.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::v1::sessions_server::Sessions;
use proto::v1::{
    watch_event, BatchGetRequest, BatchGetResponse, DeleteRequest, DeleteResponse, GetRequest, GetResponse,
    PutRequest, PutResponse, RevokeRequest, RevokeResponse, Session, WatchChange, WatchEvent, WatchHeartbeat,
    WatchRequest, WatchStart,
};
use store::{ChangesQuery, Database, DbName, DocId, DocInput, Edit, ReadOptions, Rev};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::to_status;
use crate::node::Shared;

/// How often an idle Watch stream says it is alive.
const WATCH_HEARTBEAT: Duration = Duration::from_secs(1);

pub(crate) struct SessionsService {
    shared: Arc<Shared>,
}

impl SessionsService {
    pub fn new(shared: Arc<Shared>) -> SessionsService {
        SessionsService { shared }
    }

    /// Sheds the call at capacity (see [`crate::admission`]).
    fn admit(&self) -> Result<crate::admission::Admitted, Status> {
        self.shared
            .admission
            .try_admit("grpc")
            .map_err(|o| Status::resource_exhausted(o.reason()))
    }

    fn db(&self, name: &str) -> Result<Database, Status> {
        let name = DbName::new(name).map_err(to_status)?;
        self.shared.store.db(&name).map_err(to_status)
    }

    fn get_one(db: &Database, id: &str) -> Result<GetResponse, Status> {
        let update_seq = db.update_seq();
        let id = DocId::new(id).map_err(to_status)?;
        let (session, not_found_reason) = match db.get(&id, &ReadOptions::default()) {
            Ok(doc) => (
                Some(Session {
                    id: doc.id.to_string(),
                    rev: doc.rev.to_string(),
                    expires_at: db.expiry_of(&doc.body).unwrap_or(0),
                    body: doc.body.into(),
                }),
                String::new(),
            ),
            Err(store::Error::NotFound { reason, .. }) => (None, reason.to_owned()),
            Err(e) => return Err(to_status(e)),
        };
        Ok(GetResponse {
            session,
            update_seq,
            not_found_reason,
        })
    }
}

fn observe(method: &'static str, started: Instant, ok: bool) {
    metrics::counter!("grpc_requests_total", "method" => method, "ok" => if ok { "true" } else { "false" })
        .increment(1);
    metrics::histogram!("grpc_request_duration_seconds", "method" => method)
        .record(started.elapsed().as_secs_f64());
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Sessions for SessionsService {
    async fn get(&self, req: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let _admitted = self.admit()?;
        let started = Instant::now();
        let req = req.into_inner();
        let r = self.db(&req.db).and_then(|db| Self::get_one(&db, &req.id));
        observe("get", started, r.is_ok());
        r.map(Response::new)
    }

    async fn batch_get(&self, req: Request<BatchGetRequest>) -> Result<Response<BatchGetResponse>, Status> {
        let _admitted = self.admit()?;
        let started = Instant::now();
        let req = req.into_inner();
        if req.ids.len() > self.shared.config.limits.max_bulk_docs {
            return Err(Status::resource_exhausted(format!(
                "{} ids in one request; the limit is {}",
                req.ids.len(),
                self.shared.config.limits.max_bulk_docs
            )));
        }
        let r = self.db(&req.db).and_then(|db| {
            let results = req
                .ids
                .iter()
                .map(|id| Self::get_one(&db, id))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(BatchGetResponse { results })
        });
        observe("batch_get", started, r.is_ok());
        r.map(Response::new)
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let _admitted = self.admit()?;
        let started = Instant::now();
        let req = req.into_inner();
        let r = async {
            let db = self.db(&req.db)?;
            let id = DocId::new(&req.id).map_err(to_status)?;
            let max = self.shared.store.options().max_document_size;
            let mut input = DocInput::parse(&req.body, max).map_err(to_status)?;
            if !req.rev.is_empty() {
                input.rev = Some(req.rev.parse::<Rev>().map_err(to_status)?);
            }
            let rev = db.put(Edit::from_input(id, input)).await.map_err(to_status)?;
            Ok(PutResponse { rev: rev.to_string() })
        }
        .await;
        observe("put", started, r.is_ok());
        r.map(Response::new)
    }

    async fn delete(&self, req: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        let _admitted = self.admit()?;
        let started = Instant::now();
        let req = req.into_inner();
        let r = async {
            let db = self.db(&req.db)?;
            let id = DocId::new(&req.id).map_err(to_status)?;
            let rev: Rev = req.rev.parse().map_err(to_status)?;
            let rev = db.put(Edit::delete(id, rev)).await.map_err(to_status)?;
            Ok(DeleteResponse { rev: rev.to_string() })
        }
        .await;
        observe("delete", started, r.is_ok());
        r.map(Response::new)
    }

    async fn revoke(&self, req: Request<RevokeRequest>) -> Result<Response<RevokeResponse>, Status> {
        let started = Instant::now();
        let req = req.into_inner();
        let r = async {
            let db = self.db(&req.db)?;
            let id = DocId::new(&req.id).map_err(to_status)?;
            let wait = crate::revocation::timeout(req.timeout_ms);
            match crate::revocation::revoke(&self.shared, &db, &id, wait).await? {
                Some(r) => Ok(RevokeResponse {
                    rev: r.rev.to_string(),
                    applied: r.applied,
                    not_applied: r.not_applied,
                }),
                None => Err(Status::not_found(format!(
                    "session {:?} does not exist here; revoke it where it was written, or once it has replicated",
                    req.id
                ))),
            }
        }
        .await;
        observe("revoke", started, r.is_ok());
        r.map(Response::new)
    }

    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<WatchRequest>) -> Result<Response<WatchStream>, Status> {
        let req = req.into_inner();
        let db = self.db(&req.db)?;
        let update_seq = db.update_seq();
        let since = if req.from_now { update_seq } else { req.since };
        if since > update_seq {
            // The client has seen a future this store never had (restored from a
            // backup, or another store): it must drop what it cached.
            return Err(Status::out_of_range(format!(
                "since {since} is ahead of this database's sequence {update_seq}"
            )));
        }
        let (tx, rx) = mpsc::channel(256);
        let start = WatchEvent {
            event: Some(watch_event::Event::Start(WatchStart {
                since,
                update_seq,
                store_uuid: self.shared.store.uuid().to_owned(),
                incarnation: db.incarnation(),
            })),
        };
        let shutdown = self.shared.shutdown.clone();
        tokio::spawn(async move {
            if tx.send(Ok(start)).await.is_err() {
                return;
            }
            metrics::gauge!("grpc_watch_streams").increment(1.0);
            watch_loop(db, since, tx, shutdown).await;
            metrics::gauge!("grpc_watch_streams").decrement(1.0);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

async fn watch_loop(
    db: Database,
    mut since: u64,
    tx: mpsc::Sender<Result<WatchEvent, Status>>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut rx = db.subscribe();
    loop {
        let page = match db.changes(&ChangesQuery {
            since,
            limit: Some(1000),
            ..Default::default()
        }) {
            Ok(p) => p,
            Err(e) => {
                let _ = tx.send(Err(to_status(e))).await;
                return;
            }
        };
        for c in page.changes {
            let event = WatchEvent {
                event: Some(watch_event::Event::Change(WatchChange {
                    seq: c.seq,
                    id: c.id.to_string(),
                    rev: c.revs.first().map(Rev::to_string).unwrap_or_default(),
                    deleted: c.deleted,
                })),
            };
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
        since = page.last_seq;
        if page.pending > 0 {
            continue;
        }
        loop {
            tokio::select! {
                woke = rx.wait_past(since) => {
                    if let Err(e) = woke {
                        // Deleted: end the stream with NOT_FOUND, not heartbeats.
                        let _ = tx.send(Err(to_status(e))).await;
                        return;
                    }
                    break;
                }
                _ = tokio::time::sleep(WATCH_HEARTBEAT) => {
                    let hb = WatchEvent { event: Some(watch_event::Event::Heartbeat(WatchHeartbeat { update_seq: since })) };
                    if tx.send(Ok(hb)).await.is_err() { return; }
                }
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
            }
        }
    }
}
