//! Overload on real `sessionfleet` processes: beyond its in-flight bound a node sheds
//! requests at once with an answer a caller can act on (HTTP 503 + `Retry-After`, gRPC
//! `RESOURCE_EXHAUSTED`) and loses nothing it acknowledged; beyond its connection limit a
//! new connection is told so; slow clients (slowloris) and thousands of idle connections
//! do not stop it serving everyone else.

mod support;

use std::time::Duration;

use proto::v1::PutRequest;
use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Raises this test process's open-files limit (its idle connections are descriptors).
fn raise_open_files(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = want.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    lim.rlim_cur
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_capacity_requests_are_shed_at_once_and_nothing_acknowledged_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Proc::must_start_hub_with(dir.path(), &["--max-in-flight", "2"]);
    let base = hub.base();
    let http = Http::default();
    http.must("PUT", &format!("{base}/sessions"), None, 201).await;

    // 64 clients at once, each a durable PUT (an fsync apiece): far more than 2 in flight.
    let client = admin_reqwest();
    let mut writes = Vec::new();
    for i in 0..64 {
        let (client, url) = (client.clone(), format!("{base}/sessions/s{i}"));
        writes.push(tokio::spawn(async move {
            let r = client.put(&url).json(&json!({"user": i})).send().await.unwrap();
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: Value = r.json().await.unwrap();
            (i, status, retry_after, body)
        }));
    }
    let mut acknowledged = Vec::new();
    let mut shed = 0;
    for w in writes {
        let (i, status, retry_after, body) = w.await.unwrap();
        match status {
            201 => acknowledged.push((i, body["rev"].as_str().unwrap().to_owned())),
            503 => {
                shed += 1;
                assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
                assert_eq!(body["error"], "service_unavailable", "{body}");
                assert!(body["reason"].as_str().unwrap().contains("at capacity"), "{body}");
            }
            other => panic!("PUT s{i}: {other} {body}"),
        }
    }
    assert!(
        shed > 0,
        "64 concurrent PUTs against --max-in-flight 2: none was shed"
    );
    assert!(!acknowledged.is_empty(), "every PUT was shed");

    // gRPC callers are shed the same way.
    let mut calls = Vec::new();
    for i in 0..64 {
        let mut c = sessions(&hub).await;
        calls.push(tokio::spawn(async move {
            let put = PutRequest {
                db: "sessions".into(),
                id: format!("g{i}"),
                body: br#"{"user":"g"}"#.to_vec().into(),
                rev: String::new(),
            };
            c.put(grpc_request(
                put,
                Some(&format!("Bearer {}", secrets().app_token)),
            ))
            .await
            .map(|r| r.into_inner().rev)
        }));
    }
    let mut grpc_shed = 0;
    for c in calls {
        match c.await.unwrap() {
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                assert!(s.message().contains("at capacity"), "{s:?}");
                grpc_shed += 1;
            }
            Err(s) => panic!("gRPC Put: {s:?}"),
        }
    }
    assert!(
        grpc_shed > 0,
        "64 concurrent gRPC Puts against --max-in-flight 2: none was shed"
    );

    // Once the burst is over the node serves again, and every acknowledged write is there.
    for (i, rev) in &acknowledged {
        let doc = http
            .must("GET", &format!("{base}/sessions/s{i}"), None, 200)
            .await;
        assert_eq!(doc["_rev"].as_str(), Some(rev.as_str()));
    }
    let shed_metric = metric_sum(&hub, "requests_shed_total", "").await;
    assert!(
        shed_metric >= (shed + grpc_shed) as u64,
        "requests_shed_total {shed_metric} < {}",
        shed + grpc_shed
    );
}

/// A raw HTTP GET on `stream`; the status code of the answer.
async fn raw_get(stream: &mut TcpStream, path: &str, authorization: &str) -> u16 {
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: {authorization}\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_and_five_thousand_idle_connections_do_not_stop_it_serving() {
    const IDLE: usize = 5_000;
    assert!(raise_open_files(20_000) > IDLE as u64 + 500);
    let dir = tempfile::tempdir().unwrap();
    // The default header timeout: 10 s.
    let hub = Proc::must_start_hub(dir.path());
    let base = hub.base();
    let http = Http::default();
    http.must("PUT", &format!("{base}/sessions"), None, 201).await;
    http.must(
        "PUT",
        &format!("{base}/sessions/alice"),
        Some(json!({"u": 1})),
        201,
    )
    .await;

    // 5,000 connections that say nothing, and 50 slowloris clients that send a request's
    // headers one byte every 200 ms, never finishing.
    let opened = std::time::Instant::now();
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(hub.http).await.unwrap());
    }
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(hub.http).await.unwrap();
        slow.push(tokio::spawn(async move {
            let started = std::time::Instant::now();
            for b in b"GET /sessions/alice HTTP/1.1\r\nhost: x\r\nx-slow: "
                .iter()
                .cycle()
            {
                if s.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                if started.elapsed() > Duration::from_secs(40) {
                    break;
                }
            }
            started.elapsed()
        }));
    }

    // Meanwhile everyone else is served: 200 reads on fresh connections.
    let auth = format!("Bearer {}", secrets().app_token);
    for _ in 0..200 {
        let mut s = TcpStream::connect(hub.http).await.unwrap();
        assert_eq!(raw_get(&mut s, "/sessions/alice", &auth).await, 200);
    }
    // And on the pooled connections of an ordinary client.
    for _ in 0..200 {
        http.must("GET", &format!("{base}/sessions/alice"), None, 200)
            .await;
    }

    assert!(
        opened.elapsed() < Duration::from_secs(9),
        "the reads ran after the idle connections' header timeout: inconclusive"
    );

    // The slow clients are cut off by the header timeout (10 s), not after 40 s of trickling.
    for s in slow {
        let lasted = s.await.unwrap();
        assert!(
            lasted < Duration::from_secs(20),
            "a slowloris connection lasted {lasted:?}"
        );
    }
    // So are the idle ones: a connection that never sends a request is closed.
    let mut first = idle.swap_remove(0);
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), first.read(&mut buf)).await;
    assert!(
        read.is_ok(),
        "an idle connection was still open well after the 10 s header timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_its_connection_limit_a_node_answers_503_and_keeps_serving_the_admitted() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Proc::must_start_hub_with(dir.path(), &["--max-connections", "20"]);
    let base = hub.base();
    let http = Http::default();
    http.must("PUT", &format!("{base}/sessions"), None, 201).await;
    http.must("PUT", &format!("{base}/sessions/bob"), Some(json!({"u": 2})), 201)
        .await;
    // Let the admin client's pooled connection go, then fill the limit with keep-alive
    // connections that each made one request.
    drop(http);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let auth = format!("Bearer {}", secrets().app_token);
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(hub.http).await.unwrap();
        assert_eq!(raw_get(&mut s, "/sessions/bob", &auth).await, 200);
        held.push(s);
    }
    // One more: told at once, with a CouchDB body and Retry-After.
    let r = reqwest::Client::new()
        .get(format!("{base}/sessions/bob"))
        .header("authorization", &auth)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "service_unavailable", "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("maximum of 20 connections"),
        "{body}"
    );
    // The admitted connections are still served.
    for s in &mut held {
        assert_eq!(raw_get(s, "/sessions/bob", &auth).await, 200);
    }
    // And a freed slot admits a newcomer.
    drop(held.pop());
    let mut ok = false;
    for _ in 0..50 {
        let mut s = TcpStream::connect(hub.http).await.unwrap();
        if raw_get(&mut s, "/sessions/bob", &auth).await == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "a slot freed by a closed connection was never reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_client_reads_from_its_next_target_while_the_local_spoke_sheds() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let spoke = must_start_spoke(
        dirs[1].path(),
        hub.grpc,
        "eu-west",
        &["--database", "sessions", "--max-in-flight", "1"],
    );
    let http = Http::default();
    for i in 0..100 {
        let url = format!("{}/sessions/u{i}", spoke.base());
        // The spoke admits one request at a time: retry the setup writes it sheds.
        must_eventually("a setup write admitted", Duration::from_secs(5), || {
            let (http, url) = (http.clone(), url.clone());
            async move { http.req("PUT", &url, Some(json!({"user": i}))).await.0 == 201 }
        })
        .await;
    }
    let hub_base = hub.base();
    must_eventually("the sessions reached the hub", Duration::from_secs(20), || {
        let (http, base) = (http.clone(), hub_base.clone());
        async move { http.req("GET", &format!("{base}/sessions"), None).await.1["doc_count"] == 100 }
    })
    .await;

    let client = edge_client::Client::builder()
        .credentials(app_credentials())
        .local("local", format!("http://{}", spoke.grpc))
        .fallback("hub", format!("http://{}", hub.grpc))
        .deadline(Duration::from_millis(500))
        .fallback_deadline(Duration::from_secs(2))
        .build()
        .unwrap();
    // Durable bulk writes keep the spoke's one slot busy while 100 different
    // sessions are read at once: the spoke sheds many reads; the hub answers them.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (client, base, stop) = (admin_reqwest(), spoke.base(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                // Bulk writes of 500 hold the slot far longer than a read needs it, so
                // reads arriving meanwhile are shed whatever the disk's fsync speed.
                let docs: Vec<serde_json::Value> = (0..500)
                    .map(|i| json!({"_id": format!("busy-{w}-{n}-{i}"), "n": n}))
                    .collect();
                let url = format!("{base}/sessions/_bulk_docs");
                let _ = client.post(url).json(&json!({"docs": docs})).send().await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut reads = Vec::new();
    for i in 0..100 {
        let c = client.clone();
        reads.push(tokio::spawn(async move {
            (i, c.get("sessions", &format!("u{i}")).await)
        }));
    }
    for r in reads {
        let (i, got) = r.await.unwrap();
        let session = got.unwrap_or_else(|e| panic!("u{i}: {e}"));
        assert!(session.is_some(), "u{i} not found");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    assert!(
        metric_sum(&spoke, "requests_shed_total", "grpc").await > 0,
        "the spoke shed nothing: the test tested nothing"
    );
}
