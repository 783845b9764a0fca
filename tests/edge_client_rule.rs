//! The edge-client's serving rule and failure behaviour against real hubs and
//! spokes (issue 11): expiry, vouching only for the stream's own store, reads
//! that race an invalidation, roaming logouts, writes with an unknown outcome,
//! the read budget, stale-if-error, and the randomised count of stale reads.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edge_client::{Client, ClientError, Source};
use faults::{FaultProxy, Faults, Link};
use serde_json::json;
use support::*;

const DB: &[&str] = &["--database", "sessions"];
const DB_EXPIRING: &[&str] = &["--database", "sessions", "--expiry-field", "exp"];

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn builder(local: std::net::SocketAddr, fallbacks: &[std::net::SocketAddr]) -> edge_client::ClientBuilder {
    let mut b = Client::builder()
        .credentials(app_credentials())
        .local("local", format!("http://{local}"))
        .deadline(Duration::from_millis(300))
        .fallback_deadline(Duration::from_secs(2))
        .probe_interval(Duration::from_millis(100));
    for (i, f) in fallbacks.iter().enumerate() {
        b = b.fallback(format!("fallback-{i}"), format!("http://{f}"));
    }
    b
}

async fn must_watch(client: &Client) {
    client.watch("sessions");
    let c = client.clone();
    must_eventually("watch connected", Duration::from_secs(10), || {
        let c = c.clone();
        async move { c.watch_connected("sessions") }
    })
    .await;
}

/// A proxy on a free 127.0.0.1 port in front of `upstream`.
async fn proxy(upstream: std::net::SocketAddr) -> FaultProxy {
    FaultProxy::start("127.0.0.1:0".parse().unwrap(), upstream)
        .await
        .unwrap()
}

/// Answers (and requests) `d` late each way, from now on, on every connection.
fn slow(d: Duration) -> Faults {
    Faults::wan(d, Duration::ZERO, None)
}

/// A hub, spoke A in eu-west and spoke B in us-east, with `id` written at A as `{"v":1}` (its
/// answer in `v1`) and replicated to B.
struct TwoDatacentres {
    hub: Proc,
    a: Proc,
    b: Proc,
    http: Http,
    v1: serde_json::Value,
    _dirs: Vec<tempfile::TempDir>,
}

async fn two_datacentres(id: &str) -> TwoDatacentres {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let a = must_start_spoke(dirs[1].path(), hub.grpc, "eu-west", DB);
    let b = must_start_spoke(dirs[2].path(), hub.grpc, "us-east", DB);
    let http = Http::default();
    let v1 = http
        .must(
            "PUT",
            &format!("{}/sessions/{id}", a.base()),
            Some(json!({"v": 1})),
            201,
        )
        .await;
    must_reach(&http, &b, id).await;
    TwoDatacentres {
        hub,
        a,
        b,
        http,
        v1,
        _dirs: dirs,
    }
}

async fn must_reach(http: &Http, node: &Proc, id: &str) {
    let url = format!("{}/sessions/{id}", node.base());
    must_eventually(
        &format!("{id} at {}", node.base()),
        Duration::from_secs(30),
        || {
            let (h, u) = (http.clone(), url.clone());
            async move { h.req("GET", &u, None).await.0 == 200 }
        },
    )
    .await;
}

/// Item 1: Watch never reports an expiry, so the client must know it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_never_served_from_the_cache() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let spoke = must_start_spoke(dirs[1].path(), hub.grpc, "eu-west", DB_EXPIRING);
    let http = Http::default();
    // A long staleness bound: only the expiry can stop the cache serving it.
    let client = builder(spoke.grpc, &[hub.grpc])
        .max_staleness(Duration::from_secs(60))
        .build()
        .unwrap();
    must_watch(&client).await;
    let exp = unix_now().ceil() as u64 + 2;
    http.must(
        "PUT",
        &format!("{}/sessions/short", spoke.base()),
        Some(json!({"user": "ada", "exp": exp})),
        201,
    )
    .await;
    let s = client.read("sessions", "short").await.unwrap();
    assert_eq!(s.expires_at(), Some(exp), "the expiry travels with the session");
    let (_, served) = client.read_traced("sessions", "short").await.unwrap();
    assert_eq!(served.source, Source::Cache, "cached and vouched for");
    while unix_now() < exp as f64 + 0.05 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match client.read("sessions", "short").await {
        Err(ClientError::Expired { .. }) => {}
        other => panic!("an expired session was answered {other:?}"),
    }
    assert!(client.get("sessions", "short").await.unwrap().is_none());
}

/// Item 2: a hedged read answered by a lagging datacentre is not vouched for by
/// the local stream: it lives only under max_staleness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_from_another_store_is_not_vouched_for_by_the_local_stream() {
    // `_dirs` is bound, not `..`: the data directories must outlive the processes.
    let TwoDatacentres {
        hub,
        a,
        b,
        http,
        v1,
        _dirs,
    } = two_datacentres("s").await;
    const MAX_STALENESS: Duration = Duration::from_millis(1000);
    let client = builder(a.grpc, &[b.grpc])
        .hedge_after(Duration::from_millis(20))
        .hedge_ratio(1.0)
        .max_staleness(MAX_STALENESS)
        .build()
        .unwrap();
    must_watch(&client).await;
    // B stops hearing from A; A moves on to v2.
    hub.signal(libc::SIGSTOP);
    http.must(
        "PUT",
        &format!("{}/sessions/s", a.base()),
        Some(json!({"_rev": v1["rev"], "v": 2})),
        201,
    )
    .await;
    // A slow for a moment: the read is hedged to B, which answers v1.
    a.signal(libc::SIGSTOP);
    let (s, served) = client.get_traced("sessions", "s").await.unwrap();
    let fetched = Instant::now();
    a.signal(libc::SIGCONT);
    assert_eq!(
        served.source,
        Source::Target("fallback-0".into()),
        "the hedge answered"
    );
    assert_eq!(s.unwrap().body(), br#"{"v":1}"#);
    // The local stream is healthy again, but it never vouched for B's copy.
    loop {
        let s = client.get("sessions", "s").await.unwrap().unwrap();
        if s.body() == br#"{"v":2}"# {
            break;
        }
        assert!(
            fetched.elapsed() < MAX_STALENESS + Duration::from_millis(700),
            "another store's copy served {:?} after it was read",
            fetched.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hub.signal(libc::SIGCONT);
}

/// Item 3: the read is served before a write, its answer arrives after the
/// stream has already reported the write; the old value must not be trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_raced_an_invalidation_is_not_trusted() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let spoke = must_start_spoke(dirs[1].path(), hub.grpc, "eu-west", DB);
    let proxy = proxy(spoke.grpc).await;
    let http = Http::default();
    let v1 = http
        .must(
            "PUT",
            &format!("{}/sessions/s", spoke.base()),
            Some(json!({"v": 1})),
            201,
        )
        .await;
    const MAX_STALENESS: Duration = Duration::from_millis(500);
    let client = builder(proxy.addr(), &[hub.grpc])
        .deadline(Duration::from_secs(5))
        .read_budget(Duration::from_secs(10))
        .max_staleness(MAX_STALENESS)
        .build()
        .unwrap();
    // The stream's connection is prompt; the reads' connection (opened next) is slow.
    must_watch(&client).await;
    proxy.pin_new_connections(Some(slow(Duration::from_millis(1500))));
    let sp = &spoke;
    let gets = move || metric_sum(sp, "grpc_requests_total", "method=\"get\"");
    let before = gets().await;
    let c = client.clone();
    let read = tokio::spawn(async move { c.get("sessions", "s").await });
    must_eventually(
        "the read served by the spoke",
        Duration::from_secs(10),
        move || async move { gets().await > before },
    )
    .await;
    http.must(
        "PUT",
        &format!("{}/sessions/s", spoke.base()),
        Some(json!({"_rev": v1["rev"], "v": 2})),
        201,
    )
    .await;
    let s = read.await.unwrap().unwrap().unwrap();
    assert_eq!(s.body(), br#"{"v":1}"#, "served before the write");
    tokio::time::sleep(MAX_STALENESS + Duration::from_millis(200)).await;
    let s = client.get("sessions", "s").await.unwrap().unwrap();
    assert_eq!(
        s.body(),
        br#"{"v":2}"#,
        "a value the stream had already invalidated was cached and trusted"
    );
}

/// Item 4: a user logged out in A while B still has the copy; the client in C
/// (which never had it) must answer "deleted", not B's copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_in_one_datacentre_is_not_undone_by_a_copy_in_another() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let a = must_start_spoke(dirs[1].path(), hub.grpc, "eu-west", DB);
    let b = must_start_spoke(dirs[2].path(), hub.grpc, "us-east", DB);
    let c = must_start_spoke(dirs[3].path(), hub.grpc, "ap-south", DB);
    let http = Http::default();
    hub.signal(libc::SIGSTOP);
    // The same login written in A and B (the same edit gives the same revision),
    // then the logout in A, which cannot reach B.
    let body = json!({"user": "ada"});
    let ra = http
        .must(
            "PUT",
            &format!("{}/sessions/u", a.base()),
            Some(body.clone()),
            201,
        )
        .await;
    let rb = http
        .must("PUT", &format!("{}/sessions/u", b.base()), Some(body), 201)
        .await;
    assert_eq!(ra["rev"], rb["rev"]);
    http.must(
        "DELETE",
        &format!("{}/sessions/u?rev={}", a.base(), ra["rev"].as_str().unwrap()),
        None,
        200,
    )
    .await;
    for _ in 0..5 {
        let client = builder(c.grpc, &[a.grpc, b.grpc]).build().unwrap();
        match client.read("sessions", "u").await {
            Err(ClientError::Deleted { .. }) => {}
            other => panic!("a logged-out session was answered {other:?}"),
        }
    }

    // A "not found" is remembered only when every confirmation answered.
    let dead = free_addr();
    let client = builder(c.grpc, &[a.grpc, dead]).build().unwrap();
    for _ in 0..2 {
        let (s, served) = client.get_traced("sessions", "nobody").await.unwrap();
        assert!(s.is_none());
        assert_ne!(
            served.source,
            Source::NegativeCache,
            "cached although {dead} did not answer"
        );
    }
    let client = builder(c.grpc, &[a.grpc, b.grpc]).build().unwrap();
    let _ = client.get_traced("sessions", "nobody").await.unwrap();
    let (_, served) = client.get_traced("sessions", "nobody").await.unwrap();
    assert_eq!(
        served.source,
        Source::NegativeCache,
        "every confirmation answered"
    );
    match client.read("sessions", "nobody").await {
        Err(ClientError::NotFound { .. }) => {}
        other => panic!("expected not found, got {other:?}"),
    }

    // A session found elsewhere does not wait for a silent confirmation
    // (the frozen hub, first in the chain) beyond one local deadline.
    http.must(
        "PUT",
        &format!("{}/sessions/roamer", a.base()),
        Some(json!({"u": 1})),
        201,
    )
    .await;
    let client = builder(c.grpc, &[hub.grpc, a.grpc]).build().unwrap();
    let (s, served) = client.get_traced("sessions", "roamer").await.unwrap();
    assert!(s.is_some());
    assert_eq!(served.source, Source::Target("fallback-1".into()));
    assert!(
        served.latency < Duration::from_millis(1500),
        "waited {:?} for the silent hub (its deadline is 2 s)",
        served.latency
    );
    hub.signal(libc::SIGCONT);
}

/// Item 5: a slow fsync is not a dead spoke, an unanswered write is not sent
/// elsewhere, and its outcome is reported unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_have_their_own_deadline_and_an_explicit_unknown_outcome() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let a = must_start_spoke(dirs[1].path(), hub.grpc, "eu-west", DB);
    let b = must_start_spoke(dirs[2].path(), hub.grpc, "us-east", DB);
    let proxy = proxy(a.grpc).await;
    let http = Http::default();
    hub.signal(libc::SIGSTOP);
    let client = builder(proxy.addr(), &[b.grpc])
        .deadline(Duration::from_millis(100))
        .write_deadline(Duration::from_secs(3))
        .build()
        .unwrap();
    let mut rev = client.put("sessions", "w", None, br#"{"v":0}"#).await.unwrap();
    // Round trips now take 400 ms: well over the read deadline, under the write's.
    proxy.set(slow(Duration::from_millis(200)));
    for v in 1..=4 {
        rev = client
            .put("sessions", "w", Some(&rev), format!(r#"{{"v":{v}}}"#).as_bytes())
            .await
            .unwrap_or_else(|e| panic!("slow write {v} failed: {e}"));
    }
    assert_eq!(
        client.is_healthy("local"),
        Some(true),
        "slow writes opened the read breaker"
    );
    let at_a = http
        .must("GET", &format!("{}/sessions/w", a.base()), None, 200)
        .await;
    assert_eq!(at_a["_rev"].as_str(), Some(rev.as_str()));

    // A write deadline under the delay: no answer, twice. The write is not sent
    // to B, and the app is told the outcome is unknown.
    let impatient = builder(proxy.addr(), &[b.grpc])
        .deadline(Duration::from_millis(100))
        .write_deadline(Duration::from_millis(150))
        .build()
        .unwrap();
    match impatient.put("sessions", "w", Some(&rev), br#"{"v":5}"#).await {
        Err(ClientError::WriteOutcomeUnknown { target, .. }) => assert_eq!(target, "local"),
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
    assert_eq!(impatient.is_healthy("local"), Some(true));
    assert_eq!(
        http.req("GET", &format!("{}/sessions/w", b.base()), None).await.0,
        404,
        "an ambiguous write was sent to another datacentre"
    );
    // It did commit: that is why "unknown" is not "failed".
    must_eventually(
        "the unanswered write committed at A",
        Duration::from_secs(5),
        || {
            let (h, u) = (http.clone(), format!("{}/sessions/w", a.base()));
            async move { h.req("GET", &u, None).await.1["v"] == 5 }
        },
    )
    .await;

    // A conflict is a conflict.
    proxy.set(Faults::up());
    match client.put("sessions", "w", Some(&rev), br#"{"v":6}"#).await {
        Err(ClientError::Conflict { .. }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }

    // Certainly not sent (nothing listens): on to the next target.
    let (ag, ah) = (a.grpc, a.http);
    let _ = ah;
    a.kill();
    let direct = builder(ag, &[b.grpc]).build().unwrap();
    direct
        .put("sessions", "x", None, br#"{"v":1}"#)
        .await
        .expect("a write that could not be sent fails over");
    assert_eq!(
        http.req("GET", &format!("{}/sessions/x", b.base()), None).await.0,
        200
    );
    hub.signal(libc::SIGCONT);
}

/// Item 6: the read budget covers the whole chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_never_outlasts_its_budget() {
    let dirs: Vec<_> = (0..1).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let p1 = proxy(hub.grpc).await;
    let p2 = proxy(hub.grpc).await;
    p1.set_link(Link::Blackhole);
    p2.set_link(Link::Blackhole);
    const BUDGET: Duration = Duration::from_millis(1200);
    let client = builder(p1.addr(), &[p2.addr(), hub.grpc])
        .deadline(Duration::from_secs(1))
        .fallback_deadline(Duration::from_secs(1))
        .read_budget(BUDGET)
        .build()
        .unwrap();
    let started = Instant::now();
    let r = client.get("sessions", "s").await;
    let took = started.elapsed();
    assert!(matches!(r, Err(ClientError::Unavailable { .. })), "{r:?}");
    assert!(took < BUDGET + Duration::from_millis(400), "a read took {took:?}");
}

/// Item 6: a hedge that failed is not asked again as the next target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_hedge_is_not_asked_again() {
    let dirs: Vec<_> = (0..1).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let local = proxy(hub.grpc).await;
    local.set_link(Link::Blackhole);
    // Accepts, then finds nothing behind it: fails fast, and counts each try.
    let broken = proxy(free_addr()).await;
    let client = builder(local.addr(), &[broken.addr(), hub.grpc])
        .hedge_after(Duration::from_millis(20))
        .hedge_ratio(1.0)
        .build()
        .unwrap();
    let (_, served) = client.get_traced("sessions", "s").await.unwrap();
    assert_eq!(served.source, Source::Target("fallback-1".into()));
    assert_eq!(broken.accepted(), 1, "the failed hedge target was asked again");
}

/// Item 6: when every target is down, cached sessions are served (marked
/// stale) for the stale-if-error window, and not after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outage_serves_cached_sessions_for_a_bounded_window() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let spoke = must_start_spoke(dirs[1].path(), hub.grpc, "eu-west", DB);
    const MAX_STALENESS: Duration = Duration::from_millis(300);
    const WINDOW: Duration = Duration::from_secs(2);
    let client = builder(spoke.grpc, &[hub.grpc])
        .max_staleness(MAX_STALENESS)
        .stale_if_error(WINDOW)
        .build()
        .unwrap();
    client.put("sessions", "s", None, br#"{"u":1}"#).await.unwrap();
    client.read("sessions", "s").await.unwrap();
    let fetched = Instant::now();
    spoke.kill();
    hub.kill();
    tokio::time::sleep(MAX_STALENESS + Duration::from_millis(200)).await;
    let (s, served) = client.read_traced("sessions", "s").await.expect("served stale");
    assert_eq!(s.body(), br#"{"u":1}"#);
    assert!(served.stale, "{served:?}");
    loop {
        match client.read_traced("sessions", "s").await {
            Ok((_, served)) => {
                assert!(served.stale);
                assert!(
                    fetched.elapsed() < MAX_STALENESS + WINDOW + Duration::from_millis(100),
                    "served stale {:?} after it was read",
                    fetched.elapsed()
                );
            }
            Err(ClientError::Unavailable { .. }) => break,
            Err(e) => panic!("{e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(fetched.elapsed() >= MAX_STALENESS + WINDOW - Duration::from_millis(100));
}

/// Item 6: a database a target lacks is an answer, not a failure of the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_database_does_not_open_the_breaker() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let spoke = must_start_spoke(dirs[1].path(), hub.grpc, "eu-west", DB);
    let client = builder(spoke.grpc, &[hub.grpc]).build().unwrap();
    client.put("sessions", "s", None, br#"{"u":1}"#).await.unwrap();
    for i in 0..6 {
        match client.read("no-such-db", &format!("x{i}")).await {
            Err(ClientError::NotFound { .. }) => {}
            other => panic!("expected not found, got {other:?}"),
        }
    }
    assert_eq!(client.is_healthy("local"), Some(true));
    let (_, served) = client.read_traced("sessions", "s").await.unwrap();
    assert_eq!(served.source, Source::Target("local".into()));
}

/// Item 6: max_staleness bounds only what the stream does not vouch for; 0 (or
/// anything under the heartbeat) keeps the cache working while it is healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_max_staleness_still_serves_vouched_entries() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let spoke = must_start_spoke(dirs[1].path(), hub.grpc, "eu-west", DB);
    let client = builder(spoke.grpc, &[hub.grpc])
        .max_staleness(Duration::ZERO)
        .build()
        .unwrap();
    must_watch(&client).await;
    client.put("sessions", "s", None, br#"{"u":1}"#).await.unwrap();
    let (_, served) = client.read_traced("sessions", "s").await.unwrap();
    assert_eq!(served.source, Source::Target("local".into()));
    // Across several heartbeats: every read a hit.
    for _ in 0..12 {
        let (_, served) = client.read_traced("sessions", "s").await.unwrap();
        assert_eq!(served.source, Source::Cache);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A database deleted and created again under the same name, while the stream is away: the
/// new incarnation's sequence numbers pass the old resume point, but they vouch for nothing
/// cached from the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_database_does_not_vouch_for_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Proc::must_start_hub(dir.path());
    let link = proxy(hub.grpc).await;
    let http = Http::default();
    let db = format!("{}/sessions", hub.base());
    http.req("PUT", &db, None).await;
    http.must("PUT", &format!("{db}/s"), Some(json!({"v": 1})), 201)
        .await;
    let client = builder(link.addr(), &[])
        .max_staleness(Duration::from_millis(200))
        .watch_silence(Duration::from_millis(500))
        .build()
        .unwrap();
    must_watch(&client).await;
    client.get("sessions", "s").await.unwrap().unwrap();
    assert_eq!(
        client.get_traced("sessions", "s").await.unwrap().1.source,
        Source::Cache
    );

    // The stream goes quiet; meanwhile the database is dropped, made again, and written past
    // the sequence the stream will resume from.
    link.set_link(Link::Blackhole);
    let c = client.clone();
    must_eventually("stream lost", Duration::from_secs(10), || {
        let c = c.clone();
        async move { !c.watch_connected("sessions") }
    })
    .await;
    http.must("DELETE", &db, None, 200).await;
    http.must("PUT", &db, None, 201).await;
    for id in ["a", "b", "c"] {
        http.must("PUT", &format!("{db}/{id}"), Some(json!({})), 201)
            .await;
    }
    link.set_link(Link::Up);
    must_watch(&client).await;
    assert_eq!(
        client.get("sessions", "s").await.unwrap(),
        None,
        "a session of the dropped database was served as vouched for"
    );
}

/// Item 6: skipped targets are probed together. Probes that get no answer wait out their
/// 500 ms timeout, so one at a time the sixth would be sent 2.5 s after the first; together,
/// all six reach the server at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_targets_are_probed_together() {
    const N: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let hub = Proc::must_start_hub(dir.path());
    let mut links = Vec::new();
    for _ in 0..N {
        let p = proxy(hub.grpc).await;
        p.set_link(Link::Reset);
        links.push(p);
    }
    let addrs: Vec<_> = links.iter().map(|p| p.addr()).collect();
    let client = builder(addrs[0], &addrs[1..])
        .failure_threshold(1)
        .probe_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let names = client.targets();
    let c = client.clone();
    must_eventually("every breaker open", Duration::from_secs(10), || {
        let (c, names) = (c.clone(), names.clone());
        async move {
            let _ = c.get("sessions", "s").await;
            names.iter().all(|n| c.is_healthy(n) == Some(false))
        }
    })
    .await;
    // Requests now reach the hub, and its answers never come back.
    for p in &links {
        p.set_link(Link::HoldDownstream);
    }
    let gets = || metric_sum(&hub, "grpc_requests_total", "method=\"get\"");
    let before = gets().await;
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        while gets().await == before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Instant::now()
    })
    .await
    .expect("no probe reached the hub");
    let mut seen = 0;
    while first.elapsed() < Duration::from_millis(1200) {
        seen = gets().await - before;
        if seen >= N as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        seen >= N as u64,
        "only {seen} of {N} probes sent in the first 1.2 s: probes wait on each other"
    );
}

/// Item 6: streams of databases nobody reads (or that do not exist) end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_streams_of_unread_databases_end() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let spoke = must_start_spoke(dirs[1].path(), hub.grpc, "eu-west", DB);
    let client = builder(spoke.grpc, &[hub.grpc])
        .watch_idle(Duration::from_millis(500))
        .build()
        .unwrap();
    for i in 0..5 {
        let _ = client.get(&format!("missing-{i}"), "x").await;
    }
    let _ = client.get("sessions", "x").await;
    assert_eq!(client.watched_databases().len(), 6);
    let c = client.clone();
    must_eventually("idle streams ended", Duration::from_secs(10), || {
        let c = c.clone();
        async move { c.watched_databases().is_empty() }
    })
    .await;
    // The next read starts one again.
    let _ = client.get("sessions", "x").await;
    assert_eq!(client.watched_databases(), vec!["sessions".to_string()]);
}

/// A tiny deterministic generator (the seed is printed, so a failing run can
/// be replayed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What happened to one revision of one session, by the writers' account.
#[derive(Clone, Debug)]
struct RevLog {
    id: String,
    rev: String,
    /// When its delete was acknowledged.
    deleted_at: Option<Instant>,
}

/// The randomised count: concurrent writers (creates, updates, deletes) in two
/// datacentres, sessions that expire, a spoke SIGKILLed and restarted now and
/// then, and reads through several clients. Reads that returned a session
/// already expired, or deleted longer ago than the staleness bound, must be 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_read_returns_a_session_deleted_or_expired_beyond_the_bound() {
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("seed {seed}");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let a = must_start_spoke(dirs[1].path(), hub.grpc, "eu-west", DB_EXPIRING);
    let b = Arc::new(Mutex::new(Some(must_start_spoke(
        dirs[2].path(),
        hub.grpc,
        "us-east",
        DB_EXPIRING,
    ))));
    let b_grpc = b.lock().unwrap().as_ref().unwrap().grpc;
    const MAX_STALENESS: Duration = Duration::from_millis(500);
    const WATCH_SILENCE: Duration = Duration::from_millis(1500);
    // The client's bound (the larger of the two) plus replication between
    // datacentres, which a killed spoke catches up on after its restart.
    const BOUND: Duration = Duration::from_millis(500 + 1500 + 2500);
    const RUN: Duration = Duration::from_secs(12);
    let make = |local: std::net::SocketAddr, other: std::net::SocketAddr| {
        Client::builder()
            .credentials(app_credentials())
            .local("local", format!("http://{local}"))
            .fallback("hub", format!("http://{}", hub.grpc))
            .fallback("other", format!("http://{other}"))
            .deadline(Duration::from_millis(200))
            .fallback_deadline(Duration::from_millis(500))
            .max_staleness(MAX_STALENESS)
            .watch_silence(WATCH_SILENCE)
            .stale_if_error(Duration::ZERO)
            .probe_interval(Duration::from_millis(100))
            .build()
            .unwrap()
    };
    let writers_clients = [make(a.grpc, b_grpc), make(b_grpc, a.grpc)];
    let readers_clients = [make(a.grpc, b_grpc), make(b_grpc, a.grpc), make(b_grpc, a.grpc)];
    let log: Arc<Mutex<Vec<RevLog>>> = Arc::default();
    let started = Instant::now();

    let mut tasks = Vec::new();
    for (w, client) in writers_clients.iter().enumerate() {
        let (client, log) = (client.clone(), log.clone());
        let mut rng = Rng(seed.wrapping_add(w as u64 * 7919));
        tasks.push(tokio::spawn(async move {
            let mut current: Vec<Option<String>> = vec![None; 15];
            let mut writes = 0u64;
            while started.elapsed() < RUN {
                let k = rng.below(15) as usize;
                let id = format!("w{w}-{k}");
                let result = match current[k].clone() {
                    None => {
                        let exp = unix_now().ceil() as u64 + 1 + rng.below(4);
                        // A unique body: revisions are deterministic, and the log must
                        // not mistake a new revision for an old one.
                        let body = format!(r#"{{"exp":{exp},"n":{writes},"w":{w}}}"#);
                        client.put("sessions", &id, None, body.as_bytes()).await.map(Some)
                    }
                    Some(rev) if rng.below(3) == 0 => {
                        let exp = unix_now().ceil() as u64 + 2 + rng.below(4);
                        let body = format!(r#"{{"exp":{exp},"n":{writes},"w":{w}}}"#);
                        client
                            .put("sessions", &id, Some(&rev), body.as_bytes())
                            .await
                            .map(Some)
                    }
                    Some(rev) => match client.delete("sessions", &id, &rev).await {
                        Ok(_) => {
                            let at = Instant::now();
                            let mut l = log.lock().unwrap();
                            if let Some(r) = l.iter_mut().find(|r| r.id == id && r.rev == rev) {
                                r.deleted_at = Some(at);
                            }
                            Ok(None)
                        }
                        Err(e) => Err(e),
                    },
                };
                match result {
                    Ok(Some(rev)) => {
                        log.lock().unwrap().push(RevLog {
                            id: id.clone(),
                            rev: rev.clone(),
                            deleted_at: None,
                        });
                        current[k] = Some(rev);
                        writes += 1;
                    }
                    Ok(None) => {
                        current[k] = None;
                        writes += 1;
                    }
                    // Expired meanwhile (the update lost its parent), a conflict, or
                    // an unknown outcome: start the key afresh.
                    Err(_) => {
                        current[k] = None;
                        writes += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(rng.below(40))).await;
            }
            writes
        }));
    }
    type ReadLog = Vec<(String, Instant, f64, Option<edge_client::Session>)>;
    let mut readers = Vec::new();
    for (r, client) in readers_clients.iter().enumerate() {
        let client = client.clone();
        let mut rng = Rng(seed.wrapping_add(104_729 + r as u64));
        readers.push(tokio::spawn(async move {
            let mut reads: ReadLog = Vec::new();
            while started.elapsed() < RUN {
                let id = format!("w{}-{}", rng.below(2), rng.below(15));
                let (t0, wall0) = (Instant::now(), unix_now());
                if let Ok(s) = client.get("sessions", &id).await {
                    reads.push((id, t0, wall0, s));
                }
                tokio::time::sleep(Duration::from_millis(rng.below(10))).await;
            }
            reads
        }));
    }
    // Kill B now and then and bring it back.
    let killer = {
        let b = b.clone();
        let mut rng = Rng(seed ^ 0xdead_beef);
        tokio::spawn(async move {
            let mut kills = 0;
            while started.elapsed() + Duration::from_secs(3) < RUN {
                tokio::time::sleep(Duration::from_millis(1500 + rng.below(1500))).await;
                let proc = b.lock().unwrap().take();
                if let Some(p) = proc {
                    let restarted = {
                        let args = (p.args.clone(), p.http, p.grpc, p.data_dir.clone());
                        p.kill();
                        kills += 1;
                        tokio::time::sleep(Duration::from_millis(300 + rng.below(500))).await;
                        tokio::task::spawn_blocking(move || Proc::must_start(args.0, args.1, args.2, &args.3))
                            .await
                            .unwrap()
                    };
                    *b.lock().unwrap() = Some(restarted);
                }
            }
            kills
        })
    };
    let mut writes = 0;
    for t in tasks {
        writes += t.await.unwrap();
    }
    let mut reads: ReadLog = Vec::new();
    for r in readers {
        reads.extend(r.await.unwrap());
    }
    let kills = killer.await.unwrap();
    let log = log.lock().unwrap().clone();
    let mut found = 0;
    let mut violations = Vec::new();
    for (id, t0, wall0, s) in &reads {
        let Some(s) = s else { continue };
        found += 1;
        if let Some(exp) = s.expires_at() {
            if (exp as f64) <= wall0.floor() {
                violations.push(format!(
                    "{id} {} served {:.3}s after it expired",
                    s.rev(),
                    wall0 - exp as f64
                ));
            }
        }
        let deleted = log
            .iter()
            .find(|r| r.id == *id && r.rev == s.rev())
            .and_then(|r| r.deleted_at);
        if let Some(at) = deleted {
            if *t0 > at + BOUND {
                violations.push(format!("{id} {} served {:?} after its delete", s.rev(), *t0 - at));
            }
        }
    }
    eprintln!(
        "{writes} writes, {} reads ({found} found), {kills} kills of B, {} violations",
        reads.len(),
        violations.len()
    );
    assert!(
        writes > 100 && reads.len() > 500 && found > 100 && kills >= 2,
        "the run did too little"
    );
    assert!(
        violations.is_empty(),
        "{} stale reads: {violations:#?}",
        violations.len()
    );
}

/// The reload test's fleet: `local` is eu-west's spoke (name, process), `other` us-east's.
fn fleet_file(
    hub: &Proc,
    local: (&str, &Proc),
    other: &Proc,
    max_staleness_ms: u64,
    negative_ttl_ms: u64,
) -> String {
    fleet_toml(
        (hub.http, hub.grpc),
        &[
            ("eu-west", local.0, (local.1.http, local.1.grpc)),
            ("us-east", "us-east-1", (other.http, other.grpc)),
        ],
        &format!(
            "[client]\ndeadline_ms = 2000\nmax_staleness_ms = {max_staleness_ms}\nnegative_ttl_ms = {negative_ttl_ms}\n"
        ),
    )
}

/// Item 6: a topology reload applies `[client]` and moves the stream to the new
/// local spoke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topology_reload_moves_the_stream_and_applies_client_settings() {
    // `_dirs` is bound, not `..`: the data directories must outlive the processes.
    let TwoDatacentres {
        hub,
        a,
        b,
        http,
        v1,
        _dirs,
    } = two_datacentres("k").await;
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("fleet.toml");
    std::fs::write(&topo, fleet_file(&hub, ("eu-west-1", &a), &b, 60_000, 0)).unwrap();
    let client = Client::from_topology_file(&topo, "eu-west", app_credentials()).unwrap();
    must_watch(&client).await;
    let miss_source = || async {
        assert_eq!(client.get("sessions", "nobody").await.unwrap(), None);
        client.get_traced("sessions", "nobody").await.unwrap().1.source
    };
    assert_ne!(
        miss_source().await,
        Source::NegativeCache,
        "negative caching is off"
    );
    let (_, served) = client.get_traced("sessions", "k").await.unwrap();
    assert_eq!(served.source, Source::Target("eu-west-1".into()));
    assert_eq!(
        client.get_traced("sessions", "k").await.unwrap().1.source,
        Source::Cache
    );

    // Ops move eu-west to spoke B and tighten the staleness bound.
    std::fs::write(&topo, fleet_file(&hub, ("eu-west-2", &b), &a, 100, 60_000)).unwrap();
    let c = client.clone();
    must_eventually("chain reloaded", Duration::from_secs(10), || {
        let c = c.clone();
        async move { c.targets() == ["eu-west-2", "london", "us-east-1"] }
    })
    .await;
    assert_eq!(
        miss_source().await,
        Source::NegativeCache,
        "the reloaded negative_ttl_ms is ignored"
    );
    // B moves on, unseen by A: only a stream from B (or the new bound) can tell.
    hub.signal(libc::SIGSTOP);
    http.must(
        "PUT",
        &format!("{}/sessions/k", b.base()),
        Some(json!({"_rev": v1["rev"], "v": 2})),
        201,
    )
    .await;
    let c = client.clone();
    must_eventually(
        "the change at the new local spoke seen",
        Duration::from_secs(5),
        || {
            let c = c.clone();
            async move { c.get("sessions", "k").await.unwrap().unwrap().body() == br#"{"v":2}"# }
        },
    )
    .await;
    hub.signal(libc::SIGCONT);
}
