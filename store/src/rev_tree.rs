//! A document's revision tree: CouchDB's merge, winner and stemming rules.
//!
//! The tree is a map from revision to its parent and deleted flag. A node keeps
//! its parent's id even after stemming removed the parent, so that merging the
//! same paths in any order yields the same tree on every node (convergence).
//!
//! Stemming alone is not order-independent: a revision that arrives after its
//! descendants were stemmed would come back as a phantom conflict leaf (a known
//! CouchDB wart), and which ancestors survive would depend on arrival order. So
//! stemmed revisions stay in the map as *ghosts* (`stemmed: true`, no body) for
//! [`ghost_window`] generations below the newest revision. Stemming is then a
//! function of the union of all paths seen, whatever their order: within the
//! window, every node converges to the same tree.
//!
//! Beyond the window nothing is remembered, so one more rule keeps a forgotten
//! branch from coming back: a leaf [`ghost_window`] or more generations below the
//! newest revision is *ancient* and is dropped with its history (and a path
//! arriving that far below is not stored, and not reported missing). Otherwise a
//! lagging peer's live revision, forgotten here long ago, would return as a live
//! leaf and beat a tombstone, undeleting a session. The rule depends only on the
//! union of paths seen (the newest generation only grows), so it converges too.
//! Its price: a genuinely independent branch that far behind is dropped, even if
//! it is live (a session id reused after a long history; ids are random).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::rev::Rev;

/// One revision in a tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevNode {
    /// The parent revision, if known; it may have been stemmed out of the tree.
    pub parent: Option<Rev>,
    /// Whether this revision is a tombstone.
    pub deleted: bool,
    /// When the revision's session expires (unix seconds), if its body says so.
    pub expires_at: Option<u64>,
    /// Stemmed away: kept only as structure (a ghost), never read.
    pub stemmed: bool,
}

/// What a new leaf carries besides its place in the tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeafData {
    /// Whether the new revision is a tombstone.
    pub deleted: bool,
    /// Its expiry time (unix seconds), if any.
    pub expires_at: Option<u64>,
}

/// A leaf of the tree: a current head of some branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// The leaf's revision.
    pub rev: Rev,
    /// Whether the leaf is a tombstone.
    pub deleted: bool,
    /// The leaf's expiry time (unix seconds), if any.
    pub expires_at: Option<u64>,
}

/// The revision tree (a forest, after stemming) of one document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevTree {
    /// Live revisions and ghosts (see the module docs).
    nodes: BTreeMap<Rev, RevNode>,
}

/// How many generations below the newest revision stemmed revisions are
/// remembered; a leaf this far or further below is ancient and dropped.
pub fn ghost_window(revs_limit: u32) -> u64 {
    (u64::from(revs_limit) * 4).max(16)
}

/// Whether a revision of generation `gen` is ancient in a tree whose newest
/// revision has generation `newest` (see the module docs).
fn is_ancient(gen: u64, newest: u64, window: u64) -> bool {
    gen.saturating_add(window) <= newest
}

/// What an interactive edit did to the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EditOutcome {
    /// A new revision was added.
    Added(Rev),
    /// The same edit of the same parent was already applied: nothing changed.
    AlreadyApplied(Rev),
}

impl EditOutcome {
    /// The revision the edit names.
    pub fn rev(&self) -> &Rev {
        match self {
            EditOutcome::Added(r) | EditOutcome::AlreadyApplied(r) => r,
        }
    }
}

impl RevTree {
    /// An empty tree (a document that does not exist yet).
    pub fn new() -> RevTree {
        RevTree::default()
    }

    fn live(&self) -> impl Iterator<Item = (&Rev, &RevNode)> {
        self.nodes.iter().filter(|(_, n)| !n.stemmed)
    }

    /// Whether the tree holds no live revision.
    pub fn is_empty(&self) -> bool {
        self.live().next().is_none()
    }

    /// How many live revisions the tree holds.
    pub fn len(&self) -> usize {
        self.live().count()
    }

    /// Whether `rev` is a live revision of the tree.
    pub fn contains(&self, rev: &Rev) -> bool {
        self.node(rev).is_some()
    }

    /// The node of `rev`, if live.
    pub fn node(&self, rev: &Rev) -> Option<&RevNode> {
        self.nodes.get(rev).filter(|n| !n.stemmed)
    }

    /// Whether `rev` was in the tree and has been stemmed away.
    pub fn is_stemmed(&self, rev: &Rev) -> bool {
        self.nodes.get(rev).is_some_and(|n| n.stemmed)
    }

    fn parents(&self) -> BTreeSet<&Rev> {
        self.nodes.values().filter_map(|n| n.parent.as_ref()).collect()
    }

    /// All live revisions, oldest generation first.
    pub fn revs(&self) -> impl Iterator<Item = &Rev> {
        self.live().map(|(r, _)| r)
    }

    /// The leaves, in no particular order of importance (sorted by revision).
    pub fn leaves(&self) -> Vec<Leaf> {
        let parents = self.parents();
        self.live()
            .filter(|(rev, _)| !parents.contains(rev))
            .map(|(rev, node)| Leaf {
                rev: rev.clone(),
                deleted: node.deleted,
                expires_at: node.expires_at,
            })
            .collect()
    }

    /// Whether `rev` is a leaf.
    pub fn is_leaf(&self, rev: &Rev) -> bool {
        self.contains(rev) && !self.parents().contains(rev)
    }

    /// Leaves ordered winner first: CouchDB's rule (non-deleted before deleted,
    /// then highest generation, then greatest hash bytewise).
    pub fn leaves_by_rank(&self) -> Vec<Leaf> {
        let mut leaves = self.leaves();
        leaves.sort_by(|a, b| rank(b).cmp(&rank(a)));
        leaves
    }

    /// The winning leaf, or `None` for an empty tree.
    pub fn winner(&self) -> Option<Leaf> {
        self.leaves().into_iter().max_by(|a, b| rank(a).cmp(&rank(b)))
    }

    /// Non-deleted leaves other than the winner (CouchDB's `_conflicts`).
    pub fn conflicts(&self) -> Vec<Rev> {
        self.leaves_by_rank()
            .into_iter()
            .skip(1)
            .filter(|l| !l.deleted)
            .map(|l| l.rev)
            .collect()
    }

    /// Deleted leaves other than the winner (CouchDB's `_deleted_conflicts`).
    pub fn deleted_conflicts(&self) -> Vec<Rev> {
        self.leaves_by_rank()
            .into_iter()
            .skip(1)
            .filter(|l| l.deleted)
            .map(|l| l.rev)
            .collect()
    }

    /// The history of `rev`, newest first, as far as the tree still knows it.
    pub fn ancestry(&self, rev: &Rev) -> Vec<Rev> {
        let mut path = Vec::new();
        let mut cur = Some(rev.clone());
        while let Some(r) = cur {
            let Some(node) = self.node(&r) else { break };
            cur = node.parent.clone();
            path.push(r);
        }
        path
    }

    /// The history of `rev`, newest first: down to the first of `known` it leads
    /// to, through stemmed revisions if need be, or else as far as the tree still
    /// knows it ([`RevTree::ancestry`]). The walk is bounded by the ghost window.
    pub fn ancestry_joining(&self, rev: &Rev, known: &[Rev]) -> Vec<Rev> {
        if !known.is_empty() {
            let mut path = Vec::new();
            let mut cur = Some(rev.clone());
            while let Some(r) = cur {
                let Some(node) = self.nodes.get(&r) else { break };
                cur = node.parent.clone();
                let joined = known.contains(&r);
                path.push(r);
                if joined {
                    return path;
                }
            }
        }
        self.ancestry(rev)
    }

    /// Applies an interactive edit: a child of `parent` (which must be a leaf), or
    /// a first revision when `parent` is `None` (allowed only when the document
    /// does not exist or its winner is deleted, in which case the new revision
    /// extends the deleted winner, as CouchDB does).
    pub fn edit(
        &mut self,
        parent: Option<&Rev>,
        leaf: LeafData,
        body: &[u8],
        revs_limit: u32,
    ) -> Result<EditOutcome, EditError> {
        let parent = match parent {
            Some(p) => {
                if !self.contains(p) {
                    return Err(EditError::Conflict);
                }
                Some(p.clone())
            }
            None => match self.winner() {
                None => None,
                Some(w) if w.deleted => Some(w.rev),
                Some(_) => return Err(EditError::Conflict),
            },
        };
        let rev =
            Rev::for_edit(parent.as_ref(), leaf.deleted, body).map_err(|_| EditError::GenerationLimit)?;
        if let Some(existing) = self.node(&rev) {
            if existing.parent == parent {
                return Ok(EditOutcome::AlreadyApplied(rev));
            }
        }
        if let Some(p) = &parent {
            if !self.is_leaf(p) {
                return Err(EditError::Conflict);
            }
        }
        self.nodes.insert(
            rev.clone(),
            RevNode {
                parent,
                deleted: leaf.deleted,
                expires_at: leaf.expires_at,
                stemmed: false,
            },
        );
        self.stem(revs_limit);
        Ok(EditOutcome::Added(rev))
    }

    /// Merges a replicated revision path (newest first, consecutive generations),
    /// whose first element is a leaf with the given deleted flag. Idempotent and
    /// order-independent. Returns whether the tree changed.
    pub fn merge_path(&mut self, path: &[Rev], leaf: LeafData, revs_limit: u32) -> Result<bool, Error> {
        check_path(path)?;
        let before = self.clone();
        for (i, rev) in path.iter().enumerate() {
            let parent = path.get(i + 1).cloned();
            let data = if i == 0 { leaf } else { LeafData::default() };
            // A ghost is updated like a live node; stemming decides whether it lives.
            match self.nodes.get_mut(rev) {
                Some(node) => {
                    // Max/or merges: deterministic whatever the arrival order.
                    node.deleted |= data.deleted;
                    node.expires_at = node.expires_at.max(data.expires_at);
                    if parent > node.parent {
                        node.parent = parent;
                    }
                }
                None => {
                    self.nodes.insert(
                        rev.clone(),
                        RevNode {
                            parent,
                            deleted: data.deleted,
                            expires_at: data.expires_at,
                            stemmed: false,
                        },
                    );
                }
            }
        }
        self.stem(revs_limit);
        Ok(*self != before)
    }

    /// The highest generation in the tree (0 when empty). The newest revision is
    /// always a live leaf: nothing in the tree descends from it.
    fn newest(&self) -> u64 {
        self.nodes.keys().map(Rev::generation).max().unwrap_or(0)
    }

    /// Whether `rev` is so far below the newest revision that the tree would
    /// not keep it (nor anything arriving with it).
    pub fn is_ancient(&self, rev: &Rev, revs_limit: u32) -> bool {
        is_ancient(rev.generation(), self.newest(), ghost_window(revs_limit))
    }

    /// Keeps, for every leaf that is not ancient, only its `limit` newest
    /// ancestors (itself included); what goes becomes a ghost, and ghosts older
    /// than the window are forgotten — ancient leaves with them.
    pub fn stem(&mut self, limit: u32) {
        let window = ghost_window(limit);
        let newest = self.newest();
        let limit = limit.max(1) as usize;
        let mut keep = BTreeSet::new();
        for leaf in self.leaves() {
            if is_ancient(leaf.rev.generation(), newest, window) {
                continue;
            }
            let mut cur = Some(leaf.rev);
            for _ in 0..limit {
                let Some(r) = cur else { break };
                cur = self.nodes.get(&r).and_then(|n| n.parent.clone());
                keep.insert(r);
            }
        }
        for (rev, node) in self.nodes.iter_mut() {
            node.stemmed = !keep.contains(rev);
        }
        self.nodes
            .retain(|rev, node| !node.stemmed || !is_ancient(rev.generation(), newest, window));
    }

    /// The revisions of `revs` that the tree lacks, and leaves that could be
    /// their ancestors (CouchDB's `_revs_diff`).
    pub fn revs_diff(&self, revs: &[Rev], revs_limit: u32) -> (Vec<Rev>, Vec<Rev>) {
        // A stemmed or ancient revision is not missing: fetching it again would
        // only make a phantom leaf, or be dropped on arrival.
        let mut missing: Vec<Rev> = revs
            .iter()
            .filter(|r| !self.contains(r) && !self.is_stemmed(r) && !self.is_ancient(r, revs_limit))
            .cloned()
            .collect();
        missing.sort();
        missing.dedup();
        let max_missing = missing.iter().map(Rev::generation).max().unwrap_or(0);
        let ancestors = self
            .leaves()
            .into_iter()
            .filter(|l| l.rev.generation() < max_missing)
            .map(|l| l.rev)
            .collect();
        (missing, ancestors)
    }
}

/// Why an interactive edit was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EditError {
    /// The parent is unknown or not a leaf, or the document exists and no parent was given.
    Conflict,
    /// The parent is at [`crate::MAX_GENERATION`]: no revision can follow it.
    GenerationLimit,
}

fn rank(leaf: &Leaf) -> (bool, &Rev) {
    (!leaf.deleted, &leaf.rev)
}

/// A path must be non-empty and name consecutive generations, newest first.
pub(crate) fn check_path(path: &[Rev]) -> Result<(), Error> {
    let Some(first) = path.first() else {
        return Err(Error::InvalidRevisions {
            reason: "empty revision path".into(),
        });
    };
    for (i, rev) in path.iter().enumerate() {
        let expected = u64::try_from(i)
            .ok()
            .and_then(|i| first.generation().checked_sub(i));
        if expected != Some(rev.generation()) {
            return Err(Error::InvalidRevisions {
                reason: format!("revision {rev} out of sequence in a path starting at {first}"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Rev {
        s.parse().unwrap()
    }

    fn del(deleted: bool) -> LeafData {
        LeafData {
            deleted,
            expires_at: None,
        }
    }

    fn path(revs: &[&str]) -> Vec<Rev> {
        revs.iter().map(|s| r(s)).collect()
    }

    fn tree(paths: &[(&[&str], bool)]) -> RevTree {
        let mut t = RevTree::new();
        for (p, deleted) in paths {
            t.merge_path(&path(p), del(*deleted), 1000).unwrap();
        }
        t
    }

    #[test]
    fn winner_prefers_higher_generation() {
        let t = tree(&[(&["2-a", "1-a"], false), (&["3-b", "2-b", "1-a"], false)]);
        assert_eq!(t.winner().unwrap().rev, r("3-b"));
        assert_eq!(t.conflicts(), vec![r("2-a")]);
    }

    #[test]
    fn winner_breaks_generation_ties_by_hash_bytes() {
        // CouchDB's documented example: two 2- revisions, the greater hash wins.
        let t = tree(&[
            (&["2-7051cbe5c8faecd085a3fa619e6e6337", "1-a"], false),
            (&["2-b4d5ff9c6d1e1b6a3b5b1c57a2d0f0c1", "1-a"], false),
        ]);
        assert_eq!(t.winner().unwrap().rev, r("2-b4d5ff9c6d1e1b6a3b5b1c57a2d0f0c1"));
        assert_eq!(t.conflicts(), vec![r("2-7051cbe5c8faecd085a3fa619e6e6337")]);
    }

    #[test]
    fn non_deleted_leaf_beats_longer_deleted_branch() {
        let t = tree(&[(&["2-a", "1-a"], false), (&["4-d", "3-d", "2-d", "1-a"], true)]);
        let w = t.winner().unwrap();
        assert_eq!(w.rev, r("2-a"));
        assert!(!w.deleted);
        assert!(t.conflicts().is_empty());
        assert_eq!(t.deleted_conflicts(), vec![r("4-d")]);
    }

    #[test]
    fn all_deleted_picks_highest_tombstone() {
        let t = tree(&[(&["2-a", "1-a"], true), (&["3-b", "2-b", "1-a"], true)]);
        let w = t.winner().unwrap();
        assert_eq!((w.rev, w.deleted), (r("3-b"), true));
    }

    #[test]
    fn merge_is_idempotent() {
        let mut t = tree(&[(&["3-c", "2-b", "1-a"], false)]);
        assert!(!t
            .merge_path(&path(&["3-c", "2-b", "1-a"]), del(false), 1000)
            .unwrap());
        assert!(!t.merge_path(&path(&["2-b", "1-a"]), del(false), 1000).unwrap());
        assert_eq!(t.leaves().len(), 1);
        assert!(t.merge_path(&path(&["4-d", "3-c"]), del(false), 1000).unwrap());
        assert_eq!(t.winner().unwrap().rev, r("4-d"));
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn merge_rejects_gaps() {
        let mut t = RevTree::new();
        assert!(t.merge_path(&path(&["3-c", "1-a"]), del(false), 10).is_err());
        assert!(t.merge_path(&[], del(false), 10).is_err());
        assert!(t.is_empty());
    }

    #[test]
    fn edit_requires_a_leaf_parent() {
        let mut t = RevTree::new();
        let first = t.edit(None, del(false), b"{}", 100).unwrap();
        let first = first.rev().clone();
        assert_eq!(
            t.edit(None, del(false), b"{\"x\":1}", 100),
            Err(EditError::Conflict)
        );
        let second = t.edit(Some(&first), del(false), b"{\"x\":1}", 100).unwrap();
        assert!(matches!(second, EditOutcome::Added(_)));
        // The same edit again is idempotent...
        assert_eq!(
            t.edit(Some(&first), del(false), b"{\"x\":1}", 100).unwrap(),
            EditOutcome::AlreadyApplied(second.rev().clone())
        );
        // ...but a different edit of a non-leaf is a conflict.
        assert_eq!(
            t.edit(Some(&first), del(false), b"{\"x\":2}", 100),
            Err(EditError::Conflict)
        );
        assert_eq!(
            t.edit(Some(&r("9-zz")), del(false), b"{}", 100),
            Err(EditError::Conflict)
        );
    }

    #[test]
    fn recreate_after_delete_extends_the_tombstone() {
        let mut t = RevTree::new();
        let a = t.edit(None, del(false), b"{}", 100).unwrap().rev().clone();
        let d = t.edit(Some(&a), del(true), b"{}", 100).unwrap().rev().clone();
        assert!(t.winner().unwrap().deleted);
        let again = t
            .edit(None, del(false), b"{\"back\":true}", 100)
            .unwrap()
            .rev()
            .clone();
        assert_eq!(again.generation(), 3);
        assert_eq!(t.node(&again).unwrap().parent, Some(d));
        assert!(!t.winner().unwrap().deleted);
    }

    #[test]
    fn stemming_keeps_limit_per_leaf() {
        let mut t = tree(&[(&["5-e", "4-d", "3-c", "2-b", "1-a"], false)]);
        t.stem(3);
        assert_eq!(
            t.revs().cloned().collect::<Vec<_>>(),
            path(&["3-c", "4-d", "5-e"])
        );
        assert_eq!(t.ancestry(&r("5-e")), path(&["5-e", "4-d", "3-c"]));
        // A branch from an old ancestor keeps its own history.
        t.merge_path(&path(&["3-x", "2-b", "1-a"]), del(false), 3)
            .unwrap();
        assert!(t.contains(&r("1-a")) && t.contains(&r("2-b")) && t.contains(&r("3-x")));
        assert_eq!(t.leaves().len(), 2);
    }

    #[test]
    fn a_history_joined_to_an_old_leaf_leaves_no_false_conflict() {
        let revs: Vec<String> = (1..=30).rev().map(|g| format!("{g}-x{g}")).collect();
        let full: Vec<&str> = revs.iter().map(String::as_str).collect();
        let mut source = tree(&[(&full, true)]);
        source.stem(10);
        let head = r("30-x30");
        assert_eq!(source.ancestry(&head).len(), 10, "stemmed to the limit");
        // A peer that last saw generation 3 gets the way down to it, through ghosts.
        let joined = source.ancestry_joining(&head, &[r("3-x3")]);
        assert_eq!(joined, path(&full[..28]));
        // A leaf the tree never had changes nothing.
        assert_eq!(
            source.ancestry_joining(&head, &[r("3-other")]),
            source.ancestry(&head)
        );
        let mut peer = tree(&[(&full[27..], false)]);
        peer.merge_path(&joined, del(true), 10).unwrap();
        assert_eq!(
            peer.leaves(),
            source.leaves(),
            "the old leaf is joined, the delete stands"
        );
        let mut unjoined = tree(&[(&full[27..], false)]);
        unjoined
            .merge_path(&source.ancestry(&head), del(true), 10)
            .unwrap();
        assert_eq!(
            unjoined.leaves().len(),
            2,
            "without the join: a false live conflict"
        );
    }

    #[test]
    fn stemmed_merges_converge_in_any_order() {
        let paths: Vec<(Vec<Rev>, bool)> = vec![
            (path(&["5-e", "4-d", "3-c", "2-b", "1-a"]), false),
            (path(&["2-x", "1-a"]), false),
            (path(&["4-y", "3-y", "2-b"]), true),
            (path(&["3-c", "2-b", "1-a"]), false),
        ];
        let mut reference: Option<RevTree> = None;
        for perm in permutations(paths.len()) {
            let mut t = RevTree::new();
            for &i in &perm {
                t.merge_path(&paths[i].0, del(paths[i].1), 2).unwrap();
            }
            match &reference {
                None => reference = Some(t),
                Some(want) => assert_eq!(&t, want, "order {perm:?}"),
            }
        }
    }

    #[test]
    fn late_ancestor_does_not_come_back_as_a_leaf() {
        // Shrunk from the convergence property test: 3-c arrives after its child
        // 4-d was stemmed away.
        let mut t = RevTree::new();
        t.merge_path(&path(&["2-b"]), del(false), 3).unwrap();
        t.merge_path(&path(&["7-g", "6-f", "5-e", "4-d", "3-c"]), del(false), 3)
            .unwrap();
        assert!(t.is_stemmed(&r("4-d")));
        t.merge_path(&path(&["3-c", "2-b"]), del(true), 3).unwrap();
        let leaves: Vec<Rev> = t.leaves().into_iter().map(|l| l.rev).collect();
        assert_eq!(leaves, path(&["7-g"]), "no phantom leaves");
        assert!(t.revs_diff(&path(&["3-c", "4-d"]), 3).0.is_empty());
    }

    /// A chain `1-c … n-c` whose head has the given deleted flag.
    fn chain(n: u64, tag: &str) -> Vec<Rev> {
        (1..=n).rev().map(|g| r(&format!("{g}-{tag}"))).collect()
    }

    #[test]
    fn a_forgotten_live_branch_does_not_undelete() {
        // Here: 40 edits then a delete (revs_limit 3, window 16). A lagging peer
        // still has 20-c live, with its stemmed history 18..20.
        let mut t = RevTree::new();
        let mut deleted = chain(40, "c");
        deleted.insert(0, r("41-d"));
        t.merge_path(&deleted, del(true), 3).unwrap();
        assert!(t.winner().unwrap().deleted);
        let lagging = path(&["20-c", "19-c", "18-c"]);
        assert!(
            t.revs_diff(&lagging, 3).0.is_empty(),
            "an ancient revision is not missing"
        );
        assert!(
            !t.merge_path(&lagging, del(false), 3).unwrap(),
            "and is not stored"
        );
        let w = t.winner().unwrap();
        assert_eq!((w.rev, w.deleted), (r("41-d"), true));
        // The same union in the other order: the live branch arrives first,
        // wins for a while, and is dropped once the tombstone's history arrives.
        let mut u = RevTree::new();
        u.merge_path(&lagging, del(false), 3).unwrap();
        assert!(!u.winner().unwrap().deleted);
        u.merge_path(&deleted[..3], del(true), 3).unwrap();
        assert_eq!(u.winner().unwrap().rev, r("41-d"));
        assert_eq!(u.leaves().len(), 1, "{u:?}");
        u.merge_path(&deleted, del(true), 3).unwrap();
        assert_eq!(t, u);
    }

    #[test]
    fn no_edit_past_the_generation_bound() {
        let mut t = RevTree::new();
        let top = Rev::new(crate::MAX_GENERATION, "a").unwrap();
        t.merge_path(std::slice::from_ref(&top), del(false), 10).unwrap();
        assert_eq!(
            t.edit(Some(&top), del(true), b"{}", 10),
            Err(EditError::GenerationLimit)
        );
    }

    #[test]
    fn ghosts_are_bounded() {
        let mut t = RevTree::new();
        let mut parent: Option<Rev> = None;
        for i in 0..200u32 {
            let rev = t
                .edit(parent.as_ref(), del(false), &i.to_be_bytes(), 4)
                .unwrap()
                .rev()
                .clone();
            parent = Some(rev);
        }
        assert_eq!(t.len(), 4);
        assert_eq!(t.nodes.len() as u64, ghost_window(4));
    }

    fn permutations(n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![vec![]];
        }
        let mut out = Vec::new();
        for p in permutations(n - 1) {
            for i in 0..=p.len() {
                let mut q = p.clone();
                q.insert(i, n - 1);
                out.push(q);
            }
        }
        out
    }

    #[test]
    fn revs_diff_reports_missing_and_possible_ancestors() {
        let t = tree(&[(&["2-b", "1-a"], false)]);
        let (missing, anc) = t.revs_diff(&path(&["2-b", "3-c", "1-z"]), 1000);
        assert_eq!(missing, path(&["1-z", "3-c"]));
        assert_eq!(anc, path(&["2-b"]));
        let (missing, _) = t.revs_diff(&path(&["1-a"]), 1000);
        assert!(missing.is_empty());
    }
}
