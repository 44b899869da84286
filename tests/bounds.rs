//! Regression tests for what a hostile peer or message could make the daemon spend: each
//! attack runs against the real daemon, and its cost is measured from outside (the daemon's
//! resident memory from /proc, connections closed or served).

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, ham};
use repmilter::milter::client::{Client, Transaction};
use repmilter::milter::codec::{self, Command, ConnectAddr, Reply, cmd};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ENV: Transaction<'static> = Transaction {
    from: "alice@example.org",
    rcpts: &["bob@example.net"],
    mail_macros: &[],
};

async fn client(d: &Daemon) -> Client<TcpStream> {
    let s = TcpStream::connect(d.addr()).await.unwrap();
    let addr = ConnectAddr::Inet {
        ip: "192.0.2.10".parse().unwrap(),
        port: 40000,
    };
    Client::open(s, "client.example", addr).await.unwrap().0
}

/// A memory figure of the daemon's, in KiB, from /proc/PID/status (`VmRSS:`, `VmHWM:`).
fn status_kib(d: &Daemon, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/PID/status"))
}

/// The daemon's resident memory in KiB.
fn rss_kib(d: &Daemon) -> u64 {
    status_kib(d, "VmRSS:")
}

/// Waits until the daemon closes `s`; returns how long that took, or None if it stayed open
/// for `limit`. Anything the daemon sends before closing is read and ignored.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    let done = tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    done.ok().map(|_| start.elapsed())
}

fn optneg_frame() -> Vec<u8> {
    let mut out = Vec::new();
    Command::Optneg(repmilter::milter::client::POSTFIX_OFFER).encode(&mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_trickling_peers_are_closed_while_real_mail_is_scored() {
    let d = Daemon::start(
        "max_connections = 12\nhandshake_timeout = \"1s\"\nidle_timeout = \"2s\"",
        "",
    );
    // Eight peers that connect and never say a word.
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(TcpStream::connect(d.addr()).await.unwrap());
    }
    // Three that negotiate, then trickle one byte of a frame every 300 ms, forever: each
    // byte is progress, but no command ever completes.
    let mut tricklers = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(d.addr()).await.unwrap();
        s.write_all(&optneg_frame()).await.unwrap();
        let mut reply = [0u8; 4];
        s.read_exact(&mut reply).await.unwrap();
        tricklers.push(tokio::spawn(async move {
            let start = Instant::now();
            let frame = {
                let mut f = Vec::new();
                Command::Helo("x".repeat(200)).encode(&mut f);
                f
            };
            for b in frame {
                if s.write_all(&[b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            closed_within(&mut s, Duration::from_secs(30)).await;
            start.elapsed()
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The twelfth slot serves real mail at once.
    let mut real = client(&d).await;
    let r = real.message(&ENV, ham().as_bytes()).await.unwrap();
    assert_eq!(r.last(), Some(&Reply::Accept));

    // A thirteenth connection is closed at once, not left waiting in the backlog.
    let mut extra = TcpStream::connect(d.addr()).await.unwrap();
    extra.write_all(&optneg_frame()).await.unwrap();
    let took = closed_within(&mut extra, Duration::from_secs(10)).await;
    assert!(took.is_some(), "a connection past the limit stayed open");
    assert!(
        d.wait_log("connection limit reached", Duration::from_secs(5)),
        "{}",
        d.log()
    );

    // The silent peers are closed after the handshake timeout.
    for s in &mut silent {
        assert!(
            closed_within(s, Duration::from_secs(10)).await.is_some(),
            "a silent peer stayed connected"
        );
    }
    // The tricklers after the idle timeout, though each sent a byte every 300 ms.
    for t in tricklers {
        let held = t.await.unwrap();
        assert!(
            held < Duration::from_secs(25),
            "a trickling peer was held for {held:?}"
        );
    }
    assert!(d.log().contains("no negotiation within 1s"), "{}", d.log());
    assert!(
        d.log().contains("no complete command within 2s"),
        "{}",
        d.log()
    );

    // The slots are free again: new sessions are served, the open one too.
    let mut fresh = client(&d).await;
    let r = fresh.message(&ENV, ham().as_bytes()).await.unwrap();
    assert_eq!(r.last(), Some(&Reply::Accept));
}

/// Sends one frame of the given code and payload.
async fn send_frame(s: &mut Client<TcpStream>, code: u8, data: &[u8]) {
    let mut frame = Vec::new();
    codec::write_frame(code, data, &mut frame);
    s.send_raw(&frame).await.unwrap();
}

/// Whether the daemon closes the connection (rather than waiting for more, as after a MACRO
/// it accepted).
async fn refused(c: &mut Client<TcpStream>) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(10), c.recv()).await,
        Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn macro_floods_cost_no_memory() {
    let d = Daemon::start("", "");
    let before = rss_kib(&d);
    // Sixteen connections each send 8 frames of 1 MiB for every macro stage, each frame as
    // many pairs as it may carry, with long values: names the session reads and others.
    let value = "v".repeat(8000);
    let mut flooders = Vec::new();
    for _ in 0..16 {
        let mut c = client(&d).await;
        let value = value.clone();
        flooders.push(tokio::spawn(async move {
            let mut data = Vec::new();
            for stage in codec::MACRO_STAGES {
                data.clear();
                data.push(stage);
                for i in 0..128 {
                    let name = if i % 2 == 0 {
                        "{auth_authen}".to_string()
                    } else {
                        format!("{{m{i}}}")
                    };
                    data.extend_from_slice(name.as_bytes());
                    data.push(0);
                    data.extend_from_slice(value.as_bytes());
                    data.push(0);
                }
                for _ in 0..8 {
                    send_frame(&mut c, cmd::MACRO, &data).await;
                }
            }
            c
        }));
    }
    // The sessions are still usable, and the flood did not stay in memory (kept whole, the
    // last frame of each stage would be 10 MiB per connection).
    for f in flooders {
        let mut c = f.await.unwrap();
        let r = c.message(&ENV, ham().as_bytes()).await.unwrap();
        assert_eq!(r.last(), Some(&Reply::Accept));
    }
    let grown = rss_kib(&d).saturating_sub(before);
    eprintln!("macro flood: RSS grew by {grown} KiB");
    assert!(grown < 32 * 1024, "RSS grew by {grown} KiB");
    let mut c = client(&d).await;

    // One frame of a quarter of a million tiny macros is refused: only that connection ends.
    let mut bad = client(&d).await;
    let mut tiny = vec![cmd::CONNECT];
    tiny.extend(b"a\0b\0".repeat(250_000));
    send_frame(&mut bad, cmd::MACRO, &tiny).await;
    assert!(refused(&mut bad).await);
    assert!(
        d.wait_log("MACRO frame: more than 128 macros", Duration::from_secs(5)),
        "{}",
        d.log()
    );
    // A stage that does not exist is refused too.
    let mut bad = client(&d).await;
    send_frame(&mut bad, cmd::MACRO, b"Qj\0x\0").await;
    assert!(refused(&mut bad).await);
    let r = c.message(&ENV, ham().as_bytes()).await.unwrap();
    assert_eq!(r.last(), Some(&Reply::Accept));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipient_floods_cost_bounded_memory() {
    let d = Daemon::start("", "");
    let mut c = client(&d).await;
    let before = rss_kib(&d);
    c.command(&Command::Mail {
        sender: format!("<{}@example.org>", "s".repeat(500_000)),
        args: vec![],
    })
    .await
    .unwrap();
    // 300 recipients of 1 MiB each would have been 300 MiB kept, and cloned at the end.
    let long = format!("<{}@example.net>", "r".repeat(1_000_000));
    for _ in 0..300 {
        c.command(&Command::Rcpt {
            recipient: long.clone(),
            args: vec![],
        })
        .await
        .unwrap();
    }
    for i in 0..5000 {
        c.command(&Command::Rcpt {
            recipient: format!("<user{i}@example.net>"),
            args: vec![],
        })
        .await
        .unwrap();
    }
    for (name, value) in [("From", "a@example.org"), ("Subject", "hello")] {
        c.command(&Command::Header {
            name: name.into(),
            value: value.into(),
        })
        .await
        .unwrap();
    }
    c.command(&Command::Body(b"hello\r\n".to_vec()))
        .await
        .unwrap();
    let r = c.command(&Command::EndOfBody(Vec::new())).await.unwrap();
    assert_eq!(r.last(), Some(&Reply::Accept), "{r:?}");
    let grown = rss_kib(&d).saturating_sub(before);
    eprintln!("recipient flood: RSS grew by {grown} KiB");
    assert!(grown < 16 * 1024, "RSS grew by {grown} KiB");
    // The log line carries the sender cut to its bound.
    assert!(d.wait_log("message scored", Duration::from_secs(5)));
    let line = d
        .log()
        .lines()
        .find(|l| l.contains("message scored"))
        .unwrap()
        .to_string();
    assert!(line.len() < 2000, "{} bytes", line.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_of_half_a_million_headers_is_scanned_within_its_size() {
    let d = Daemon::start("", "");
    let mut c = client(&d).await;
    let before = rss_kib(&d);
    let mut raw = String::with_capacity(10 << 20);
    for i in 0..500_000 {
        raw.push_str(&format!("X-H{i}: v\r\n"));
    }
    raw.push_str("Subject: hi\r\n\r\nbody\r\n");
    assert!(raw.len() > 5 << 20);
    let r = c.message(&ENV, raw.as_bytes()).await.unwrap();
    assert_eq!(r.last(), Some(&Reply::Accept), "{r:?}");
    let status = r
        .iter()
        .find_map(|r| match r {
            Reply::AddHeader { name, value } if name == "X-Spam-Status" => {
                Some(String::from_utf8_lossy(value).into_owned())
            }
            _ => None,
        })
        .unwrap();
    assert!(status.contains("TOO_MANY_HEADERS"), "{status}");
    // The old cost was 20 times the message's size (~200 MB); the kept part is bounded by
    // MAX_HEADERS, and the scan's structures by the kept part.
    let grown = rss_kib(&d).saturating_sub(before);
    eprintln!("half a million headers: RSS grew by {grown} KiB");
    assert!(grown < 24 * 1024, "RSS grew by {grown} KiB");
}

#[tokio::test]
async fn more_forged_spam_headers_than_can_be_removed_are_refused() {
    let d = Daemon::start("", "");
    let mut c = client(&d).await;
    let forged = |n: usize| {
        let mut m = "X-Spam-Status: No, score=-100\r\n".repeat(n);
        m.push_str("Subject: hi\r\n\r\nhello\r\n");
        m
    };
    // At the bound: every one is removed, from the last down.
    let r = c.message(&ENV, forged(1000).as_bytes()).await.unwrap();
    let deletions = r
        .iter()
        .filter(|r| matches!(r, Reply::ChgHeader { value, .. } if value.is_empty()))
        .count();
    assert_eq!(deletions, 1000);
    assert_eq!(r.last(), Some(&Reply::Accept));
    // One more, and none would be trustworthy: refused without a scan.
    let r = c.message(&ENV, forged(1001).as_bytes()).await.unwrap();
    assert_eq!(
        r,
        vec![Reply::ReplyCode(
            "550 5.7.1 Message has too many X-Spam headers".into()
        )]
    );
    assert!(
        d.wait_log("TOO_MANY_SPAM_HEADERS", Duration::from_secs(5)),
        "{}",
        d.log()
    );
}

/// CPU seconds the daemon has used (user + system), from /proc/PID/stat.
fn cpu_seconds(d: &Daemon) -> f64 {
    repmilter::loadgen::process_cpu(d.child.id())
        .expect("the daemon's /proc entry")
        .as_secs_f64()
}

/// Writes the daemon's rule file and waits until it has compiled that version.
fn write_rules(d: &Daemon, text: &str) {
    let compiled = || d.log().matches("engine in use").count();
    let before = compiled();
    std::fs::write(d.dir.path().join("rules/local.cf"), text).unwrap();
    let start = Instant::now();
    while compiled() == before {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "rules not reloaded:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_look_around_bomb_ends_by_the_deadline_and_stops_using_the_cpu() {
    let d = Daemon::start(
        "message_timeout = \"1s\"",
        "[rules]\npaths = [\"$DIR/rules\"]\n",
    );
    // An exponential look-ahead that PCRE2 cannot rule out early (a `b` is near, but behind
    // an `x`): every zone of the text uses up its step budget. Four hundred such rules pass
    // the deadline together; one rule matters.
    let bomb = r"/(?=(a|aa)+b)a/";
    let mut rules: String = (0..400)
        .map(|i| format!("body BOMB{i} {bomb}\nscore BOMB{i} 0.01\n"))
        .collect();
    rules.push_str("body ZORG /zorglub/\nscore ZORG 20\n");
    write_rules(&d, &rules);
    let mut c = client(&d).await;
    let msg = format!(
        "Subject: x\r\n\r\nzorglub {}\r\n",
        format!("{}xb ", "a".repeat(60)).repeat(5_000)
    );
    cut_at_the_deadline(&d, &mut c, &msg, "bomb").await;

    // One such rule alone is cut by its step budget zone by zone; the other rules count.
    write_rules(
        &d,
        &format!("body BOMB {bomb}\nscore BOMB 0.1\nbody ZORG /zorglub/\nscore ZORG 20\n"),
    );
    let r = c.message(&ENV, msg.as_bytes()).await.unwrap();
    assert!(
        matches!(r.last(), Some(Reply::ReplyCode(t)) if t.starts_with("550")),
        "{r:?}"
    );
    assert!(
        d.wait_log("RULE_STEP_LIMIT", Duration::from_secs(5)),
        "{}",
        d.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn padding_does_not_switch_backtracking_rules_off() {
    let d = Daemon::start("", "[rules]\npaths = [\"$DIR/rules\"]\n");
    write_rules(
        &d,
        "rawbody AB /a(?=b)/\nscore AB 10\nrawbody ZORG /zorg(?!x)lub/\nscore ZORG 10\n",
    );
    let mut c = client(&d).await;
    // 150 KB of padding before the words the rules look for: each used to spend the whole
    // backtracking step budget of its one search, and count as not matching. (Rawbody
    // rules: body rules see only the first 50,000 bytes of a part, as in SpamAssassin.)
    let msg = format!(
        "Subject: x\r\n\r\n{}\r\nab zorglub\r\n",
        "xyz zorgx ".repeat(15_000)
    );
    let r = c.message(&ENV, msg.as_bytes()).await.unwrap();
    assert!(
        matches!(r.last(), Some(Reply::ReplyCode(t)) if t.starts_with("550")),
        "{r:?}\n{}",
        d.log()
    );
    assert!(!d.log().contains("RULE_STEP_LIMIT"), "{}", d.log());
}

/// The daemon's peak resident memory (VmHWM) in KiB.
/// Base64 in 76-character lines, as mail carries it.
fn base64_lines(bytes: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
    text.as_bytes()
        .chunks(76)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn peak_kib(d: &Daemon) -> u64 {
    status_kib(d, "VmHWM:")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_structures_cost_a_bounded_multiple_of_the_message() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/rules");
    let d = Daemon::start("", &format!("[rules]\npaths = [\"{shipped}\"]\n"));
    let mut c = client(&d).await;
    // Warm up: the first message builds the rule set's caches.
    let r = c.message(&ENV, ham().as_bytes()).await.unwrap();
    assert_eq!(r.last(), Some(&Reply::Accept));
    let empty_parts = format!(
        "Subject: y\nContent-Type: multipart/mixed; boundary=b\n\n{}",
        "--b\n\n".repeat(600_000)
    );
    let attacks: [(&str, String); 6] = [
        // 50,000 nested messages: the parser's structure overflowed the stack when dropped,
        // killing the daemon and every session with it.
        (
            "nested messages",
            "Content-Type: message/rfc822\n\n".repeat(50_000),
        ),
        // 600,000 empty parts: the parser built every one.
        (
            "empty parts",
            format!(
                "Content-Type: multipart/mixed; boundary=x\r\n\r\n{}",
                "--x\n\n".repeat(600_000)
            ),
        ),
        // The same, base64-encoded as an attached message (RFC 2046 forbids it): the parser
        // decoded it and built every part, past the cut that bounds the text it is given.
        (
            "encoded empty parts",
            format!(
                "Subject: x\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
                base64_lines(empty_parts.as_bytes())
            ),
        ),
        // And in a digest, where a part without a type is a message.
        (
            "encoded digest parts",
            format!(
                "Subject: x\r\nContent-Type: multipart/digest; boundary=d\r\n\r\n--d\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--d--\r\n",
                base64_lines(empty_parts.as_bytes())
            ),
        ),
        // One word a few shipped rules share, a million times: every overlapping hit of
        // every copy of the literal was collected and sorted.
        (
            "a repeated literal",
            format!("Subject: hi\r\n\r\n{}", "name".repeat(1_000_000)),
        ),
        // Twenty headers whose names are a megabyte each: kept three times over, and
        // repeated in a deletion each.
        (
            "megabyte header names",
            (0..20)
                .map(|i| format!("X-Spam-{i}{}: v\r\n", "n".repeat(1_000_000)))
                .collect::<String>()
                + "Subject: hi\r\n\r\nbody\r\n",
        ),
    ];
    for (what, msg) in attacks {
        let before = peak_kib(&d);
        let r = c.message(&ENV, msg.as_bytes()).await.unwrap();
        assert!(
            matches!(r.last(), Some(Reply::Accept | Reply::ReplyCode(_))),
            "{what}: {r:?}"
        );
        let grown = peak_kib(&d).saturating_sub(before);
        eprintln!("{what}: {} bytes, peak RSS grew by {grown} KiB", msg.len());
        // The message itself is held twice (kept, and the copy the parser reads) and its
        // decoded text once or twice more: a few times its size, not tens.
        assert!(
            grown < 8 * msg.len() as u64 / 1024,
            "{what}: peak RSS grew by {grown} KiB for a message of {} bytes",
            msg.len()
        );
        assert!(
            !r.iter()
                .any(|r| matches!(r, Reply::ChgHeader { name, .. } if name.len() > 998))
        );
    }
    // Still serving.
    let r = c.message(&ENV, ham().as_bytes()).await.unwrap();
    assert_eq!(r.last(), Some(&Reply::Accept));
    // The log arrives through a pipe and a reader thread, behind the replies.
    assert!(
        d.wait_log("HEADER_NAME_TOO_LONG", Duration::from_secs(30)),
        "{}",
        d.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_linear_rule_on_a_long_body_stops_at_the_deadline() {
    let d = Daemon::start(
        "message_timeout = \"3s\"",
        "[rules]\npaths = [\"$DIR/rules\"]\n",
    );
    // Rawbody rules (body rules see only the first 50,000 bytes of a part, as in
    // SpamAssassin). No literal to prefilter on, so these run on the whole text; on text that does not
    // repeat, `.{300}` between common classes blows the lazy DFA's cache and the search
    // falls back to the PikeVM: each is tens of seconds on this body. Each rule stops at its
    // own time limit (RULE_TIME_LIMIT, 100 ms), and forty of them together (4 s of limits)
    // pass the 3 s deadline on any machine: twenty (2 s) passed it only on a slow one, where
    // each search overran its limit by half.
    let rules: String = (1..=40)
        .map(|i| {
            format!(
                "rawbody SLOW{i} /[a-z].{{300}}[a-z]\\s\\d\\s[a-z]{{{}}}/\nscore SLOW{i} 1\n",
                8 + i
            )
        })
        .collect();
    write_rules(&d, &rules);
    let mut c = client(&d).await;
    let words = [
        "éléphant",
        "rôti",
        "à",
        "côté",
        "the",
        "quick",
        "fox",
        "1",
        "22",
        "x",
    ];
    let mut seed = 1u64;
    let text: Vec<&str> = (0..400_000)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            words[(seed >> 33) as usize % words.len()]
        })
        .collect();
    let msg = format!(
        "Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n",
        text.join(" ")
    );
    cut_at_the_deadline(&d, &mut c, &msg, "slow rules").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literals_occurring_everywhere_stop_at_the_deadline() {
    let d = Daemon::start(
        "message_timeout = \"2s\"",
        "[rules]\npaths = [\"$DIR/rules\"]\n",
    );
    // A hostile rule file: literals of 3 to 70 `a`s, in a message of lines of `a`. Each
    // occurs at nearly every position: about 2,700 occurrences a line, 140 million in
    // 4 MB, each one looked up and tallied. Their comparisons are bounded, their number is
    // not: the literal pass must look at the clock as the regexes do.
    let rules: String = (3..=70)
        .map(|n| format!("rawbody AS{n} /{}/\nscore AS{n} 0.01\n", "a".repeat(n)))
        .collect();
    write_rules(&d, &rules);
    let mut c = client(&d).await;
    let msg = format!(
        "Subject: x\r\n\r\n{}",
        format!("{}\r\n", "a".repeat(76)).repeat(52_000)
    );
    cut_at_the_deadline(&d, &mut c, &msg, "literals everywhere").await;
}

/// Sends a message the daemon's rules cannot finish by the deadline: it must be judged
/// without them (fail open) at the deadline, not minutes later, and no scan thread may go on
/// computing after the verdict.
async fn cut_at_the_deadline(d: &Daemon, c: &mut Client<TcpStream>, msg: &str, what: &str) {
    let start = Instant::now();
    let r = c.message(&ENV, msg.as_bytes()).await.unwrap();
    let took = start.elapsed();
    let cpu_at_reply = cpu_seconds(d);
    assert_eq!(r.last(), Some(&Reply::Accept), "{what}: {r:?}");
    assert!(took < Duration::from_secs(10), "{what}: took {took:?}");
    // The rules really were too slow for the deadline: the scan gave up.
    assert!(
        d.wait_log("SIGNATURES_TIMEOUT", Duration::from_secs(5)),
        "{}",
        d.log()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let burnt = cpu_seconds(d) - cpu_at_reply;
    eprintln!("{what}: verdict after {took:?}, {burnt:.2} s of CPU in the 2 s after it");
    assert!(
        burnt < 0.5,
        "{what}: {burnt:.2} s of CPU used after the verdict"
    );
}
