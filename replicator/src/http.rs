//! Any CouchDB-compatible server (CouchDB, PouchDB Server, another
//! Sessionfleet node) over its HTTP API — how a CouchDB fleet migrates in.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::{json, Value};
use store::{Doc, DocId, DocInput, Replicated, Rev};

use crate::peer::{
    ChangeRow, ChangesBatch, CheckpointDoc, Fetched, Missing, Peer, PeerError, PeerInfo, Seq, WriteFailure,
};

/// Largest document accepted from a remote server.
const MAX_DOC: usize = 8 << 20;
/// Time allowed for one request, beyond any long-poll wait.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// `url` with any password replaced by `*****`, as CouchDB shows replication
/// endpoints: what logs, errors and `_active_tasks` may carry.
///
/// ```
/// assert_eq!(
///     replicator::redact_url("http://admin:s3cret@couch:5984/db"),
///     "http://admin:*****@couch:5984/db"
/// );
/// assert_eq!(replicator::redact_url("local-db"), "local-db");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:*****@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// A client config that trusts nobody: plain `http://` peers never use it.
fn no_tls() -> std::sync::Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<std::sync::Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth()
                })
                .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"));
            std::sync::Arc::new(config)
        })
        .clone()
}

/// A database on a CouchDB-compatible server, e.g. `http://couchdb-b:5984/demo-db`.
pub struct HttpPeer {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// Server root, without trailing slash and without credentials.
    root: String,
    /// The database, percent-encoded for paths.
    db_path: String,
    auth: Option<HeaderValue>,
}

impl HttpPeer {
    /// Parses `http://[user:pass@]host:port/db` (plain HTTP).
    pub fn new(url: &str) -> Result<HttpPeer, PeerError> {
        HttpPeer::with_tls(url, None)
    }

    /// Parses `http[s]://[user:pass@]host:port/db`. Over `https://` the server is
    /// verified against `tls`'s CA bundle and `tls`'s certificate, if any, is presented
    /// (how one fleet node replicates with another's HTTP API); without `tls`,
    /// `https://` is refused. The TLS material is taken when the peer is made.
    pub fn with_tls(
        url: &str,
        tls: Option<&std::sync::Arc<proto::tls::ReloadingTls>>,
    ) -> Result<HttpPeer, PeerError> {
        let bad = |reason: &str| PeerError::Protocol {
            peer: redact_url(url),
            reason: reason.into(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .filter(|(s, _)| *s == "http" || *s == "https")
            .ok_or_else(|| bad("only http:// and https:// URLs are supported"))?;
        let tls_config = match (scheme, tls) {
            ("https", Some(tls)) => tls
                .current_client(&[proto::tls::ALPN_HTTP11])
                .map_err(|e| bad(&format!("TLS: {e}")))?,
            ("https", None) => return Err(bad("https:// needs the node's TLS material (a [tls] section)")),
            _ => no_tls(),
        };
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("the URL must name a database"))?;
        let db = path.trim_end_matches('/');
        if db.is_empty() {
            return Err(bad("the URL must name a database"));
        }
        let (auth, host) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                // Reserved characters of a password travel percent-encoded in URLs.
                let decoded: Vec<u8> = percent_encoding::percent_decode_str(userinfo).collect();
                let token = base64_encode(&decoded);
                (HeaderValue::from_str(&format!("Basic {token}")).ok(), host)
            }
            None => (None, authority),
        };
        // hyper-rustls sets ALPN itself (http/1.1 only here) and insists on an empty list.
        let mut tls_config = (*tls_config).clone();
        tls_config.alpn_protocols.clear();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        // A database name may contain '/': it travels percent-encoded.
        let decoded = percent_encoding::percent_decode_str(db)
            .decode_utf8_lossy()
            .into_owned();
        Ok(HttpPeer {
            client,
            root: format!("{scheme}://{host}"),
            db_path: utf8_percent_encode(&decoded, NON_ALPHANUMERIC).to_string(),
            auth,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), PeerError> {
        let url = format!("{}{}", self.root, path);
        let mut req = Request::builder()
            .method(method)
            .uri(&url)
            .header(ACCEPT, "application/json");
        if let Some(a) = &self.auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| PeerError::Protocol {
                peer: url.clone(),
                reason: e.to_string(),
            })?;
        let unreachable = |reason: String| PeerError::Unreachable {
            peer: self.describe(),
            reason,
        };
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, PeerError>((status, bytes))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {timeout:?}")))?
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        ok: &[u16],
    ) -> Result<(StatusCode, Value), PeerError> {
        let body = body.map(|b| serde_json::to_vec(&b).unwrap_or_default());
        let (status, bytes) = self.call(method, path, body, REQUEST_TIMEOUT).await?;
        self.decode(status, &bytes, ok)
    }

    fn decode(&self, status: StatusCode, bytes: &[u8], ok: &[u16]) -> Result<(StatusCode, Value), PeerError> {
        let value: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
        if !ok.contains(&status.as_u16()) {
            let reason = value
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let error = value.get("error").and_then(Value::as_str).unwrap_or("");
            let status_text = format!("{} {error}", status.as_u16());
            return Err(if status == StatusCode::PAYLOAD_TOO_LARGE {
                PeerError::TooLarge {
                    peer: self.describe(),
                    reason: format!("{status_text}: {reason}"),
                }
            } else if status == StatusCode::CONFLICT {
                PeerError::Conflict {
                    peer: self.describe(),
                    reason: format!("{status_text}: {reason}"),
                }
            } else if status.is_server_error() {
                PeerError::Unreachable {
                    peer: self.describe(),
                    reason: format!("{status_text}: {reason}"),
                }
            } else {
                PeerError::Refused {
                    peer: self.describe(),
                    status: status_text,
                    reason,
                }
            });
        }
        Ok((status, value))
    }

    fn protocol(&self, reason: impl Into<String>) -> PeerError {
        PeerError::Protocol {
            peer: self.describe(),
            reason: reason.into(),
        }
    }

    fn db(&self, rest: &str) -> String {
        format!("/{}{}", self.db_path, rest)
    }

    /// A fetched document, or why it cannot be stored here (`_attachments`,
    /// duplicate members, too large...): counted as a write failure, and the
    /// rest of the batch goes on, as CouchDB's replicator does.
    fn parse_doc(v: &Value, out: &mut Fetched) {
        let bytes = serde_json::to_vec(v).unwrap_or_default();
        match DocInput::parse(&bytes, MAX_DOC).and_then(Replicated::from_input) {
            Ok(d) => out.docs.push(d),
            Err(e) => out.failures.push(WriteFailure {
                id: v.get("_id").and_then(Value::as_str).unwrap_or("").to_owned(),
                rev: v.get("_rev").and_then(Value::as_str).unwrap_or("").to_owned(),
                error: e.to_string(),
            }),
        }
    }

    /// Fallback for servers without `_bulk_get`: one `open_revs` read per document.
    async fn fetch_open_revs(&self, id: &DocId, revs: &[Rev], out: &mut Fetched) -> Result<(), PeerError> {
        let list =
            serde_json::to_string(&revs.iter().map(Rev::to_string).collect::<Vec<_>>()).unwrap_or_default();
        let path = self.db(&format!(
            "/{}?revs=true&latest=true&open_revs={}",
            utf8_percent_encode(id.as_str(), NON_ALPHANUMERIC),
            utf8_percent_encode(&list, NON_ALPHANUMERIC)
        ));
        let (_, v) = self.json(Method::GET, &path, None, &[200]).await?;
        for item in v.as_array().into_iter().flatten() {
            if let Some(doc) = item.get("ok") {
                Self::parse_doc(doc, out);
            }
        }
        Ok(())
    }
}

fn base64_encode(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn seq_of(v: &Value) -> Option<Seq> {
    match v {
        Value::Number(n) => n.as_u64().map(Seq::Num),
        Value::String(s) => Some(Seq::Opaque(s.clone())),
        _ => None,
    }
}

#[derive(Deserialize)]
struct ChangesResponse {
    results: Vec<Value>,
    last_seq: Value,
    pending: Option<u64>,
}

#[async_trait]
impl Peer for HttpPeer {
    fn describe(&self) -> String {
        format!("{}/{}", self.root, self.db_path)
    }

    fn db_name(&self) -> String {
        percent_encoding::percent_decode_str(&self.db_path)
            .decode_utf8_lossy()
            .into_owned()
    }

    async fn info(&self, create: bool) -> Result<PeerInfo, PeerError> {
        let (_, root) = self.json(Method::GET, "/", None, &[200]).await?;
        // The uuid names the server in replication ids; without one, the URL does.
        let uuid = root
            .get("uuid")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| self.root.clone());
        let (status, info) = self.json(Method::GET, &self.db(""), None, &[200, 404]).await?;
        let info = if status == StatusCode::NOT_FOUND {
            if !create {
                return Err(PeerError::Refused {
                    peer: self.describe(),
                    status: "404".into(),
                    reason: "database does not exist".into(),
                });
            }
            self.json(Method::PUT, &self.db(""), None, &[201, 202, 412])
                .await?;
            self.json(Method::GET, &self.db(""), None, &[200]).await?.1
        } else {
            info
        };
        let update_seq = info.get("update_seq").and_then(seq_of).unwrap_or(Seq::ZERO);
        // CouchDB 3 always says "0", which tells nothing; ours changes with
        // every incarnation of the database.
        let incarnation = info
            .get("instance_start_time")
            .and_then(Value::as_str)
            .filter(|s| *s != "0")
            .map(str::to_owned);
        Ok(PeerInfo {
            uuid,
            update_seq,
            incarnation,
        })
    }

    async fn changes(
        &self,
        since: &Seq,
        limit: usize,
        wait: Option<Duration>,
    ) -> Result<ChangesBatch, PeerError> {
        let since_param = utf8_percent_encode(&since.to_string(), NON_ALPHANUMERIC).to_string();
        let mut path = self.db(&format!(
            "/_changes?style=all_docs&since={since_param}&limit={limit}"
        ));
        let mut timeout = REQUEST_TIMEOUT;
        if let Some(w) = wait {
            path.push_str(&format!("&feed=longpoll&timeout={}", w.as_millis()));
            timeout += w;
        }
        let (status, bytes) = self.call(Method::GET, &path, None, timeout).await?;
        let (_, v) = self.decode(status, &bytes, &[200])?;
        let resp: ChangesResponse =
            serde_json::from_value(v).map_err(|e| self.protocol(format!("_changes: {e}")))?;
        let mut rows = Vec::with_capacity(resp.results.len());
        for r in resp.results {
            let seq = r
                .get("seq")
                .and_then(seq_of)
                .ok_or_else(|| self.protocol("change without seq"))?;
            let id = r
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| self.protocol("change without id"))?;
            // A design or reserved id we cannot store is skipped, not fatal.
            let Ok(id) = DocId::new(id) else { continue };
            let revs = r
                .get("changes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c.get("rev").and_then(Value::as_str))
                .map(str::parse)
                .collect::<Result<Vec<Rev>, _>>();
            // A revision this node refuses (beyond the generation bound, say) is
            // skipped like a reserved id, not fatal for the whole feed.
            let Ok(revs) = revs else {
                tracing::warn!(peer = %self.describe(), id = %id, "skipping a change with unreadable revisions");
                continue;
            };
            rows.push(ChangeRow {
                seq,
                id,
                revs,
                committed_ms: None,
            });
        }
        let last_seq = seq_of(&resp.last_seq).ok_or_else(|| self.protocol("no last_seq"))?;
        Ok(ChangesBatch {
            rows,
            last_seq,
            pending: resp.pending,
        })
    }

    /// Possible ancestors are not asked for: `_bulk_get` and `open_revs` send a
    /// revision's history only as far as the source's `revs_limit`, whatever the
    /// target holds (CouchDB's own behaviour; fleet nodes replicate over gRPC).
    async fn revs_diff(&self, revs: Vec<(DocId, Vec<Rev>)>) -> Result<Vec<Missing>, PeerError> {
        let body: serde_json::Map<String, Value> = revs
            .iter()
            .map(|(id, revs)| {
                (
                    id.to_string(),
                    json!(revs.iter().map(Rev::to_string).collect::<Vec<_>>()),
                )
            })
            .collect();
        let (_, v) = self
            .json(
                Method::POST,
                &self.db("/_revs_diff"),
                Some(Value::Object(body)),
                &[200],
            )
            .await?;
        let mut out = Vec::new();
        for (id, entry) in v.as_object().into_iter().flatten() {
            let Ok(id) = DocId::new(id) else { continue };
            let missing = entry
                .get("missing")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::parse)
                .collect::<Result<Vec<Rev>, _>>()
                .map_err(|e| self.protocol(e.to_string()))?;
            if !missing.is_empty() {
                out.push(Missing::revs(id, missing));
            }
        }
        Ok(out)
    }

    async fn fetch(&self, wanted: Vec<Missing>) -> Result<Fetched, PeerError> {
        let docs: Vec<Value> = wanted
            .iter()
            .flat_map(|Missing { id, revs, .. }| {
                revs.iter()
                    .map(move |r| json!({"id": id.as_str(), "rev": r.to_string()}))
            })
            .collect();
        let path = self.db("/_bulk_get?revs=true&latest=true");
        let (status, bytes) = self
            .call(
                Method::POST,
                &path,
                Some(serde_json::to_vec(&json!({"docs": docs})).unwrap_or_default()),
                REQUEST_TIMEOUT,
            )
            .await?;
        let mut out = Fetched::default();
        if matches!(status.as_u16(), 400 | 404 | 405 | 501) {
            for Missing { id, revs, .. } in &wanted {
                self.fetch_open_revs(id, revs, &mut out).await?;
            }
            return Ok(out);
        }
        let (_, v) = self.decode(status, &bytes, &[200])?;
        for result in v.get("results").and_then(Value::as_array).into_iter().flatten() {
            for d in result.get("docs").and_then(Value::as_array).into_iter().flatten() {
                if let Some(doc) = d.get("ok") {
                    Self::parse_doc(doc, &mut out);
                }
            }
        }
        Ok(out)
    }

    async fn write(&self, docs: Vec<Replicated>) -> Result<Vec<WriteFailure>, PeerError> {
        let mut payload = b"{\"new_edits\":false,\"docs\":[".to_vec();
        for (i, d) in docs.into_iter().enumerate() {
            if i > 0 {
                payload.push(b',');
            }
            let Some(rev) = d.path.first().cloned() else {
                continue;
            };
            let doc = Doc {
                id: d.id,
                rev,
                deleted: d.deleted,
                body: d.body,
                conflicts: None,
                deleted_conflicts: None,
                revisions: Some(d.path),
            };
            payload.extend_from_slice(&doc.to_json());
        }
        payload.extend_from_slice(b"]}");
        let (status, bytes) = self
            .call(
                Method::POST,
                &self.db("/_bulk_docs"),
                Some(payload),
                REQUEST_TIMEOUT,
            )
            .await?;
        let (_, v) = self.decode(status, &bytes, &[201, 202])?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter(|e| e.get("error").is_some())
            .map(|e| WriteFailure {
                id: e.get("id").and_then(Value::as_str).unwrap_or("").to_owned(),
                rev: e.get("rev").and_then(Value::as_str).unwrap_or("").to_owned(),
                error: format!(
                    "{}: {}",
                    e.get("error").and_then(Value::as_str).unwrap_or(""),
                    e.get("reason").and_then(Value::as_str).unwrap_or("")
                ),
            })
            .collect())
    }

    async fn get_checkpoint(&self, id: &str) -> Result<Option<CheckpointDoc>, PeerError> {
        let path = self.db(&format!("/_local/{}", utf8_percent_encode(id, NON_ALPHANUMERIC)));
        let (status, v) = self.json(Method::GET, &path, None, &[200, 404]).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let rev = v.get("_rev").and_then(Value::as_str).unwrap_or("0-0").to_owned();
        Ok(Some(CheckpointDoc { rev, body: v }))
    }

    async fn put_checkpoint(&self, id: &str, rev: Option<&str>, body: &Value) -> Result<String, PeerError> {
        let mut body = body.clone();
        if let (Some(obj), Some(rev)) = (body.as_object_mut(), rev) {
            obj.insert("_rev".into(), json!(rev));
        }
        if let Some(obj) = body.as_object_mut() {
            obj.insert("_id".into(), json!(format!("_local/{id}")));
        }
        let path = self.db(&format!("/_local/{}", utf8_percent_encode(id, NON_ALPHANUMERIC)));
        let (_, v) = self.json(Method::PUT, &path, Some(body), &[200, 201]).await?;
        v.get("rev")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| self.protocol("checkpoint answer without rev"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_credentials() {
        let p = HttpPeer::new("http://admin:secret@127.0.0.1:5984/demo-db").unwrap();
        assert_eq!(p.root, "http://127.0.0.1:5984");
        assert_eq!(p.db_path, "demo%2Ddb");
        assert_eq!(p.auth.unwrap().to_str().unwrap(), "Basic YWRtaW46c2VjcmV0");
        assert!(
            HttpPeer::new("https://x/db").is_err(),
            "https without TLS material"
        );
        assert!(HttpPeer::new("ftp://x/db").is_err());
        assert!(HttpPeer::new("http://x:1").is_err());
        assert!(HttpPeer::new("http://x:1/").is_err());
        // A percent-encoded password is sent decoded; errors never show it.
        let p = HttpPeer::new("http://admin:p%40ss@127.0.0.1:5984/db").unwrap();
        assert_eq!(
            p.auth.unwrap().to_str().unwrap(),
            format!("Basic {}", base64_encode(b"admin:p@ss"))
        );
        let e = HttpPeer::new("ftp://admin:hunter2@x/db")
            .err()
            .unwrap()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert_eq!(redact_url("http://u@h/db"), "http://u:*****@h/db");
        assert_eq!(base64_encode(b"a"), "YQ==");
        assert_eq!(base64_encode(b"ab"), "YWI=");
    }

    #[test]
    fn an_unstorable_document_is_counted_not_fatal() {
        let mut out = Fetched::default();
        for doc in [
            json!({"_id": "a", "_rev": "1-a", "_attachments": {"f": {}}}),
            json!({"_id": "b", "_revisions": {"start": 10_000_000_000_000_000_000u64, "ids": ["b"]}}),
            json!({"_id": "c", "_rev": "1-c", "x": 1}),
        ] {
            HttpPeer::parse_doc(&doc, &mut out);
        }
        assert_eq!(out.docs.len(), 1);
        assert_eq!(out.docs[0].id.as_str(), "c");
        let failed: Vec<&str> = out.failures.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(failed, ["a", "b"]);
    }
}
