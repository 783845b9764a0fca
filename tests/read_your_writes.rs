//! Read-your-writes after roaming, with real processes: a user writes in eu-west and
//! the next request lands in us-east, whose spoke's link to the hub is cut off (its
//! pull paused). A read given the write's token never answers the older revision:
//! it asks the hub, or waits for the write to get there, and says which.

mod support;

use std::time::{Duration, Instant};

use edge_client::{Caught, Client, ClientError, ReadToken, Source};
use faults::{FaultProxy, Faults, Link};
use support::*;

const DB: &[&str] = &["--database", "sessions"];

fn client_for(local: std::net::SocketAddr, hub: std::net::SocketAddr, token_wait: Duration) -> Client {
    Client::builder()
        .credentials(app_credentials())
        .local("local", format!("http://{local}"))
        .hub("london", format!("http://{hub}"))
        .deadline(Duration::from_millis(500))
        .fallback_deadline(Duration::from_secs(2))
        .token_wait(token_wait)
        .build()
        .unwrap()
}

async fn rev_at(http: &Http, node: &Proc, id: &str) -> Option<String> {
    let (status, body) = http
        .req("GET", &format!("{}/sessions/{id}", node.base()), None)
        .await;
    (status == 200).then(|| body["_rev"].as_str().unwrap_or_default().to_string())
}

async fn must_reach(http: &Http, node: &Proc, id: &str, rev: Option<&str>) {
    let start = Instant::now();
    while rev_at(http, node, id).await.as_deref() != rev {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{id} at {} is not {rev:?}",
            node.base()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_with_the_token_never_answers_older_after_roaming() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let a_link = FaultProxy::start(free_addr(), hub.grpc).await.unwrap();
    let b_link = FaultProxy::start(free_addr(), hub.grpc).await.unwrap();
    let a = must_start_spoke(dirs[1].path(), a_link.addr(), "eu-west", DB);
    let b = must_start_spoke(dirs[2].path(), b_link.addr(), "us-east", DB);
    let http = Http::default();
    let eu = client_for(a.grpc, hub.grpc, Duration::from_millis(300));
    let us = client_for(b.grpc, hub.grpc, Duration::from_millis(300));

    // Replication keeps up: the usual read already has the write.
    let rev1 = eu.put("sessions", "u1", None, br#"{"cart":1}"#).await.unwrap();
    must_reach(&http, &b, "u1", Some(&rev1)).await;
    let (s, _, caught) = us
        .read_after("sessions", "u1", &ReadToken::written(&rev1).unwrap())
        .await
        .unwrap();
    assert_eq!(s.map(|s| s.rev().to_owned()), Some(rev1.clone()));
    assert_eq!(caught, Caught::Already);

    // us-east's pull is paused: its spoke keeps the old revision.
    b_link.set(Faults::link(Link::Blackhole));
    let rev2 = eu
        .put("sessions", "u1", Some(&rev1), br#"{"cart":2}"#)
        .await
        .unwrap();
    must_reach(&http, &hub, "u1", Some(&rev2)).await;
    let plain = us.read("sessions", "u1").await.unwrap();
    assert_eq!(
        plain.rev(),
        rev1,
        "without the token the local (older) copy is served"
    );
    let token = ReadToken::parse(&ReadToken::written(&rev2).unwrap().to_string()).unwrap();
    let (s, served, caught) = us.read_after("sessions", "u1", &token).await.unwrap();
    assert_eq!(
        s.map(|s| s.rev().to_owned()),
        Some(rev2.clone()),
        "an older revision was answered"
    );
    assert_eq!(caught, Caught::FromHub("london".into()));
    assert_eq!(served.source, Source::Target("london".into()));
    assert_eq!(
        rev_at(&http, &b, "u1").await,
        Some(rev1.clone()),
        "the pull was not paused"
    );

    // A logout in eu-west: the roaming read says gone, not the older session.
    let tomb = eu.delete("sessions", "u1", &rev2).await.unwrap();
    must_reach(&http, &hub, "u1", None).await;
    let (s, _, caught) = us
        .read_after("sessions", "u1", &ReadToken::deleted(&tomb).unwrap())
        .await
        .unwrap();
    assert_eq!(s, None, "a deleted session was answered");
    assert_eq!(caught, Caught::FromHub("london".into()));

    // A write that has reached no hub yet: the read waits for it, and says so.
    a_link.set(Faults::link(Link::Blackhole));
    let rev3 = eu.put("sessions", "u3", None, br#"{"cart":3}"#).await.unwrap();
    let patient = client_for(b.grpc, hub.grpc, Duration::from_secs(20));
    let heal = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        a_link.set(Faults::up());
        a_link
    });
    let (s, _, caught) = patient
        .read_after("sessions", "u3", &ReadToken::written(&rev3).unwrap())
        .await
        .unwrap();
    assert_eq!(s.map(|s| s.rev().to_owned()), Some(rev3.clone()));
    match caught {
        Caught::AfterWaiting(target, waited) => {
            assert_eq!(target, "london");
            assert!(waited >= Duration::from_millis(400), "{waited:?}");
        }
        other => panic!("expected AfterWaiting, got {other:?}"),
    }
    let _a_link = heal.await.unwrap();

    // A revision nobody has: Behind after the wait, never an older answer.
    let ahead = ReadToken::written("99-abc").unwrap();
    let started = Instant::now();
    let err = us.read_after("sessions", "u3", &ahead).await.unwrap_err();
    assert!(matches!(err, ClientError::Behind { .. }), "{err:?}");
    assert!(err.is_retryable() && !err.is_gone());
    assert!(started.elapsed() >= Duration::from_millis(300));
    b_link.set(Faults::up());
}
