//! API errors and their CouchDB `{"error","reason"}` responses: the one place
//! where a store error becomes an HTTP status.

use hyper::{Response, StatusCode};
use serde::Serialize;

use super::body::{json, Body};

/// An error answer: status, CouchDB error name and a reason.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub reason: String,
    /// Seconds for a `Retry-After` header (shed load).
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    reason: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, reason: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error,
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// 503 with `Retry-After`: the node sheds load (see [`crate::admission`]).
    pub fn overloaded(o: crate::admission::Overloaded) -> ApiError {
        ApiError {
            retry_after: Some(crate::admission::Overloaded::RETRY_AFTER_SECS),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", o.reason())
        }
    }

    pub fn bad_request(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }

    pub fn query(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "query_parse_error", reason)
    }

    pub fn not_found(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", reason)
    }

    /// 401: no credentials, or wrong ones. Answered with `WWW-Authenticate`.
    pub fn unauthorized(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", reason)
    }

    /// 403: authenticated, but without the role the endpoint needs.
    pub fn forbidden(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", reason)
    }

    pub fn method_not_allowed(allowed: &str) -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("Only {allowed} allowed"),
        )
    }

    pub fn too_large(size: usize, limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body of {size} bytes exceeds the limit of {limit} bytes"),
        )
    }

    pub fn into_response(self) -> Response<Body> {
        // Shed requests are counted (`requests_shed_total`), not logged one by one:
        // an overloaded node must not also flood its log.
        if self.status.is_server_error() && self.retry_after.is_none() {
            tracing::error!(status = %self.status, error = self.error, reason = %self.reason, "request failed");
        }
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let mut r = json(
            self.status,
            &ErrorBody {
                error: self.error,
                reason: &self.reason,
            },
        );
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(hyper::header::RETRY_AFTER, hyper::header::HeaderValue::from(secs));
        }
        if unauthorized {
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Basic realm=\"sessionfleet\""),
            );
        }
        r
    }

    /// The `{"error","reason"}` pair for per-document results in bulk answers.
    pub fn parts(&self) -> (&'static str, &str) {
        (self.error, &self.reason)
    }
}

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> ApiError {
        use store::Error as E;
        let reason = e.to_string();
        match e {
            E::InvalidDbName { name, .. } => ApiError::new(
                StatusCode::BAD_REQUEST,
                "illegal_database_name",
                format!(
                    "Name: '{name}'. Only lowercase characters (a-z), digits (0-9), and any of the \
                     characters _, $, (, ), +, -, and / are allowed. Must begin with a letter."
                ),
            ),
            E::InvalidDocId { .. } | E::InvalidRev { .. } | E::InvalidRevisions { .. } => {
                ApiError::bad_request(reason)
            }
            E::InvalidDocument { reason } => {
                if reason.starts_with("Bad special document member") {
                    ApiError::new(StatusCode::BAD_REQUEST, "doc_validation", reason)
                } else {
                    ApiError::bad_request(reason)
                }
            }
            E::DocumentTooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "document_too_large", reason)
            }
            E::DbNotFound { .. } => ApiError::not_found("Database does not exist."),
            E::SinceAhead { .. } => ApiError::bad_request(reason),
            E::DbExists { .. } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "file_exists",
                "The database could not be created, the file already exists.",
            ),
            E::NotFound { reason, .. } => ApiError::not_found(reason),
            E::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", "Document update conflict.")
            }
            E::Closed => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", reason),
            E::InsufficientStorage { .. } => {
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage", reason)
            }
            E::Locked { .. } | E::UnsupportedFormat { .. } | E::Corrupt { .. } | E::Engine(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_server_error", reason)
            }
        }
    }
}
