//! The local store as a peer.

use std::time::Duration;

use async_trait::async_trait;
use store::{ChangesQuery, Database, DbName, DbOptions, DocId, LocalId, OpenRev, Replicated, Rev, Store};

use crate::peer::{
    ChangeRow, ChangesBatch, CheckpointDoc, Fetched, Missing, Peer, PeerError, PeerInfo, Seq, WriteFailure,
};

/// A database of the local store. Created on first use when `create` is asked.
pub struct LocalPeer {
    store: Store,
    name: DbName,
    /// Options for a database this peer creates.
    create_opts: DbOptions,
}

impl LocalPeer {
    /// A peer on database `name` of `store`.
    pub fn new(store: Store, name: DbName, create_opts: DbOptions) -> LocalPeer {
        LocalPeer {
            store,
            name,
            create_opts,
        }
    }

    fn db(&self) -> Result<Database, PeerError> {
        Ok(self.store.db(&self.name)?)
    }
}

fn local_rev(rev: Option<&str>) -> Result<u64, PeerError> {
    match rev {
        None => Ok(0),
        Some(r) => r
            .strip_prefix("0-")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| PeerError::Protocol {
                peer: "local".into(),
                reason: format!("bad _local revision {r:?}"),
            }),
    }
}

#[async_trait]
impl Peer for LocalPeer {
    fn describe(&self) -> String {
        format!("local:{}", self.name)
    }

    fn db_name(&self) -> String {
        self.name.to_string()
    }

    async fn info(&self, create: bool) -> Result<PeerInfo, PeerError> {
        if create && self.store.db(&self.name).is_err() {
            match self.store.create_db(&self.name, self.create_opts.clone()).await {
                Ok(()) | Err(store::Error::DbExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let db = self.db()?;
        Ok(PeerInfo {
            uuid: self.store.uuid().to_owned(),
            update_seq: Seq::Num(db.update_seq()),
            incarnation: Some(db.incarnation()),
        })
    }

    async fn changes(
        &self,
        since: &Seq,
        limit: usize,
        wait: Option<Duration>,
    ) -> Result<ChangesBatch, PeerError> {
        let db = self.db()?;
        let since = since.as_u64().unwrap_or(0);
        let read = |db: &Database| {
            db.changes(&ChangesQuery {
                since,
                limit: Some(limit),
                all_leaves: true,
                include_expired: true,
                ..Default::default()
            })
        };
        let mut page = read(&db)?;
        if page.changes.is_empty() {
            if let Some(wait) = wait {
                db.wait_for_change(page.last_seq, wait).await?;
                page = read(&db)?;
            }
        }
        Ok(ChangesBatch {
            rows: page
                .changes
                .into_iter()
                .map(|c| ChangeRow {
                    seq: Seq::Num(c.seq),
                    id: c.id,
                    revs: c.revs,
                    committed_ms: Some(c.committed_ms),
                })
                .collect(),
            last_seq: Seq::Num(page.last_seq),
            pending: Some(page.pending),
        })
    }

    async fn revs_diff(&self, revs: Vec<(DocId, Vec<Rev>)>) -> Result<Vec<Missing>, PeerError> {
        let db = self.db()?;
        let mut out = Vec::new();
        for (id, revs) in revs {
            let diff = db.revs_diff(&id, &revs)?;
            if !diff.missing.is_empty() {
                out.push(Missing {
                    id,
                    revs: diff.missing,
                    ancestors: diff.possible_ancestors,
                });
            }
        }
        Ok(out)
    }

    async fn fetch(&self, wanted: Vec<Missing>) -> Result<Fetched, PeerError> {
        let db = self.db()?;
        let mut out = Vec::new();
        for Missing { id, revs, ancestors } in wanted {
            for r in db.replication_revs(&id, revs, &ancestors)? {
                if let OpenRev::Ok(doc) = r {
                    out.push(Replicated {
                        id: doc.id,
                        path: doc.revisions.unwrap_or_else(|| vec![doc.rev]),
                        deleted: doc.deleted,
                        body: doc.body,
                    });
                }
            }
        }
        Ok(Fetched {
            docs: out,
            failures: Vec::new(),
        })
    }

    async fn write(&self, docs: Vec<Replicated>) -> Result<Vec<WriteFailure>, PeerError> {
        let failures = self.db()?.merge_reporting(docs).await?;
        Ok(failures
            .into_iter()
            .map(|f| WriteFailure {
                id: f.id.to_string(),
                rev: f.rev.map(|r| r.to_string()).unwrap_or_default(),
                error: f.error.to_string(),
            })
            .collect())
    }

    async fn get_checkpoint(&self, id: &str) -> Result<Option<CheckpointDoc>, PeerError> {
        let db = self.db()?;
        match db.get_local(&LocalId::new(id)?) {
            Ok(doc) => Ok(Some(CheckpointDoc {
                rev: format!("0-{}", doc.rev),
                body: serde_json::from_slice(&doc.body).unwrap_or(serde_json::Value::Null),
            })),
            Err(store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn put_checkpoint(
        &self,
        id: &str,
        rev: Option<&str>,
        body: &serde_json::Value,
    ) -> Result<String, PeerError> {
        let db = self.db()?;
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let new = db.put_local(&LocalId::new(id)?, local_rev(rev)?, bytes).await?;
        Ok(format!("0-{new}"))
    }
}
