//! The replication loop: one session reads checkpoints, then moves batches of
//! changes and checkpoints after the target has durably stored them; failed
//! sessions are retried with jittered backoff.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use store::{DocId, Rev};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::checkpoint::{common_since, replication_id, CheckpointBody, HistoryEntry, Incarnations};
use crate::peer::{Fetched, Missing, Peer, PeerError, Seq, WriteFailure};
use crate::status::{now_ms, ReplicationState, ReplicationStatus};

/// Documents fetched and written per round trip.
const FETCH_CHUNK: usize = 100;
/// Consecutive failures after which a one-shot replication gives up.
const ONE_SHOT_ATTEMPTS: u32 = 5;

/// What to replicate, and how.
#[derive(Clone)]
pub struct ReplicationSpec {
    /// Where changes come from.
    pub source: Arc<dyn Peer>,
    /// Where they go.
    pub target: Arc<dyn Peer>,
    /// Run until stopped, waiting for new changes, instead of ending when caught up.
    pub continuous: bool,
    /// Create the target database if it is missing.
    pub create_target: bool,
    /// Create the source database if it is missing (a spoke pulling a
    /// database the hub has not seen yet).
    pub create_source: bool,
    /// Changes per batch.
    pub batch_size: usize,
    /// Retry delays.
    pub backoff: Backoff,
    /// Least time between checkpoints while changes keep coming (a checkpoint is
    /// also written whenever the replication catches up).
    pub checkpoint_interval: Duration,
    /// How long one wait for new changes lasts (continuous only).
    pub poll_wait: Duration,
    /// A label for metrics and logs, e.g. `pull:sessions`.
    pub label: String,
}

impl ReplicationSpec {
    /// A spec with CouchDB-like defaults (batches of 500, checkpoint every 5 s).
    pub fn new(source: Arc<dyn Peer>, target: Arc<dyn Peer>, label: impl Into<String>) -> ReplicationSpec {
        ReplicationSpec {
            source,
            target,
            continuous: false,
            create_target: false,
            create_source: false,
            batch_size: 500,
            backoff: Backoff::default(),
            checkpoint_interval: Duration::from_secs(5),
            poll_wait: Duration::from_secs(10),
            label: label.into(),
        }
    }
}

/// A running replication.
pub struct Replication {
    status: Arc<ReplicationStatus>,
    task: JoinHandle<Result<(), PeerError>>,
    stop: CancellationToken,
}

impl Replication {
    /// Starts the replication in the background. It stops when `shutdown` is
    /// cancelled (after a last checkpoint) or, if one-shot, when caught up.
    pub fn start(spec: ReplicationSpec, shutdown: CancellationToken) -> Replication {
        let status = Arc::new(ReplicationStatus::new(
            spec.label.clone(),
            spec.source.describe(),
            spec.target.describe(),
            spec.continuous,
        ));
        let stop = shutdown.child_token();
        let task = tokio::spawn(run(spec, status.clone(), stop.clone()));
        Replication { status, task, stop }
    }

    /// Its live status.
    pub fn status(&self) -> Arc<ReplicationStatus> {
        self.status.clone()
    }

    /// Stops it (after a last checkpoint) and waits.
    pub async fn stop(self) -> Result<(), PeerError> {
        self.stop.cancel();
        self.wait().await
    }

    /// Waits for it to end (a one-shot replication ends when caught up).
    pub async fn wait(self) -> Result<(), PeerError> {
        self.task.await.unwrap_or_else(|e| {
            Err(PeerError::Protocol {
                peer: "replication task".into(),
                reason: e.to_string(),
            })
        })
    }

    /// Whether it has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

async fn run(
    spec: ReplicationSpec,
    status: Arc<ReplicationStatus>,
    stop: CancellationToken,
) -> Result<(), PeerError> {
    let mut failures = 0u32;
    loop {
        let checkpoints_before = status.checkpoints();
        // Not raced against `stop`: the session watches it at its waits and, once
        // stopped, writes its last checkpoint before returning.
        let result = session(&spec, &status, &stop).await;
        match result {
            Ok(()) => {
                let state = if stop.is_cancelled() {
                    ReplicationState::Stopped
                } else {
                    ReplicationState::Completed
                };
                status.set_state(state, None);
                return Ok(());
            }
            Err(e) => {
                // Progress is what was written and checkpointed: a session that
                // read changes and then failed has not earned a fresh start.
                failures = if status.checkpoints() > checkpoints_before {
                    1
                } else {
                    failures.saturating_add(1)
                };
                tracing::warn!(replication = %spec.label, error = %e, failures, "replication failed; retrying");
                metrics::counter!("replication_errors_total", "replication" => spec.label.clone())
                    .increment(1);
                // A one-shot run gives up after a few attempts, at once when the peer
                // refuses its credentials; a continuous one waits for them to change.
                if !spec.continuous && (failures >= ONE_SHOT_ATTEMPTS || e.is_auth_refusal()) {
                    status.set_state(ReplicationState::Failed, Some(e.to_string()));
                    return Err(e);
                }
                if stop.is_cancelled() {
                    status.set_state(ReplicationState::Stopped, None);
                    return Ok(());
                }
                status.set_state(ReplicationState::Backoff, Some(e.to_string()));
                let delay = spec.backoff.next(failures);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.cancelled() => {
                        status.set_state(ReplicationState::Stopped, None);
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// `fut`, unless the replication is stopped first.
async fn unless_stopped<T>(stop: &CancellationToken, fut: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        _ = stop.cancelled() => None,
        v = fut => Some(v),
    }
}

/// Calls `call` on `items`, splitting them in halves while the peer refuses a
/// request as too large; a single item still too large is answered by `alone`.
async fn in_pieces<T, R, F, Fut>(
    items: Vec<T>,
    mut call: F,
    mut alone: impl FnMut(T, String) -> Result<R, PeerError>,
) -> Result<Vec<R>, PeerError>
where
    T: Clone,
    F: FnMut(Vec<T>) -> Fut,
    Fut: Future<Output = Result<R, PeerError>>,
{
    let mut out = Vec::new();
    let mut todo = vec![items];
    while let Some(mut piece) = todo.pop() {
        if piece.is_empty() {
            continue;
        }
        match call(piece.clone()).await {
            Ok(r) => out.push(r),
            Err(PeerError::TooLarge { reason, .. }) => {
                if piece.len() == 1 {
                    if let Some(item) = piece.pop() {
                        out.push(alone(item, reason)?);
                    }
                } else {
                    let second = piece.split_off(piece.len() / 2);
                    todo.push(second);
                    todo.push(piece);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Checkpoint state of one session.
struct Checkpointer {
    id: String,
    session_id: String,
    source_rev: Option<String>,
    target_rev: Option<String>,
    previous: Option<CheckpointBody>,
    incarnations: Incarnations,
    docs_read: u64,
    docs_written: u64,
}

impl Checkpointer {
    /// Both ends must still be the databases the session started with: a
    /// checkpoint in a recreated database would claim progress it never saw,
    /// and a position in a recreated source means nothing.
    async fn verify(&self, spec: &ReplicationSpec) -> Result<(), PeerError> {
        let source = spec.source.info(false).await?;
        if source.incarnation != self.incarnations.source {
            return Err(PeerError::Recreated {
                peer: spec.source.describe(),
            });
        }
        let target = spec.target.info(false).await?;
        if target.incarnation != self.incarnations.target {
            return Err(PeerError::Recreated {
                peer: spec.target.describe(),
            });
        }
        Ok(())
    }

    async fn write(&mut self, spec: &ReplicationSpec, seq: &Seq) -> Result<(), PeerError> {
        self.verify(spec).await?;
        let entry = HistoryEntry {
            session_id: self.session_id.clone(),
            recorded_seq: seq.clone(),
            docs_read: self.docs_read,
            docs_written: self.docs_written,
            end_time_ms: now_ms(),
        };
        let body = CheckpointBody::record(self.previous.as_ref(), entry, &self.incarnations);
        let value = serde_json::to_value(&body).unwrap_or_default();
        // The target has already acknowledged (durably) everything up to `seq`.
        // A conflict is not overwritten: it means someone else moved the
        // checkpoint or the database is a new one, and the session starts over
        // from what both ends say.
        self.source_rev = Some(
            spec.source
                .put_checkpoint(&self.id, self.source_rev.as_deref(), &value)
                .await?,
        );
        self.target_rev = Some(
            spec.target
                .put_checkpoint(&self.id, self.target_rev.as_deref(), &value)
                .await?,
        );
        self.previous = Some(body);
        Ok(())
    }
}

async fn session(
    spec: &ReplicationSpec,
    status: &ReplicationStatus,
    stop: &CancellationToken,
) -> Result<(), PeerError> {
    status.set_state(ReplicationState::Starting, None);
    let start = async {
        let source_info = spec.source.info(spec.create_source).await?;
        let target_info = spec.target.info(spec.create_target).await?;
        let id = replication_id(
            &source_info.uuid,
            &spec.source.db_name(),
            &target_info.uuid,
            &spec.target.db_name(),
        );
        let source_cp = spec.source.get_checkpoint(&id).await?;
        let target_cp = spec.target.get_checkpoint(&id).await?;
        let incarnations = Incarnations {
            source: source_info.incarnation,
            target: target_info.incarnation,
        };
        Ok::<_, PeerError>((id, source_cp, target_cp, incarnations))
    };
    let Some(started) = unless_stopped(stop, start).await else {
        return Ok(());
    };
    let (id, source_cp, target_cp, incarnations) = started?;
    let source_body = source_cp.as_ref().and_then(|c| CheckpointBody::parse(&c.body));
    let target_body = target_cp.as_ref().and_then(|c| CheckpointBody::parse(&c.body));
    let mut since = common_since(source_body.as_ref(), target_body.as_ref(), &incarnations);
    tracing::info!(replication = %spec.label, id = %id, since = %since, source = %spec.source.describe(), target = %spec.target.describe(), "replication session starting");
    let mut cp = Checkpointer {
        id,
        session_id: uuid::Uuid::new_v4().simple().to_string(),
        source_rev: source_cp.map(|c| c.rev),
        target_rev: target_cp.map(|c| c.rev),
        previous: source_body,
        incarnations,
        docs_read: 0,
        docs_written: 0,
    };
    let mut dirty = false;
    let mut last_checkpoint = Instant::now();
    status.set_state(ReplicationState::Running, None);
    loop {
        let wait = spec.continuous.then_some(spec.poll_wait);
        let read = unless_stopped(stop, spec.source.changes(&since, spec.batch_size, wait)).await;
        let Some(batch) = read else {
            // Stopped (SIGTERM): what the target has stored is worth a checkpoint.
            if dirty {
                cp.write(spec, &since).await?;
                status.checkpointed(since.as_u64().unwrap_or(0));
            }
            return Ok(());
        };
        let batch = batch?;
        if batch.rows.is_empty() {
            since = batch.last_seq;
            status.progress(since.as_u64().unwrap_or(0), batch.pending.or(Some(0)), None);
            if dirty {
                cp.write(spec, &since).await?;
                status.checkpointed(since.as_u64().unwrap_or(0));
                dirty = false;
                last_checkpoint = Instant::now();
            } else if spec.continuous {
                // Idle: a database recreated meanwhile at either end would
                // otherwise go unnoticed until the next change.
                cp.verify(spec).await?;
            }
            if !spec.continuous {
                return Ok(());
            }
            status.set_state(ReplicationState::Idle, None);
            continue;
        }
        status.set_state(ReplicationState::Running, None);
        let n = batch.rows.len() as u64;
        status.read(n);
        cp.docs_read += n;
        let newest_commit = batch.rows.iter().filter_map(|r| r.committed_ms).max();
        let wanted: Vec<(DocId, Vec<Rev>)> = batch
            .rows
            .iter()
            .map(|r| (r.id.clone(), r.revs.clone()))
            .collect();
        // A document alone too large to ask about is reported missing: the
        // write will then count it as a failure.
        let missing: Vec<Missing> = in_pieces(
            wanted,
            |piece| spec.target.revs_diff(piece),
            |(id, revs), _| Ok(vec![Missing::revs(id, revs)]),
        )
        .await?
        .into_iter()
        .flatten()
        .collect();
        for chunk in missing.chunks(FETCH_CHUNK) {
            let fetched = in_pieces(
                chunk.to_vec(),
                |piece| spec.source.fetch(piece),
                |Missing { id, revs, .. }, reason| {
                    Ok(Fetched {
                        docs: Vec::new(),
                        failures: revs
                            .iter()
                            .map(|r| WriteFailure {
                                id: id.to_string(),
                                rev: r.to_string(),
                                error: reason.clone(),
                            })
                            .collect(),
                    })
                },
            )
            .await?;
            let mut docs = Vec::new();
            let mut failures = Vec::new();
            for f in fetched {
                docs.extend(f.docs);
                failures.extend(f.failures);
            }
            let bytes: u64 = docs.iter().map(|d| d.body.len() as u64).sum();
            let count = docs.len() as u64 + failures.len() as u64;
            let refused = in_pieces(
                docs,
                |piece| spec.target.write(piece),
                |d, reason| {
                    Ok(vec![WriteFailure {
                        id: d.id.to_string(),
                        rev: d.path.first().map(Rev::to_string).unwrap_or_default(),
                        error: reason,
                    }])
                },
            )
            .await?;
            failures.extend(refused.into_iter().flatten());
            for f in &failures {
                tracing::warn!(replication = %spec.label, id = %f.id, rev = %f.rev, error = %f.error, "revision not replicated");
            }
            let failed = failures.len() as u64;
            status.wrote(count - failed.min(count), failed, bytes);
            cp.docs_written += count - failed.min(count);
        }
        since = batch.last_seq;
        dirty = true;
        status.progress(since.as_u64().unwrap_or(0), batch.pending, newest_commit);
        let caught_up = batch.rows.len() < spec.batch_size || batch.pending == Some(0);
        if caught_up || last_checkpoint.elapsed() >= spec.checkpoint_interval {
            cp.write(spec, &since).await?;
            status.checkpointed(since.as_u64().unwrap_or(0));
            dirty = false;
            last_checkpoint = Instant::now();
        }
    }
}
