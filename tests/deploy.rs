//! The deployment test as a `cargo test`: runs `scripts/deploy-test.sh` with the binary just
//! built. The script makes real test hosts (network, mount, PID and UTS namespaces with sshd
//! under runit), deploys them with the playbooks in `ansible/` and checks the fleet; see the
//! script's header for what it asserts.
//!
//! Skipped, with the reason printed, when not root or when the script's tools (openssh-server,
//! runit, the ansible venv from `scripts/ansible-venv.sh`) are missing — unless
//! `SF_DEPLOY_REQUIRE=1`, which turns a skip into a failure. `.ci/run` runs the script itself
//! before the test suite and sets `SF_DEPLOY_TEST=already-ran`, so CI does not deploy twice.

use std::path::PathBuf;
use std::process::Command;

/// The script's exit status for "cannot run here" (automake's convention).
const SKIPPED: i32 = 77;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

#[test]
fn ansible_deploys_restarts_and_upgrades_a_fleet_on_test_hosts() {
    if std::env::var("SF_DEPLOY_TEST").as_deref() == Ok("already-ran") {
        eprintln!("SKIP: SF_DEPLOY_TEST=already-ran: scripts/deploy-test.sh already ran in this CI run");
        return;
    }
    let required = std::env::var("SF_DEPLOY_REQUIRE").as_deref() == Ok("1");
    if !is_root() {
        assert!(
            !required,
            "SF_DEPLOY_REQUIRE=1 but the deployment test needs root"
        );
        eprintln!("SKIP: the deployment test needs root (network, mount and PID namespaces)");
        return;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/deploy-test.sh");
    let status = Command::new("bash")
        .arg(&script)
        .env("SESSIONFLEET_BIN", env!("CARGO_BIN_EXE_sessionfleet"))
        // Its own work directory, so a run by hand elsewhere is not disturbed.
        .env(
            "SF_DEPLOY_WORK",
            std::env::temp_dir().join("sf-deploy-test-cargo"),
        )
        .status()
        .expect("run scripts/deploy-test.sh");
    match status.code() {
        Some(0) => {}
        Some(SKIPPED) if !required => {
            eprintln!("SKIP: scripts/deploy-test.sh could not run here (its reason is printed above)");
        }
        other => panic!("scripts/deploy-test.sh failed: exit {other:?}"),
    }
}
