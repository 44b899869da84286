//! The binary as an operator runs it: config check, check, reload on SIGHUP, drain on SIGTERM.

mod common;

use std::time::Duration;

use common::{Daemon, GTUBE, config_text, gtube_mail, ham, repmilter, write};
use repmilter::milter::client::{Client, Transaction};
use repmilter::milter::codec::{Command, ConnectAddr, Reply};
use tokio::net::TcpStream;

const ENV: Transaction<'static> = Transaction {
    from: "alice@example.org",
    rcpts: &["bob@example.net"],
    mail_macros: &[],
};

async fn client(addr: &str) -> Client<TcpStream> {
    let client_addr = ConnectAddr::Inet {
        ip: "192.0.2.1".parse().unwrap(),
        port: 1,
    };
    let stream = TcpStream::connect(addr).await.unwrap();
    Client::open(stream, "c.example", client_addr)
        .await
        .unwrap()
        .0
}

#[test]
fn the_shipped_config_is_valid() {
    let out = repmilter()
        .args([
            "config",
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/repmilter.toml"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn config_check_reports_every_problem_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "bad.toml",
        "[milter]\nlisten = \"inet:nowhere:1\"\nmessage_timeout = \"soon\"\n[actions]\nrejct = 15\n",
    );
    let out = repmilter()
        .args(["config", "check", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = p.display().to_string();
    for want in [
        format!("{file}:2:10: milter.listen: host \"nowhere\" is not an IP address"),
        format!("{file}:3:19: milter.message_timeout: \"soon\" is not a duration"),
        format!("{file}:5:1: actions.rejct: unknown key"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    let out = repmilter()
        .args(["config", "check", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot read config file /nonexistent.toml: No such file")
    );
}

#[test]
fn check_skips_the_mbox_from_line_of_a_saved_message() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "subject.cf",
        "header SUBJ_LOTTERY Subject =~ /lottery/i\nscore SUBJ_LOTTERY 2\n",
    );
    let cfg = write(
        dir.path(),
        "c.toml",
        &config_text(
            "inet:127.0.0.1:0",
            "",
            &format!("[rules]\npaths = [{:?}]\n", dir.path().join("subject.cf")),
        ),
    );
    let msg = write(
        dir.path(),
        "saved.eml",
        "From winner@lottery.example  Thu Aug 22 13:17:22 2002\nFrom: winner@lottery.example\n\
         Subject: You won the lottery\n\nClaim it.\n",
    );
    let out = repmilter()
        .args(["check", "--json", "--config"])
        .arg(&cfg)
        .arg(&msg)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["symbols"][0]["name"], "SUBJ_LOTTERY", "{v}");
}

#[test]
fn check_scores_a_message_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "c.toml",
        &config_text("inet:127.0.0.1:0", "", ""),
    );
    let spam = write(dir.path(), "spam.eml", &gtube_mail());
    let out = repmilter()
        .args(["check", "--config"])
        .arg(&cfg)
        .args(["--ip", "192.0.2.1", "--json"])
        .arg(&spam)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["action"], "reject");
    assert_eq!(v["symbols"][0]["name"], "GTUBE");
    assert_eq!(v["smtp_reply"], "550 5.7.1 Message rejected as spam");

    let ham_file = write(dir.path(), "ham.eml", &ham());
    let out = repmilter()
        .args(["check", "--config"])
        .arg(&cfg)
        .arg(&ham_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("action: accept") && text.contains("X-Spam-Status: No, score=0.0"),
        "{text}"
    );

    let out = repmilter()
        .args(["check", "--config"])
        .arg(&cfg)
        .arg(dir.path().join("missing.eml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
}

#[tokio::test]
async fn sighup_reloads_scores_and_refuses_restart_only_keys() {
    let d = Daemon::start("", "");
    let mut c = client(&d.addr()).await;
    let r = c.message(&ENV, gtube_mail().as_bytes()).await.unwrap();
    assert!(matches!(r.last(), Some(Reply::ReplyCode(_))));

    // Lower GTUBE below every threshold, and try to move the listener.
    d.rewrite_config("inet:127.0.0.1:1", "", "[scores]\nGTUBE = 1.0\n");
    d.signal("HUP");
    assert!(
        d.wait_log("config reloaded", Duration::from_secs(10)),
        "{}",
        d.log()
    );
    assert!(d.log().contains("milter.listen"), "{}", d.log());

    // The open connection is kept and its next message uses the new config.
    let r = c.message(&ENV, gtube_mail().as_bytes()).await.unwrap();
    assert_eq!(r.last(), Some(&Reply::Accept), "{r:?}");
    // The listener did not move.
    let mut c2 = client(&d.addr()).await;
    let r = c2.message(&ENV, gtube_mail().as_bytes()).await.unwrap();
    assert_eq!(r.last(), Some(&Reply::Accept));

    // A broken file is refused and the running config stays.
    std::fs::write(&d.config_path, "[milter\n").unwrap();
    d.signal("HUP");
    assert!(
        d.wait_log("reload refused", Duration::from_secs(10)),
        "{}",
        d.log()
    );
    let r = c.message(&ENV, gtube_mail().as_bytes()).await.unwrap();
    assert_eq!(r.last(), Some(&Reply::Accept));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_message_in_flight_then_exits() {
    let mut d = Daemon::start("shutdown_timeout = \"20s\"", "");
    let mut busy = client(&d.addr()).await;
    let idle = client(&d.addr()).await;
    // Half a message: MAIL and a header, no end yet.
    busy.command(&Command::Mail {
        sender: "<a@example.org>".into(),
        args: vec![],
    })
    .await
    .unwrap();
    busy.command(&Command::Header {
        name: "Subject".into(),
        value: b"x".to_vec(),
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    d.signal("TERM");
    assert!(
        d.wait_log("shutting down", Duration::from_secs(10)),
        "{}",
        d.log()
    );
    // The message in flight still gets its verdict.
    busy.command(&Command::Body(format!("{GTUBE}\r\n").into_bytes()))
        .await
        .unwrap();
    let r = busy.command(&Command::EndOfBody(vec![])).await.unwrap();
    assert!(matches!(r.last(), Some(Reply::ReplyCode(_))), "{r:?}");
    // Sessions run until the MTA quits (closing between messages would defer mail).
    busy.quit().await.unwrap();
    drop(idle);
    let code = tokio::task::block_in_place(|| d.wait_exit(Duration::from_secs(20)));
    assert_eq!(code, Some(0), "{}", d.log());
    // No new connections once stopped.
    assert!(TcpStream::connect(d.addr()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cuts_off_sessions_stuck_past_the_deadline() {
    let mut d = Daemon::start("shutdown_timeout = \"1s\"", "");
    let mut stuck = client(&d.addr()).await;
    stuck
        .command(&Command::Mail {
            sender: "<a@example.org>".into(),
            args: vec![],
        })
        .await
        .unwrap();
    d.signal("TERM");
    let start = std::time::Instant::now();
    let code = tokio::task::block_in_place(|| d.wait_exit(Duration::from_secs(20)));
    assert_eq!(code, Some(0));
    assert!(start.elapsed() < Duration::from_secs(15));
    assert!(d.log().contains("shutdown deadline passed"), "{}", d.log());
}

#[test]
fn the_daemon_listens_only_once_its_rules_are_compiled() {
    let d = Daemon::start("", "[rules]\npaths = [\"$DIR/rules\"]\n");
    let log = d.log();
    let compiled = log.find("engine in use").expect("compiled");
    let listening = log.find("listening on").expect("listening");
    assert!(compiled < listening, "{log}");
}

#[tokio::test]
async fn rule_files_reload_when_they_change() {
    let d = Daemon::start("", "[rules]\npaths = [\"$DIR/rules\"]\n");
    let rule_file = d.dir.path().join("rules/local.cf");
    let spam = "Subject: offer\r\n\r\nThe zorglub deal of the year\r\n";
    let write_rules = |score: &str| {
        std::fs::write(&rule_file, format!("body LOCAL_ZORGLUB /zorglub/i\nscore LOCAL_ZORGLUB {score}\ndescribe LOCAL_ZORGLUB test\n")).unwrap()
    };
    let mut c = client(&d.addr()).await;
    let r = c.message(&ENV, spam.as_bytes()).await.unwrap();
    assert_eq!(r.last(), Some(&Reply::Accept), "no rules yet");

    write_rules("20");
    assert!(
        d.wait_log("rule or list files changed", Duration::from_secs(15)),
        "{}",
        d.log()
    );
    assert!(
        d.wait_log("engine in use rules=2", Duration::from_secs(10)),
        "{}",
        d.log()
    );
    let r = c.message(&ENV, spam.as_bytes()).await.unwrap();
    assert!(
        matches!(r.last(), Some(Reply::ReplyCode(t)) if t.starts_with("550")),
        "{r:?}"
    );

    // A file that compiles to nothing, the only one left, keeps the running rule set.
    std::fs::remove_file(d.dir.path().join("rules/fixture.cf")).unwrap();
    assert!(
        d.wait_log("engine in use rules=1", Duration::from_secs(15)),
        "{}",
        d.log()
    );
    std::fs::write(
        &rule_file,
        "body LOCAL_ZORGLUB /(unclosed/\nscore LOCAL_ZORGLUB 20\n",
    )
    .unwrap();
    assert!(
        d.wait_log("keeping the running rule set", Duration::from_secs(15)),
        "{}",
        d.log()
    );
    assert!(
        d.log()
            .contains("local.cf:1:20: LOCAL_ZORGLUB: unsupported regex"),
        "{}",
        d.log()
    );
    let r = c.message(&ENV, spam.as_bytes()).await.unwrap();
    assert!(matches!(r.last(), Some(Reply::ReplyCode(_))), "{r:?}");
}

#[tokio::test]
async fn allowlist_files_reload_when_they_change() {
    let d = Daemon::start_with(
        &[("allow.txt", "# partners\n")],
        "inet:127.0.0.1:0",
        "",
        "[allow]\nfiles = [\"$DIR/allow.txt\"]\nscore = -7.5\n",
    );
    let list = d.dir.path().join("allow.txt");
    let has_symbol = |r: &[Reply]| {
        r.iter().any(|x| match x {
            Reply::AddHeader { value, .. }
            | Reply::InsHeader { value, .. }
            | Reply::ChgHeader { value, .. } => {
                String::from_utf8_lossy(value).contains("ALLOWLIST_SENDER")
            }
            _ => false,
        })
    };
    let mut c = client(&d.addr()).await;
    let r = c.message(&ENV, ham().as_bytes()).await.unwrap();
    assert!(!has_symbol(&r), "{r:?}");

    // The sender's domain goes on the list: the next message carries the symbol.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&list, "# partners\nexample.org\n").unwrap();
    let start = std::time::Instant::now();
    loop {
        let r = c.message(&ENV, ham().as_bytes()).await.unwrap();
        if has_symbol(&r) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "allowlist change not picked up: {r:?}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs a command to its end, failing the test if it takes longer than `limit` (a hang).
fn run_within(cmd: &mut std::process::Command, limit: Duration) -> std::process::Output {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &id.to_string()])
                .status();
            panic!("command still running after {limit:?}: {cmd:?}");
        }
    }
}

fn mkfifo(path: &std::path::Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo {}", path.display());
}

#[test]
fn devices_and_fifos_are_refused_as_config_rules_and_messages() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    for (config, what) in [
        (std::path::Path::new("/dev/zero"), "a character device"),
        (fifo.as_path(), "a FIFO"),
    ] {
        let out = run_within(
            repmilter()
                .args(["config", "check", "--config"])
                .arg(config),
            Duration::from_secs(20),
        );
        assert_eq!(out.status.code(), Some(3));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "cannot read config file {}: it is {what}, not a regular file",
                config.display()
            )),
            "{err}"
        );
    }

    // As rule files: each is reported, the good rules load.
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    write(
        &rules,
        "good.cf",
        "body GOOD_ZORG /zorglub/\nscore GOOD_ZORG 20\n",
    );
    mkfifo(&rules.join("pipe.cf"));
    let cfg = write(
        dir.path(),
        "c.toml",
        &config_text(
            "inet:127.0.0.1:0",
            "",
            "[rules]\npaths = [\"rules\", \"/dev/zero\"]\n",
        ),
    );
    let msg = write(dir.path(), "m.eml", "Subject: x\r\n\r\nzorglub\r\n");
    let out = run_within(
        repmilter().args(["check", "--config"]).arg(&cfg).arg(&msg),
        Duration::from_secs(20),
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("GOOD_ZORG"), "{stdout}");
    assert!(
        stderr.contains("pipe.cf:0:0: cannot read rule file: it is a FIFO"),
        "{stderr}"
    );
    assert!(
        stderr.contains("/dev/zero:0:0: cannot read rule file: it is a character device"),
        "{stderr}"
    );

    // As the message: a device or FIFO is refused; endless standard input is read up to
    // the size limit and scanned as a truncated message.
    for bad in [std::path::Path::new("/dev/zero"), fifo.as_path()] {
        let out = run_within(
            repmilter().args(["check", "--config"]).arg(&cfg).arg(bad),
            Duration::from_secs(20),
        );
        assert_eq!(out.status.code(), Some(4), "{}", bad.display());
        assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));
    }
    let small = write(
        dir.path(),
        "small.toml",
        &config_text("inet:127.0.0.1:0", "max_message_size = 65536", ""),
    );
    let out = run_within(
        repmilter()
            .args(["check", "--json", "--config"])
            .arg(&small)
            .arg("-")
            .stdin(std::fs::File::open("/dev/zero").unwrap()),
        Duration::from_secs(60),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(
        v["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "MESSAGE_TRUNCATED"),
        "{v}"
    );
}

/// Whether a spam message with both rules' words is rejected by the daemon.
async fn rejected(c: &mut Client<TcpStream>) -> bool {
    let spam = "Subject: offer\r\n\r\nThe zorglub deal, frobnitz inside\r\n";
    let r = c.message(&ENV, spam.as_bytes()).await.unwrap();
    matches!(r.last(), Some(Reply::ReplyCode(t)) if t.starts_with("550"))
}

#[tokio::test]
async fn emptied_garbage_and_deleted_rule_files_never_turn_filtering_off() {
    let d = Daemon::start("", "[rules]\npaths = [\"$DIR/rules\"]\n");
    let a = d.dir.path().join("rules/a.cf");
    let b = d.dir.path().join("rules/b.cf");
    std::fs::write(&a, "body A_ZORG /zorglub/\nscore A_ZORG 10\n").unwrap();
    std::fs::write(&b, "body B_FROB /frobnitz/\nscore B_FROB 10\n").unwrap();
    assert!(
        d.wait_log("engine in use rules=3", Duration::from_secs(15)),
        "{}",
        d.log()
    );
    let mut c = client(&d.addr()).await;
    assert!(rejected(&mut c).await);

    // A failed deploy truncates one file and fills the other with garbage.
    std::fs::write(&a, "").unwrap();
    std::fs::write(&b, [0xffu8, 0xfe, b'\n', 0, 1, 2, b'\n'].repeat(50)).unwrap();
    for file in ["a.cf", "b.cf"] {
        let needle = format!("file={}", d.dir.path().join("rules").join(file).display());
        assert!(
            wait_for(&d, |log| log.lines().any(|l| l.contains("WARN")
                && l.contains("new version of a rule file refused")
                && l.contains(&needle))),
            "{}",
            d.log()
        );
    }
    assert!(d.log().contains("more rule problems"), "{}", d.log());
    assert!(rejected(&mut c).await, "{}", d.log());

    // Every file deleted: the same paths yield nothing; the running set stays.
    std::fs::remove_file(&a).unwrap();
    std::fs::remove_file(&b).unwrap();
    std::fs::remove_file(d.dir.path().join("rules/fixture.cf")).unwrap();
    assert!(
        wait_for(&d, |log| log.lines().any(|l| l.contains("WARN")
            && l.contains(
                "the rule files yield no rule; keeping the running rule set"
            ))),
        "{}",
        d.log()
    );
    assert!(rejected(&mut c).await, "{}", d.log());
}

fn wait_for(d: &Daemon, found: impl Fn(&str) -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if found(&d.log()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[tokio::test]
async fn rule_edits_are_seen_beside_a_large_tree_and_a_file_turned_directory_keeps_its_rules() {
    let d = Daemon::start("", "[rules]\npaths = [\"$DIR/rules\"]\n");
    let rules = d.dir.path().join("rules");
    // A version-control tree beside the rules: 12,000 files the poll must not walk.
    let objects = rules.join(".git/objects");
    std::fs::create_dir_all(&objects).unwrap();
    for i in 0..12_000 {
        std::fs::write(objects.join(format!("{i:05}")), "x").unwrap();
    }
    std::fs::write(
        rules.join("a.cf"),
        "body A_ZORG /zorglub/\nscore A_ZORG 10\n",
    )
    .unwrap();
    std::fs::write(
        rules.join("b.cf"),
        "body B_FROB /frobnitz/\nscore B_FROB 10\n",
    )
    .unwrap();
    assert!(
        d.wait_log("engine in use rules=3", Duration::from_secs(15)),
        "{}",
        d.log()
    );
    let mut c = client(&d.addr()).await;
    assert!(rejected(&mut c).await);
    // A deploy that leaves a directory where a rule file was: its rules stay.
    std::fs::remove_file(rules.join("a.cf")).unwrap();
    std::fs::create_dir(rules.join("a.cf")).unwrap();
    assert!(
        wait_for(&d, |log| log.lines().any(|l| l.contains("WARN")
            && l.contains("new version of a rule file refused")
            && l.contains("a directory"))),
        "{}",
        d.log()
    );
    assert!(rejected(&mut c).await, "{}", d.log());
}

#[test]
fn rule_paths_that_yield_no_rule_are_refused_by_serve_and_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    write(
        &rules,
        "broken.cf",
        "body BROKEN /(unclosed/\nscore BROKEN 5\n",
    );
    let config = write(
        dir.path(),
        "repmilter.toml",
        "[milter]\nlisten = \"inet:127.0.0.1:0\"\n[rules]\npaths = [\"rules\"]\n",
    );
    let want = format!(
        "no rule compiled from rules.paths ({}): 1 rule problem(s)",
        rules.display()
    );
    let out = run_within(
        repmilter()
            .args(["config", "check", "--config"])
            .arg(&config),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&want), "{err}");
    let out = run_within(
        repmilter().args(["serve", "--config"]).arg(&config),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("refusing to serve: {want}")), "{err}");
    assert!(!err.contains("listening on"), "{err}");

    // The same with a rule that compiles: both go ahead.
    write(&rules, "good.cf", "body GOOD /zorglub/\nscore GOOD 5\n");
    let out = run_within(
        repmilter()
            .args(["config", "check", "--config"])
            .arg(&config),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 rules, 1 rule problem(s)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn config_check_names_missing_files_misordered_thresholds_and_a_listen_without_scheme() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "bad.toml",
        "[milter]\nlisten = \"127.0.0.1:11330\"\n[actions]\nadd_header = 9\nreject = 4\n[rules]\npaths = [\"nope\"]\n[allow]\nfiles = [\"gone.txt\"]\n",
    );
    let out = repmilter()
        .args(["config", "check", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = p.display().to_string();
    let d = dir.path().display();
    for want in [
        format!(
            "{file}:2:10: milter.listen: \"127.0.0.1:11330\" has no scheme: did you mean \"inet:127.0.0.1:11330\"?"
        ),
        format!("{file}:5:10: actions.reject: 4 is below add_header (9)"),
        format!("{file}:7:10: rules.paths: {d}/nope does not exist"),
        format!("{file}:9:10: allow.files: {d}/gone.txt does not exist"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
}

#[tokio::test]
async fn json_logs_are_one_object_per_event_with_the_message_fields() {
    let d = Daemon::start("", "[log]\nformat = \"json\"\n");
    let mut c = client(&d.addr()).await;
    let tx = Transaction {
        from: "a\"b\nFAKE@example.org",
        rcpts: &["bob@example.net", "carol@example.net"],
        mail_macros: &[("i", "JSONQ1")],
    };
    c.message(&tx, gtube_mail().as_bytes()).await.unwrap();
    assert!(
        d.wait_log("message scored", Duration::from_secs(10)),
        "{}",
        d.log()
    );
    // Every line is a JSON object (a newline in a field cannot split one).
    let mut scored = None;
    for line in d.log().lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        if v["message"] == "message scored" {
            scored = Some(v);
        }
    }
    let v = scored.unwrap();
    assert_eq!(v["level"], "INFO", "{v}");
    assert_eq!(v["queue_id"], "\"JSONQ1\"", "{v}");
    assert_eq!(v["rcpts"], 2, "{v}");
    assert_eq!(v["action"], "reject", "{v}");
    assert!(v["size"].as_u64().unwrap() > 60, "{v}");
    assert!(v["symbols"].as_str().unwrap().contains("GTUBE"), "{v}");
    assert!(
        v["elapsed_ms"].is_string() || v["elapsed_ms"].is_number(),
        "{v}"
    );
}

#[tokio::test]
async fn started_as_root_it_becomes_milter_user_once_bound() {
    if !is_root() {
        common::skip("dropping root needs root");
        return;
    }
    let d = Daemon::start("user = \"nobody\"", "");
    assert!(
        d.wait_log("dropped root", Duration::from_secs(10)),
        "{}",
        d.log()
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let nobody = std::process::Command::new("id")
        .args(["-u", "nobody"])
        .output()
        .unwrap();
    let nobody = String::from_utf8_lossy(&nobody.stdout).trim().to_string();
    // Real, effective, saved and filesystem uids: all nobody's, so root cannot come back.
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == nobody),
        "{uid_line}"
    );
    // And it still serves.
    let mut c = client(&d.addr()).await;
    let r = c.message(&ENV, gtube_mail().as_bytes()).await.unwrap();
    assert!(
        matches!(r.last(), Some(Reply::ReplyCode(t)) if t.starts_with("550")),
        "{r:?}"
    );
}

fn is_root() -> bool {
    let out = std::process::Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}
