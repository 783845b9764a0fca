//! The edge-client against real hubs and spokes: failover when the local spoke
//! dies, roaming reads, invalidation, the byte bound and single-flight.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_client::{Client, Source};
use serde_json::json;
use support::*;

const DB: &[&str] = &["--database", "sessions"];
const DEADLINE: Duration = Duration::from_millis(300);

fn client_for(local: std::net::SocketAddr, fallbacks: &[std::net::SocketAddr]) -> Client {
    let mut b = Client::builder()
        .credentials(app_credentials())
        .local("local", format!("http://{local}"))
        .deadline(DEADLINE)
        .fallback_deadline(Duration::from_secs(2))
        .max_staleness(Duration::from_secs(2))
        .watch_silence(Duration::from_millis(1500))
        .probe_interval(Duration::from_millis(100));
    for (i, f) in fallbacks.iter().enumerate() {
        b = b.fallback(format!("fallback-{i}"), format!("http://{f}"));
    }
    b.build().unwrap()
}

/// A Prometheus recorder for this test process, to read the client's metrics.
fn metrics_recorder() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("first recorder of this process")
    })
}

/// The sum of a metric's samples whose labels contain `label`.
fn sample(h: &metrics_exporter_prometheus::PrometheusHandle, name: &str, label: &str) -> f64 {
    h.render()
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_local_spoke_costs_no_timeouts_after_detection_and_recovers() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let spoke = must_start_spoke(dirs[1].path(), hub.grpc, "eu-west", DB);
    let http = Http::default();
    let client = client_for(spoke.grpc, &[hub.grpc]);
    for i in 0..20 {
        client
            .put(
                "sessions",
                &format!("s{i}"),
                None,
                format!(r#"{{"n":{i}}}"#).as_bytes(),
            )
            .await
            .unwrap();
    }
    let hub_base = hub.base();
    must_eventually("sessions at the hub", Duration::from_secs(30), || {
        let (h, b) = (http.clone(), hub_base.clone());
        async move { h.req("GET", &format!("{b}/sessions"), None).await.1["doc_count"] == 20 }
    })
    .await;

    let (args, h, g) = (spoke.args.clone(), spoke.http, spoke.grpc);
    let _ = h;
    spoke.kill();
    // Fresh client: nothing cached, every read goes upstream.
    let client = client_for(g, &[hub.grpc]);
    let recorder = metrics_recorder();
    let skipped_before = sample(recorder, "edge_fallbacks_total", "circuit_open");
    let mut slow = 0;
    for i in 0..20 {
        let (s, served) = client.get_traced("sessions", &format!("s{i}")).await.unwrap();
        assert!(s.is_some(), "s{i} lost");
        assert_eq!(served.source, Source::Target("fallback-0".into()));
        if i >= 3 {
            // Marked down after the first failures: no later read waits for it.
            assert!(served.latency < DEADLINE, "read {i} took {:?}", served.latency);
        }
        if served.latency >= DEADLINE {
            slow += 1;
        }
    }
    assert!(slow <= 3, "{slow} reads paid the dead spoke's deadline");
    assert_eq!(client.is_healthy("local"), Some(false));
    // The metrics say the same: reads skipped the open breaker (other tests in
    // this binary can only add to the counter, so this is a lower bound).
    let skipped = sample(recorder, "edge_fallbacks_total", "circuit_open") - skipped_before;
    assert!(skipped >= 17.0, "only {skipped} reads skipped the dead spoke");

    // Back: the probe notices and reads return to it.
    let spoke = Proc::must_start(args, h, g, dirs[1].path());
    let c2 = client.clone();
    must_eventually("local spoke healthy again", Duration::from_secs(10), || {
        let c = c2.clone();
        async move { c.is_healthy("local") == Some(true) }
    })
    .await;
    let (_, served) = client.get_traced("sessions", "never-read-before").await.unwrap();
    assert_eq!(served.source, Source::Target("local".into()));
    drop(spoke);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roaming_read_finds_a_session_written_elsewhere_before_replication() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let a = must_start_spoke(dirs[1].path(), hub.grpc, "eu-west", DB);
    let b = must_start_spoke(dirs[2].path(), hub.grpc, "us-east", DB);
    let http = Http::default();
    // Freeze the hub: nothing can replicate from A to B now.
    hub.signal(libc::SIGSTOP);
    http.must(
        "PUT",
        &format!("{}/sessions/roamer", a.base()),
        Some(json!({"user": "ada"})),
        201,
    )
    .await;
    let client = client_for(b.grpc, &[hub.grpc, a.grpc]);
    let started = Instant::now();
    let (s, served) = client.get_traced("sessions", "roamer").await.unwrap();
    assert!(
        s.is_some(),
        "a just-written session must be found from another datacentre"
    );
    assert_eq!(served.source, Source::Target("fallback-1".into()), "found at A");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        http.req("GET", &format!("{}/sessions/roamer", b.base()), None)
            .await
            .0,
        404,
        "not replicated yet"
    );
    hub.signal(libc::SIGCONT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_evict_cached_sessions_and_staleness_is_bounded() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let spoke = must_start_spoke(dirs[1].path(), hub.grpc, "eu-west", DB);
    let http = Http::default();
    let client = client_for(spoke.grpc, &[hub.grpc]);
    let rev = client.put("sessions", "s", None, br#"{"v":1}"#).await.unwrap();
    let c = client.clone();
    must_eventually("watch connected", Duration::from_secs(10), || {
        let c = c.clone();
        async move {
            let _ = c.get("sessions", "s").await;
            c.watch_connected("sessions")
        }
    })
    .await;
    let (_, served) = client.get_traced("sessions", "s").await.unwrap();
    assert_eq!(served.source, Source::Cache);

    // Updated behind the client's back: evicted within the bound.
    const BOUND: Duration = Duration::from_millis(500);
    let r = http
        .must(
            "PUT",
            &format!("{}/sessions/s", spoke.base()),
            Some(json!({"_rev": rev, "v": 2})),
            201,
        )
        .await;
    let written = Instant::now();
    loop {
        let s = client.get("sessions", "s").await.unwrap().unwrap();
        if s.body() == br#"{"v":2}"# {
            break;
        }
        assert!(
            written.elapsed() < BOUND,
            "stale value served {:?} after the update",
            written.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Deleted: gone within the bound.
    let rev2 = r["rev"].as_str().unwrap();
    http.must(
        "DELETE",
        &format!("{}/sessions/s?rev={rev2}", spoke.base()),
        None,
        200,
    )
    .await;
    let deleted = Instant::now();
    while client.get("sessions", "s").await.unwrap().is_some() {
        assert!(
            deleted.elapsed() < BOUND,
            "deleted session still served after {:?}",
            deleted.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Cut the stream (freeze the spoke): cached entries are not served past max_staleness.
    client.put("sessions", "t", None, br#"{"v":1}"#).await.unwrap();
    client.get("sessions", "t").await.unwrap();
    assert_eq!(
        client.get_traced("sessions", "t").await.unwrap().1.source,
        Source::Cache
    );
    spoke.signal(libc::SIGSTOP);
    let cut = Instant::now();
    let max_staleness = Duration::from_secs(2);
    loop {
        let (_, served) = client.get_traced("sessions", "t").await.unwrap();
        if served.source != Source::Cache {
            break;
        }
        assert!(
            cut.elapsed() < max_staleness + Duration::from_millis(500),
            "cache served past max_staleness"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    spoke.signal(libc::SIGCONT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_bound_holds_and_misses_are_single_flight() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let spoke = must_start_spoke(dirs[1].path(), hub.grpc, "eu-west", DB);
    let http = Http::default();
    const BOUND: u64 = 64 << 10;
    let small = Client::builder()
        .credentials(app_credentials())
        .local("local", format!("http://{}", spoke.grpc))
        .fallback("hub", format!("http://{}", hub.grpc))
        .cache_bytes(BOUND)
        .build()
        .unwrap();
    for i in 0..300usize {
        let size = [100, 700, 2000, 4000][i % 4];
        let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(size));
        small
            .put("sessions", &format!("m{i}"), None, body.as_bytes())
            .await
            .unwrap();
        if i % 25 == 0 {
            assert!(small.cache_bytes().await <= BOUND, "cache over its bound at {i}");
        }
    }
    for i in 0..300usize {
        let _ = small.get("sessions", &format!("m{i}")).await.unwrap();
    }
    let held = small.cache_bytes().await;
    assert!(held <= BOUND && held > BOUND / 4, "held {held} of {BOUND}");

    // 50 concurrent misses for one key: one request reaches the spoke.
    http.must(
        "PUT",
        &format!("{}/sessions/hot", spoke.base()),
        Some(json!({"hot": true})),
        201,
    )
    .await;
    let client = Arc::new(client_for(spoke.grpc, &[hub.grpc]));
    let before = metric_sum(&spoke, "grpc_requests_total", "method=\"get\"").await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.get("sessions", "hot").await.unwrap().is_some() })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap());
    }
    let after = metric_sum(&spoke, "grpc_requests_total", "method=\"get\"").await;
    assert_eq!(
        after - before,
        1,
        "{} upstream gets for 50 concurrent misses",
        after - before
    );
}
