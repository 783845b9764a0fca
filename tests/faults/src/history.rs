//! The record of what clients did and saw, Jepsen-style: every operation with the moment it was
//! invoked, the moment it completed, its outcome and what it returned. The checker judges the
//! store from this record alone (plus the nodes' final states), never from what the test meant
//! to happen.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    /// Wrote a revision of a session; `expires` is its expiry as an offset from the history's
    /// start, when it has one.
    Write {
        /// Expiry of the written session, as an offset from the history's start.
        expires: Option<Duration>,
    },
    /// Deleted the session.
    Delete,
    /// Read the session.
    Read,
}

/// How an operation ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged. For a write or delete: the revision it created. For a read: the revision
    /// returned, or `None` for "not found".
    Ok(Option<String>),
    /// Certainly did not happen (refused before it could apply).
    Failed,
    /// May or may not have happened (timeout, connection lost after sending).
    Unknown,
}

/// One client operation.
#[derive(Debug, Clone)]
pub struct Op {
    /// Which client process issued it.
    pub client: usize,
    /// Which node (or client configuration) it went to, for the report.
    pub node: String,
    /// The session id.
    pub key: String,
    /// What it did.
    pub kind: OpKind,
    /// For a write or delete: the revision it edited (`None` for a create). The checker learns
    /// revision ancestry from this.
    pub parent: Option<String>,
    /// For an operation with an unknown outcome: the revision it would have created, when the
    /// test can tell (revisions are deterministic), so the checker can see whether it landed.
    pub unknown_rev: Option<String>,
    /// When it was invoked, from the history's start.
    pub invoked: Duration,
    /// When it completed, from the history's start.
    pub completed: Duration,
    /// How it ended.
    pub outcome: Outcome,
}

/// A shared, append-only history. Clients record operations as they complete.
#[derive(Debug)]
pub struct History {
    start: Instant,
    ops: Mutex<Vec<Op>>,
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

impl History {
    /// A history starting now.
    pub fn new() -> History {
        History {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }

    /// The offset of `now` from the history's start.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Records a completed operation.
    pub fn record(&self, op: Op) {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }

    /// Every operation recorded so far, in completion order.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Starts timing an operation; finish it with [`Pending::done`].
    pub fn invoke(
        &self,
        client: usize,
        node: &str,
        key: &str,
        kind: OpKind,
        parent: Option<&str>,
    ) -> Pending<'_> {
        Pending {
            history: self,
            client,
            node: node.to_owned(),
            key: key.to_owned(),
            kind,
            parent: parent.map(str::to_owned),
            invoked: self.now(),
        }
    }
}

/// An operation invoked but not yet complete.
#[derive(Debug)]
pub struct Pending<'h> {
    history: &'h History,
    client: usize,
    node: String,
    key: String,
    kind: OpKind,
    parent: Option<String>,
    invoked: Duration,
}

impl Pending<'_> {
    /// Records the operation with its outcome, stamped complete now.
    pub fn done(self, outcome: Outcome) {
        self.finish(outcome, None);
    }

    /// Records an operation whose outcome is unknown, naming the revision it would have created.
    pub fn unknown(self, would_create: Option<String>) {
        self.finish(Outcome::Unknown, would_create);
    }

    fn finish(self, outcome: Outcome, unknown_rev: Option<String>) {
        let completed = self.history.now();
        self.history.record(Op {
            client: self.client,
            node: self.node,
            key: self.key,
            kind: self.kind,
            parent: self.parent,
            unknown_rev,
            invoked: self.invoked,
            completed,
            outcome,
        });
    }
}
