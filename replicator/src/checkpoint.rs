//! Replication ids and checkpoint documents: where to resume.

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::peer::Seq;

/// Most sessions kept in a checkpoint's history.
const MAX_HISTORY: usize = 50;

/// The id of a replication: the same source and target databases give the same
/// id across restarts and address changes (servers are named by their uuid).
pub(crate) fn replication_id(
    source_uuid: &str,
    source_db: &str,
    target_uuid: &str,
    target_db: &str,
) -> String {
    let mut h = Md5::new();
    for part in ["sessionfleet-1", source_uuid, source_db, target_uuid, target_db] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// One session in a checkpoint's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct HistoryEntry {
    pub session_id: String,
    pub recorded_seq: Seq,
    #[serde(default)]
    pub docs_read: u64,
    #[serde(default)]
    pub docs_written: u64,
    #[serde(default)]
    pub end_time_ms: u64,
}

/// The body of `_local/<replication-id>` on both ends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct CheckpointBody {
    pub session_id: String,
    pub source_last_seq: Seq,
    #[serde(default)]
    pub replication_id_version: u32,
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

impl CheckpointBody {
    pub fn parse(v: &Value) -> Option<CheckpointBody> {
        serde_json::from_value(v.clone()).ok()
    }

    /// The checkpoint after a session reached `seq`: this session first,
    /// then the previous ones (bounded).
    pub fn record(previous: Option<&CheckpointBody>, entry: HistoryEntry) -> CheckpointBody {
        let mut history = vec![entry.clone()];
        if let Some(p) = previous {
            history.extend(
                p.history
                    .iter()
                    .filter(|h| h.session_id != entry.session_id)
                    .take(MAX_HISTORY - 1)
                    .cloned(),
            );
        }
        CheckpointBody {
            session_id: entry.session_id,
            source_last_seq: entry.recorded_seq,
            replication_id_version: 1,
            history,
        }
    }
}

/// Where to resume: the newest session both checkpoints know, else zero. A
/// checkpoint present on one end only (the other lost it, or was replaced)
/// cannot be trusted.
pub(crate) fn common_since(source: Option<&CheckpointBody>, target: Option<&CheckpointBody>) -> Seq {
    let (Some(s), Some(t)) = (source, target) else {
        return Seq::ZERO;
    };
    if s.session_id == t.session_id {
        return s.source_last_seq.clone();
    }
    for entry in &s.history {
        if t.history.iter().any(|h| h.session_id == entry.session_id) {
            return entry.recorded_seq.clone();
        }
    }
    Seq::ZERO
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(session: &str, seq: u64) -> HistoryEntry {
        HistoryEntry {
            session_id: session.into(),
            recorded_seq: Seq::Num(seq),
            docs_read: 0,
            docs_written: 0,
            end_time_ms: 0,
        }
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = replication_id("u1", "db", "u2", "db");
        assert_eq!(a, replication_id("u1", "db", "u2", "db"));
        assert_ne!(a, replication_id("u2", "db", "u1", "db"), "direction matters");
        assert_ne!(a, replication_id("u1", "db", "u2", "other"));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn resumes_from_the_newest_shared_session() {
        let s1 = CheckpointBody::record(None, entry("s1", 10));
        let s2 = CheckpointBody::record(Some(&s1), entry("s2", 20));
        // Same latest session: its sequence.
        assert_eq!(common_since(Some(&s2), Some(&s2)), Seq::Num(20));
        // The target only saw s1 (its s2 write was lost): back to s1.
        assert_eq!(common_since(Some(&s2), Some(&s1)), Seq::Num(10));
        // Nothing shared, or one side missing: from zero.
        let other = CheckpointBody::record(None, entry("x", 99));
        assert_eq!(common_since(Some(&s2), Some(&other)), Seq::ZERO);
        assert_eq!(common_since(None, Some(&s2)), Seq::ZERO);
        assert_eq!(s2.history.len(), 2);
    }
}
