//! Config reading: values, problems with their positions, bounds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn parse(s: &str) -> Result<Config, ConfigError> {
    Config::parse(s, Path::new("/etc/repmilter/test.toml"))
}

#[test]
fn the_fixed_keys_parse() {
    let c = parse(
        r#"
[milter]
listen = "inet:127.0.0.1:11330"
[actions]
add_header = 5.0
rewrite_subject = 8.0
reject = 15
[rules]
paths = ["rules"]
"#,
    )
    .unwrap();
    assert_eq!(c.actions.reject, Some(15.0));
    assert_eq!(c.actions.quarantine, None);
    assert_eq!(c.rules.paths, vec![PathBuf::from("/etc/repmilter/rules")]);
}

/// Every problem, as `line:key message`, starts with one of `want`, one for one.
fn expect_problems(err: &ConfigError, want: &[&str]) {
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("{err}")
    };
    let got: Vec<String> = problems
        .iter()
        .map(|p| format!("{}:{} {}", p.line, p.key, p.message))
        .collect();
    for w in want {
        assert!(
            got.iter().any(|g| g.starts_with(w)),
            "missing {w:?} in {got:#?}"
        );
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
}

#[test]
fn every_problem_is_reported_with_line_and_key() {
    let err = parse(
        r#"[milter]
listen = "tcp:foo"
max_conections = 10
message_timeout = 30

[actions]
reject = "high"

[trust]
networks = ["10.0.0.0/8", "not-a-net"]
authenticated_mode = "maybe"

[bogus]
"#,
    )
    .unwrap_err();
    expect_problems(
        &err,
        &[
            "2:milter.listen unknown scheme \"tcp\"",
            "3:milter.max_conections unknown key",
            "4:milter.message_timeout expected a duration",
            "7:actions.reject expected a number, found string",
            "10:trust.networks \"not-a-net\" is not",
            "11:trust.authenticated_mode \"maybe\": expected",
            "13:bogus unknown key",
        ],
    );
    assert!(
        err.to_string()
            .contains("/etc/repmilter/test.toml:3:1: milter.max_conections")
    );
}

#[test]
fn dns_lists_and_allowlists_parse() {
    let c = parse(
        r#"
[dns]
servers = ["127.0.0.1", "[::1]:5353"]
timeout = "2s"
received = "all"
skip_private = false

[[dnsbl]]
name = "ZEN"
zone = "zen.dq.spamhaus.net."
key = "abc123"
codes = [
  { code = "127.0.0.2", symbol = "ZEN_SBL", score = 4.0 },
  { range = "127.0.0.4-127.0.0.7", symbol = "ZEN_XBL", score = 3.5 },
]

[[uribl]]
name = "SURBL"
zone = "multi.surbl.org"
codes = [{ bits = 8, symbol = "SURBL_PH", score = 5 }]

[[dnswl]]
name = "DNSWL"
zone = "list.dnswl.org"

[allow]
networks = ["192.0.2.0/24", "2001:db8::1"]
sender_domains = ["Partner.Example."]
recipients = ["postmaster@our.example", "@vip.example"]
files = ["allow.txt"]
"#,
    )
    .unwrap();
    assert_eq!(c.dns.servers.len(), 2);
    assert_eq!(c.dns.servers[0].port(), 53);
    assert_eq!(c.dns.received, ReceivedHops::All);
    assert_eq!(c.lists.len(), 3);
    let zen = &c.lists[0];
    assert_eq!(zen.zone, "zen.dq.spamhaus.net");
    assert_eq!(zen.query_zone(), "abc123.zen.dq.spamhaus.net");
    assert_eq!(zen.checks, [Check::Client, Check::Received]);
    assert_eq!(zen.codes.len(), 2);
    // Lists come section by section: [[dnsbl]], then [[dnswl]], then [[uribl]].
    assert!(c.lists[1].allow && c.lists[1].score < 0.0);
    assert_eq!(c.lists[2].kind, ListKind::Domain);
    assert_eq!(c.lists[2].checks, [Check::Urls]);
    assert_eq!(c.allow.sender_domains, ["partner.example"]);
    assert_eq!(c.allow.files, [PathBuf::from("/etc/repmilter/allow.txt")]);
}

#[test]
fn dns_problems_are_reported_with_line_and_key() {
    let err = parse(
        r#"[dns]
servers = ["resolver.local"]
timeout = "40s"

[[dnsbl]]
name = "bad name"
zone = "zen..spamhaus.org"
key = "sec ret"
checks = ["urls", "client", "mx"]
codes = [{ code = "127.0.0.2" }, { range = "127.0.0.9-127.0.0.4", symbol = "X" }, { bits = 0, symbol = "Y" }]

[[uribl]]
zone = "multi.surbl.org"
kind = "ip"

[dnswl]
name = "SINGLE"
"#,
    )
    .unwrap_err();
    expect_problems(
        &err,
        &[
            "2:dns.servers \"resolver.local\" is not an address",
            "3:dns.timeout must be between",
            "6:dnsbl[0].name a symbol name",
            "7:dnsbl[0].zone \"zen..spamhaus.org\" is not a DNS name",
            "8:dnsbl[0].key the key must be",
            "9:dnsbl[0].checks \"urls\" is for domain lists",
            "9:dnsbl[0].checks \"mx\" is not a check",
            "10:dnsbl[0].codes[0] a code needs a symbol",
            "10:dnsbl[0].codes[1].range \"127.0.0.9-127.0.0.4\" is not a range",
            "10:dnsbl[0].codes[2].bits a bitmask of 0",
            "14:uribl[0].name [[uribl]] needs a name",
            "14:uribl[0].kind \"ip\": use \"domain\"",
            "16:dnswl expected [[dnswl]] tables",
        ],
    );
    // The key is a secret: the problem names the key, never its value.
    assert!(!err.to_string().contains("sec ret"), "{err}");
}

#[test]
fn dns_timeouts_and_ttls_stay_within_bounds() {
    let err = parse(
        "[milter]\nmessage_timeout = \"4s\"\n[dns]\ntimeout = \"5s\"\nmax_ttl = \"100000h\"\n[[dnsbl]]\nname = \"X\"\nzone = \"x.test\"\n",
    )
    .unwrap_err();
    expect_problems(
        &err,
        &[
            "5:dns.max_ttl must be at most",
            "4:dns.timeout 5s is not shorter than milter.message_timeout",
        ],
    );
}

#[test]
fn values_that_would_break_mail_are_refused() {
    let err = parse(
        "[milter]\nmax_message_size = 100\nmessage_timeout = \"0s\"\nshutdown_timeout = \"2h\"\n[actions]\nreject = 0\nadd_header = -1\n[policy]\nreject_text = \"Spam \u{e9}\"\nsubject_prefix = \"[SPAM]\\t\"\n",
    )
    .unwrap_err();
    let ConfigError::Invalid { problems, .. } = &err else {
        panic!("{err}")
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "milter.max_message_size",
            "milter.message_timeout",
            "milter.shutdown_timeout",
            "actions.add_header",
            "actions.reject",
            "policy.reject_text",
            "policy.subject_prefix"
        ]
    );
}

#[test]
fn connection_timeouts_are_bounded() {
    let c = parse("[milter]\nhandshake_timeout = \"2s\"\nidle_timeout = \"1h\"\n").unwrap();
    assert_eq!(c.milter.handshake_timeout, Duration::from_secs(2));
    assert_eq!(c.milter.idle_timeout, Duration::from_secs(3600));
    let err = parse(
        "[milter]\nhandshake_timeout = \"500ms\"\nidle_timeout = \"3h\"\n[dns]\nprobe_interval = \"48h\"\n",
    )
    .unwrap_err();
    expect_problems(
        &err,
        &[
            "2:milter.handshake_timeout must be between 1s and 60s",
            "3:milter.idle_timeout must be between 1s and 7200s",
            "5:dns.probe_interval must be between 1s and 24h",
        ],
    );
}

#[test]
fn syntax_errors_have_a_position() {
    let err = parse("[milter]\nlisten = \n").unwrap_err();
    let ConfigError::Invalid { problems, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].line, 2);
}

#[test]
fn scores_take_symbol_names() {
    let c = parse("[scores]\nGTUBE = 500\n").unwrap();
    assert_eq!(c.score("GTUBE", 1000.0), 500.0);
    assert!(parse("[scores]\ngtube = 1\n").is_err());
}

#[test]
fn restart_only_keys_are_named() {
    let running = Config::default();
    let mut new = running.clone();
    new.milter.listen = "inet:127.0.0.1:1".parse().unwrap();
    new.log_level = "debug".into();
    new.actions.reject = Some(20.0);
    assert_eq!(
        new.keep_restart_only(&running),
        vec!["milter.listen", "log.level"]
    );
    // Those keep their running values; the rest of the reload applies.
    assert_eq!(new.milter.listen, running.milter.listen);
    assert_eq!(new.log_level, running.log_level);
    assert_eq!(new.actions.reject, Some(20.0));
}

#[test]
fn the_hub_table_parses_and_checks_its_values() {
    let c = parse("[hub]\nurl = \"http://127.0.0.1:11380/\"\ntoken = \"secret-token-123\"\ntimeout = \"2s\"\n").unwrap();
    let hub = c.hub.unwrap();
    assert_eq!(hub.url, "http://127.0.0.1:11380");
    assert_eq!(hub.timeout, Duration::from_secs(2));
    assert_eq!(hub.spool, PathBuf::from("/etc/repmilter/spool"));
    assert_eq!(hub.sync_interval, Duration::from_millis(500));
    assert!(parse("").unwrap().hub.is_none());
    let err = parse(
        "[hub]\nurl = \"ftp://x\"\ntoken = \"a b\"\ntimeout = \"30s\"\nsync_interval = \"2m\"\n",
    )
    .unwrap_err();
    expect_problems(
        &err,
        &[
            "2:hub.url \"ftp://x\": use http",
            "3:hub.token a token is 1 to 512",
            "4:hub.timeout must be at least 10ms and shorter",
            "5:hub.sync_interval must be between 10ms and 60s",
        ],
    );
    assert!(!err.to_string().contains("a b"), "{err}");
}

#[test]
fn action_thresholds_must_climb_in_order() {
    // discard stands apart: anywhere is fine.
    parse("[actions]\nadd_header = 5\nrewrite_subject = 5\nsoft_reject = 9\nreject = 15\ndiscard = 1\n")
        .unwrap();
    let err = parse("[actions]\nadd_header = 5\nquarantine = 4\nreject = 15\n").unwrap_err();
    expect_problems(&err, &["3:actions.quarantine 4 is below add_header (5)"]);
    // Gaps (absent actions) are skipped: reject is compared with the last one set.
    let err = parse("[actions]\nrewrite_subject = 8\nreject = 6\n").unwrap_err();
    expect_problems(&err, &["3:actions.reject 6 is below rewrite_subject (8)"]);
}

#[test]
fn loading_checks_the_files_a_config_names() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("allow.txt"), "192.0.2.1\n").unwrap();
    let good = "[rules]\npaths = [\"rules\"]\n[allow]\nfiles = [\"allow.txt\"]\n";
    let path = dir.path().join("repmilter.toml");
    std::fs::write(&path, good).unwrap();
    Config::load(&path).unwrap();

    let bad =
        "[rules]\npaths = [\"rules\", \"rulez\"]\n[allow]\nfiles = [\"rules\", \"gone.txt\"]\n";
    std::fs::write(&path, bad).unwrap();
    let err = Config::load(&path).unwrap_err();
    expect_problems(
        &err,
        &["2:rules.paths ", "4:allow.files ", "4:allow.files "],
    );
    let text = err.to_string();
    assert!(text.contains("rulez does not exist"), "{text}");
    assert!(text.contains("rules is a directory: name a file"), "{text}");
    assert!(text.contains("gone.txt does not exist"), "{text}");
    // The same text on its own names no problem: only loading looks at the files.
    Config::parse(bad, &path).unwrap();
}

#[test]
fn socket_owner_group_and_user_name_real_accounts() {
    let c = parse("[milter]\nsocket_owner = \"root\"\nsocket_group = \"root\"\nuser = \"root\"\n")
        .unwrap();
    assert_eq!(c.milter.socket_owner.as_ref().map(|u| u.uid), Some(0));
    assert_eq!(c.milter.socket_group.as_ref().map(|g| g.gid), Some(0));
    assert_eq!(c.milter.user.as_ref().map(|u| (u.uid, u.gid)), Some((0, 0)));
    let err = parse(
        "[milter]\nsocket_owner = \"no-such-user-x\"\nsocket_group = \"no-such-group-x\"\nuser = \"no-such-user-x\"\n",
    )
    .unwrap_err();
    expect_problems(
        &err,
        &[
            "2:milter.socket_owner no user named \"no-such-user-x\" on this system",
            "3:milter.socket_group no group named \"no-such-group-x\" on this system",
            "4:milter.user no user named \"no-such-user-x\" on this system",
        ],
    );
}
