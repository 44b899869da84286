//! The rule author's tools: `rules lint`, `rules test`, `check --explain`, on temp rule files
//! and on the shipped rule set with its examples.

mod common;

use std::path::Path;

use common::{repmilter, write};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn lint_reports_every_problem_at_once_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "bad.cf",
        "body GOOD /lottery/i\nscore GOOD 1\nbodyy X /y/\nbody RE /(unclosed/\nscore RE 1\nbody NOSCORE /z/\nmeta M GOOD && MISSING\nscore M 1\nbody GOOD /dup/\nheader H Subject ~ /x/\n",
    );
    let out = repmilter()
        .args(["rules", "lint"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let file = f.display().to_string();
    // Errors only by default, each labelled, in file and line order.
    let errors = [
        format!("{file}:3:1: error: unknown directive \"bodyy\""),
        format!("{file}:4:9: error: RE: unsupported regex: unclosed group"),
        format!("{file}:10:10: error: H: expected =~ or !~ after the header name, found \"~\""),
    ];
    assert_eq!(text.lines().collect::<Vec<_>>(), errors, "{text}");
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains("3 error(s), 0 warning(s), 3 note(s) not shown (--pedantic shows them)"),
        "{summary}"
    );
    // With --pedantic, the notes too, in their places.
    let out = repmilter()
        .args(["rules", "lint", "--pedantic"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let all = [
        errors[0].clone(),
        errors[1].clone(),
        format!("{file}:6:14: note: NOSCORE has no score (SpamAssassin's default 1 applies)"),
        format!("{file}:7:8: note: meta M refers to unknown rule(s) MISSING, counted as not hit"),
        format!(
            "{file}:9:11: note: GOOD is defined again (first at {file}:1:11); the later definition is used"
        ),
        errors[2].clone(),
    ];
    assert_eq!(text.lines().collect::<Vec<_>>(), all, "{text}");

    let ok = write(dir.path(), "ok.cf", "body GOOD /lottery/i\nscore GOOD 1\n");
    let out = repmilter()
        .args(["rules", "lint"])
        .arg(&ok)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn hostile_rule_files_are_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    text.push_str(&format!(
        "body HUGE /{}/\nscore HUGE 1\n",
        "(a|b|c|d)".repeat(2000)
    ));
    text.push_str(&format!(
        "meta DEEP {}A{}\nscore DEEP 1\n",
        "(".repeat(500),
        ")".repeat(500)
    ));
    text.push_str("body NUL /a\0b/\nscore NUL 1\n");
    text.push_str(&"x".repeat(1 << 20));
    text.push_str("\nbody FINE /fine/\nscore FINE 1\n");
    let f = write(dir.path(), "hostile.cf", &text);
    let out = repmilter()
        .args(["rules", "lint"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(report.contains("rules loaded"), "{report}");
    let msg = write(dir.path(), "m.eml", "Subject: t\n\nall fine here\n");
    let cfg = write(
        dir.path(),
        "c.toml",
        &format!("[rules]\npaths = [{:?}]\n", f.display().to_string()),
    );
    let out = repmilter()
        .args(["check", "--config"])
        .arg(&cfg)
        .arg(&msg)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("FINE"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn check_explain_names_rule_file_line_and_match() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "r.cf",
        "body LOTTO_WIN /lottery winner/i\nscore LOTTO_WIN 2.5\ndescribe LOTTO_WIN Says you won a lottery\n",
    );
    let cfg = write(dir.path(), "c.toml", "[rules]\npaths = [\"r.cf\"]\n");
    let msg = write(
        dir.path(),
        "m.eml",
        "Subject: news\n\nDear friend, you are our Lottery Winner this week.\n",
    );
    let out = repmilter()
        .args(["check", "--explain", "--config"])
        .arg(&cfg)
        .arg(&msg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let rule_file = dir.path().join("r.cf").display().to_string();
    assert!(
        text.contains(&format!(
            "LOTTO_WIN (2.5) at {rule_file}:1:16 [body] hits=1"
        )),
        "{text}"
    );
    assert!(text.contains("matched \"Lottery Winner\" in \"news Dear friend, you are our Lottery Winner this week.\""), "{text}");
    assert!(
        text.contains("2.5 LOTTO_WIN Says you won a lottery"),
        "{text}"
    );

    // The same explanation in JSON.
    let out = repmilter()
        .args(["check", "--json", "--explain", "--config"])
        .arg(&cfg)
        .arg(&msg)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hit = &v["explain"]["rules"][0];
    assert_eq!(hit["rule"], "LOTTO_WIN", "{v:#}");
    assert_eq!(hit["at"], format!("{rule_file}:1:16"), "{v:#}");
    assert_eq!(hit["target"], "body", "{v:#}");
    assert_eq!(hit["matched"], "Lottery Winner", "{v:#}");
    assert_eq!(hit["hits"], 1, "{v:#}");
    // Without --explain, no such key.
    let out = repmilter()
        .args(["check", "--json", "--config"])
        .arg(&cfg)
        .arg(&msg)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.get("explain").is_none(), "{v:#}");
}

#[test]
fn check_scores_a_directory_and_sums_it_up() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "r.cf",
        "body LOTTO_WIN /lottery winner/i\nscore LOTTO_WIN 20\nbody FREE /\\bfree\\b/i\nscore FREE 1\n",
    );
    let cfg = write(dir.path(), "c.toml", "[rules]\npaths = [\"r.cf\"]\n");
    let mail = dir.path().join("mail");
    std::fs::create_dir_all(mail.join("spam")).unwrap();
    write(
        &mail.join("spam"),
        "1.eml",
        "From x@y Mon Jan 1 00:00:00 2024\nSubject: a\n\nyou are our lottery winner, free\n",
    );
    write(
        &mail.join("spam"),
        "2.eml",
        "Subject: b\n\nlottery winner again\n",
    );
    write(&mail, "ham.eml", "Subject: c\n\na free lunch\n");
    write(&mail, "meta.json", "{}");
    let gone = dir.path().join("gone.eml");
    let out = repmilter()
        .args(["check", "--config"])
        .arg(&cfg)
        .arg(&mail)
        .arg(&gone)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // An unreadable file is listed and makes the exit code 4; the rest are scored.
    assert_eq!(out.status.code(), Some(4), "{text}");
    let m = mail.display().to_string();
    for want in [
        format!("{m}/ham.eml: accept 1.0 FREE(1.0)"),
        format!("{m}/spam/1.eml: reject 21.0 LOTTO_WIN(20.0),FREE(1.0)"),
        format!("{m}/spam/2.eml: reject 20.0 LOTTO_WIN(20.0)"),
        "3 messages in ".to_string(),
        "2 flagged, 1 unreadable".to_string(),
        format!("  {}: ", gone.display()),
    ] {
        assert!(text.contains(&want), "missing {want:?} in\n{text}");
    }
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    for want in [
        vec!["reject", "2", "66.7%"],
        vec!["accept", "1", "33.3%"],
        vec!["LOTTO_WIN", "2", "66.7%"],
        vec!["FREE", "2", "66.7%"],
    ] {
        assert!(rows.contains(&want), "missing {want:?} in\n{text}");
    }
    assert!(!text.contains("meta.json"), "{text}");

    // --json: one object per message, then the summary.
    let out = repmilter()
        .args(["check", "--json", "--config"])
        .arg(&cfg)
        .arg(&mail)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[1]["action"], "reject");
    assert_eq!(lines[3]["summary"]["messages"], 3);
    assert_eq!(lines[3]["summary"]["by_action"]["reject"], 2);
}

#[test]
fn rules_test_fails_on_a_wrong_example_and_on_none() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write(
        dir.path(),
        "r.cf",
        "body PILLS /cheap pills/i\nscore PILLS 1\n",
    );
    let ex = dir.path().join("ex");
    std::fs::create_dir(&ex).unwrap();
    let run = || {
        repmilter()
            .args(["rules", "test", "--examples"])
            .arg(&ex)
            .arg(&rules)
            .output()
            .unwrap()
    };
    assert_eq!(run().status.code(), Some(1), "zero examples must fail");
    write(&ex, "PILLS.spam.eml", "Subject: x\n\nBuy cheap pills\n");
    write(
        &ex,
        "PILLS.ham.eml",
        "Subject: x\n\nTake your pills after lunch\n",
    );
    let out = run();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("rules: 2 passed, 0 failed"));
    write(
        &ex,
        "PILLS.ham.2.eml",
        "Subject: x\n\nno more cheap pills for me\n",
    );
    let out = run();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL  PILLS") && text.contains("fired on ham"),
        "{text}"
    );
}

#[test]
fn shipped_rules_lint_clean_and_their_examples_pass() {
    let rules = root().join("rules");
    let out = repmilter()
        .args(["rules", "lint"])
        .arg(&rules)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stderr);
    let loaded: usize = summary.split_whitespace().next().unwrap().parse().unwrap();
    assert!(loaded >= 30, "only {loaded} shipped rules: {summary}");

    let out = repmilter()
        .args(["rules", "test", "--examples"])
        .arg(root().join("testdata/rules"))
        .arg(&rules)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let passed: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("rules: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(passed >= 40, "only {passed} examples passed:\n{text}");
}

#[test]
fn the_spamassassin_stock_set_lints_as_spamassassin_lints_it() {
    let dir = Path::new("/usr/share/spamassassin");
    if !common::require_tool("spamassassin") || !dir.join("72_active.cf").exists() {
        return;
    }
    // SpamAssassin's own verdict on its stock set: nothing to say.
    let sa = std::process::Command::new("spamassassin")
        .arg("--lint")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&sa.stdout),
        String::from_utf8_lossy(&sa.stderr)
    );
    assert!(sa.status.success(), "{said}");
    assert_eq!(said.trim(), "", "SpamAssassin's lint has something to say");
    // Ours: no error, no warning either; its extra advice only with --pedantic.
    let out = repmilter()
        .args(["rules", "lint"])
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}{summary}");
    assert_eq!(text, "", "{summary}");
    assert!(summary.contains("0 error(s), 0 warning(s)"), "{summary}");
}

#[test]
fn a_reader_that_goes_away_ends_the_output_without_a_panic() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    // Thousands of notes: far more than a pipe holds, so writes meet the closed pipe.
    let rules: String = (0..5000)
        .map(|i| format!("body R{i} /word{i}/\n"))
        .collect();
    let f = write(dir.path(), "many.cf", &rules);
    let mut child = repmilter()
        .args(["rules", "lint", "--pedantic"])
        .arg(&f)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("note: R0 has no score"), "{first}");
    // The reader is gone (as `| head -1` goes).
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}
