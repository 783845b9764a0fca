//! Response bodies (whole or streamed) and bounded request-body reading.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::error::ApiError;
use crate::node::Shared;

/// A response body: whole, or streamed from a channel.
pub(crate) type Body = BoxBody<Bytes, std::io::Error>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// A streamed body and the sender that feeds it.
pub(crate) fn channel() -> (mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let stream = ReceiverStream::new(rx).map(|b| Ok::<_, std::io::Error>(Frame::data(b)));
    (tx, StreamBody::new(stream).boxed())
}

pub(crate) const JSON: &str = "application/json";

/// A JSON response from already-encoded bytes.
pub(crate) fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(full(bytes));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    r
}

/// A JSON response from a serialisable value.
pub(crate) fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    // Serialising our own response types to a Vec cannot fail.
    json_bytes(status, serde_json::to_vec(value).unwrap_or_default())
}

/// Reads a request body within the size and time limits: a declared length over
/// the limit is refused before reading anything; a body that grows past it is
/// cut off at the limit.
pub(crate) async fn read(shared: &Shared, req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let limit = shared.config.limits.max_body_bytes;
    if let Some(len) = req.headers().get(CONTENT_LENGTH) {
        let len: usize = len
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ApiError::bad_request("invalid Content-Length"))?;
        if len > limit {
            return Err(ApiError::too_large(len, limit));
        }
    }
    let collect = Limited::new(req.into_body(), limit).collect();
    match tokio::time::timeout(shared.config.limits.body_timeout, collect).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body did not arrive in time",
        )),
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                Err(ApiError::too_large(limit + 1, limit))
            } else {
                Err(ApiError::bad_request(format!(
                    "could not read the request body: {e}"
                )))
            }
        }
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Reads a JSON request body into `T`.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<T, ApiError> {
    let bytes = read(shared, req).await?;
    parse_json(&bytes)
}

pub(crate) fn parse_json<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(ApiError::bad_request("invalid UTF-8 JSON"));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON request body: {e}")))
}
