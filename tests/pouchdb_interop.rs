//! Interop: the npm `pouchdb` package (in-memory adapter) replicates 1,000
//! documents with updates, deletes and a conflict into and out of a running
//! `sessionfleet hub`; both sides must end identical (winners and conflicts).
//! The Node side is `tests/interop/pouchdb_interop.js`.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::*;

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Installs the pinned Node packages if they are not there yet (CI does it first).
fn must_have_node_modules() {
    let dir = interop_dir();
    if dir.join("node_modules/pouchdb").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .expect("npm is needed for the PouchDB interop test");
    assert!(status.success(), "npm ci failed in {}", dir.display());
}

#[tokio::test]
async fn pouchdb_replicates_both_ways_and_converges() {
    must_have_node_modules();
    let dir = tempfile::tempdir().unwrap();
    let hub = Proc::must_start_hub(dir.path());
    let out = Command::new("node")
        .arg(interop_dir().join("pouchdb_interop.js"))
        .arg(admin_url(hub.http))
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "interop failed:\n{stdout}\n{stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("summary line");
    assert_eq!(summary["ok"], true);
    assert_eq!(
        summary["docs"], 901,
        "1,000 written, 100 deleted, 1 written on the node"
    );
    // The cookie-authenticated PouchDB's push landed too.
    let (s, v) = Http::default()
        .req("GET", &format!("{}/interop/via-cookie", hub.base()), None)
        .await;
    assert_eq!((s, v["v"].as_str()), (200, Some("pushed with a cookie")), "{v}");
    hub.kill();
}
