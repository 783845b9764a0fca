//! The bad-input table: every malformed request gets a CouchDB-style 4xx with an
//! `{"error","reason"}` body — never a 5xx, never a crash — and stored data is
//! unchanged afterwards.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn state(n: &TestNode) -> (Value, Value, Value) {
    (
        n.must("GET", "/db/_all_docs?include_docs=true", None, 200).await,
        n.must("GET", "/db/_changes?style=all_docs", None, 200).await,
        n.must("GET", "/_all_dbs", None, 200).await,
    )
}

/// Sends raw bytes and returns the status code and body of the answer.
async fn raw_exchange(n: &TestNode, bytes: &[u8], half_close: bool) -> (u16, String) {
    let addr = n.base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    if half_close {
        s.shutdown().await.unwrap();
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn bad_input_table() {
    let dir = tempfile::tempdir().unwrap();
    let n = must_start(dir.path()).await;
    n.must("PUT", "/db", None, 201).await;
    let r = n.must("PUT", "/db/keep", Some(json!({"v": 1})), 201).await;
    let rev = r["rev"].as_str().unwrap().to_owned();
    let before = state(&n).await;

    let big_doc: &'static [u8] = Box::leak(
        format!("{{\"pad\":\"{}\"}}", "x".repeat(70 << 10))
            .into_bytes()
            .into_boxed_slice(),
    );
    let huge_body: &'static [u8] = Box::leak(vec![b' '; 300 << 10].into_boxed_slice());
    let too_many: &'static [u8] = Box::leak(
        serde_json::to_vec(
            &json!({"docs": (0..101).map(|i| json!({"_id": format!("m{i}")})).collect::<Vec<_>>()}),
        )
        .unwrap()
        .into_boxed_slice(),
    );
    let rev_put: &'static [u8] = Box::leak(
        format!("{{\"_rev\":\"{rev}\",\"_bogus\":1}}")
            .into_bytes()
            .into_boxed_slice(),
    );
    let table: Vec<(&str, String, &'static [u8], u16, &str)> = vec![
        ("PUT", "/db/keep".into(), b"{not json", 400, "bad_request"),
        ("PUT", "/db/keep".into(), b"[1,2,3]", 400, "bad_request"),
        ("PUT", "/db/keep".into(), b"\"string\"", 400, "bad_request"),
        ("PUT", "/db/keep".into(), b"", 400, "bad_request"),
        (
            "PUT",
            "/db/keep".into(),
            b"{\"a\":\"\xff\xfe\"}",
            400,
            "bad_request",
        ),
        ("PUT", "/db/keep".into(), rev_put, 400, "doc_validation"),
        (
            "PUT",
            "/db/keep".into(),
            b"{\"_rev\":\"bogus\"}",
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/db/keep".into(),
            b"{\"_rev\":\"1-abc\",\"v\":9}",
            409,
            "conflict",
        ),
        (
            "PUT",
            "/db/keep".into(),
            b"{\"_deleted\":\"yes\"}",
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/db/keep".into(),
            b"{\"_attachments\":{}}",
            400,
            "bad_request",
        ),
        ("PUT", "/db/new".into(), big_doc, 413, "document_too_large"),
        ("PUT", "/db/new".into(), huge_body, 413, "too_large"),
        ("PUT", "/db/_reserved".into(), b"{}", 400, "bad_request"),
        ("PUT", "/Bad%20Name".into(), b"", 400, "illegal_database_name"),
        ("PUT", "/db/x%FF".into(), b"{}", 400, "bad_request"),
        ("GET", "/db/keep?rev=garbage".into(), b"", 400, "bad_request"),
        ("GET", "/db/keep?revs=maybe".into(), b"", 400, "query_parse_error"),
        (
            "GET",
            "/db/keep?open_revs=[1,2]".into(),
            b"",
            400,
            "query_parse_error",
        ),
        (
            "GET",
            "/db/_all_docs?limit=-5".into(),
            b"",
            400,
            "query_parse_error",
        ),
        (
            "GET",
            "/db/_all_docs?descending=%FF".into(),
            b"",
            400,
            "query_parse_error",
        ),
        (
            "GET",
            "/db/_changes?since=yesterday".into(),
            b"",
            400,
            "query_parse_error",
        ),
        (
            "POST",
            "/db/_bulk_docs".into(),
            b"{\"docs\":5}",
            400,
            "bad_request",
        ),
        ("POST", "/db/_bulk_docs".into(), b"{}", 400, "bad_request"),
        ("POST", "/db/_bulk_docs".into(), too_many, 413, "too_large"),
        (
            "POST",
            "/db/_bulk_get".into(),
            b"{\"docs\":[{\"rev\":\"1-a\"}]}",
            400,
            "bad_request",
        ),
        ("POST", "/db/_revs_diff".into(), b"[]", 400, "bad_request"),
        (
            "PUT",
            "/db/_local/x".into(),
            b"{\"_rev\":\"zz\"}",
            400,
            "bad_request",
        ),
        (
            "DELETE",
            format!("/db/keep?rev=1-{}", "z".repeat(100)),
            b"",
            400,
            "bad_request",
        ),
        ("PATCH", "/db/keep".into(), b"{}", 405, "method_not_allowed"),
        ("GET", "/db/_bulk_docs".into(), b"", 405, "method_not_allowed"),
        ("POST", "/db/_unknown".into(), b"{}", 400, "bad_request"),
    ];
    // A revision that cannot be parsed is reported missing (as CouchDB does), not refused: one
    // bad entry must not fail a replicator's whole request.
    let (status, v) = n.raw("POST", "/db/_revs_diff", b"{\"keep\":[\"nope\"]}").await;
    assert_eq!(
        (status, v["keep"]["missing"][0].as_str()),
        (200, Some("nope")),
        "{v}"
    );
    for (method, path, body, want, error) in table {
        let (status, v) = n.raw(method, &path, body).await;
        assert_eq!(status, want, "{method} {path}: {v}");
        assert_eq!(v["error"], error, "{method} {path}: {v}");
        assert!(
            v["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{method} {path}: {v}"
        );
    }

    // Transport-level abuse, over raw sockets.
    // A body larger than the limit without Content-Length (chunked): cut at the limit.
    let mut chunked = b"PUT /db/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..40 {
        chunked.extend_from_slice(format!("{:x}\r\n{}\r\n", 10_000, "a".repeat(10_000)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, text) = raw_exchange(&n, &chunked, false).await;
    assert_eq!(status, 413, "{text}");
    // A truncated body: the client promises more than it sends, then stops.
    let (status, text) = raw_exchange(
        &n,
        b"PUT /db/trunc HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":",
        true,
    )
    .await;
    assert!((400..500).contains(&status) || status == 0, "{text}");
    // A body that never finishes arriving: 408 after the body timeout.
    let addr = n.base.trim_start_matches("http://").to_owned();
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"PUT /db/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(6), slow.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    // Garbage instead of HTTP, and headers that never end: the connection is closed.
    let (status, _) = raw_exchange(&n, b"\x00\x01\x02 nonsense\r\n\r\n", true).await;
    assert!(status == 0 || (400..500).contains(&status));
    let mut hang = TcpStream::connect(&addr).await.unwrap();
    hang.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(6), hang.read_to_end(&mut out)).await;
    assert!(
        closed.is_ok(),
        "slow headers must be cut off by the header timeout"
    );

    // An idle keep-alive connection is closed too (hyper's header timeout also
    // covers the wait for the next request).
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /_up HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let got = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..got]).starts_with("HTTP/1.1 200"));
    let closed = tokio::time::timeout(Duration::from_secs(6), idle.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "idle keep-alive connection left open: {closed:?}"
    );

    // The node is still healthy and nothing stored changed.
    n.must("GET", "/_up", None, 200).await;
    assert_eq!(state(&n).await, before);
    n.stop().await;
}
