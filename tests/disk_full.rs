//! A full disk, for real: a hub whose data directory is a small tmpfs. When a ballast
//! file leaves less free space than the node's reserve, writes get 507 (HTTP) and
//! `RESOURCE_EXHAUSTED` (gRPC) with a CouchDB body, logouts (deletions) still work,
//! nothing acknowledged is lost; when the ballast goes, writes resume without a restart.
//! Needs root (mount); skips, saying so, without it.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use proto::v1::sessions_client::SessionsClient;
use proto::v1::PutRequest;
use serde_json::json;
use support::*;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size_mib: u64) -> Option<Tmpfs> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn free_mib(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1M", "--output=avail"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

/// Fills `dir`'s filesystem until `leave_mib` MiB are free.
fn ballast(dir: &Path, leave_mib: u64) -> PathBuf {
    let path = dir.join("ballast");
    let take = free_mib(dir).saturating_sub(leave_mib);
    let status = Command::new("fallocate")
        .args(["-l", &format!("{take}M")])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success(), "fallocate");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_keeps_logouts_and_recovers_without_a_restart() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: mounting a tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("disk");
    std::fs::create_dir(&mnt).unwrap();
    let Some(_tmpfs) = Tmpfs::mount(&mnt, 256) else {
        panic!("root, but mount -t tmpfs failed");
    };
    let data = mnt.join("data");
    let (http, grpc) = (free_addr(), free_addr());
    let args: Vec<String> = [
        "hub",
        "--data-dir",
        data.to_str().unwrap(),
        "--http",
        &http.to_string(),
        "--grpc",
        &grpc.to_string(),
        "--min-free-mib",
        "32",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let hub = Proc::must_start(args, http, grpc, &data);
    let h = Http::default();
    let base = hub.base();
    h.must("PUT", &format!("{base}/sessions"), None, 201).await;
    let mut acked = Vec::new();
    for i in 0..50 {
        let v = h
            .must(
                "PUT",
                &format!("{base}/sessions/s{i}"),
                Some(json!({"i": i})),
                201,
            )
            .await;
        acked.push((format!("s{i}"), v["rev"].as_str().unwrap().to_owned()));
    }

    // 24 MiB left: under the 32 MiB reserve, over half of it.
    let weight = ballast(&mnt, 24);
    // Fresh ids: a write that landed before the sampler saw the ballast must not turn
    // later attempts into conflicts.
    let attempt = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let fresh = {
        let (attempt, base) = (attempt.clone(), base.clone());
        move || {
            let n = attempt.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("{base}/sessions/late-{n}")
        }
    };
    must_eventually("writes refused with 507", Duration::from_secs(10), || {
        let (h, url) = (h.clone(), fresh());
        async move { h.req("PUT", &url, Some(json!({"v": 1}))).await.0 == 507 }
    })
    .await;
    let url = fresh();
    let v = h.must("PUT", &url, Some(json!({"v": 1})), 507).await;
    assert_eq!(v["error"], "insufficient_storage", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("resume"), "{v}");
    let mut c = SessionsClient::connect(format!("http://{grpc}")).await.unwrap();
    let mut put = tonic::Request::new(PutRequest {
        db: "sessions".into(),
        id: "by-grpc".into(),
        rev: String::new(),
        body: br#"{"v":1}"#.to_vec().into(),
    });
    put.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", secrets().app_token).parse().unwrap(),
    );
    assert_eq!(
        c.put(put).await.unwrap_err().code(),
        tonic::Code::ResourceExhausted
    );
    // A logout still works: a deletion needs only half the reserve.
    let (id, rev) = acked.remove(0);
    h.must("DELETE", &format!("{base}/sessions/{id}?rev={rev}"), None, 200)
        .await;
    // Nothing acknowledged is lost, and reads go on.
    for (id, rev) in &acked {
        let v = h.must("GET", &format!("{base}/sessions/{id}"), None, 200).await;
        assert_eq!(v["_rev"], rev.as_str());
    }
    h.must("GET", &format!("{base}/sessions/{id}"), None, 404).await;
    let metrics = Http::bearer(&secrets().ops_token)
        .text(&format!("{base}/_metrics"))
        .await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("store_writes_refused_disk_full_total") && !l.ends_with(" 0")),
        "{metrics}"
    );

    // Space returns: writes resume, same process.
    std::fs::remove_file(weight).unwrap();
    must_eventually("writes resume", Duration::from_secs(10), || {
        let (h, url) = (h.clone(), fresh());
        async move { h.req("PUT", &url, Some(json!({"v": 2}))).await.0 == 201 }
    })
    .await;
    for (id, rev) in &acked {
        let v = h.must("GET", &format!("{base}/sessions/{id}"), None, 200).await;
        assert_eq!(v["_rev"], rev.as_str());
    }
    hub.terminate();
}
