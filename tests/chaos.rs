//! The fault-injection suite: real hub and spoke processes, a TCP fault proxy on every
//! spoke↔hub link, clients writing, deleting and reading through the CouchDB HTTP API while
//! faults are injected, and every operation recorded and checked afterwards (see
//! `tests/faults`): no acknowledged write lost, no deleted or expired session served beyond the
//! documented bounds, one final state everywhere.
//!
//! Short mode (CI) runs each scenario for seconds. Long mode: `scripts/chaos.sh --minutes N`
//! (sets `CHAOS_MINUTES`), which also writes each scenario's figures as a JSON line to
//! `CHAOS_REPORT` when set.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use faults::{
    check, Bounds, FaultProxy, Faults, FinalDoc, FinalStates, History, Link, OpKind, Outcome, Report,
};
use serde_json::{json, Value};
use support::*;

const DB: &str = "sessions";
const SPOKE_DB: &[&str] = &[
    "--database",
    DB,
    "--expiry-field",
    "expires_at",
    "--sweep-secs",
    "1",
];
/// Expiry is judged in whole seconds by each node's clock: a session may be served until the
/// end of its expiry second, plus scheduling slack.
const EXPIRY_GRACE: Duration = Duration::from_millis(1500);

/// How long a scenario's fault phase lasts: `short` in CI, `CHAOS_MINUTES` in long mode.
fn fault_time(short: Duration) -> Duration {
    match std::env::var("CHAOS_MINUTES")
        .ok()
        .and_then(|m| m.parse::<f64>().ok())
    {
        Some(m) if m > 0.0 => Duration::from_secs_f64(m * 60.0),
        _ => short,
    }
}

/// Repetitions of a kill loop: `short` in CI, `long` in long mode.
fn rounds(short: usize, long: usize) -> usize {
    if std::env::var("CHAOS_MINUTES").is_ok() {
        long
    } else {
        short
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// A spoke and the proxy that carries its link to the hub (none for the second node of a
/// [`Fleet::pair`]).
struct Spoke {
    name: String,
    proc: Proc,
    link: Option<FaultProxy>,
}

/// A hub and spokes, each spoke dialling the hub through its own fault proxy; or a
/// [`Fleet::pair`] of standalone nodes.
struct Fleet {
    hub: Proc,
    spokes: Vec<Spoke>,
    /// Whether clients also write at the hub (a pair: both nodes take writes).
    clients_at_hub: bool,
    _dirs: Vec<tempfile::TempDir>,
}

impl Fleet {
    async fn start(datacentres: &[&str]) -> Fleet {
        Fleet::start_with(datacentres, &[]).await
    }

    /// A fleet whose first spoke runs with `first_spoke_env` (libfaketime, say).
    async fn start_with(datacentres: &[&str], first_spoke_env: &[(&str, &str)]) -> Fleet {
        let hub_dir = tempfile::tempdir().expect("tempdir");
        let hub = Proc::must_start_hub(hub_dir.path());
        let mut dirs = vec![hub_dir];
        let mut spokes = Vec::new();
        for dc in datacentres {
            let dir = tempfile::tempdir().expect("tempdir");
            let link = FaultProxy::start("127.0.0.1:0".parse().expect("addr"), hub.grpc)
                .await
                .expect("start proxy");
            let env = if spokes.is_empty() { first_spoke_env } else { &[] };
            let proc = must_start_spoke_with_env(dir.path(), link.addr(), dc, SPOKE_DB, env);
            spokes.push(Spoke {
                name: dc.to_string(),
                proc,
                link: Some(link),
            });
            dirs.push(dir);
        }
        Fleet {
            hub,
            spokes,
            clients_at_hub: false,
            _dirs: dirs,
        }
    }

    /// Two standalone nodes, "a" (in the `hub` slot) and "b", replicating [`DB`] both ways
    /// through continuous `_replicator` documents, as two CouchDBs would: the seed's
    /// "let's break everything" setup.
    async fn pair() -> Fleet {
        let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().expect("tempdir")).collect();
        let a = Proc::must_start_hub(dirs[0].path());
        let b = Proc::must_start_hub(dirs[1].path());
        let http = Http::default();
        for node in [&a, &b] {
            let url = format!("{}/{DB}?expiry_field=expires_at", node.base());
            http.must("PUT", &url, None, 201).await;
        }
        for (from, to) in [(&a, &b), (&b, &a)] {
            let source = format!(
                "http://replicator:{}@{}/{DB}",
                secrets().replicator_password,
                from.http
            );
            let doc = json!({"source": source, "target": DB, "continuous": true});
            let url = format!("{}/_replicator/from-{}", to.base(), from.http.port());
            http.must("PUT", &url, Some(doc), 201).await;
        }
        Fleet {
            hub: a,
            spokes: vec![Spoke {
                name: "b".into(),
                proc: b,
                link: None,
            }],
            clients_at_hub: true,
            _dirs: dirs,
        }
    }

    /// The nodes clients write at: the spokes, and the hub too in a pair.
    fn writable(&self) -> Vec<(String, String)> {
        let mut nodes = self.nodes();
        if !self.clients_at_hub {
            nodes.remove(0);
        }
        nodes
    }

    /// Every node, hub first, with a name for reports.
    fn nodes(&self) -> Vec<(String, String)> {
        std::iter::once(("hub".to_string(), self.hub.base()))
            .chain(self.spokes.iter().map(|s| (s.name.clone(), s.proc.base())))
            .collect()
    }

    fn set_links(&self, faults: Faults) {
        for link in self.spokes.iter().filter_map(|s| s.link.as_ref()) {
            link.set(faults);
        }
    }

    /// Waits until every node lists the same live sessions at the same winning revisions;
    /// returns how long that took.
    async fn converge(&self, http: &reqwest::Client, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let mut views = Vec::new();
            for (_, base) in self.nodes() {
                views.push(all_docs(http, &base).await);
            }
            if views.iter().all(|v| v.is_some() && *v == views[0]) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "no convergence within {within:?}: {:?}{}",
                views
                    .iter()
                    .map(|v| v.as_ref().map(BTreeMap::len))
                    .collect::<Vec<_>>(),
                self.divergence(http, &views).await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Why the nodes disagree, for a failed convergence: each node's replication metrics,
    /// then up to four sessions they disagree on, as each node holds them.
    async fn divergence(&self, http: &reqwest::Client, views: &[Option<BTreeMap<String, String>>]) -> String {
        let mut out = String::new();
        for (name, base) in self.nodes() {
            let metrics = text(http, &format!("{base}/_metrics")).await;
            let lines: Vec<&str> = metrics
                .lines()
                .filter(|l| l.starts_with("replication_"))
                .collect();
            out.push_str(&format!("\n{name}: {}", lines.join("\n  ")));
        }
        let mut differing: Vec<&String> = views
            .iter()
            .flatten()
            .flat_map(|v| v.iter())
            .filter(|(id, rev)| {
                views
                    .iter()
                    .any(|o| o.as_ref().and_then(|o| o.get(*id)) != Some(*rev))
            })
            .map(|(id, _)| id)
            .collect();
        differing.sort();
        differing.dedup();
        for id in differing.into_iter().take(4) {
            for (name, base) in self.nodes() {
                let url = format!("{base}/{DB}/{id}?open_revs=all&revs=true&latest=true");
                out.push_str(&format!("\n{id} at {name}: {}", text(http, &url).await));
            }
        }
        out
    }

    /// What every node holds for each session in `keys`.
    async fn finals(&self, http: &reqwest::Client, keys: &[String]) -> FinalStates {
        let mut out = FinalStates::new();
        for (name, base) in self.nodes() {
            let mut docs = BTreeMap::new();
            for key in keys {
                if let Some(d) = final_doc(http, &base, key).await {
                    docs.insert(key.clone(), d);
                }
            }
            out.insert(name, docs);
        }
        out
    }
}

/// id → winning rev of every live session at `base`, or `None` if the node did not answer.
/// A JSON answer's text, or the error that prevented it (for failure reports).
async fn text(http: &reqwest::Client, url: &str) -> String {
    match http.get(url).header("accept", "application/json").send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(e) => e.to_string(),
    }
}

async fn all_docs(http: &reqwest::Client, base: &str) -> Option<BTreeMap<String, String>> {
    let v: Value = http
        .get(format!("{base}/{DB}/_all_docs"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let rows = v["rows"].as_array()?;
    Some(
        rows.iter()
            .filter_map(|r| {
                Some((
                    r["id"].as_str()?.to_owned(),
                    r["value"]["rev"].as_str()?.to_owned(),
                ))
            })
            .collect(),
    )
}

/// The winner and every known revision of one session at `base`.
async fn final_doc(http: &reqwest::Client, base: &str, key: &str) -> Option<FinalDoc> {
    let leaves: Value = http
        .get(format!("{base}/{DB}/{key}?open_revs=all&revs=true"))
        .header("accept", "application/json")
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let mut doc = FinalDoc::default();
    for leaf in leaves.as_array()? {
        let Some(ok) = leaf.get("ok") else { continue };
        let revisions = &ok["_revisions"];
        let start = revisions["start"].as_u64().unwrap_or(0);
        for (i, id) in revisions["ids"].as_array().into_iter().flatten().enumerate() {
            if let (Some(id), Some(gen)) = (id.as_str(), start.checked_sub(i as u64)) {
                doc.revs.insert(format!("{gen}-{id}"));
            }
        }
    }
    if doc.revs.is_empty() {
        return None;
    }
    let winner = http.get(format!("{base}/{DB}/{key}")).send().await.ok()?;
    if winner.status() == 200 {
        let v: Value = winner.json().await.ok()?;
        doc.winner = v["_rev"].as_str().map(str::to_owned);
    }
    Some(doc)
}

/// What a client knows of one session it writes.
#[derive(Clone, Default)]
struct KeyState {
    /// The revision it last saw (a live one or a tombstone).
    rev: Option<String>,
    /// Set after an unknown outcome or a conflict: re-read before the next edit.
    stale: bool,
}

/// A client loop: reads, writes and deletes `keys` at one node until `stop`, recording every
/// operation. Operations are paced so the two cores also have time for the nodes.
#[allow(clippy::too_many_arguments)]
async fn client(
    id: usize,
    node: String,
    base: String,
    keys: Vec<String>,
    history: Arc<History>,
    start_unix: f64,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let http = reqwest::Client::builder()
        .default_headers(admin_headers())
        .timeout(Duration::from_secs(2))
        .build()
        .expect("http client");
    let mut state: BTreeMap<String, KeyState> =
        keys.iter().map(|k| (k.clone(), KeyState::default())).collect();
    let mut rng = seed.wrapping_mul(6364136223846793005).wrapping_add(id as u64) | 1;
    let mut next = move |n: u64| {
        // xorshift: small, seeded, good enough to pick operations.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut counter = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = keys[next(keys.len() as u64) as usize].clone();
        let ks = state.get(&key).cloned().unwrap_or_default();
        if ks.stale {
            refresh(&http, &base, &key, state.entry(key.clone()).or_default()).await;
            continue;
        }
        let roll = next(100);
        if roll < 50 {
            let op = history.invoke(id, &node, &key, OpKind::Read, None);
            let outcome = match http.get(format!("{base}/{DB}/{key}")).send().await {
                Ok(r) if r.status() == 200 => match r.json::<Value>().await {
                    Ok(v) => Outcome::Ok(v["_rev"].as_str().map(str::to_owned)),
                    Err(_) => Outcome::Failed,
                },
                Ok(r) if r.status() == 404 => Outcome::Ok(None),
                _ => Outcome::Failed,
            };
            op.done(outcome);
        } else if roll < 85 || ks.rev.is_none() {
            counter += 1;
            // One write in ten expires in two seconds; the rest live for an hour.
            let ttl = if next(10) == 0 { 2.0 } else { 3600.0 };
            let expires_at = (unix_now() + ttl).ceil();
            let expires = Duration::from_secs_f64((expires_at - start_unix).max(0.0));
            let mut body = json!({"client": id, "n": counter, "expires_at": expires_at as u64});
            if let Some(rev) = &ks.rev {
                body["_rev"] = json!(rev);
            }
            let op = history.invoke(
                id,
                &node,
                &key,
                OpKind::Write {
                    expires: Some(expires),
                },
                ks.rev.as_deref(),
            );
            let sent = http.put(format!("{base}/{DB}/{key}")).json(&body).send().await;
            finish_edit(op, sent, state.entry(key).or_default()).await;
        } else {
            let rev = ks.rev.clone().unwrap_or_default();
            let op = history.invoke(id, &node, &key, OpKind::Delete, Some(&rev));
            let sent = http.delete(format!("{base}/{DB}/{key}?rev={rev}")).send().await;
            finish_edit(op, sent, state.entry(key).or_default()).await;
        }
        tokio::time::sleep(Duration::from_millis(5 + next(10))).await;
    }
}

/// Records a write's or delete's outcome and what the client now knows.
async fn finish_edit(
    op: faults::history::Pending<'_>,
    sent: reqwest::Result<reqwest::Response>,
    ks: &mut KeyState,
) {
    match sent {
        Ok(r) if r.status() == 200 || r.status() == 201 => match r.json::<Value>().await {
            Ok(v) => {
                let rev = v["rev"].as_str().map(str::to_owned);
                ks.rev = rev.clone();
                op.done(Outcome::Ok(rev));
            }
            Err(_) => {
                ks.stale = true;
                op.unknown(None);
            }
        },
        // Refused before applying: conflict (another writer got there), bad request, shed
        // load, or a full disk.
        Ok(r) if matches!(r.status().as_u16(), 400 | 404 | 409 | 503 | 507) => {
            ks.stale = true;
            op.done(Outcome::Failed);
        }
        Ok(_) => {
            ks.stale = true;
            op.unknown(None);
        }
        // Never connected: the request was not sent.
        Err(e) if e.is_connect() => op.done(Outcome::Failed),
        Err(_) => {
            ks.stale = true;
            op.unknown(None);
        }
    }
}

/// Re-reads a session's current revision (including a tombstone's) after an unknown outcome.
async fn refresh(http: &reqwest::Client, base: &str, key: &str, ks: &mut KeyState) {
    let Ok(r) = http
        .get(format!("{base}/{DB}/{key}?open_revs=all"))
        .header("accept", "application/json")
        .send()
        .await
    else {
        tokio::time::sleep(Duration::from_millis(50)).await;
        return;
    };
    let Ok(v) = r.json::<Value>().await else { return };
    // The client edits the branch it can see; with conflicts it takes the highest leaf, as
    // CouchDB's winner rule does among live leaves.
    let leaves: Vec<(bool, String)> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| {
            let ok = l.get("ok")?;
            Some((
                ok["_deleted"].as_bool() != Some(true),
                ok["_rev"].as_str()?.to_owned(),
            ))
        })
        .collect();
    ks.rev = leaves
        .iter()
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| rev_order(&a.1, &b.1)))
        .map(|l| l.1.clone());
    ks.stale = false;
}

fn rev_order(a: &str, b: &str) -> std::cmp::Ordering {
    let gen = |r: &str| {
        r.split('-')
            .next()
            .and_then(|g| g.parse::<u64>().ok())
            .unwrap_or(0)
    };
    gen(a).cmp(&gen(b)).then_with(|| a.cmp(b))
}

/// Clients running against a fleet, and the history they fill.
struct Load {
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    keys: Vec<String>,
}

impl Load {
    /// Two clients per writable node, each with its own sessions unless `shared` (then every client
    /// edits the same few sessions, from every datacentre).
    fn start(fleet: &Fleet, shared: bool) -> Load {
        let history = Arc::new(History::new());
        let stop = Arc::new(AtomicBool::new(false));
        let start_unix = unix_now() - history.now().as_secs_f64();
        let seed = std::env::var("CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| unix_now() as u64);
        println!("CHAOS_SEED={seed}");
        let mut tasks = Vec::new();
        let mut all_keys = Vec::new();
        let mut id = 0;
        for (name, base) in fleet.writable() {
            for _ in 0..2 {
                let keys: Vec<String> = if shared {
                    (0..4).map(|k| format!("shared-{k}")).collect()
                } else {
                    (0..12).map(|k| format!("c{id}-s{k}")).collect()
                };
                all_keys.extend(keys.iter().cloned());
                tasks.push(tokio::spawn(client(
                    id,
                    name.clone(),
                    base.clone(),
                    keys,
                    history.clone(),
                    start_unix,
                    stop.clone(),
                    seed,
                )));
                id += 1;
            }
        }
        all_keys.sort();
        all_keys.dedup();
        Load {
            history,
            stop,
            tasks,
            keys: all_keys,
        }
    }

    async fn stop(self) -> (Arc<History>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        (self.history, self.keys)
    }
}

/// The figures of one scenario, printed and (in long mode) appended to `CHAOS_REPORT`.
fn report(scenario: &str, r: &Report, converge: Duration, fault: (Duration, Duration), history: &History) {
    let ops = history.ops();
    let mut during: Vec<&faults::Op> = ops
        .iter()
        .filter(|o| o.kind == OpKind::Read && o.invoked >= fault.0 && o.invoked <= fault.1)
        .collect();
    let answered = during
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Ok(_)))
        .count();
    let availability = if during.is_empty() {
        1.0
    } else {
        answered as f64 / during.len() as f64
    };
    during.sort_by_key(|o| o.completed.saturating_sub(o.invoked));
    let p99 = during
        .get((during.len() * 99 / 100).min(during.len().saturating_sub(1)))
        .map(|o| o.completed.saturating_sub(o.invoked))
        .unwrap_or_default();
    let line = json!({
        "scenario": scenario,
        "ops": ops.len(), "ok": r.ok, "failed": r.failed, "unknown": r.unknown,
        "unknown_landed": r.unknown_landed,
        "lost": r.lost.len(), "resurrected": r.resurrected.len(), "divergent": r.divergent.len(),
        "converge_ms": converge.as_millis() as u64,
        "read_availability_during_fault": availability,
        "read_p99_ms_during_fault": p99.as_secs_f64() * 1000.0,
    });
    println!("CHAOS {line}");
    println!("{r}");
    if let Ok(path) = std::env::var("CHAOS_REPORT") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Heals every link, waits for convergence, reads the final states and checks the history.
async fn settle(scenario: &str, fleet: &Fleet, load: Load, fault: (Duration, Duration)) -> Report {
    settle_with(scenario, fleet, load, fault, EXPIRY_GRACE).await
}

/// [`settle`] with another bound on serving a session past its expiry.
async fn settle_with(
    scenario: &str,
    fleet: &Fleet,
    load: Load,
    fault: (Duration, Duration),
    expiry_grace: Duration,
) -> Report {
    fleet.set_links(Faults::up());
    let http = admin_reqwest();
    let (history, keys) = load.stop().await;
    let converge = fleet.converge(&http, Duration::from_secs(60)).await;
    let converged_at = history.now();
    // A sweep of reads after convergence: no node may serve a deleted session any more.
    for (name, base) in fleet.nodes() {
        for key in &keys {
            let op = history.invoke(usize::MAX, &name, key, OpKind::Read, None);
            let outcome = match http.get(format!("{base}/{DB}/{key}")).send().await {
                Ok(r) if r.status() == 200 => Outcome::Ok(
                    r.json::<Value>()
                        .await
                        .ok()
                        .and_then(|v| v["_rev"].as_str().map(str::to_owned)),
                ),
                Ok(r) if r.status() == 404 => Outcome::Ok(None),
                _ => Outcome::Failed,
            };
            op.done(outcome);
        }
    }
    let finals = fleet.finals(&http, &keys).await;
    let bounds = Bounds {
        same_node: Duration::ZERO,
        expiry: expiry_grace,
        converged_at: Some(converged_at),
    };
    let r = check(&history.ops(), &finals, bounds, history.now());
    report(scenario, &r, converge, fault, &history);
    assert!(
        r.ok > 0,
        "no operation succeeded: the scenario tested nothing\n{r}"
    );
    r.assert_clean();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoke_killed_repeatedly_under_load() {
    let mut fleet = Fleet::start(&["eu-west", "us-east"]).await;
    let load = Load::start(&fleet, false);
    let fault_start = load.history.now();
    for _ in 0..rounds(3, 20) {
        tokio::time::sleep(Duration::from_millis(700)).await;
        // SIGKILL, then the same command on the same ports and data directory.
        let spoke = &mut fleet.spokes[0];
        let _ = spoke.proc.child.kill();
        let _ = spoke.proc.child.wait();
        tokio::time::sleep(Duration::from_millis(200)).await;
        spoke.proc = spoke.proc.must_restart();
    }
    let fault_end = load.history.now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    settle("spoke SIGKILL x N", &fleet, load, (fault_start, fault_end)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_killed_repeatedly_under_load() {
    let mut fleet = Fleet::start(&["eu-west", "us-east"]).await;
    let load = Load::start(&fleet, false);
    let fault_start = load.history.now();
    for _ in 0..rounds(2, 10) {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let _ = fleet.hub.child.kill();
        let _ = fleet.hub.child.wait();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let restarted = fleet.hub.must_restart();
        fleet.hub = restarted;
    }
    let fault_end = load.history.now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    settle("hub SIGKILL x N", &fleet, load, (fault_start, fault_end)).await;
}

/// A partition of every spoke from the hub, in the given direction(s).
async fn partition(scenario: &str, link: Link) {
    let fleet = Fleet::start(&["eu-west", "us-east"]).await;
    let load = Load::start(&fleet, false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fault_start = load.history.now();
    fleet.set_links(Faults::link(link));
    tokio::time::sleep(fault_time(Duration::from_secs(4))).await;
    let fault_end = load.history.now();
    settle(scenario, &fleet, load, (fault_start, fault_end)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_both_ways_heals_without_loss() {
    partition("partition spoke<->hub, both ways", Link::Blackhole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_way_partition_heals_without_loss() {
    partition("partition spoke->hub only", Link::HoldUpstream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_link_heals_without_loss() {
    let fleet = Fleet::start(&["eu-west", "us-east"]).await;
    let load = Load::start(&fleet, false);
    let fault_start = load.history.now();
    let until = Instant::now() + fault_time(Duration::from_secs(4));
    let mut flip = false;
    while Instant::now() < until {
        fleet.set_links(if flip {
            Faults::up()
        } else {
            Faults::link(Link::Reset)
        });
        flip = !flip;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let fault_end = load.history.now();
    settle(
        "flapping link (reset every 300 ms)",
        &fleet,
        load,
        (fault_start, fault_end),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_wan_link_converges() {
    let fleet = Fleet::start(&["eu-west", "us-east"]).await;
    fleet.set_links(Faults::wan(
        Duration::from_millis(80),
        Duration::from_millis(20),
        Some(256 * 1024),
    ));
    let load = Load::start(&fleet, false);
    let fault_start = load.history.now();
    tokio::time::sleep(fault_time(Duration::from_secs(4))).await;
    let fault_end = load.history.now();
    settle("WAN 80±20 ms, 256 KiB/s", &fleet, load, (fault_start, fault_end)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_hub_resumes() {
    let fleet = Fleet::start(&["eu-west", "us-east"]).await;
    let load = Load::start(&fleet, false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fault_start = load.history.now();
    fleet.hub.signal(libc::SIGSTOP);
    tokio::time::sleep(fault_time(Duration::from_secs(4))).await;
    fleet.hub.signal(libc::SIGCONT);
    let fault_end = load.history.now();
    settle("hub paused (SIGSTOP)", &fleet, load, (fault_start, fault_end)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_writes_and_deletes_during_a_partition_converge() {
    let fleet = Fleet::start(&["eu-west", "us-east"]).await;
    // Every client edits the same four sessions, from both datacentres.
    let load = Load::start(&fleet, true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fault_start = load.history.now();
    fleet.set_links(Faults::link(Link::Blackhole));
    tokio::time::sleep(fault_time(Duration::from_secs(4))).await;
    let fault_end = load.history.now();
    let r = settle(
        "conflicting edits in two DCs during a partition",
        &fleet,
        load,
        (fault_start, fault_end),
    )
    .await;
    assert!(
        r.failed > 0,
        "shared sessions never conflicted: the scenario did not test conflicts\n{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_replicating_both_ways_survive_being_killed_in_turn() {
    let mut fleet = Fleet::pair().await;
    let load = Load::start(&fleet, false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fault_start = load.history.now();
    for round in 0..rounds(4, 20) {
        tokio::time::sleep(Duration::from_millis(700)).await;
        // SIGKILL one node, then the other, each restarted on its ports and data directory;
        // its _replicator job resumes from its checkpoint, the survivor's job retries.
        let victim = if round % 2 == 0 {
            &mut fleet.hub
        } else {
            &mut fleet.spokes[0].proc
        };
        let _ = victim.child.kill();
        let _ = victim.child.wait();
        tokio::time::sleep(Duration::from_millis(300)).await;
        *victim = victim.must_restart();
    }
    let fault_end = load.history.now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    settle(
        "two nodes, _replicator both ways, each SIGKILLed in turn x N",
        &fleet,
        load,
        (fault_start, fault_end),
    )
    .await;
}

/// libfaketime, as Debian's `faketime`/`libfaketime` packages install it.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The `Date` header of a node's answer, as seconds from this machine's clock.
async fn clock_offset(base: &str) -> f64 {
    let r = reqwest::get(format!("{base}/_up")).await.expect("GET /_up");
    let date = r.headers()["date"].to_str().expect("date header").to_owned();
    let then = httpdate::parse_http_date(&date).expect("an HTTP date");
    let then = then
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    then - unix_now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoke_whose_clock_is_skewed_and_steps_loses_nothing() {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "libfaketime is needed (apt-get install libfaketime)"
    );
    const SKEW: Duration = Duration::from_secs(30);
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = dir.path().join("faketime");
    std::fs::write(&clock, "+30s").expect("write the fake clock");
    let clock_path = clock.display().to_string();
    let env = [
        ("LD_PRELOAD", LIBFAKETIME),
        ("FAKETIME_TIMESTAMP_FILE", clock_path.as_str()),
        ("FAKETIME_CACHE_DURATION", "1"),
        // Timers and timeouts keep real time; only the wall clock is wrong.
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let fleet = Fleet::start_with(&["eu-west", "us-east"], &env).await;
    let skewed = fleet.spokes[0].proc.base();
    let ahead = clock_offset(&skewed).await;
    assert!(
        (25.0..35.0).contains(&ahead),
        "the spoke's clock is {ahead:.1} s off, not +30 s"
    );
    let load = Load::start(&fleet, false);
    let fault_start = load.history.now();
    tokio::time::sleep(fault_time(Duration::from_secs(2))).await;
    // A step: from 30 s ahead to 30 s behind.
    std::fs::write(&clock, "-30s").expect("step the fake clock");
    // hyper caches its Date header until the clock passes the next second it expected,
    // so after a backward step ask the store instead: a session expiring in 10 s (by this
    // machine's clock) is expired to a node 30 s ahead, and live to one 30 s behind.
    let http = admin_reqwest();
    let probe = std::sync::atomic::AtomicUsize::new(0);
    must_eventually("the spoke's clock stepped back", Duration::from_secs(10), || {
        let (http, base) = (http.clone(), skewed.clone());
        let n = probe.fetch_add(1, Ordering::Relaxed);
        async move {
            let url = format!("{base}/{DB}/clock-probe-{n}");
            let body = json!({"expires_at": unix_now() as u64 + 10});
            let put = http.put(&url).json(&body).send().await;
            put.is_ok_and(|r| r.status() == 201)
                && http.get(&url).send().await.is_ok_and(|r| r.status() == 200)
        }
    })
    .await;
    tokio::time::sleep(fault_time(Duration::from_secs(2))).await;
    let fault_end = load.history.now();
    // Expiry is judged by each node's clock: a node 30 s behind serves a session up to
    // 30 s past its expiry. The bound the docs state is the grace plus the fleet's skew.
    settle_with(
        "one spoke's clock +30 s, then a step to -30 s",
        &fleet,
        load,
        (fault_start, fault_end),
        EXPIRY_GRACE + SKEW,
    )
    .await;
}
