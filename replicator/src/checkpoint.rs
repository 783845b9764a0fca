//! Replication ids and checkpoint documents: where to resume.

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::peer::Seq;

/// Most sessions kept in a checkpoint's history.
const MAX_HISTORY: usize = 50;

/// The id of a replication: the same source and target databases give the same
/// id across restarts and address changes (servers are named by their uuid).
pub fn replication_id(source_uuid: &str, source_db: &str, target_uuid: &str, target_db: &str) -> String {
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
    /// The incarnations of the source and target databases the checkpoint is
    /// about: a checkpoint naming another incarnation is not trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_incarnation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_incarnation: Option<String>,
}

impl CheckpointBody {
    pub fn parse(v: &Value) -> Option<CheckpointBody> {
        serde_json::from_value(v.clone()).ok()
    }

    /// The checkpoint after a session reached `seq`: this session first,
    /// then the previous ones (bounded).
    pub fn record(
        previous: Option<&CheckpointBody>,
        entry: HistoryEntry,
        incarnations: &Incarnations,
    ) -> CheckpointBody {
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
            source_incarnation: incarnations.source.clone(),
            target_incarnation: incarnations.target.clone(),
        }
    }

    /// Whether the checkpoint is about these incarnations (an end that does not
    /// tell its incarnation matches anything).
    fn matches(&self, now: &Incarnations) -> bool {
        let same = |recorded: &Option<String>, current: &Option<String>| match (recorded, current) {
            (Some(r), Some(c)) => r == c,
            _ => true,
        };
        same(&self.source_incarnation, &now.source) && same(&self.target_incarnation, &now.target)
    }
}

/// The incarnations of both ends' databases, as their `info` reported them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Incarnations {
    pub source: Option<String>,
    pub target: Option<String>,
}

/// Where to resume: the newest session both checkpoints know, else zero. A
/// checkpoint present on one end only (the other lost it, or was replaced), or
/// written for another incarnation of either database, cannot be trusted.
pub(crate) fn common_since(
    source: Option<&CheckpointBody>,
    target: Option<&CheckpointBody>,
    now: &Incarnations,
) -> Seq {
    let (Some(s), Some(t)) = (source, target) else {
        return Seq::ZERO;
    };
    if !s.matches(now) || !t.matches(now) {
        return Seq::ZERO;
    }
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
        let inc = Incarnations::default();
        let s1 = CheckpointBody::record(None, entry("s1", 10), &inc);
        let s2 = CheckpointBody::record(Some(&s1), entry("s2", 20), &inc);
        // Same latest session: its sequence.
        assert_eq!(common_since(Some(&s2), Some(&s2), &inc), Seq::Num(20));
        // The target only saw s1 (its s2 write was lost): back to s1.
        assert_eq!(common_since(Some(&s2), Some(&s1), &inc), Seq::Num(10));
        // Nothing shared, or one side missing: from zero.
        let other = CheckpointBody::record(None, entry("x", 99), &inc);
        assert_eq!(common_since(Some(&s2), Some(&other), &inc), Seq::ZERO);
        assert_eq!(common_since(None, Some(&s2), &inc), Seq::ZERO);
        assert_eq!(s2.history.len(), 2);
    }

    #[test]
    fn a_checkpoint_of_another_incarnation_is_not_trusted() {
        let then = Incarnations {
            source: Some("a1".into()),
            target: Some("b1".into()),
        };
        let cp = CheckpointBody::record(None, entry("s1", 10), &then);
        assert_eq!(common_since(Some(&cp), Some(&cp), &then), Seq::Num(10));
        let recreated = Incarnations {
            target: Some("b2".into()),
            ..then.clone()
        };
        assert_eq!(common_since(Some(&cp), Some(&cp), &recreated), Seq::ZERO);
        // A checkpoint round-trips its incarnations.
        let back = CheckpointBody::parse(&serde_json::to_value(&cp).unwrap()).unwrap();
        assert_eq!(back.target_incarnation.as_deref(), Some("b1"));
    }
}
