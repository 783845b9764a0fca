//! A fleet node over gRPC (the `Replication` service). All calls of one peer
//! share one HTTP/2 connection; a continuous pull keeps one changes stream open.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use proto::v1::replication_client::ReplicationClient;
use proto::v1::{
    ChangesRequest, DbInfoRequest, DocRevs, FetchRevsRequest, GetCheckpointRequest, PutCheckpointRequest,
    Revision, RevsDiffRequest, WriteRevsRequest,
};
use store::{DocId, Replicated, Rev};
use tokio::sync::Mutex;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

use crate::peer::{
    ChangeRow, ChangesBatch, CheckpointDoc, Fetched, Missing, Peer, PeerError, PeerInfo, Seq, WriteFailure,
};

/// Time allowed for one call (or one message of a stream) by default: a node
/// that accepts a call and never answers must not hang a replication.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// The incarnation of the remote database seen by the last `info`: calls
    /// that depend on it (changes, checkpoints) are refused by the remote if it
    /// has been recreated since.
    incarnation: std::sync::Mutex<String>,
    call_timeout: Duration,
    /// `Bearer <token>`, sent with every call (never logged).
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl GrpcPeer {
    /// One HTTP/2 connection to `url` (`https://host:port`, or `http://` on a
    /// loopback fleet), made lazily and re-made after failures, to share between
    /// peers: a spoke uses one for all its pushes and one for all its pulls. Over
    /// `https://` it presents the certificate in `tls`, which is how the hub knows
    /// which spoke is calling.
    pub fn channel(
        url: &str,
        connect_timeout: Duration,
        tls: Option<&std::sync::Arc<proto::tls::ReloadingTls>>,
    ) -> Result<Channel, PeerError> {
        proto::tls::grpc_channel(url, tls, |endpoint| {
            endpoint
                .connect_timeout(connect_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(10))
                .keep_alive_while_idle(true)
        })
        .map_err(|e| PeerError::Protocol {
            peer: url.into(),
            reason: e.to_string(),
        })
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
            incarnation: std::sync::Mutex::new(String::new()),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            authorization: None,
        }
    }

    /// The time allowed for one call, or for one message of a changes stream
    /// beyond the wait asked for.
    pub fn with_call_timeout(mut self, timeout: Duration) -> GrpcPeer {
        self.call_timeout = timeout;
        self
    }

    fn incarnation(&self) -> String {
        self.incarnation.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs one call under the call deadline (also sent as `grpc-timeout`).
    async fn call<T, F>(&self, limit: Duration, fut: F) -> Result<T, PeerError>
    where
        F: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r.map(tonic::Response::into_inner).map_err(|s| self.err(s)),
            Err(_) => Err(PeerError::Unreachable {
                peer: self.describe(),
                reason: format!("no answer within {limit:?}"),
            }),
        }
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = self.authorized(msg);
        r.set_timeout(self.call_timeout);
        r
    }

    /// A request carrying the bearer credential, if any.
    fn authorized<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(v) = &self.authorization {
            r.metadata_mut().insert("authorization", v.clone());
        }
        r
    }

    /// Sends `token` as `authorization: Bearer <token>` with every call: how a node
    /// without a certificate (a loopback fleet) or a token-holding tool proves who
    /// it is. A token that cannot be sent as metadata is an error.
    pub fn with_bearer(mut self, token: &str) -> Result<GrpcPeer, PeerError> {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| PeerError::Protocol {
                peer: self.url.clone(),
                reason: "the bearer token is not printable ASCII".into(),
            })?;
        self.authorization = Some(value);
        Ok(self)
    }

    /// Options for the database if this peer has to create it (push target).
    pub fn with_create_options(mut self, opts: store::DbOptions) -> GrpcPeer {
        self.create_opts = opts;
        self
    }

    fn err(&self, s: Status) -> PeerError {
        match s.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled => {
                PeerError::Unreachable {
                    peer: self.describe(),
                    reason: s.message().to_owned(),
                }
            }
            // The store's conflict (a `_local` revision moved).
            Code::Aborted => PeerError::Conflict {
                peer: self.describe(),
                reason: s.message().to_owned(),
            },
            // The remote's bound on documents per call, or tonic's on message size.
            Code::ResourceExhausted => PeerError::TooLarge {
                peer: self.describe(),
                reason: s.message().to_owned(),
            },
            Code::OutOfRange if s.message().contains("message length too large") => PeerError::TooLarge {
                peer: self.describe(),
                reason: s.message().to_owned(),
            },
            Code::FailedPrecondition => PeerError::Recreated {
                peer: self.describe(),
            },
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

    /// A batch from its wire form. A row this node cannot read (an id or
    /// revision it refuses) is skipped with a warning rather than failing the
    /// batch: one bad document must not stop a replication.
    fn batch(&self, b: proto::v1::ChangesBatch) -> ChangesBatch {
        let rows = b
            .changes
            .into_iter()
            .filter_map(|c| {
                let revs: Result<Vec<Rev>, _> = c.revs.iter().map(|r| r.parse()).collect();
                match (DocId::new(&c.id), revs) {
                    (Ok(id), Ok(revs)) => Some(ChangeRow {
                        seq: Seq::Num(c.seq),
                        id,
                        revs,
                        committed_ms: Some(c.committed_ms),
                    }),
                    (Err(e), _) | (_, Err(e)) => {
                        tracing::warn!(peer = %self.describe(), id = %c.id.chars().take(100).collect::<String>(), error = %e, "skipping an unreadable change");
                        None
                    }
                }
            })
            .collect();
        ChangesBatch {
            rows,
            last_seq: Seq::Num(b.last_seq),
            pending: Some(b.update_seq.saturating_sub(b.last_seq)),
        }
    }
}

fn doc_revs(list: Vec<(DocId, Vec<Rev>)>) -> Vec<DocRevs> {
    list.into_iter()
        .map(|(id, revs)| wire(Missing::revs(id, revs)))
        .collect()
}

fn wire(m: Missing) -> DocRevs {
    DocRevs {
        id: m.id.to_string(),
        revs: m.revs.iter().map(Rev::to_string).collect(),
        ancestors: m.ancestors.iter().map(Rev::to_string).collect(),
    }
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
        let req = self.request(DbInfoRequest {
            db: self.db.clone(),
            create,
            expiry_field: self.create_opts.expiry_field.clone().unwrap_or_default(),
            revs_limit: self.create_opts.revs_limit.unwrap_or(0),
        });
        let r = self
            .call(self.call_timeout, self.client.clone().db_info(req))
            .await?;
        *self.incarnation.lock().unwrap_or_else(|e| e.into_inner()) = r.incarnation.clone();
        Ok(PeerInfo {
            uuid: r.store_uuid,
            update_seq: Seq::Num(r.update_seq),
            incarnation: (!r.incarnation.is_empty()).then_some(r.incarnation),
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
            let req = self.authorized(ChangesRequest {
                db: self.db.clone(),
                since: since_n,
                batch_size: limit.min(u32::MAX as usize) as u32,
                continuous: wait.is_some(),
                peer: self.me.clone(),
                incarnation: self.incarnation(),
            });
            // No grpc-timeout on a stream meant to stay open; the opening and
            // every message are bounded here instead.
            let stream = self
                .call(self.call_timeout, self.client.clone().changes(req))
                .await?;
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
            None => match tokio::time::timeout(self.call_timeout, stream.message()).await {
                Ok(m) => m,
                Err(_) => {
                    *guard = None;
                    return Err(PeerError::Unreachable {
                        peer: self.describe(),
                        reason: format!("no changes batch within {:?}", self.call_timeout),
                    });
                }
            },
        };
        match next {
            Ok(Some(b)) => {
                *at = b.last_seq;
                let out = self.batch(b);
                if wait.is_none() {
                    *guard = None;
                }
                Ok(out)
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

    async fn revs_diff(&self, revs: Vec<(DocId, Vec<Rev>)>) -> Result<Vec<Missing>, PeerError> {
        let req = self.request(RevsDiffRequest {
            db: self.db.clone(),
            docs: doc_revs(revs),
        });
        let r = self
            .call(self.call_timeout, self.client.clone().revs_diff(req))
            .await?;
        r.missing
            .into_iter()
            .map(|d| {
                let id = DocId::new(&d.id).map_err(|e| self.protocol(e.to_string()))?;
                let parse = |list: &[String]| {
                    list.iter()
                        .map(|r| r.parse())
                        .collect::<Result<Vec<Rev>, store::Error>>()
                        .map_err(|e| self.protocol(e.to_string()))
                };
                Ok(Missing {
                    id,
                    revs: parse(&d.revs)?,
                    ancestors: parse(&d.ancestors)?,
                })
            })
            .collect()
    }

    async fn fetch(&self, wanted: Vec<Missing>) -> Result<Fetched, PeerError> {
        let req = self.request(FetchRevsRequest {
            db: self.db.clone(),
            docs: wanted.into_iter().map(wire).collect(),
        });
        let r = self
            .call(self.call_timeout, self.client.clone().fetch_revs(req))
            .await?;
        let mut out = Fetched::default();
        for rev in r.revisions {
            let (id, head) = (rev.id.clone(), rev.path.first().cloned().unwrap_or_default());
            match from_revision(rev) {
                Ok(d) => out.docs.push(d),
                Err(e) => out.failures.push(WriteFailure {
                    id,
                    rev: head,
                    error: e.to_string(),
                }),
            }
        }
        Ok(out)
    }

    async fn write(&self, docs: Vec<Replicated>) -> Result<Vec<WriteFailure>, PeerError> {
        let req = self.request(WriteRevsRequest {
            db: self.db.clone(),
            revisions: docs.into_iter().map(to_revision).collect(),
            peer: self.me.clone(),
        });
        let r = self
            .call(self.call_timeout, self.client.clone().write_revs(req))
            .await?;
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
        let req = self.request(GetCheckpointRequest {
            db: self.db.clone(),
            replication_id: id.into(),
        });
        let r = self
            .call(self.call_timeout, self.client.clone().get_checkpoint(req))
            .await?;
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
        let req = self.request(PutCheckpointRequest {
            db: self.db.clone(),
            replication_id: id.into(),
            rev,
            body: serde_json::to_vec(body).unwrap_or_default().into(),
            incarnation: self.incarnation(),
        });
        let r = self
            .call(self.call_timeout, self.client.clone().put_checkpoint(req))
            .await?;
        Ok(format!("0-{}", r.rev))
    }
}
