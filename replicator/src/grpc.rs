//! A fleet node over gRPC (the `Replication` service). All calls of one peer
//! share one HTTP/2 connection; a continuous pull keeps one changes stream open.

use std::time::Duration;

use async_trait::async_trait;
use proto::v1::replication_client::ReplicationClient;
use proto::v1::{
    ChangesRequest, DbInfoRequest, DocRevs, FetchRevsRequest, GetCheckpointRequest, PutCheckpointRequest,
    Revision, RevsDiffRequest, WriteRevsRequest,
};
use store::{DocId, Replicated, Rev};
use tokio::sync::Mutex;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};

use crate::peer::{ChangeRow, ChangesBatch, CheckpointDoc, Peer, PeerError, PeerInfo, Seq, WriteFailure};

/// A database on a fleet node, reached over gRPC.
pub struct GrpcPeer {
    client: ReplicationClient<Channel>,
    url: String,
    db: String,
    /// Who we are, for the remote's fleet status ("eu-west/eu-west-1").
    me: String,
    /// An open continuous changes stream and the sequence it has reached.
    stream: Mutex<Option<(u64, Streaming<proto::v1::ChangesBatch>)>>,
    create_opts: store::DbOptions,
}

impl GrpcPeer {
    /// One HTTP/2 connection to `url` (`http://host:port`), made lazily and
    /// re-made after failures, to share between peers: a spoke uses one for all
    /// its pushes and one for all its pulls.
    pub fn channel(url: &str, connect_timeout: Duration) -> Result<Channel, PeerError> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| PeerError::Protocol {
                peer: url.into(),
                reason: e.to_string(),
            })?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        Ok(endpoint.connect_lazy())
    }

    /// A peer on database `db` over `channel` to `url`; `me` names the caller
    /// in the remote's fleet status.
    pub fn new(channel: Channel, url: &str, db: &str, me: &str) -> GrpcPeer {
        let client = ReplicationClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        GrpcPeer {
            client,
            url: url.into(),
            db: db.into(),
            me: me.into(),
            stream: Mutex::new(None),
            create_opts: Default::default(),
        }
    }

    /// Options for the database if this peer has to create it (push target).
    pub fn with_create_options(mut self, opts: store::DbOptions) -> GrpcPeer {
        self.create_opts = opts;
        self
    }

    fn err(&self, s: Status) -> PeerError {
        match s.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled | Code::Aborted => {
                PeerError::Unreachable {
                    peer: self.describe(),
                    reason: s.message().to_owned(),
                }
            }
            code => PeerError::Refused {
                peer: self.describe(),
                status: format!("{code:?}"),
                reason: s.message().to_owned(),
            },
        }
    }

    fn protocol(&self, reason: impl Into<String>) -> PeerError {
        PeerError::Protocol {
            peer: self.describe(),
            reason: reason.into(),
        }
    }

    fn batch(&self, b: proto::v1::ChangesBatch) -> Result<ChangesBatch, PeerError> {
        let rows = b
            .changes
            .into_iter()
            .map(|c| {
                Ok(ChangeRow {
                    seq: Seq::Num(c.seq),
                    id: DocId::new(&c.id).map_err(|e| self.protocol(e.to_string()))?,
                    revs: c
                        .revs
                        .iter()
                        .map(|r| r.parse())
                        .collect::<Result<_, _>>()
                        .map_err(|e: store::Error| self.protocol(e.to_string()))?,
                    committed_ms: Some(c.committed_ms),
                })
            })
            .collect::<Result<Vec<_>, PeerError>>()?;
        Ok(ChangesBatch {
            rows,
            last_seq: Seq::Num(b.last_seq),
            pending: Some(b.update_seq.saturating_sub(b.last_seq)),
        })
    }
}

fn doc_revs(list: Vec<(DocId, Vec<Rev>)>) -> Vec<DocRevs> {
    list.into_iter()
        .map(|(id, revs)| DocRevs {
            id: id.to_string(),
            revs: revs.iter().map(Rev::to_string).collect(),
        })
        .collect()
}

/// The wire form of a replicated revision.
pub fn to_revision(d: Replicated) -> Revision {
    Revision {
        id: d.id.to_string(),
        path: d.path.iter().map(Rev::to_string).collect(),
        deleted: d.deleted,
        body: d.body.into(),
    }
}

/// A replicated revision from its wire form.
pub fn from_revision(r: Revision) -> Result<Replicated, store::Error> {
    Ok(Replicated {
        id: DocId::new(&r.id)?,
        path: r.path.iter().map(|p| p.parse()).collect::<Result<_, _>>()?,
        deleted: r.deleted,
        body: r.body.to_vec(),
    })
}

#[async_trait]
impl Peer for GrpcPeer {
    fn describe(&self) -> String {
        format!("{}/{}", self.url, self.db)
    }

    fn db_name(&self) -> String {
        self.db.clone()
    }

    async fn info(&self, create: bool) -> Result<PeerInfo, PeerError> {
        let r = self
            .client
            .clone()
            .db_info(DbInfoRequest {
                db: self.db.clone(),
                create,
                expiry_field: self.create_opts.expiry_field.clone().unwrap_or_default(),
                revs_limit: self.create_opts.revs_limit.unwrap_or(0),
            })
            .await
            .map_err(|s| self.err(s))?
            .into_inner();
        Ok(PeerInfo {
            uuid: r.store_uuid,
            update_seq: Seq::Num(r.update_seq),
        })
    }

    async fn changes(
        &self,
        since: &Seq,
        limit: usize,
        wait: Option<Duration>,
    ) -> Result<ChangesBatch, PeerError> {
        let since_n = since
            .as_u64()
            .ok_or_else(|| self.protocol(format!("non-integer sequence {since}")))?;
        let mut guard = self.stream.lock().await;
        // Reuse the open stream if it is where we are; otherwise open one here.
        if !matches!(&*guard, Some((at, _)) if *at == since_n) || wait.is_none() {
            let req = ChangesRequest {
                db: self.db.clone(),
                since: since_n,
                batch_size: limit.min(u32::MAX as usize) as u32,
                continuous: wait.is_some(),
                peer: self.me.clone(),
            };
            let stream = self
                .client
                .clone()
                .changes(req)
                .await
                .map_err(|s| self.err(s))?
                .into_inner();
            *guard = Some((since_n, stream));
        }
        let Some((at, stream)) = guard.as_mut() else {
            return Err(self.protocol("no stream"));
        };
        let next = match wait {
            Some(w) => match tokio::time::timeout(w, stream.message()).await {
                Err(_) => {
                    return Ok(ChangesBatch {
                        rows: Vec::new(),
                        last_seq: since.clone(),
                        pending: Some(0),
                    })
                }
                Ok(m) => m,
            },
            None => stream.message().await,
        };
        match next {
            Ok(Some(b)) => {
                *at = b.last_seq;
                let out = self.batch(b);
                if wait.is_none() {
                    *guard = None;
                }
                out
            }
            Ok(None) => {
                *guard = None;
                Ok(ChangesBatch {
                    rows: Vec::new(),
                    last_seq: since.clone(),
                    pending: Some(0),
                })
            }
            Err(s) => {
                *guard = None;
                Err(self.err(s))
            }
        }
    }

    async fn revs_diff(&self, revs: Vec<(DocId, Vec<Rev>)>) -> Result<Vec<(DocId, Vec<Rev>)>, PeerError> {
        let r = self
            .client
            .clone()
            .revs_diff(RevsDiffRequest {
                db: self.db.clone(),
                docs: doc_revs(revs),
            })
            .await
            .map_err(|s| self.err(s))?
            .into_inner();
        r.missing
            .into_iter()
            .map(|d| {
                let id = DocId::new(&d.id).map_err(|e| self.protocol(e.to_string()))?;
                let revs = d
                    .revs
                    .iter()
                    .map(|r| r.parse())
                    .collect::<Result<_, store::Error>>()
                    .map_err(|e| self.protocol(e.to_string()))?;
                Ok((id, revs))
            })
            .collect()
    }

    async fn fetch(&self, wanted: Vec<(DocId, Vec<Rev>)>) -> Result<Vec<Replicated>, PeerError> {
        let r = self
            .client
            .clone()
            .fetch_revs(FetchRevsRequest {
                db: self.db.clone(),
                docs: doc_revs(wanted),
            })
            .await
            .map_err(|s| self.err(s))?
            .into_inner();
        r.revisions
            .into_iter()
            .map(|rev| from_revision(rev).map_err(|e| self.protocol(e.to_string())))
            .collect()
    }

    async fn write(&self, docs: Vec<Replicated>) -> Result<Vec<WriteFailure>, PeerError> {
        let req = WriteRevsRequest {
            db: self.db.clone(),
            revisions: docs.into_iter().map(to_revision).collect(),
            peer: self.me.clone(),
        };
        let r = self
            .client
            .clone()
            .write_revs(req)
            .await
            .map_err(|s| self.err(s))?
            .into_inner();
        Ok(r.errors
            .into_iter()
            .map(|e| WriteFailure {
                id: e.id,
                rev: e.rev,
                error: format!("{}: {}", e.error, e.reason),
            })
            .collect())
    }

    async fn get_checkpoint(&self, id: &str) -> Result<Option<CheckpointDoc>, PeerError> {
        let r = self
            .client
            .clone()
            .get_checkpoint(GetCheckpointRequest {
                db: self.db.clone(),
                replication_id: id.into(),
            })
            .await
            .map_err(|s| self.err(s))?
            .into_inner();
        if !r.found {
            return Ok(None);
        }
        let body = serde_json::from_slice(&r.body).map_err(|e| self.protocol(e.to_string()))?;
        Ok(Some(CheckpointDoc {
            rev: format!("0-{}", r.rev),
            body,
        }))
    }

    async fn put_checkpoint(
        &self,
        id: &str,
        rev: Option<&str>,
        body: &serde_json::Value,
    ) -> Result<String, PeerError> {
        let rev = match rev {
            None => 0,
            Some(r) => r
                .strip_prefix("0-")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| self.protocol(format!("bad _local rev {r}")))?,
        };
        let req = PutCheckpointRequest {
            db: self.db.clone(),
            replication_id: id.into(),
            rev,
            body: serde_json::to_vec(body).unwrap_or_default().into(),
        };
        let r = self
            .client
            .clone()
            .put_checkpoint(req)
            .await
            .map_err(|s| self.err(s))?
            .into_inner();
        Ok(format!("0-{}", r.rev))
    }
}
