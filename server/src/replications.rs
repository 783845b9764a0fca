//! Replications a node runs on request: `POST /_replicate` (one-shot or
//! continuous) and persistent jobs from the `_replicator` database, with their
//! progress for `GET /_active_tasks`. The engine is the `replicator` crate's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use replicator::status::StatusSnapshot;
use replicator::{HttpPeer, LocalPeer, Peer, PeerError, Replication, ReplicationSpec, ReplicationStatus};
use serde::Deserialize;
use serde_json::{json, Value};
use store::{ChangesQuery, DbName, DbOptions, DocId, ReadOptions, Store};
use tokio_util::sync::CancellationToken;

/// One replication as an `_active_tasks` entry, CouchDB-shaped.
pub(crate) fn active_task(s: &StatusSnapshot) -> Value {
    json!({
        "type": "replication",
        "replication_id": s.label,
        "doc_id": null,
        "source": s.source,
        "target": s.target,
        "continuous": s.continuous,
        "state": s.state,
        "last_error": s.last_error,
        "docs_read": s.docs_read,
        "docs_written": s.docs_written,
        "doc_write_failures": s.doc_write_failures,
        "bytes_written": s.bytes,
        "checkpointed_source_seq": s.checkpointed_seq,
        "source_seq": s.source_seq,
        "changes_pending": s.seq_lag,
        "time_lag_ms": s.time_lag_ms,
        "started_on": s.started_ms / 1000,
        "updated_on": s.last_progress_ms / 1000,
    })
}

/// The database holding persistent replication jobs.
pub(crate) const REPLICATOR_DB: &str = "_replicator";

/// A source or target: a URL or, in CouchDB's older form, a local database name;
/// `{"url": "..."}` objects are accepted too.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Endpoint {
    Name(String),
    Object { url: String },
}

impl Endpoint {
    fn as_str(&self) -> &str {
        match self {
            Endpoint::Name(s) | Endpoint::Object { url: s } => s,
        }
    }
}

/// A replication request, as `POST /_replicate` and `_replicator` documents carry it.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct ReplicateRequest {
    pub source: Endpoint,
    pub target: Endpoint,
    #[serde(default)]
    pub continuous: bool,
    #[serde(default)]
    pub create_target: bool,
    #[serde(default)]
    pub cancel: bool,
}

/// Why a replication request was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReplicateError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Peer(#[from] PeerError),
}

struct Job {
    replication: Replication,
    /// The `_replicator` document that made it, if any.
    doc: Option<String>,
}

/// The replications this node runs.
pub(crate) struct Replications {
    store: Store,
    /// The node's TLS material: `https://` peers are verified against its CA and
    /// shown its certificate.
    tls: Option<Arc<proto::tls::ReloadingTls>>,
    shutdown: CancellationToken,
    jobs: Mutex<HashMap<String, Job>>,
}

fn job_key(r: &ReplicateRequest) -> String {
    // Credentials in URLs never reach labels (shown in `_active_tasks`, logs, metrics).
    format!(
        "{} -> {}{}",
        replicator::redact_url(r.source.as_str()),
        replicator::redact_url(r.target.as_str()),
        if r.continuous { " (continuous)" } else { "" }
    )
}

impl Replications {
    pub fn new(
        store: Store,
        tls: Option<Arc<proto::tls::ReloadingTls>>,
        shutdown: CancellationToken,
    ) -> Replications {
        Replications {
            store,
            tls,
            shutdown,
            jobs: Mutex::new(HashMap::new()),
        }
    }

    fn peer(&self, endpoint: &Endpoint, create: bool) -> Result<Arc<dyn Peer>, ReplicateError> {
        let s = endpoint.as_str();
        if s.starts_with("http://") || s.starts_with("https://") {
            return Ok(Arc::new(HttpPeer::with_tls(s, self.tls.as_ref())?));
        }
        let name = DbName::new(s).map_err(|e| ReplicateError::Invalid(e.to_string()))?;
        if !create && self.store.db(&name).is_err() {
            return Err(ReplicateError::NotFound(format!("database {s} does not exist")));
        }
        Ok(Arc::new(LocalPeer::new(
            self.store.clone(),
            name,
            DbOptions::default(),
        )))
    }

    fn spec(&self, r: &ReplicateRequest) -> Result<ReplicationSpec, ReplicateError> {
        let source = self.peer(&r.source, false)?;
        let target = self.peer(&r.target, r.create_target)?;
        let mut spec = ReplicationSpec::new(source, target, job_key(r));
        spec.continuous = r.continuous;
        spec.create_target = r.create_target;
        Ok(spec)
    }

    /// Runs a one-shot replication to completion and reports it.
    pub async fn run_once(&self, r: &ReplicateRequest) -> Result<StatusSnapshot, ReplicateError> {
        let replication = Replication::start(self.spec(r)?, self.shutdown.clone());
        let status = replication.status();
        replication.wait().await?;
        Ok(status.snapshot())
    }

    /// Starts a continuous replication (once: the same request again is a no-op).
    pub fn start(
        &self,
        r: &ReplicateRequest,
        doc: Option<String>,
    ) -> Result<Arc<ReplicationStatus>, ReplicateError> {
        let key = job_key(r);
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(job) = jobs.get(&key) {
            if !job.replication.is_finished() {
                return Ok(job.replication.status());
            }
        }
        let replication = Replication::start(self.spec(r)?, self.shutdown.clone());
        let status = replication.status();
        tracing::info!(job = %key, "replication started");
        jobs.insert(key, Job { replication, doc });
        Ok(status)
    }

    /// Stops a running replication; false if there was none.
    pub fn cancel(&self, r: &ReplicateRequest) -> bool {
        let key = job_key(r);
        let job = self.jobs.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
        match job {
            Some(job) => {
                tokio::spawn(async move {
                    let _ = job.replication.stop().await;
                });
                tracing::info!(job = %key, "replication cancelled");
                true
            }
            None => false,
        }
    }

    fn cancel_doc(&self, doc: &str) {
        let keys: Vec<String> = self
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, j)| j.doc.as_deref() == Some(doc))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            if let Some(job) = self.jobs.lock().unwrap_or_else(|e| e.into_inner()).remove(&k) {
                tokio::spawn(async move {
                    let _ = job.replication.stop().await;
                });
            }
        }
    }

    /// `_active_tasks` entries of the running jobs, CouchDB-shaped.
    pub fn active_tasks(&self) -> Vec<Value> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Value> = jobs
            .values()
            .filter(|j| !j.replication.is_finished())
            .map(|j| {
                let mut task = active_task(&j.replication.status().snapshot());
                task["doc_id"] = json!(j.doc);
                task
            })
            .collect();
        out.sort_by(|a, b| a["replication_id"].as_str().cmp(&b["replication_id"].as_str()));
        out
    }

    /// Runs the `_replicator` database's jobs: creates the database if needed,
    /// starts a job per document, and follows its changes (new documents start
    /// jobs, deleted ones stop them) until shutdown.
    pub async fn follow_replicator_db(self: Arc<Self>) {
        let name = match DbName::new(REPLICATOR_DB) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "cannot name the _replicator database");
                return;
            }
        };
        match self.store.create_db(&name, DbOptions::default()).await {
            Ok(()) | Err(store::Error::DbExists { .. }) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot create the _replicator database");
                return;
            }
        }
        let Ok(db) = self.store.db(&name) else { return };
        let mut since = 0;
        loop {
            let page = match db.changes(&ChangesQuery {
                since,
                ..Default::default()
            }) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "reading _replicator");
                    return;
                }
            };
            for c in page.changes {
                let id = c.id.to_string();
                self.cancel_doc(&id);
                if c.deleted {
                    continue;
                }
                self.start_doc(&db, &c.id);
            }
            since = page.last_seq;
            tokio::select! {
                r = db.wait_for_change(since, std::time::Duration::from_secs(3600)) => {
                    if r.is_err() {
                        tracing::warn!("the _replicator database was deleted; persistent jobs are no longer watched");
                        return;
                    }
                }
                _ = self.shutdown.cancelled() => return,
            }
        }
    }

    fn start_doc(&self, db: &store::Database, id: &DocId) {
        let Ok(doc) = db.get(id, &ReadOptions::default()) else {
            return;
        };
        match serde_json::from_slice::<ReplicateRequest>(&doc.body) {
            Ok(mut r) => {
                // A persistent job runs until its document is deleted.
                r.continuous = true;
                if let Err(e) = self.start(&r, Some(id.to_string())) {
                    tracing::warn!(doc = %id, error = %e, "_replicator job cannot start");
                }
            }
            Err(e) => tracing::warn!(doc = %id, error = %e, "_replicator document is not a replication"),
        }
    }
}
