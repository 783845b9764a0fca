//! The soak: a hub and two spokes replicating through it, under a steady mixed load
//! (HTTP reads, writes and deletes at both spokes, gRPC reads), for a fixed time. Every
//! node's resident memory, open descriptors, threads and live tokio tasks are sampled
//! from `/_metrics` throughout; the figures are their slopes after a warm-up.
//!
//! Short mode (CI) runs 40 s. Long mode: `scripts/soak.sh --minutes N` (sets
//! `SOAK_MINUTES`, and `SOAK_REPORT` to a file the figures are appended to as a JSON line).
//!
//! What must hold: no operation fails; descriptors and tasks come back to their
//! warm-up level once the load stops (a leak of either is a bug at any rate); the fleet
//! converges. Memory is reported, not asserted: RocksDB's memtables and caches fill by
//! design, so its slope is read over a long run.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::v1::GetRequest;
use serde_json::{json, Value};
use support::*;

const DB: &str = "sessions";
/// Leeway for descriptors and tasks after the load: pooled connections come and go.
const LEEWAY: f64 = 16.0;

fn soak_time() -> Duration {
    match std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse::<f64>().ok())
    {
        Some(m) if m > 0.0 => Duration::from_secs_f64(m * 60.0),
        _ => Duration::from_secs(40),
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    at: f64,
    rss_mb: f64,
    fds: f64,
    threads: f64,
    tasks: f64,
}

async fn sample(node: &Proc, started: Instant) -> Sample {
    Sample {
        at: started.elapsed().as_secs_f64(),
        rss_mb: metric_sum(node, "process_resident_memory_bytes", "").await as f64 / (1 << 20) as f64,
        fds: metric_sum(node, "process_open_fds", "").await as f64,
        threads: metric_sum(node, "process_threads", "").await as f64,
        tasks: metric_sum(node, "process_tokio_alive_tasks", "").await as f64,
    }
}

/// Least-squares slope of `y` over the samples' times, per hour.
fn slope_per_hour(samples: &[Sample], y: impl Fn(&Sample) -> f64) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = samples.iter().map(|s| s.at).sum::<f64>() / n;
    let my = samples.iter().map(&y).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for s in samples {
        num += (s.at - mx) * (y(s) - my);
        den += (s.at - mx) * (s.at - mx);
    }
    if den == 0.0 {
        0.0
    } else {
        num / den * 3600.0
    }
}

/// Counts of what the load did.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl Tally {
    fn record(&self, ok: bool, what: impl FnOnce() -> String) {
        if ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
        } else if self.failed.fetch_add(1, Ordering::Relaxed) < 5 {
            eprintln!("soak: failed: {}", what());
        }
    }
}

/// Writes, updates and deletes its own sessions at `base`, paced.
async fn writer(base: String, prefix: String, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let http = admin_reqwest();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let url = format!("{base}/{DB}/{prefix}-{}", n % 200);
        // Create or update, then every third one deleted: a steady churn of revisions
        // and tombstones for replication to carry.
        let current = http.get(&url).send().await;
        let rev = match current {
            Ok(r) if r.status() == 200 => r
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v["_rev"].as_str().map(str::to_owned)),
            _ => None,
        };
        let mut body = json!({"user": n, "expires_at": 4_102_444_800u64});
        if let Some(rev) = &rev {
            body["_rev"] = json!(rev);
        }
        let r = match rev {
            Some(rev) if n.is_multiple_of(3) => http.delete(format!("{url}?rev={rev}")).send().await,
            _ => http.put(&url).json(&body).send().await,
        };
        let status = r.as_ref().map(|r| r.status().as_u16()).unwrap_or(0);
        tally.record(matches!(status, 200 | 201), || format!("write {url}: {status}"));
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
}

/// Reads sessions another spoke writes (found or not yet/no longer there), paced.
async fn reader(base: String, prefix: String, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let http = admin_reqwest();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let url = format!("{base}/{DB}/{prefix}-{}", n % 200);
        let status = http
            .get(&url)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        tally.record(matches!(status, 200 | 404), || format!("read {url}: {status}"));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// gRPC `Sessions.Get`, as edge-clients call it, paced.
async fn grpc_reader(node: &Proc, prefix: String, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let mut c = sessions(node).await;
    let auth = format!("Bearer {}", secrets().app_token);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let req = GetRequest {
            db: DB.into(),
            id: format!("{prefix}-{}", n % 200),
        };
        let r = c.get(grpc_request(req, Some(&auth))).await;
        tally.record(r.is_ok(), || format!("gRPC get: {r:?}"));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// id → winning rev of every live session at `base`.
async fn live(base: &str) -> Option<Vec<(String, String)>> {
    let v: Value = admin_reqwest()
        .get(format!("{base}/{DB}/_all_docs"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["rows"]
        .as_array()?
        .iter()
        .map(|r| {
            Some((
                r["id"].as_str()?.to_owned(),
                r["value"]["rev"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_mixed_load_leaves_descriptors_and_tasks_flat() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // A small memory bound, so that a long run reaches it early and the slope after
    // that shows a leak, not caches filling.
    let cache = ["--cache-mib", "32"];
    let hub = Proc::must_start_hub_with(dirs[0].path(), &cache);
    let db = [
        "--database",
        DB,
        "--expiry-field",
        "expires_at",
        cache[0],
        cache[1],
    ];
    let spokes = [
        must_start_spoke(dirs[1].path(), hub.grpc, "eu-west", &db),
        must_start_spoke(dirs[2].path(), hub.grpc, "us-east", &db),
    ];
    let nodes = [("hub", &hub), ("eu-west", &spokes[0]), ("us-east", &spokes[1])];

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let prefixes = ["eu", "us"];
    let mut load = Vec::new();
    for (i, spoke) in spokes.iter().enumerate() {
        let (mine, theirs) = (prefixes[i], prefixes[1 - i]);
        load.push(tokio::spawn(writer(
            spoke.base(),
            mine.into(),
            tally.clone(),
            stop.clone(),
        )));
        load.push(tokio::spawn(reader(
            spoke.base(),
            theirs.into(),
            tally.clone(),
            stop.clone(),
        )));
    }
    let grpc = {
        let (tally, stop, spoke) = (tally.clone(), stop.clone(), &spokes[0]);
        async move { grpc_reader(spoke, "us".into(), tally, stop).await }
    };

    let started = Instant::now();
    let length = soak_time();
    let sampler = async {
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); nodes.len()];
        // 40 samples over the run, at least one every 30 s.
        let every = (length / 40).clamp(Duration::from_millis(500), Duration::from_secs(30));
        while started.elapsed() < length {
            for (i, (_, node)) in nodes.iter().enumerate() {
                samples[i].push(sample(node, started).await);
            }
            tokio::time::sleep(every).await;
        }
        stop.store(true, Ordering::Relaxed);
        samples
    };
    let (samples, ()) = tokio::join!(sampler, grpc);
    for t in load {
        t.await.unwrap();
    }
    let ops = tally.ok.load(Ordering::Relaxed) + tally.failed.load(Ordering::Relaxed);

    // The fleet converges: both spokes and the hub list the same live sessions.
    must_eventually(
        "the fleet converges after the soak",
        Duration::from_secs(60),
        || async {
            let views = [
                live(&hub.base()).await,
                live(&spokes[0].base()).await,
                live(&spokes[1].base()).await,
            ];
            views.iter().all(|v| v.is_some() && *v == views[0])
        },
    )
    .await;
    // Idle again: connections of the load closed, feeds and streams back to their count.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut figures = Vec::new();
    for (i, (name, node)) in nodes.iter().enumerate() {
        // Slopes after a warm-up of a quarter of the run.
        let warm: Vec<Sample> = samples[i].iter().copied().skip(samples[i].len() / 4).collect();
        let baseline = warm.first().copied().unwrap_or_default();
        let after = sample(node, started).await;
        let f = json!({
            "node": name,
            "samples": warm.len(),
            "rss_mb_start": baseline.rss_mb, "rss_mb_end": after.rss_mb,
            "rss_mb_per_hour": slope_per_hour(&warm, |s| s.rss_mb),
            "fds_start": baseline.fds, "fds_end": after.fds,
            "fds_per_hour": slope_per_hour(&warm, |s| s.fds),
            "threads_start": baseline.threads, "threads_end": after.threads,
            "tasks_start": baseline.tasks, "tasks_end": after.tasks,
            "tasks_per_hour": slope_per_hour(&warm, |s| s.tasks),
        });
        println!("SOAK {f}");
        assert!(
            baseline.fds > 0.0 && baseline.tasks > 0.0,
            "{name}: no process gauges: {f}"
        );
        assert!(
            after.fds <= baseline.fds + LEEWAY,
            "{name}: open descriptors grew from {} to {}: {f}",
            baseline.fds,
            after.fds
        );
        assert!(
            after.tasks <= baseline.tasks + LEEWAY,
            "{name}: live tasks grew from {} to {}: {f}",
            baseline.tasks,
            after.tasks
        );
        figures.push(f);
    }
    let failed = tally.failed.load(Ordering::Relaxed);
    let summary = json!({
        "seconds": started.elapsed().as_secs_f64(),
        "operations": ops,
        "failed": failed,
        "nodes": figures,
    });
    println!("SOAK {summary}");
    if let Ok(path) = std::env::var("SOAK_REPORT") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(f, "{summary}").unwrap();
    }
    assert!(ops > 1000, "the load hardly ran: {ops} operations");
    assert_eq!(failed, 0, "operations failed during the soak: {summary}");
}
