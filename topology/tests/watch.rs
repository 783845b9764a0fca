//! Hot reload: valid changes are swapped in, invalid ones rejected with the old topology kept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use topology::TopologyWatcher;

const POLL: Duration = Duration::from_millis(20);
/// Bound on waiting for the poller; generous, since CI machines are busy.
const WAIT: Duration = Duration::from_secs(10);

fn local_text() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/local.toml");
    std::fs::read_to_string(path).expect("local example is readable")
}

/// Replaces the file atomically, as deployment tools (and careful editors) do, so the poller
/// never sees a half-written file.
fn must_write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename into place");
}

async fn must_become(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fleet.toml");
    must_write(&path, &local_text());
    (dir, path)
}

#[tokio::test]
async fn start_fails_on_an_invalid_file() {
    let (_dir, path) = setup();
    must_write(&path, "[fleet]\nname = \"x\"\n");
    let err = TopologyWatcher::start(&path, POLL)
        .err()
        .expect("invalid file must not start");
    assert!(err.to_string().contains("missing [hub] section"), "{err}");
    let missing = path.with_file_name("nope.toml");
    assert!(TopologyWatcher::start(missing, POLL).is_err());
}

#[tokio::test]
async fn valid_change_is_applied_and_announced() {
    let (_dir, path) = setup();
    let watcher = TopologyWatcher::start(&path, POLL).unwrap_or_else(|e| panic!("{e}"));
    let handle = watcher.handle();
    let mut changes = watcher.subscribe();
    assert_eq!(watcher.current().fleet.as_str(), "local-demo");

    must_write(
        &path,
        &local_text().replace("name = \"local-demo\"", "name = \"renamed\""),
    );
    must_become("new fleet name", || watcher.current().fleet.as_str() == "renamed").await;
    assert_eq!(
        handle.load().fleet.as_str(),
        "renamed",
        "the shared ArcSwap sees it too"
    );
    tokio::time::timeout(WAIT, changes.changed())
        .await
        .expect("announced in time")
        .expect("sender alive");
    assert_eq!(changes.borrow_and_update().fleet.as_str(), "renamed");
    assert_eq!(watcher.reloads(), 1);
    assert_eq!(watcher.reload_failures(), 0);
}

#[tokio::test]
async fn invalid_change_is_rejected_and_the_old_topology_kept() {
    let (_dir, path) = setup();
    let watcher = TopologyWatcher::start(&path, POLL).unwrap_or_else(|e| panic!("{e}"));
    let before = watcher.current();

    let broken = local_text().replace("grpc = \"127.0.0.1:6986\"", "grpc = \"127.0.0.1:6985\"");
    must_write(&path, &broken);
    must_become("a counted failure", || watcher.reload_failures() == 1).await;
    assert_eq!(*watcher.current(), *before, "old topology still in force");
    // The same bad file is reported once, not at every poll.
    tokio::time::sleep(POLL * 5).await;
    assert_eq!(watcher.reload_failures(), 1);
    assert_eq!(watcher.reloads(), 0);

    // Fixing the file brings reloads back.
    must_write(
        &path,
        &broken
            .replace("name = \"local-demo\"", "name = \"fixed\"")
            .replace(
                "grpc = \"127.0.0.1:6985\"\n  data_dir = \"/tmp/sessionfleet-demo/us-east-1\"",
                "grpc = \"127.0.0.1:6986\"\n  data_dir = \"/tmp/sessionfleet-demo/us-east-1\"",
            ),
    );
    must_become("the fixed file", || watcher.current().fleet.as_str() == "fixed").await;
    assert_eq!(watcher.reloads(), 1);
}

#[tokio::test]
async fn reload_now_rereads_immediately() {
    let (_dir, path) = setup();
    // A poll interval far beyond the test, so only reload_now can pick the change up.
    let watcher = TopologyWatcher::start(&path, Duration::from_secs(3600)).unwrap_or_else(|e| panic!("{e}"));
    must_write(&path, &local_text().replace("revs_limit = 10", "revs_limit = 3"));
    let t = watcher.reload_now().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.databases[0].revs_limit, 3);
    assert_eq!(watcher.current().databases[0].revs_limit, 3);
    assert_eq!(watcher.reloads(), 1);

    must_write(&path, "not toml at all = = =");
    let err = watcher.reload_now().expect_err("invalid");
    assert!(err.errors[0].message.contains("TOML syntax error"), "{err}");
    assert_eq!(watcher.reload_failures(), 1);
    assert_eq!(watcher.current().databases[0].revs_limit, 3, "old topology kept");

    std::fs::remove_file(&path).expect("remove");
    assert!(watcher.reload_now().is_err());
    assert_eq!(watcher.reload_failures(), 2);
    assert_eq!(watcher.current().databases[0].revs_limit, 3);
}

#[tokio::test]
async fn dropping_the_watcher_stops_polling() {
    let (_dir, path) = setup();
    let watcher = TopologyWatcher::start(&path, POLL).unwrap_or_else(|e| panic!("{e}"));
    let handle = watcher.handle();
    let changes = watcher.subscribe();
    drop(watcher);
    must_write(
        &path,
        &local_text().replace("name = \"local-demo\"", "name = \"after-drop\""),
    );
    tokio::time::sleep(POLL * 10).await;
    assert_eq!(handle.load().fleet.as_str(), "local-demo");
    // The task held the only other sender reference; with it gone, subscribers see the end.
    assert!(changes.has_changed().is_err(), "sender dropped with the watcher");
}
