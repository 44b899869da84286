//! The test suite's own rule for missing tools: under CI=true a test whose tool is missing
//! fails; elsewhere it is skipped and says so in the output, past the harness's capture.

mod common;

use std::process::Command;

#[test]
#[ignore = "run by missing_tools_fail_under_ci_and_are_reported_otherwise"]
fn needs_a_missing_tool() {
    if !common::require_tool("repmilter-no-such-tool") {
        return;
    }
    unreachable!("the tool does not exist");
}

#[test]
fn missing_tools_fail_under_ci_and_are_reported_otherwise() {
    let run = |ci: Option<&str>| {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--ignored", "--exact", "needs_a_missing_tool"]);
        match ci {
            Some(v) => cmd.env("CI", v),
            None => cmd.env_remove("CI"),
        };
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = run(Some("true"));
    assert!(!ok, "a missing tool passed under CI=true:\n{text}");
    assert!(
        text.contains("needs_a_missing_tool cannot run: repmilter-no-such-tool is not installed"),
        "{text}"
    );
    let (ok, text) = run(None);
    assert!(ok, "{text}");
    assert!(
        text.contains("SKIPPED needs_a_missing_tool: repmilter-no-such-tool is not installed"),
        "{text}"
    );
}
