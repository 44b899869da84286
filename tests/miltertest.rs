//! The daemon driven by miltertest (Debian package miltertest), a milter test tool built on
//! libmilter's own protocol code: every Lua script in tests/miltertest/ must pass.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Daemon, require_tool};

fn run_script(script: &Path, port: u16) -> std::process::Output {
    Command::new("miltertest")
        .arg("-s")
        .arg(script)
        .arg("-D")
        .arg(format!("port={port}"))
        .output()
        .expect("run miltertest")
}

fn scripts() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/miltertest");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "lua"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_miltertest_script_passes() {
    if !require_tool("miltertest") {
        return;
    }
    let scripts = scripts();
    assert!(scripts.len() >= 2, "no miltertest scripts found");
    let d = Daemon::start("", "");
    for script in &scripts {
        let out = run_script(script, d.port);
        assert!(
            out.status.success(),
            "{} failed:\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            d.log()
        );
    }
}

/// The harness can fail: a script that expects GTUBE to be accepted must fail.
#[test]
fn a_wrong_expectation_fails_the_script() {
    if !require_tool("miltertest") {
        return;
    }
    let d = Daemon::start("", "");
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/miltertest/gtube_rejected.lua"),
    )
    .unwrap();
    let wrong = original.replace("~= SMFIR_REPLYCODE", "~= SMFIR_ACCEPT");
    assert_ne!(wrong, original);
    let script = common::write(dir.path(), "wrong.lua", &wrong);
    let out = run_script(&script, d.port);
    assert!(
        !out.status.success(),
        "miltertest passed a wrong expectation"
    );
}
