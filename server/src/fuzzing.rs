//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): the parsers a remote
//! peer reaches, without a listener in front. Not an API; hidden from the docs.

use proto::v1::{Revision, WriteError};
use store::Database;

/// Routes a request line as the HTTP listener does: the endpoint's metrics label, or
/// the CouchDB error name and reason it would answer. Never panics, for any input.
pub fn route(method: &hyper::Method, uri: &hyper::Uri) -> Result<&'static str, (&'static str, String)> {
    match crate::http::route(method, uri) {
        Ok(label) => Ok(label),
        Err(e) => Err((e.error, e.reason)),
    }
}

/// Merges decoded `WriteRevs` revisions into `db` as the Replication service does.
pub async fn merge_revisions(db: &Database, revisions: Vec<Revision>) -> store::Result<Vec<WriteError>> {
    crate::grpc::merge_revisions(db, revisions).await
}
