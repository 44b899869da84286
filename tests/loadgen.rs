//! `repmilter bench`, the load generator, against the real daemon: every message gets its
//! verdict, counted by action, and a milter that is not there is an error, not a figure.

mod common;

use common::{Daemon, gtube_mail, ham, repmilter, write};

fn bench_json(args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let out = repmilter().arg("bench").args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), json, format!("{stdout}\n{stderr}"))
}

#[test]
fn a_run_against_the_daemon_counts_every_verdict() {
    let d = Daemon::start("", "");
    let corpus = d.dir.path().join("corpus");
    std::fs::create_dir_all(corpus.join("spam")).unwrap();
    write(&corpus, "1-ham.eml", &ham());
    // An mbox `From ` line, as in the public corpus: stripped before sending.
    write(
        &corpus.join("spam"),
        "2-gtube.txt",
        &format!(
            "From spammer@example.com Mon Jan  1 00:00:00 2024\n{}",
            gtube_mail()
        ),
    );
    write(&corpus, "metadata.json", "{\"not\": \"a message\"}");
    let pid = d.child.id().to_string();
    let (code, report, out) = bench_json(&[
        "--target",
        &d.listen,
        "--corpus",
        corpus.to_str().unwrap(),
        "--messages",
        "40",
        "--concurrency",
        "4",
        "--per-connection",
        "3",
        "--target-pid",
        &pid,
        "--json",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(report["messages"], 40, "{out}");
    assert_eq!(report["errors"], serde_json::json!({}), "{out}");
    // The ham and GTUBE alternate: half accepted, half rejected with 550.
    assert_eq!(report["actions"]["accept"], 20, "{out}");
    assert_eq!(report["actions"]["reply 550"], 20, "{out}");
    let lat = &report["latency_us"];
    assert!(lat["p50"].as_u64().unwrap() > 0, "{out}");
    assert!(lat["p50"].as_u64() <= lat["p99"].as_u64(), "{out}");
    assert!(lat["p99"].as_u64() <= lat["max"].as_u64(), "{out}");
    assert!(report["target_cpu_us_per_message"].is_number(), "{out}");
    assert!(report["target_peak_rss_kib"].as_u64().unwrap() > 0, "{out}");

    // The table for a terminal says the same.
    let out = repmilter()
        .args(["bench", "--target", &d.listen, "--corpus"])
        .arg(&corpus)
        .args(["--messages", "4", "--concurrency", "2"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("messages           4 in"), "{text}");
    assert!(text.contains("accept 2, reply 550 2"), "{text}");
    assert!(text.contains("errors             none"), "{text}");
}

#[test]
fn the_ceiling_is_measured_against_a_milter_that_accepts_everything() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "m.eml", &gtube_mail());
    let (code, report, out) = bench_json(&[
        "--ceiling",
        "--corpus",
        dir.path().to_str().unwrap(),
        "--messages",
        "30",
        "--concurrency",
        "3",
        "--json",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(report["messages"], 30, "{out}");
    // Even GTUBE: that milter judges nothing.
    assert_eq!(report["actions"]["accept"], 30, "{out}");
    assert!(
        report["target"]
            .as_str()
            .unwrap()
            .starts_with("inet:127.0.0.1:"),
        "{out}"
    );
}

#[test]
fn an_absent_milter_and_bad_arguments_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "m.eml", &ham());
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("inet:127.0.0.1:{port}");
    let (code, report, out) = bench_json(&[
        "--target",
        &target,
        "--corpus",
        dir.path().to_str().unwrap(),
        "--messages",
        "3",
        "--json",
    ]);
    assert_eq!(code, Some(5), "{out}");
    assert_eq!(report["messages"], 0, "{out}");
    assert_eq!(report["errors"]["i/o: connection refused"], 3, "{out}");

    // A milter that takes connections and never answers: each session times out.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_target = format!("inet:{}", silent.local_addr().unwrap());
    let (code, report, out) = bench_json(&[
        "--target",
        &silent_target,
        "--corpus",
        dir.path().to_str().unwrap(),
        "--messages",
        "2",
        "--timeout",
        "0.3",
        "--json",
    ]);
    assert_eq!(code, Some(5), "{out}");
    assert_eq!(report["errors"]["i/o: timed out"], 2, "{out}");
    drop(silent);

    let run = |args: &[&str]| {
        let out = repmilter().arg("bench").args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let corpus = dir.path().to_str().unwrap();
    let (code, err) = run(&["--target", "127.0.0.1:11330", "--corpus", corpus]);
    assert_eq!(code, Some(4));
    assert!(err.contains("--target 127.0.0.1:11330"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let (code, err) = run(&[
        "--target",
        &target,
        "--corpus",
        empty.path().to_str().unwrap(),
    ]);
    assert_eq!(code, Some(4));
    assert!(err.contains("no messages under"), "{err}");
    let (code, err) = run(&["--target", &target, "--corpus", corpus, "--rate", "0"]);
    assert_eq!(code, Some(4));
    assert!(err.contains("--rate"), "{err}");
}
