//! Judges a [`History`](crate::History) against the nodes' final states.
//!
//! What it reports, and what must be zero:
//! - **lost**: an acknowledged write or delete whose revision some node does not hold at the end
//!   (unless the session has legitimately expired and been purged). Must be 0.
//! - **resurrected**: a read that returned a session it should not have (see [`Bounds`]): after
//!   its acknowledged delete at the node that acknowledged it, after the fleet converged at any
//!   node, or after its expiry by more than the expiry bound. Must be 0.
//! - **divergent**: sessions whose winner differs between nodes at the end. Must be 0.
//! - **unknown**: operations whose outcome the client could not know, and how many of them landed.
//!
//! Revisions are tracked through the history itself: every write and delete names its parent, so
//! "a read returned a revision the delete had superseded" is decided from what clients saw, not
//! from the store's own account.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use crate::history::{Op, OpKind, Outcome};

/// What one node holds for one session at the end of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinalDoc {
    /// The winning revision, `None` if the winner is a tombstone.
    pub winner: Option<String>,
    /// Every revision the node knows for the document (all leaves and their ancestry).
    pub revs: BTreeSet<String>,
}

/// Node name → session id → what it holds. A session a node does not hold at all is absent.
pub type FinalStates = BTreeMap<String, BTreeMap<String, FinalDoc>>;

/// Parents of revisions, learned from the history (`Op::parent`).
#[derive(Debug, Default)]
struct Ancestry {
    parent: HashMap<String, String>,
}

impl Ancestry {
    /// Whether `a` is `b` or one of its ancestors.
    fn is_ancestor_or_self(&self, a: &str, b: &str) -> bool {
        let mut cur = Some(b);
        // A cycle cannot happen with real revisions; the bound keeps a bad history from hanging.
        for _ in 0..100_000 {
            match cur {
                Some(r) if r == a => return true,
                Some(r) => cur = self.parent.get(r).map(String::as_str),
                None => return false,
            }
        }
        false
    }

    /// `revs` and every ancestor of them the history knows. A node's tree keeps only the
    /// newest `revs_limit` generations of a path (stemming): an older revision that an edit
    /// held by the node built on is part of its history all the same.
    fn lineage<'a>(&'a self, revs: impl IntoIterator<Item = &'a String>) -> HashSet<&'a str> {
        let mut seen = HashSet::new();
        for rev in revs {
            let mut cur = Some(rev.as_str());
            while let Some(r) = cur {
                if !seen.insert(r) {
                    break;
                }
                cur = self.parent.get(r).map(String::as_str);
            }
        }
        seen
    }
}

/// When a read may still return a deleted or expired session — the documented staleness bounds.
///
/// A spoke cut off from the hub keeps serving (that is the availability promise), so a delete
/// made elsewhere reaches it only when replication does: no fixed bound holds across a
/// partition. What does hold, and what is checked:
/// - the node that acknowledged a delete never serves the deleted revision afterwards
///   (`same_node` after the acknowledgement);
/// - once the fleet has converged (`converged_at`), no node serves it;
/// - no node serves a session more than `expiry` after its expiry time (clock granularity and
///   skew between the writer's clock and the node's).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Grace after a delete's acknowledgement at the node that acknowledged it.
    pub same_node: Duration,
    /// Grace after a session's expiry time, at any node.
    pub expiry: Duration,
    /// From the history's start: when every node was seen to hold the same state after the last
    /// fault healed. Reads invoked later, anywhere, must not return deleted sessions.
    pub converged_at: Option<Duration>,
}

/// The verdict. [`Report::assert_clean`] fails a test on anything that must be zero.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Operations by outcome.
    pub ok: usize,
    /// Operations that certainly did not happen.
    pub failed: usize,
    /// Operations whose outcome is unknown.
    pub unknown: usize,
    /// Unknown writes or deletes whose revision is held by some node at the end.
    pub unknown_landed: usize,
    /// Acknowledged writes/deletes missing on some node: (node, session, revision).
    pub lost: Vec<(String, String, String)>,
    /// Reads that returned a deleted or expired session beyond the bound: a description each.
    pub resurrected: Vec<String>,
    /// Sessions whose final winner differs between nodes: (session, node → winner).
    pub divergent: Vec<(String, BTreeMap<String, Option<String>>)>,
    /// Reads, and how many answered at all (ok).
    pub reads: usize,
    /// Reads that were answered.
    pub reads_ok: usize,
}

impl Report {
    /// Panics with the whole report if anything that must be zero is not.
    pub fn assert_clean(&self) {
        assert!(
            self.lost.is_empty() && self.resurrected.is_empty() && self.divergent.is_empty(),
            "history check failed:\n{self}"
        );
    }

    /// Fraction of reads answered, in `[0, 1]`; 1 when there were no reads.
    pub fn read_availability(&self) -> f64 {
        if self.reads == 0 {
            1.0
        } else {
            self.reads_ok as f64 / self.reads as f64
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ops ok {} failed {} unknown {} (landed {}); reads {} answered {:.4}",
            self.ok,
            self.failed,
            self.unknown,
            self.unknown_landed,
            self.reads,
            self.read_availability()
        )?;
        writeln!(
            f,
            "lost {} resurrected {} divergent {}",
            self.lost.len(),
            self.resurrected.len(),
            self.divergent.len()
        )?;
        for (node, key, rev) in self.lost.iter().take(20) {
            writeln!(f, "  lost: {key} rev {rev} on {node}")?;
        }
        for r in self.resurrected.iter().take(20) {
            writeln!(f, "  resurrected: {r}")?;
        }
        for (key, winners) in self.divergent.iter().take(20) {
            writeln!(f, "  divergent: {key}: {winners:?}")?;
        }
        Ok(())
    }
}

/// The generation of a revision `N-hash`.
fn generation(rev: &str) -> Option<u64> {
    rev.split_once('-').and_then(|(g, _)| g.parse().ok())
}

/// Checks `ops` against `finals` under `bounds`.
///
/// `checked_at` is when the final states were read (from the history's start), to tell a
/// purged expired session from a lost one.
pub fn check(ops: &[Op], finals: &FinalStates, bounds: Bounds, checked_at: Duration) -> Report {
    let mut report = Report::default();
    let mut ancestry = Ancestry::default();
    // rev → its write's expiry (for expiry checks and purge allowance).
    let mut expiry_of: HashMap<&str, Option<Duration>> = HashMap::new();
    for op in ops {
        match &op.outcome {
            Outcome::Ok(_) => report.ok += 1,
            Outcome::Failed => report.failed += 1,
            Outcome::Unknown => report.unknown += 1,
        }
        if let (Some(parent), Outcome::Ok(Some(rev))) = (&op.parent, &op.outcome) {
            if op.kind != OpKind::Read {
                ancestry.parent.insert(rev.clone(), parent.clone());
            }
        }
        let written = match &op.outcome {
            Outcome::Ok(Some(rev)) => Some(rev),
            Outcome::Unknown => op.unknown_rev.as_ref(),
            _ => None,
        };
        if let (OpKind::Write { expires }, Some(rev)) = (&op.kind, written) {
            expiry_of.insert(rev, *expires);
        }
    }

    // Whether a session may have been purged by the end because its newest write that may have
    // landed (acknowledged, or of unknown outcome: once purged, nothing shows whether it landed)
    // had expired. Such a session is not lost.
    let mut by_invocation: Vec<&Op> = ops.iter().collect();
    by_invocation.sort_by_key(|op| op.invoked);
    let mut expired_by_end: HashMap<&str, bool> = HashMap::new();
    for op in by_invocation {
        match (&op.kind, &op.outcome) {
            (OpKind::Write { expires }, Outcome::Ok(Some(_)) | Outcome::Unknown) => {
                let gone = expires.is_some_and(|e| e <= checked_at);
                expired_by_end.insert(&op.key, gone);
            }
            (OpKind::Delete, Outcome::Ok(Some(_))) => {
                expired_by_end.insert(&op.key, false);
            }
            _ => {}
        }
    }

    // Node → session → its revisions and their known ancestors (see `Ancestry::lineage`),
    // and the oldest generation its tree still holds: anything older was stemmed away
    // (a recreation after a delete extends the tombstone without the history knowing
    // the parent, so lineage alone does not reach back across it).
    let lineages: BTreeMap<&str, HashMap<&str, (HashSet<&str>, u64)>> = finals
        .iter()
        .map(|(node, docs)| {
            let per_key = docs
                .iter()
                .map(|(key, d)| {
                    let oldest = d.revs.iter().filter_map(|r| generation(r)).min().unwrap_or(0);
                    (key.as_str(), (ancestry.lineage(&d.revs), oldest))
                })
                .collect();
            (node.as_str(), per_key)
        })
        .collect();
    let held = |node: &str, key: &str, rev: &str| {
        lineages
            .get(node)
            .and_then(|docs| docs.get(key))
            .is_some_and(|(lineage, oldest)| {
                lineage.contains(rev) || generation(rev).is_some_and(|g| g < *oldest)
            })
    };
    let held_anywhere = |key: &str, rev: &str| lineages.keys().any(|node| held(node, key, rev));

    for op in ops {
        match (&op.kind, &op.outcome) {
            (OpKind::Read, outcome) => {
                report.reads += 1;
                let Outcome::Ok(answer) = outcome else { continue };
                report.reads_ok += 1;
                let Some(read_rev) = answer else { continue };
                // After an acknowledged delete of this revision (or a descendant of it).
                for del in ops.iter().filter(|d| d.key == op.key && d.kind == OpKind::Delete) {
                    let (Outcome::Ok(Some(_)), Some(deleted)) = (&del.outcome, &del.parent) else {
                        continue;
                    };
                    let same_node = del.node == op.node && del.completed + bounds.same_node < op.invoked;
                    let fleet = bounds
                        .converged_at
                        .is_some_and(|c| op.invoked > c && op.invoked > del.completed);
                    if (same_node || fleet) && ancestry.is_ancestor_or_self(read_rev, deleted) {
                        report.resurrected.push(format!(
                            "{} read {read_rev} at {:?} from {}, deleted (rev {deleted}) at {:?}",
                            op.key, op.invoked, op.node, del.completed
                        ));
                    }
                }
                // After its expiry.
                if let Some(Some(expires)) = expiry_of.get(read_rev.as_str()) {
                    if *expires + bounds.expiry < op.invoked {
                        report.resurrected.push(format!(
                            "{} read {read_rev} at {:?} from {}, expired at {expires:?}",
                            op.key, op.invoked, op.node
                        ));
                    }
                }
            }
            (_, Outcome::Ok(Some(rev))) => {
                for node in finals.keys() {
                    let purged = expired_by_end.get(op.key.as_str()).copied().unwrap_or(false);
                    if !held(node, &op.key, rev) && !purged {
                        report.lost.push((node.clone(), op.key.clone(), rev.clone()));
                    }
                }
            }
            (_, Outcome::Unknown)
                if op
                    .unknown_rev
                    .as_deref()
                    .is_some_and(|rev| held_anywhere(&op.key, rev)) =>
            {
                report.unknown_landed += 1;
            }
            _ => {}
        }
    }

    // The nodes' final states are read one after another, so a winner that expires while they
    // are read is served by the first nodes and not by the later ones: it counts as gone.
    let expiring = |rev: &str| {
        expiry_of
            .get(rev)
            .copied()
            .flatten()
            .is_some_and(|e| e <= checked_at + bounds.expiry)
    };
    let keys: BTreeSet<&String> = finals.values().flat_map(|d| d.keys()).collect();
    for key in keys {
        let winners: BTreeMap<String, Option<String>> = finals
            .iter()
            .map(|(node, docs)| (node.clone(), docs.get(key).and_then(|d| d.winner.clone())))
            .collect();
        let distinct: BTreeSet<Option<&str>> = winners
            .values()
            .map(|w| w.as_deref().filter(|rev| !expiring(rev)))
            .collect();
        if distinct.len() > 1 {
            report.divergent.push((key.clone(), winners));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Op;

    fn op(key: &str, kind: OpKind, parent: Option<&str>, at: (u64, u64), outcome: Outcome) -> Op {
        Op {
            client: 0,
            node: "n".into(),
            key: key.into(),
            kind,
            parent: parent.map(str::to_owned),
            unknown_rev: None,
            invoked: Duration::from_millis(at.0),
            completed: Duration::from_millis(at.1),
            outcome,
        }
    }

    fn ok(rev: &str) -> Outcome {
        Outcome::Ok(Some(rev.into()))
    }

    /// An acknowledged write of session "s" without expiry, on `parent`, answered `rev`.
    fn write(parent: Option<&str>, at: (u64, u64), rev: &str) -> Op {
        op("s", OpKind::Write { expires: None }, parent, at, ok(rev))
    }

    fn doc(winner: Option<&str>, revs: &[&str]) -> FinalDoc {
        FinalDoc {
            winner: winner.map(str::to_owned),
            revs: revs.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn finals(nodes: &[(&str, &str, FinalDoc)]) -> FinalStates {
        let mut out = FinalStates::new();
        for (node, key, d) in nodes {
            out.entry(node.to_string())
                .or_default()
                .insert(key.to_string(), d.clone());
        }
        out
    }

    const BOUND: Bounds = Bounds {
        same_node: Duration::from_millis(100),
        expiry: Duration::from_millis(100),
        converged_at: None,
    };
    const END: Duration = Duration::from_secs(60);

    #[test]
    fn a_clean_history_is_clean() {
        let ops = vec![
            write(None, (0, 5), "1-a"),
            op("s", OpKind::Read, None, (10, 11), ok("1-a")),
            op("s", OpKind::Delete, Some("1-a"), (20, 25), ok("2-d")),
            // Within the bound after the delete: allowed to see the old copy.
            op("s", OpKind::Read, None, (100, 101), ok("1-a")),
            op("s", OpKind::Read, None, (300, 301), Outcome::Ok(None)),
        ];
        let f = finals(&[
            ("a", "s", doc(None, &["1-a", "2-d"])),
            ("b", "s", doc(None, &["1-a", "2-d"])),
        ]);
        let r = check(&ops, &f, BOUND, END);
        r.assert_clean();
        assert_eq!((r.ok, r.reads, r.reads_ok), (5, 3, 3));
    }

    #[test]
    fn a_read_after_the_delete_beyond_the_bound_is_a_resurrection() {
        let ops = vec![
            write(None, (0, 5), "1-a"),
            write(Some("1-a"), (6, 8), "2-b"),
            op("s", OpKind::Delete, Some("2-b"), (20, 25), ok("3-d")),
            // An ancestor of the deleted revision, long after the delete.
            op("s", OpKind::Read, None, (500, 501), ok("1-a")),
        ];
        let f = finals(&[("a", "s", doc(None, &["1-a", "2-b", "3-d"]))]);
        let r = check(&ops, &f, BOUND, END);
        assert_eq!(r.resurrected.len(), 1, "{r}");
    }

    #[test]
    fn another_node_may_serve_a_deleted_session_until_the_fleet_converged() {
        let mut ops = vec![
            write(None, (0, 5), "1-a"),
            op("s", OpKind::Delete, Some("1-a"), (20, 25), ok("2-d")),
        ];
        let mut lagging = op("s", OpKind::Read, None, (500, 501), ok("1-a"));
        lagging.node = "far".into();
        ops.push(lagging.clone());
        let f = finals(&[("a", "s", doc(None, &["1-a", "2-d"]))]);
        check(&ops, &f, BOUND, END).assert_clean();
        let converged = Bounds {
            converged_at: Some(Duration::from_millis(400)),
            ..BOUND
        };
        assert_eq!(check(&ops, &f, converged, END).resurrected.len(), 1);
    }

    #[test]
    fn a_concurrent_branch_is_not_a_resurrection() {
        // Another datacentre wrote its own branch; the delete did not supersede it.
        let ops = vec![
            write(None, (0, 5), "1-a"),
            write(Some("1-a"), (10, 12), "2-x"),
            op("s", OpKind::Delete, Some("1-a"), (10, 12), ok("2-d")),
            op("s", OpKind::Read, None, (500, 501), ok("2-x")),
        ];
        let f = finals(&[("a", "s", doc(Some("2-x"), &["1-a", "2-x", "2-d"]))]);
        check(&ops, &f, BOUND, END).assert_clean();
    }

    #[test]
    fn an_expired_session_read_beyond_the_bound_is_a_resurrection() {
        let expires = Some(Duration::from_millis(50));
        let ops = vec![
            op("s", OpKind::Write { expires }, None, (0, 5), ok("1-a")),
            op("s", OpKind::Read, None, (120, 121), ok("1-a")),
            op("s", OpKind::Read, None, (400, 401), ok("1-a")),
        ];
        // Purged everywhere at the end: not lost, because it expired.
        let r = check(&ops, &finals(&[("a", "t", doc(None, &[]))]), BOUND, END);
        assert_eq!(r.resurrected.len(), 1, "{r}");
        assert!(r.lost.is_empty(), "{r}");
    }

    #[test]
    fn a_revision_stemmed_from_the_tree_is_not_lost_but_one_off_the_path_is() {
        // 1-a <- 2-b <- 3-c acknowledged; the node keeps only the newest two generations.
        let ops = vec![
            write(None, (0, 5), "1-a"),
            write(Some("1-a"), (6, 8), "2-b"),
            write(Some("2-b"), (9, 10), "3-c"),
        ];
        let stemmed = finals(&[("a", "s", doc(Some("3-c"), &["2-b", "3-c"]))]);
        check(&ops, &stemmed, BOUND, END).assert_clean();
        // Recreated after a delete the history does not link (no parent sent): 1-a is
        // below the oldest generation the tree holds.
        let recreated = finals(&[("a", "s", doc(Some("5-e"), &["4-d", "5-e"]))]);
        check(&ops[..1], &recreated, BOUND, END).assert_clean();
        // A tree with another lineage does not vouch for the history's revisions within
        // the generations it holds (1-a is below them: stemmed, not judged).
        let other = finals(&[("a", "s", doc(Some("3-z"), &["2-y", "3-z"]))]);
        let lost: Vec<String> = check(&ops, &other, BOUND, END)
            .lost
            .into_iter()
            .map(|l| l.2)
            .collect();
        assert_eq!(lost, ["2-b", "3-c"]);
    }

    #[test]
    fn a_missing_acknowledged_revision_is_lost_and_divergence_is_seen() {
        let ops = vec![write(None, (0, 5), "1-a"), write(Some("1-a"), (6, 8), "2-b")];
        let f = finals(&[
            ("a", "s", doc(Some("2-b"), &["1-a", "2-b"])),
            ("b", "s", doc(Some("1-a"), &["1-a"])),
        ]);
        let r = check(&ops, &f, BOUND, END);
        assert_eq!(
            r.lost,
            vec![("b".to_string(), "s".to_string(), "2-b".to_string())]
        );
        assert_eq!(r.divergent.len(), 1);
    }

    #[test]
    fn a_session_purged_after_an_unknown_expiring_write_is_not_lost() {
        // The acknowledged write lives for an hour; the later one, whose answer was lost,
        // expired: once the sweeper purged the session nothing shows that it landed.
        let mut unknown = op(
            "s",
            OpKind::Write {
                expires: Some(Duration::from_millis(30)),
            },
            Some("1-a"),
            (10, 20),
            Outcome::Unknown,
        );
        unknown.unknown_rev = Some("2-b".into());
        let ops = vec![
            op(
                "s",
                OpKind::Write {
                    expires: Some(Duration::from_secs(3600)),
                },
                None,
                (0, 5),
                ok("1-a"),
            ),
            unknown,
        ];
        let f = finals(&[("a", "t", doc(None, &[]))]);
        check(&ops, &f, BOUND, END).assert_clean();
        // An acknowledged delete afterwards leaves a tombstone: missing 1-a and 3-d is a loss.
        let mut deleted = ops.clone();
        deleted.push(op("s", OpKind::Delete, Some("2-b"), (30, 40), ok("3-d")));
        assert_eq!(check(&deleted, &f, BOUND, END).lost.len(), 2);
    }

    #[test]
    fn a_winner_expiring_while_the_nodes_are_read_is_not_divergence() {
        let expires = Some(END - Duration::from_millis(50));
        let ops = vec![op("s", OpKind::Write { expires }, None, (0, 5), ok("1-a"))];
        // Read from `a` just before the expiry, from `b` just after.
        let f = finals(&[
            ("a", "s", doc(Some("1-a"), &["1-a"])),
            ("b", "s", doc(None, &["1-a"])),
        ]);
        check(&ops, &f, BOUND, END).assert_clean();
        let lives = vec![write(None, (0, 5), "1-a")];
        assert_eq!(check(&lives, &f, BOUND, END).divergent.len(), 1);
    }

    #[test]
    fn unknown_outcomes_are_counted_and_their_landing_seen() {
        let mut unknown = op(
            "s",
            OpKind::Write { expires: None },
            None,
            (0, 5),
            Outcome::Unknown,
        );
        unknown.unknown_rev = Some("1-a".into());
        let mut lost_unknown = unknown.clone();
        lost_unknown.unknown_rev = Some("1-z".into());
        let f = finals(&[("a", "s", doc(Some("1-a"), &["1-a"]))]);
        let r = check(&[unknown, lost_unknown], &f, BOUND, END);
        r.assert_clean();
        assert_eq!((r.unknown, r.unknown_landed), (2, 1));
    }
}
