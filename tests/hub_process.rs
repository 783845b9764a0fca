//! `sessionfleet hub` as a process: a CouchDB curl session works unchanged, and
//! SIGTERM shuts it down gracefully with everything acknowledged kept.

mod support;

use std::process::Command;

use serde_json::Value;
use support::*;

/// curl as an admin, the way a CouchDB 3 user does (`-u admin:password`).
fn curl(args: &[&str]) -> (u16, Value) {
    let user = format!("admin:{}", secrets().admin_password);
    let mut all = vec!["-u", &user];
    all.extend_from_slice(args);
    curl_as_given(&all)
}

fn curl_as_given(args: &[&str]) -> (u16, Value) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            "-H",
            "Content-Type: application/json",
        ])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.trim().parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[test]
fn couchdb_curl_session_then_graceful_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Proc::must_start_hub(dir.path());
    let base = hub.base();
    let u = |p: &str| format!("{base}{p}");

    // The transcript an ops engineer used against CouchDB.
    let (s, v) = curl(&[&u("/")]);
    assert_eq!((s, v["couchdb"].as_str()), (200, Some("Welcome")));
    // No admin party: without credentials a database cannot be created.
    let (s, v) = curl_as_given(&["-X", "PUT", &u("/demo-db")]);
    assert_eq!((s, v["error"].as_str()), (401, Some("unauthorized")), "{v}");
    assert_eq!(curl(&["-X", "PUT", &u("/demo-db")]).0, 201);
    let (s, v) = curl(&[
        "-X",
        "PUT",
        &u("/demo-db/user-1"),
        "-d",
        r#"{"name":"ada","expires_at":4102444800}"#,
    ]);
    assert_eq!(s, 201);
    let rev = v["rev"].as_str().unwrap().to_owned();
    let (s, v) = curl(&[&u("/demo-db/user-1")]);
    assert_eq!((s, v["name"].as_str()), (200, Some("ada")));
    let (s, v) = curl(&["-X", "POST", &u("/demo-db"), "-d", r#"{"name":"bob"}"#]);
    assert_eq!(s, 201);
    let bob = v["id"].as_str().unwrap().to_owned();
    let (s, _) = curl(&[
        "-X",
        "PUT",
        &u("/demo-db/user-1"),
        "-d",
        &format!(r#"{{"_rev":"{rev}","name":"ada l."}}"#),
    ]);
    assert_eq!(s, 201);
    let (s, v) = curl(&[&u("/demo-db/_changes?since=1")]);
    assert_eq!(s, 200);
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
    let (_, v) = curl(&[&u(&format!("/demo-db/{bob}"))]);
    let bob_rev = v["_rev"].as_str().unwrap().to_owned();
    assert_eq!(
        curl(&["-X", "DELETE", &u(&format!("/demo-db/{bob}?rev={bob_rev}"))]).0,
        200
    );
    let (s, v) = curl(&[&u("/demo-db")]);
    assert_eq!(
        (s, v["doc_count"].as_u64(), v["doc_del_count"].as_u64()),
        (200, Some(1), Some(1))
    );

    // SIGTERM: clean exit, and everything acknowledged is there after a restart.
    let status = hub.terminate();
    assert!(status.success(), "exit status {status:?}");
    let hub = Proc::must_start_hub(dir.path());
    let (s, v) = curl(&[&format!("{}/demo-db/user-1", hub.base())]);
    assert_eq!((s, v["name"].as_str()), (200, Some("ada l.")));
    hub.kill();
}

#[test]
fn help_documents_every_flag() {
    let out = Command::new(BIN).args(["hub", "--help"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--data-dir",
        "--http",
        "--grpc",
        "--durability",
        "--max-body-bytes",
        "--max-connections",
    ] {
        assert!(text.contains(flag), "hub --help lacks {flag}:\n{text}");
    }
    let out = Command::new(BIN).args(["hub"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--data-dir"));
}
