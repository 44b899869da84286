//! DNS lists against a real DNS list server (rbldnsd) with zones built here: listings and
//! return codes, IPv6, bitmask and domain zones, error answers, probes, an unreachable
//! server, the cache, query keys, Received hops, lookups at CONNECT and `check --ip`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Rbldnsd, Zone, repmilter, write};
use repmilter::config::Config;
use repmilter::engine::Engine;
use repmilter::message::{Envelope, Message};
use repmilter::milter::client::Client;
use repmilter::milter::codec::ConnectAddr;
use repmilter::milter::server::Peer;
use repmilter::scan::{ScanInput, Verdict};
use repmilter::session;

const IP_ZONE: &str = "\
$SOA 60 ns.ip.test admin.ip.test 1 600 300 86400 60
:127.0.0.2:listed
127.0.0.2
127.0.0.3 :127.0.0.4:exploited host
127.0.0.5 :127.0.0.10:a code no one mapped
127.0.0.6 :127.255.255.254:refused: public resolver
";

const ZONES: &[Zone<'static>] = &[
    Zone {
        name: "ip.test",
        kind: "ip4set",
        data: IP_ZONE,
    },
    Zone {
        name: "ip.test",
        kind: "ip6trie",
        data: "2001:db8:1::/48 :127.0.0.2:listed v6\n",
    },
    Zone {
        name: "dom.test",
        kind: "dnset",
        data: "listed.example :127.0.1.2:\ndbltest.com :127.0.1.2:\n",
    },
    Zone {
        name: "multi.test",
        kind: "dnset",
        data: "spammy.example :127.0.0.4:\nphishy.example :127.0.0.8:\nboth.example :127.0.0.12:\n",
    },
    Zone {
        name: "blocked.test",
        kind: "ip4set",
        data: "0-255 :127.255.255.254:\n",
    },
    Zone {
        name: "all.test",
        kind: "ip4set",
        data: "0-255\n",
    },
    Zone {
        name: "key123.keyed.test",
        kind: "ip4set",
        data: "127.0.0.2\n",
    },
    Zone {
        name: "wl.test",
        kind: "ip4set",
        data: "127.0.0.9 :127.0.9.2:\n127.0.0.2 :127.0.9.2:\n",
    },
];
const ALL_ZONE: usize = 5;

fn lists(port: u16, timeout: &str, extra: &str) -> String {
    format!(
        r#"
[dns]
servers = ["127.0.0.1:{port}"]
timeout = "{timeout}"
skip_private = false
received = "last"
probe_interval = "1s"

[[dnsbl]]
name = "TEST_ZEN"
zone = "ip.test"
codes = [
  {{ code = "127.0.0.2", symbol = "TEST_SBL", score = 4.0 }},
  {{ range = "127.0.0.4-127.0.0.7", symbol = "TEST_XBL", score = 3.0 }},
]

[[dnsbl]]
name = "TEST_KEYED"
zone = "keyed.test"
key = "key123"
score = 2.0

[[dnsbl]]
name = "TEST_DBL"
zone = "dom.test"
kind = "domain"
test_domain = "dbltest.com"
codes = [{{ code = "127.0.1.2", symbol = "TEST_DBL_SPAM", score = 2.5 }}]

[[uribl]]
name = "TEST_MULTI"
zone = "multi.test"
codes = [
  {{ bits = 4, symbol = "TEST_MULTI_AB", score = 1.5 }},
  {{ bits = 8, symbol = "TEST_MULTI_PH", score = 2.0 }},
]

[[dnswl]]
name = "TEST_WL"
zone = "wl.test"
checks = ["client"]
codes = [{{ code = "127.0.9.2", symbol = "TEST_WL_HI", score = -3.0 }}]
{extra}
"#
    )
}

fn engine(config: &str) -> Engine {
    let c = Config::parse(config, std::path::Path::new("test.toml"))
        .unwrap_or_else(|e| panic!("{e:?}"));
    Engine::with_rules(
        c,
        Arc::new(repmilter::signatures::ruleset::RuleSet::load(&[])),
    )
}

fn input(ip: &str, from: &str, raw: &str) -> ScanInput {
    ScanInput::new(
        Envelope {
            client_ip: Some(ip.parse().unwrap()),
            helo: "client.example".into(),
            from: from.into(),
            rcpts: vec!["bob@example.net".into()],
            ..Envelope::default()
        },
        Message::from_raw(raw.as_bytes(), 1 << 20),
    )
}

const PLAIN: &str = "From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n";

async fn judge(e: &Engine, ip: &str, from: &str, raw: &str) -> Verdict {
    e.judge(Arc::new(input(ip, from, raw))).await.0
}

fn score_of(v: &Verdict, name: &str) -> Option<f64> {
    v.symbols.iter().find(|s| s.name == name).map(|s| s.score)
}

fn test_symbols(v: &Verdict) -> Vec<String> {
    let mut names: Vec<String> = v
        .symbols
        .iter()
        .filter(|s| s.name.starts_with("TEST_"))
        .map(|s| s.name.clone())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn listings_return_codes_ipv6_bitmasks_domains_and_allowlists() {
    let Some(dns) = Rbldnsd::start(ZONES) else {
        return;
    };
    let e = engine(&lists(dns.port, "3s", ""));

    let v = judge(&e, "127.0.0.2", "a@example.org", PLAIN).await;
    assert_eq!(score_of(&v, "TEST_SBL"), Some(4.0), "{v:?}");
    assert_eq!(score_of(&v, "TEST_KEYED"), Some(2.0), "{v:?}");
    assert_eq!(score_of(&v, "TEST_WL_HI"), Some(-3.0), "{v:?}");
    assert_eq!(
        test_symbols(&v),
        ["TEST_KEYED", "TEST_SBL", "TEST_WL_HI"],
        "{v:?}"
    );
    // The query key is part of the query only: never in what repmilter writes.
    for s in &v.symbols {
        assert!(!s.detail.contains("key123"), "{s:?}");
    }
    let sbl = v.symbols.iter().find(|s| s.name == "TEST_SBL").unwrap();
    assert_eq!(sbl.detail, "127.0.0.2 listed in ip.test (127.0.0.2)");

    // A range code; an unmapped code counts with score 0.
    let v = judge(&e, "127.0.0.3", "a@example.org", PLAIN).await;
    assert_eq!(test_symbols(&v), ["TEST_XBL"], "{v:?}");
    assert_eq!(v.score, 3.0);
    let v = judge(&e, "127.0.0.5", "a@example.org", PLAIN).await;
    assert_eq!(test_symbols(&v), ["TEST_ZEN_UNKNOWN"], "{v:?}");
    assert_eq!(v.score, 0.0);

    // IPv6: 32 reversed nibbles.
    let v = judge(&e, "2001:db8:1::25", "a@example.org", PLAIN).await;
    assert_eq!(test_symbols(&v), ["TEST_SBL"], "{v:?}");
    let v = judge(&e, "2001:db8:2::25", "a@example.org", PLAIN).await;
    assert!(test_symbols(&v).is_empty(), "{v:?}");

    // Not listed anywhere.
    let v = judge(&e, "127.0.0.8", "a@example.org", PLAIN).await;
    assert!(test_symbols(&v).is_empty(), "{v:?}");
    assert_eq!(v.score, 0.0);

    // Domains: URLs (registered domains, bitmask codes), envelope sender, From.
    let raw = "From: Promo <deals@listed.example>\r\nSubject: deals\r\n\r\n\
               see http://www.spammy.example/a and https://x.y.phishy.example/login\r\n";
    let v = judge(&e, "127.0.0.8", "bounce@mail.listed.example", raw).await;
    assert_eq!(
        test_symbols(&v),
        ["TEST_DBL_SPAM", "TEST_MULTI_AB", "TEST_MULTI_PH"],
        "{v:?}"
    );
    assert_eq!(v.score, 2.5 + 1.5 + 2.0);
    // One code with both bits set gives both symbols.
    let raw = "From: a@example.org\r\nSubject: x\r\n\r\nhttp://both.example/\r\n";
    let v = judge(&e, "127.0.0.8", "a@example.org", raw).await;
    assert_eq!(
        test_symbols(&v),
        ["TEST_MULTI_AB", "TEST_MULTI_PH"],
        "{v:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn error_answers_are_never_listings() {
    let Some(dns) = Rbldnsd::start(ZONES) else {
        return;
    };
    let extra = "[[dnsbl]]\nname = \"TEST_REFUSING\"\nzone = \"blocked.test\"\nscore = 5.0\n";
    let e = engine(&lists(dns.port, "3s", extra));
    let v = judge(&e, "127.0.0.6", "a@example.org", PLAIN).await;
    assert_eq!(
        test_symbols(&v),
        ["TEST_REFUSING_BLOCKED", "TEST_ZEN_BLOCKED"],
        "{v:?}"
    );
    assert_eq!(v.score, 0.0, "{v:?}");
    let blocked = v
        .symbols
        .iter()
        .find(|s| s.name == "TEST_ZEN_BLOCKED")
        .unwrap();
    assert!(
        blocked.detail.contains("127.255.255.254") && blocked.detail.contains("public"),
        "{blocked:?}"
    );
    let lists = e.dns.as_ref().unwrap();
    assert_eq!(
        lists
            .stats
            .blocked
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_disable_a_zone_that_lists_everything_and_enable_it_again() {
    let Some(dns) = Rbldnsd::start(ZONES) else {
        return;
    };
    let extra = "\
[[dnsbl]]
name = \"TEST_ALL\"
zone = \"all.test\"
score = 5.0

[[dnsbl]]
name = \"TEST_REFUSING\"
zone = \"blocked.test\"

[[dnsbl]]
name = \"TEST_NOTHING\"
zone = \"not-served.test\"
";
    let e = engine(&lists(dns.port, "1s", extra));
    // Before any probe, the list-everything zone scores every client.
    let v = judge(&e, "127.0.0.8", "a@example.org", PLAIN).await;
    assert_eq!(score_of(&v, "TEST_ALL"), Some(5.0), "{v:?}");

    let lists = e.dns.as_ref().unwrap();
    lists.probe_all().await;
    assert_eq!(lists.enabled("TEST_ALL"), Some(false));
    // A zone rbldnsd does not serve answers nothing useful (REFUSED): disabled.
    assert_eq!(lists.enabled("TEST_NOTHING"), Some(false));
    // Healthy zones stay; so does one that answers with error codes (it is reachable and
    // its answers are already never counted).
    for name in [
        "TEST_ZEN",
        "TEST_DBL",
        "TEST_MULTI",
        "TEST_KEYED",
        "TEST_REFUSING",
    ] {
        assert_eq!(lists.enabled(name), Some(true), "{name}");
    }
    let v = judge(&e, "127.0.0.8", "a@example.org", PLAIN).await;
    assert!(score_of(&v, "TEST_ALL").is_none(), "{v:?}");
    assert_eq!(score_of(&v, "TEST_ALL_DISABLED"), Some(0.0), "{v:?}");
    assert_eq!(v.score, 0.0, "{v:?}");

    // The zone is fixed: the next probes enable it again.
    dns.rewrite(ALL_ZONE, "127.0.0.2\n");
    let start = Instant::now();
    while lists.enabled("TEST_ALL") != Some(true) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "TEST_ALL still disabled after its zone was fixed"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        lists.probe_all().await;
    }
    let v = judge(&e, "127.0.0.2", "a@example.org", PLAIN).await;
    assert_eq!(score_of(&v, "TEST_ALL"), Some(5.0), "{v:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_costs_the_budget_and_no_more() {
    // A UDP port that receives and never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let e = engine(&lists(port, "500ms", ""));
    let started = Instant::now();
    let v = judge(
        &e,
        "127.0.0.2",
        "a@listed.example",
        "From: a@listed.example\r\n\r\nhttp://spammy.example/\r\n",
    )
    .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(500 + 1500),
        "took {took:?} with a 500ms budget"
    );
    for name in [
        "TEST_ZEN_TIMEOUT",
        "TEST_KEYED_TIMEOUT",
        "TEST_DBL_TIMEOUT",
        "TEST_MULTI_TIMEOUT",
        "TEST_WL_TIMEOUT",
    ] {
        assert_eq!(score_of(&v, name), Some(0.0), "{name}: {v:?}");
    }
    assert_eq!(v.score, 0.0);
}

#[test]
fn a_silent_server_holds_no_blocking_thread() {
    // Three times as many messages at once as the daemon's runtime has blocking threads, all
    // waiting on a DNS server that never answers: each must still be judged within its DNS
    // budget (plus the scan), not after the messages ahead of it have waited theirs.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let messages = 3 * repmilter::daemon::MAX_BLOCKING_THREADS;
    let budget = Duration::from_secs(1);
    let rt = repmilter::daemon::runtime();
    rt.block_on(async {
        let e = Arc::new(engine(&lists(port, "1s", "")));
        let tasks: Vec<_> = (0..messages)
            .map(|i| {
                let e = e.clone();
                tokio::spawn(async move {
                    let started = Instant::now();
                    let from = format!("user{i}@listed.example");
                    let v = judge(&e, "127.0.0.2", &from, PLAIN).await;
                    (started.elapsed(), v)
                })
            })
            .collect();
        for t in tasks {
            let (took, v) = t.await.unwrap();
            assert!(score_of(&v, "TEST_ZEN_TIMEOUT").is_some(), "{v:?}");
            assert!(
                took < budget + Duration::from_millis(1500),
                "a message took {took:?} with a {budget:?} DNS budget"
            );
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_answers_a_repeated_lookup_without_a_query() {
    let Some(dns) = Rbldnsd::start(ZONES) else {
        return;
    };
    let e = engine(&lists(dns.port, "3s", ""));
    let lists = e.dns.as_ref().unwrap();
    let raw = "From: a@listed.example\r\n\r\nhttp://spammy.example/\r\n";
    let before = lists.queries();
    let first = judge(&e, "127.0.0.2", "a@listed.example", raw).await;
    let sent = lists.queries() - before;
    // ip.test, keyed.test and wl.test for the client; dom.test for listed.example (sender
    // and From share it) and the HELO's client.example; multi.test for spammy.example.
    assert_eq!(sent, 6, "{first:?}");
    let second = judge(&e, "127.0.0.2", "a@listed.example", raw).await;
    assert_eq!(lists.queries() - before, 6, "the repeat sent queries");
    assert_eq!(test_symbols(&first), test_symbols(&second));
    // Negative answers are cached too.
    let before = lists.queries();
    judge(&e, "127.0.0.8", "a@example.org", PLAIN).await;
    let sent = lists.queries() - before;
    assert!(sent > 0);
    judge(&e, "127.0.0.8", "a@example.org", PLAIN).await;
    assert_eq!(lists.queries() - before, sent);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_untrusted_received_hop_is_checked_behind_a_relay() {
    let Some(dns) = Rbldnsd::start(ZONES) else {
        return;
    };
    let trust = "[trust]\nnetworks = [\"127.0.0.1/32\"]\nnetworks_mode = \"scan\"\n";
    let e = engine(&lists(dns.port, "3s", trust));
    let raw = "Received: from relay (relay [127.0.0.1]) by mx\r\n\
               Received: from bad.example (bad.example [127.0.0.3]) by relay\r\n\
               Received: from older (older [127.0.0.2]) by bad.example\r\n\
               From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n";
    let v = judge(&e, "127.0.0.1", "a@example.org", raw).await;
    // 127.0.0.3 is where the mail entered; what it claims about 127.0.0.2 is not believed.
    assert_eq!(test_symbols(&v), ["TEST_XBL"], "{v:?}");
    let xbl = v.symbols.iter().find(|s| s.name == "TEST_XBL").unwrap();
    assert!(xbl.detail.starts_with("127.0.0.3 listed"), "{xbl:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_lookups_start_at_connect() {
    let Some(dns) = Rbldnsd::start(ZONES) else {
        return;
    };
    let e = Arc::new(engine(&lists(dns.port, "3s", "")));
    let lists = e.dns.clone().unwrap();
    let (_tx, engines) = tokio::sync::watch::channel(e);
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (s, peer) = listener.accept().await.unwrap();
        let _ = session::run(s, engines, stop, Peer::Inet(peer)).await;
    });
    let before = lists.queries();
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let client_addr = ConnectAddr::Inet {
        ip: "127.0.0.2".parse().unwrap(),
        port: 40000,
    };
    let (_client, r): (Client<_>, _) = Client::open(s, "client.example", client_addr)
        .await
        .unwrap();
    assert_eq!(r, vec![]);
    // No MAIL, no message yet: the three client-address lists are asked already.
    let start = Instant::now();
    while lists.queries() - before < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no lookup after CONNECT"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn check_ip_uses_the_dns_stage() {
    let Some(dns) = Rbldnsd::start(ZONES) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "repmilter.toml", &lists(dns.port, "3s", ""));
    let msg = write(dir.path(), "msg.eml", PLAIN);
    let out = repmilter()
        .args(["check", "--json", "--config"])
        .arg(&cfg)
        .args(["--ip", "127.0.0.3"])
        .arg(&msg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("\"TEST_XBL\""),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("TEST_SBL"), "{stdout}");
}

#[test]
fn the_daemon_probes_its_zones_and_says_so() {
    let Some(dns) = Rbldnsd::start(ZONES) else {
        return;
    };
    let extra = "[[dnsbl]]\nname = \"TEST_ALL\"\nzone = \"all.test\"\nscore = 5.0\n";
    let d = common::Daemon::start("", &lists(dns.port, "2s", extra));
    assert!(
        d.wait_log("DNS list disabled", Duration::from_secs(15)),
        "{}",
        d.log()
    );
    let line = d
        .log()
        .lines()
        .find(|l| l.contains("DNS list disabled"))
        .unwrap()
        .to_string();
    assert!(
        line.contains("TEST_ALL") && line.contains("lists everything") && line.contains("ERROR"),
        "{line}"
    );
    // Only that zone: the others pass their probes.
    assert_eq!(
        d.log().matches("DNS list disabled").count(),
        1,
        "{}",
        d.log()
    );
    // The key of TEST_KEYED was used in queries, and never written.
    assert!(!d.log().contains("key123"), "{}", d.log());
    dns.rewrite(ALL_ZONE, "127.0.0.2\n");
    assert!(
        d.wait_log("DNS list enabled again", Duration::from_secs(20)),
        "{}",
        d.log()
    );
}
