//! The `Sessions` gRPC service against a real node.

mod support;

use std::time::Duration;

use proto::v1::sessions_client::SessionsClient;
use proto::v1::{watch_event, BatchGetRequest, DeleteRequest, GetRequest, PutRequest, WatchRequest};
use serde_json::json;
use support::*;
use tonic::Code;

#[tokio::test]
async fn get_put_delete_batch_get() {
    let dir = tempfile::tempdir().unwrap();
    let n = must_start(dir.path()).await;
    n.must("PUT", "/sessions", None, 201).await;
    let mut c = SessionsClient::connect(format!("http://{}", n.grpc))
        .await
        .unwrap();
    let get = |id: &str| GetRequest {
        db: "sessions".into(),
        id: id.into(),
    };

    assert!(c.get(get("s1")).await.unwrap().into_inner().session.is_none());
    let put = PutRequest {
        db: "sessions".into(),
        id: "s1".into(),
        rev: String::new(),
        body: br#"{"user":"ada"}"#.to_vec().into(),
    };
    let rev = c.put(put.clone()).await.unwrap().into_inner().rev;
    assert!(rev.starts_with("1-"));
    let got = c.get(get("s1")).await.unwrap().into_inner();
    let s = got.session.unwrap();
    assert_eq!(
        (s.id.as_str(), s.rev.as_str(), &s.body[..]),
        ("s1", rev.as_str(), &br#"{"user":"ada"}"#[..])
    );
    assert_eq!(got.update_seq, 1);
    // Visible over HTTP too: one store.
    assert_eq!(n.must("GET", "/sessions/s1", None, 200).await["user"], "ada");

    let err = c.put(put).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "conflict");
    let bad = PutRequest {
        db: "sessions".into(),
        id: "s2".into(),
        rev: String::new(),
        body: b"[1]".to_vec().into(),
    };
    assert_eq!(c.put(bad).await.unwrap_err().code(), Code::InvalidArgument);
    let bad_db = GetRequest {
        db: "Nope!".into(),
        id: "x".into(),
    };
    assert_eq!(c.get(bad_db).await.unwrap_err().code(), Code::InvalidArgument);
    let missing_db = GetRequest {
        db: "nope".into(),
        id: "x".into(),
    };
    assert_eq!(c.get(missing_db).await.unwrap_err().code(), Code::NotFound);

    let batch = c
        .batch_get(BatchGetRequest {
            db: "sessions".into(),
            ids: vec!["s1".into(), "zz".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.results.len(), 2);
    assert!(batch.results[0].session.is_some() && batch.results[1].session.is_none());

    let del = c
        .delete(DeleteRequest {
            db: "sessions".into(),
            id: "s1".into(),
            rev: rev.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(del.rev.starts_with("2-"));
    assert!(c.get(get("s1")).await.unwrap().into_inner().session.is_none());
    // Retrying the same delete is idempotent; deleting an unknown revision is a conflict.
    let again = c
        .delete(DeleteRequest {
            db: "sessions".into(),
            id: "s1".into(),
            rev: rev.clone(),
        })
        .await
        .unwrap();
    assert_eq!(again.into_inner().rev, del.rev);
    let stale = c
        .delete(DeleteRequest {
            db: "sessions".into(),
            id: "s1".into(),
            rev: "1-0000".into(),
        })
        .await;
    assert_eq!(stale.unwrap_err().code(), Code::Aborted);
    n.stop().await;
}

#[tokio::test]
async fn watch_streams_committed_changes() {
    let dir = tempfile::tempdir().unwrap();
    let n = must_start(dir.path()).await;
    n.must("PUT", "/sessions", None, 201).await;
    n.must("PUT", "/sessions/a", Some(json!({})), 201).await;
    let mut c = SessionsClient::connect(format!("http://{}", n.grpc))
        .await
        .unwrap();
    let mut stream = c
        .watch(WatchRequest {
            db: "sessions".into(),
            since: 0,
            from_now: false,
        })
        .await
        .unwrap()
        .into_inner();
    match next(&mut stream).await {
        watch_event::Event::Start(s) => {
            assert_eq!((s.since, s.update_seq), (0, 1));
            assert_eq!(s.store_uuid, n.store.uuid());
        }
        other => panic!("expected start, got {other:?}"),
    }
    match next(&mut stream).await {
        watch_event::Event::Change(ch) => assert_eq!((ch.seq, ch.id.as_str()), (1, "a")),
        other => panic!("expected change, got {other:?}"),
    }
    n.must("PUT", "/sessions/b", Some(json!({})), 201).await;
    loop {
        match next(&mut stream).await {
            watch_event::Event::Change(ch) => {
                assert_eq!((ch.seq, ch.id.as_str(), ch.deleted), (2, "b", false));
                break;
            }
            watch_event::Event::Heartbeat(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    // A client ahead of the store must not be told everything is fine.
    let err = c
        .watch(WatchRequest {
            db: "sessions".into(),
            since: 99,
            from_now: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange);
    n.stop().await;
}

async fn next(s: &mut tonic::Streaming<proto::v1::WatchEvent>) -> watch_event::Event {
    tokio::time::timeout(Duration::from_secs(5), s.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .event
        .unwrap()
}
