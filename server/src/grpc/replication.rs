//! `Replication`: CouchDB's replication protocol between fleet nodes, served
//! over the store. Spokes dial in; the hub never dials out.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use proto::tls::Identity;
use proto::v1::replication_server::Replication;
use proto::v1::{
    AcknowledgeRequest, AcknowledgeResponse, FanoutRequest, FanoutResponse, PriorityRequest,
    PriorityRevocation,
};
use proto::v1::{
    Change, ChangesBatch, ChangesRequest, DbInfoRequest, DbInfoResponse, DocRevs, FetchRevsRequest,
    FetchRevsResponse, GetCheckpointRequest, GetCheckpointResponse, PutCheckpointRequest,
    PutCheckpointResponse, Revision, RevsDiffRequest, RevsDiffResponse, WriteError, WriteRevsRequest,
    WriteRevsResponse,
};
use store::{ChangesQuery, Database, DbName, DbOptions, DocId, LocalId, OpenRev, Replicated, Rev};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::{to_status, Caller};
use crate::auth::{check, Need};
use crate::node::Shared;
use security::Role;

/// How often an idle continuous changes stream sends an empty batch.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Largest changes batch served.
const MAX_BATCH: usize = 5000;

/// Who is replicating, as the interceptor established it: the name the hub's
/// status page shows and the certificate identity behind it (`None` on a
/// plaintext loopback fleet, where the caller's own `peer` field is trusted).
#[derive(Clone, Debug, Default)]
pub(crate) struct Replicator {
    identity: Option<Identity>,
    name: Option<String>,
}

impl Replicator {
    /// The name to show: the certificate's, else what the caller says it is. A
    /// spoke claiming another spoke's name is refused.
    fn name(&self, claimed: &str) -> Result<String, Status> {
        match (&self.identity, &self.name) {
            (Some(Identity::Spoke { .. }), Some(name)) if !claimed.is_empty() && claimed != name => {
                Err(Status::permission_denied(format!(
                    "the certificate names {name}, but the caller says it is {claimed}"
                )))
            }
            (_, Some(name)) => Ok(name.clone()),
            (_, None) => Ok(claimed.to_owned()),
        }
    }
}

/// Admits a Replication call. The caller's certificate (or, without TLS, its node
/// token) must name a spoke of the current topology or a replicator/admin client; a
/// replicator or admin bearer token also admits. A plaintext node without
/// authentication (embedded in tests) admits everyone.
pub(crate) fn admit(shared: &Shared, mut req: Request<()>) -> Result<Request<()>, Status> {
    let identity = match super::caller(shared, &req)? {
        Caller::Identity(identity) => identity,
        Caller::Token(p) => {
            check(Some(&p), Need::Role(Role::Replicator), || "Replication".into())?;
            req.extensions_mut().insert(Replicator {
                identity: None,
                name: Some(format!("token/{}", p.name)),
            });
            return Ok(req);
        }
        Caller::Anonymous if shared.config.auth.is_none() && !shared.transport.is_tls() => {
            req.extensions_mut().insert(Replicator::default());
            return Ok(req);
        }
        Caller::Anonymous => return Err(Status::unauthenticated(
            "replication needs a client certificate issued by the fleet CA, or a node or replicator token",
        )),
    };
    let name = shared.fleet.admit(&identity).map_err(|reason| {
        tracing::warn!(identity = %identity.to_uri(), %reason, "replication refused");
        Status::permission_denied(reason)
    })?;
    req.extensions_mut().insert(Replicator {
        identity: Some(identity),
        name: Some(name),
    });
    Ok(req)
}

fn replicator<T>(req: &Request<T>) -> Replicator {
    req.extensions().get::<Replicator>().cloned().unwrap_or_default()
}

pub(crate) struct ReplicationService {
    shared: Arc<Shared>,
}

impl ReplicationService {
    pub fn new(shared: Arc<Shared>) -> ReplicationService {
        ReplicationService { shared }
    }

    fn db(&self, name: &str) -> Result<Database, Status> {
        let name = DbName::new(name).map_err(to_status)?;
        self.shared.store.db(&name).map_err(to_status)
    }

    /// The database, if it is still the incarnation the caller means.
    fn db_at(&self, name: &str, incarnation: &str) -> Result<Database, Status> {
        let db = self.db(name)?;
        if !incarnation.is_empty() && db.incarnation() != incarnation {
            return Err(Status::failed_precondition(format!(
                "database {name} was deleted and created again (incarnation {} is now {})",
                incarnation,
                db.incarnation()
            )));
        }
        Ok(db)
    }

    fn check_count(&self, n: usize) -> Result<(), Status> {
        let max = self.shared.config.limits.max_bulk_docs;
        if n > max {
            return Err(Status::resource_exhausted(format!(
                "{n} documents in one request; the limit is {max}"
            )));
        }
        Ok(())
    }
}

fn parse_doc_revs(d: &DocRevs) -> Result<(DocId, Vec<Rev>), Status> {
    let id = DocId::new(&d.id).map_err(to_status)?;
    Ok((id, parse_revs(&d.revs)?))
}

fn parse_revs(list: &[String]) -> Result<Vec<Rev>, Status> {
    list.iter()
        .map(|r| r.parse())
        .collect::<Result<_, _>>()
        .map_err(to_status)
}

/// Merges revisions a peer pushed into `db`: those that do not parse, and those the
/// store refuses, come back as per-document errors; the rest are durable on `Ok`.
/// Nothing of the batch is durable on `Err`: the whole call fails, to be retried.
///
/// Public for the fuzz target that feeds it decoded `WriteRevs` messages.
pub async fn merge_revisions(db: &Database, revisions: Vec<Revision>) -> store::Result<Vec<WriteError>> {
    let mut errors = Vec::new();
    let mut docs = Vec::with_capacity(revisions.len());
    for r in revisions {
        let parsed = DocId::new(&r.id).and_then(|id| {
            Ok(Replicated {
                id,
                path: r.path.iter().map(|p| p.parse()).collect::<Result<_, _>>()?,
                deleted: r.deleted,
                body: r.body.to_vec(),
            })
        });
        match parsed {
            Ok(d) => docs.push(d),
            Err(e) => errors.push(WriteError {
                id: r.id,
                rev: r.path.first().cloned().unwrap_or_default(),
                error: "bad_request".into(),
                reason: e.to_string(),
            }),
        }
    }
    for f in db.merge_reporting(docs).await? {
        errors.push(WriteError {
            id: f.id.to_string(),
            rev: f.rev.map(|r| r.to_string()).unwrap_or_default(),
            error: "rejected".into(),
            reason: f.error.to_string(),
        });
    }
    Ok(errors)
}

fn revs_strings(revs: &[Rev]) -> Vec<String> {
    revs.iter().map(Rev::to_string).collect()
}

type ChangesStream = Pin<Box<dyn Stream<Item = Result<ChangesBatch, Status>> + Send>>;
type PriorityStream = Pin<Box<dyn Stream<Item = Result<PriorityRevocation, Status>> + Send>>;

#[tonic::async_trait]
impl Replication for ReplicationService {
    async fn db_info(&self, req: Request<DbInfoRequest>) -> Result<Response<DbInfoResponse>, Status> {
        let req = req.into_inner();
        let name = DbName::new(&req.db).map_err(to_status)?;
        if req.create && self.shared.store.db(&name).is_err() {
            let opts = DbOptions {
                revs_limit: (req.revs_limit > 0).then_some(req.revs_limit),
                expiry_field: (!req.expiry_field.is_empty()).then(|| req.expiry_field.clone()),
            };
            match self.shared.store.create_db(&name, opts).await {
                Ok(()) | Err(store::Error::DbExists { .. }) => {}
                Err(e) => return Err(to_status(e)),
            }
        }
        let db = self.db(&req.db)?;
        let info = db.info();
        // A peer replicating with other options (expiry field, revs limit) would
        // judge expiry or stem differently and never converge: refuse it, naming both.
        let expiry_differs =
            !req.expiry_field.is_empty() && info.expiry_field.as_deref() != Some(&req.expiry_field);
        let limit_differs = req.revs_limit > 0 && req.revs_limit != info.revs_limit;
        if expiry_differs || limit_differs {
            return Err(Status::invalid_argument(format!(
                "database {} here has expiry_field {:?} and revs_limit {}; the peer has expiry_field {:?} and revs_limit {}",
                req.db,
                info.expiry_field.as_deref().unwrap_or(""),
                info.revs_limit,
                req.expiry_field,
                if req.revs_limit > 0 { req.revs_limit.to_string() } else { "unset".into() },
            )));
        }
        Ok(Response::new(DbInfoResponse {
            store_uuid: self.shared.store.uuid().to_owned(),
            update_seq: info.update_seq,
            doc_count: info.doc_count,
            incarnation: info.incarnation,
        }))
    }

    type ChangesStream = ChangesStream;

    async fn changes(&self, req: Request<ChangesRequest>) -> Result<Response<ChangesStream>, Status> {
        let caller = replicator(&req);
        let mut req = req.into_inner();
        req.peer = caller.name(&req.peer)?;
        let db = self.db_at(&req.db, &req.incarnation)?;
        let batch = (req.batch_size as usize).clamp(1, MAX_BATCH);
        if req.since > db.update_seq() {
            return Err(to_status(store::Error::SinceAhead {
                since: req.since,
                update_seq: db.update_seq(),
            }));
        }
        if !req.peer.is_empty() {
            tracing::debug!(peer = %req.peer, db = %req.db, since = req.since, "changes stream opened");
            metrics::counter!("replication_streams_opened_total", "peer" => req.peer.clone()).increment(1);
        }
        let (tx, rx) = mpsc::channel(4);
        let shutdown = self.shared.shutdown.clone();
        let fleet = self.shared.fleet.clone();
        fleet.stream_opened(&req.peer, caller.identity.as_ref());
        // Closes the stream in the fleet view however the task ends.
        struct Closed(Arc<crate::fleet::Fleet>, String);
        impl Drop for Closed {
            fn drop(&mut self) {
                self.0.stream_closed(&self.1);
            }
        }
        tokio::spawn(async move {
            let _closed = Closed(fleet.clone(), req.peer.clone());
            let mut since = req.since;
            let mut sub = db.subscribe();
            loop {
                let page = match db.changes(&ChangesQuery {
                    since,
                    limit: Some(batch),
                    all_leaves: true,
                    include_expired: true,
                    ..Default::default()
                }) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(to_status(e))).await;
                        return;
                    }
                };
                let update_seq = db.update_seq();
                let empty = page.changes.is_empty();
                let out = ChangesBatch {
                    changes: page
                        .changes
                        .into_iter()
                        .map(|c| Change {
                            seq: c.seq,
                            id: c.id.to_string(),
                            revs: revs_strings(&c.revs),
                            deleted: c.deleted,
                            committed_ms: c.committed_ms,
                        })
                        .collect(),
                    last_seq: page.last_seq,
                    update_seq,
                };
                since = page.last_seq;
                fleet.pulled(&req.peer, &req.db, since, update_seq);
                if !(empty && req.continuous) && tx.send(Ok(out)).await.is_err() {
                    return;
                }
                if !req.continuous {
                    return;
                }
                if !empty && page.pending > 0 {
                    continue;
                }
                // Caught up: wait for a commit, with heartbeats.
                loop {
                    tokio::select! {
                        woke = sub.wait_past(since) => {
                            if let Err(e) = woke {
                                // Deleted: end the stream with NOT_FOUND, not heartbeats.
                                let _ = tx.send(Err(to_status(e))).await;
                                return;
                            }
                            break;
                        }
                        _ = tokio::time::sleep(HEARTBEAT) => {
                            // A spoke the topology has dropped since it connected is cut
                            // off here, within a heartbeat of the reload.
                            if let Some(Err(reason)) = caller.identity.as_ref().map(|id| fleet.admit(id)) {
                                tracing::warn!(peer = %req.peer, %reason, "replication stream ended: no longer admitted");
                                let _ = tx.send(Err(Status::permission_denied(reason))).await;
                                return;
                            }
                            fleet.pulled(&req.peer, &req.db, since, db.update_seq());
                            let hb = ChangesBatch { changes: Vec::new(), last_seq: since, update_seq: db.update_seq() };
                            if tx.send(Ok(hb)).await.is_err() { return; }
                        }
                        _ = shutdown.cancelled() => return,
                        _ = tx.closed() => return,
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn revs_diff(&self, req: Request<RevsDiffRequest>) -> Result<Response<RevsDiffResponse>, Status> {
        let req = req.into_inner();
        self.check_count(req.docs.len())?;
        let db = self.db(&req.db)?;
        let mut missing = Vec::new();
        for d in &req.docs {
            // An id or revision this node refuses is certainly not here: report
            // it missing (its write will be refused and counted), rather than
            // failing everyone else's diff.
            let Ok((id, revs)) = parse_doc_revs(d) else {
                missing.push(d.clone());
                continue;
            };
            let diff = db.revs_diff(&id, &revs).map_err(to_status)?;
            if !diff.missing.is_empty() {
                missing.push(DocRevs {
                    id: d.id.clone(),
                    revs: revs_strings(&diff.missing),
                    ancestors: revs_strings(&diff.possible_ancestors),
                });
            }
        }
        Ok(Response::new(RevsDiffResponse { missing }))
    }

    async fn fetch_revs(
        &self,
        req: Request<FetchRevsRequest>,
    ) -> Result<Response<FetchRevsResponse>, Status> {
        let req = req.into_inner();
        self.check_count(req.docs.len())?;
        let db = self.db(&req.db)?;
        let mut out = FetchRevsResponse::default();
        for d in &req.docs {
            let (id, revs) = parse_doc_revs(d)?;
            let ancestors = parse_revs(&d.ancestors)?;
            let mut gone = Vec::new();
            for r in db.replication_revs(&id, revs, &ancestors).map_err(to_status)? {
                match r {
                    OpenRev::Ok(doc) => out.revisions.push(Revision {
                        id: doc.id.to_string(),
                        path: revs_strings(
                            doc.revisions.as_deref().unwrap_or(std::slice::from_ref(&doc.rev)),
                        ),
                        deleted: doc.deleted,
                        body: doc.body.into(),
                    }),
                    OpenRev::Missing(rev) => gone.push(rev.to_string()),
                }
            }
            if !gone.is_empty() {
                out.missing.push(DocRevs {
                    id: d.id.clone(),
                    revs: gone,
                    ancestors: Vec::new(),
                });
            }
        }
        Ok(Response::new(out))
    }

    async fn write_revs(
        &self,
        req: Request<WriteRevsRequest>,
    ) -> Result<Response<WriteRevsResponse>, Status> {
        let caller = replicator(&req);
        let req = req.into_inner();
        self.check_count(req.revisions.len())?;
        let db = self.db(&req.db)?;
        self.shared.fleet.pushed(&caller.name(&req.peer)?);
        let errors = merge_revisions(&db, req.revisions).await.map_err(to_status)?;
        Ok(Response::new(WriteRevsResponse { errors }))
    }

    async fn fanout(&self, req: Request<FanoutRequest>) -> Result<Response<FanoutResponse>, Status> {
        let caller = replicator(&req);
        let req = req.into_inner();
        let origin = caller.name(&req.origin)?;
        self.check_count(req.revisions.len())?;
        let db = self.db(&req.db)?;
        let timeout = crate::revocation::timeout(req.timeout_ms);
        crate::revocation::fan_out_here(&self.shared, &db, req.revisions, &origin, timeout)
            .await
            .map(Response::new)
    }

    type PriorityStream = PriorityStream;

    async fn priority(&self, req: Request<PriorityRequest>) -> Result<Response<PriorityStream>, Status> {
        let caller = replicator(&req);
        let peer = caller.name(&req.get_ref().peer)?;
        if peer.is_empty() {
            return Err(Status::invalid_argument(
                "a priority stream needs the caller's peer name",
            ));
        }
        let rx = self.shared.revocations.subscribe(&peer);
        tracing::debug!(%peer, "priority stream opened");
        let shutdown = self.shared.shutdown.clone().cancelled_owned();
        let revocations = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        let stream =
            futures_util::StreamExt::take_until(futures_util::StreamExt::map(revocations, Ok), shutdown);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn acknowledge(
        &self,
        req: Request<AcknowledgeRequest>,
    ) -> Result<Response<AcknowledgeResponse>, Status> {
        let caller = replicator(&req);
        let req = req.into_inner();
        let peer = caller.name(&req.peer)?;
        self.shared.revocations.acknowledge(req.id, &peer);
        Ok(Response::new(AcknowledgeResponse {}))
    }

    async fn get_checkpoint(
        &self,
        req: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        let req = req.into_inner();
        let db = self.db(&req.db)?;
        let id = LocalId::new(&req.replication_id).map_err(to_status)?;
        match db.get_local(&id) {
            Ok(doc) => Ok(Response::new(GetCheckpointResponse {
                found: true,
                rev: doc.rev,
                body: doc.body.into(),
            })),
            Err(store::Error::NotFound { .. }) => Ok(Response::new(GetCheckpointResponse::default())),
            Err(e) => Err(to_status(e)),
        }
    }

    async fn put_checkpoint(
        &self,
        req: Request<PutCheckpointRequest>,
    ) -> Result<Response<PutCheckpointResponse>, Status> {
        let req = req.into_inner();
        let db = self.db_at(&req.db, &req.incarnation)?;
        let id = LocalId::new(&req.replication_id).map_err(to_status)?;
        let body = store::DocInput::parse_local(&req.body, self.shared.store.options().max_document_size)
            .map_err(to_status)?
            .body;
        let rev = db.put_local(&id, req.rev, body).await.map_err(to_status)?;
        Ok(Response::new(PutCheckpointResponse { rev }))
    }
}
