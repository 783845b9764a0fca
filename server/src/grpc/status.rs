//! The one place where a store error becomes a gRPC status.

use tonic::{Code, Status};

pub(crate) fn to_status(e: store::Error) -> Status {
    use store::Error as E;
    let code = match &e {
        E::InvalidDbName { .. }
        | E::InvalidDocId { .. }
        | E::InvalidRev { .. }
        | E::InvalidRevisions { .. }
        | E::InvalidDocument { .. } => Code::InvalidArgument,
        E::DocumentTooLarge { .. } | E::InsufficientStorage { .. } => Code::ResourceExhausted,
        E::DbNotFound { .. } | E::NotFound { .. } => Code::NotFound,
        E::DbExists { .. } => Code::AlreadyExists,
        E::SinceAhead { .. } => Code::OutOfRange,
        E::Conflict { .. } => Code::Aborted,
        E::Closed => Code::Unavailable,
        E::Locked { .. } | E::UnsupportedFormat { .. } | E::Corrupt { .. } | E::Engine(_) => {
            tracing::error!(error = %e, "gRPC request failed");
            Code::Internal
        }
    };
    Status::new(code, e.to_string())
}
