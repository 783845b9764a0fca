//! What can go wrong, in terms an app can act on.

use tonic::Code;

/// The outcome of a read or write that did not succeed. Each variant says what
/// the app should do (see [`ClientError::is_gone`], [`ClientError::is_retryable`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// No target knows the session (and every one asked to confirm answered):
    /// treat the user as logged out.
    #[error("session {id:?} not found in {db:?}")]
    NotFound {
        /// The database.
        db: String,
        /// The session id.
        id: String,
    },
    /// The session was deleted (logged out). Never undone by an older copy elsewhere.
    #[error("session {id:?} in {db:?} was deleted")]
    Deleted {
        /// The database.
        db: String,
        /// The session id.
        id: String,
    },
    /// The session has expired.
    #[error("session {id:?} in {db:?} has expired")]
    Expired {
        /// The database.
        db: String,
        /// The session id.
        id: String,
    },
    /// Nothing could answer, and nothing cached may be served: the client
    /// cannot say whether the session exists. Retry later, or fail the request
    /// (do not treat the user as logged out).
    #[error("no target could answer: {}", .attempts.iter().map(|(t, e)| format!("{t}: {e}")).collect::<Vec<_>>().join("; "))]
    Unavailable {
        /// (target, reason) per attempt.
        attempts: Vec<(String, String)>,
    },
    /// A write reached `target` but no answer came back: it may or may not have
    /// been committed. It was not sent anywhere else. Re-read the session and
    /// compare revisions before writing again.
    #[error("write to {target} may or may not have been committed: {reason}")]
    WriteOutcomeUnknown {
        /// The target that may have committed it.
        target: String,
        /// What went wrong.
        reason: String,
    },
    /// The revision given is not the current one: re-read, merge, write again.
    #[error("{target}: revision conflict: {message}")]
    Conflict {
        /// The target.
        target: String,
        /// Its message.
        message: String,
    },
    /// A target refused the request (bad input: the same everywhere).
    #[error("{target} refused: {code:?}: {message}")]
    Rejected {
        /// The target.
        target: String,
        /// The gRPC code.
        code: Code,
        /// Its message.
        message: String,
    },
    /// A read given a read-your-writes token found only older revisions (or none)
    /// wherever it looked, for as long as it may wait: the write has not reached
    /// this datacentre or any hub yet. Retry shortly; do not treat the user as
    /// logged out.
    #[error("session {id:?} in {db:?}: no target had revision {token} or later within {waited:?}")]
    Behind {
        /// The database.
        db: String,
        /// The session id.
        id: String,
        /// The token, as text.
        token: String,
        /// How long the read looked.
        waited: std::time::Duration,
    },
    /// The client is misconfigured.
    #[error("configuration: {0}")]
    Config(String),
}

impl ClientError {
    /// The session does not exist for the app's purposes (not found, deleted or
    /// expired): the user is logged out.
    pub fn is_gone(&self) -> bool {
        matches!(
            self,
            ClientError::NotFound { .. } | ClientError::Deleted { .. } | ClientError::Expired { .. }
        )
    }

    /// Trying the same request again later may succeed (reads: `Unavailable`, `Behind`;
    /// writes: only `Unavailable` — an unknown outcome needs a re-read first).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ClientError::Unavailable { .. } | ClientError::Behind { .. })
    }
}
