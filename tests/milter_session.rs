//! The daemon on a loopback port, driven by the in-crate milter client as Postfix would.

mod common;

use std::time::Duration;

use common::{Daemon, GTUBE, filler, gtube_mail, ham};
use repmilter::milter::client::{Client, POSTFIX_OFFER, Transaction};
use repmilter::milter::codec::{Command, ConnectAddr, Optneg, Reply, action, proto};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

async fn client(d: &Daemon) -> Client<TcpStream> {
    let s = TcpStream::connect(d.addr()).await.unwrap();
    let addr = ConnectAddr::Inet {
        ip: "192.0.2.10".parse().unwrap(),
        port: 40000,
    };
    let (c, r) = Client::open(s, "client.example", addr).await.unwrap();
    // CONNECT is negotiated without a reply: nothing is accepted there unscanned.
    assert_eq!(r, vec![]);
    c
}

const ENV: Transaction<'static> = Transaction {
    from: "alice@example.org",
    rcpts: &["bob@example.net"],
    mail_macros: &[],
};

fn added<'a>(replies: &'a [Reply], name: &str) -> Option<&'a str> {
    replies.iter().find_map(|r| match r {
        Reply::AddHeader { name: n, value } if n == name => std::str::from_utf8(value).ok(),
        _ => None,
    })
}

#[tokio::test]
async fn gtube_is_rejected_and_ham_accepted_with_status_headers() {
    let d = Daemon::start("", "");
    let mut c = client(&d).await;
    let n = c.negotiated();
    // The filter asked for what it needs and no more.
    assert!(n.can(action::ADDHDRS | action::CHGHDRS | action::QUARANTINE | action::SETSYMLIST));
    assert!(!n.can(action::CHGBODY) && !n.can(action::ADDRCPT));
    assert!(n.has(proto::NODATA | proto::NOUNKNOWN | proto::NR_HDR | proto::SKIP));

    let r = c.message(&ENV, gtube_mail().as_bytes()).await.unwrap();
    assert_eq!(
        r,
        vec![Reply::ReplyCode(
            "550 5.7.1 Message rejected as spam".into()
        )]
    );

    let r = c.message(&ENV, ham().as_bytes()).await.unwrap();
    assert_eq!(r.last(), Some(&Reply::Accept));
    let status = added(&r, "X-Spam-Status").expect("X-Spam-Status added");
    assert!(status.starts_with("No, score=0.0 required=5.0"), "{status}");
    assert_eq!(added(&r, "X-Spam-Flag"), None);
    assert_eq!(added(&r, "X-Spam-Score"), Some("0.0"));
    c.quit().await.unwrap();
    assert!(
        d.wait_log("message scored", Duration::from_secs(5)),
        "{}",
        d.log()
    );
    let log = d.log();
    assert!(
        log.contains("action=reject") && log.contains("GTUBE(1000.0)"),
        "{log}"
    );
}

#[tokio::test]
async fn forged_spam_headers_are_removed_from_the_last_down() {
    let d = Daemon::start("", "");
    let mut c = client(&d).await;
    let msg = "X-Spam-Flag: NO\r\nSubject: hi\r\nX-Spam-Status: No, score=-100\r\nx-spam-flag: NO\r\nX-Spam-Flag: NO\r\nX-Spammer: not ours\r\n\r\nhello\r\n";
    let r = c.message(&ENV, msg.as_bytes()).await.unwrap();
    let changes: Vec<(u32, &str, usize)> = r
        .iter()
        .filter_map(|r| match r {
            Reply::ChgHeader { index, name, value } => Some((*index, name.as_str(), value.len())),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            (3, "X-Spam-Flag", 0),
            (2, "X-Spam-Flag", 0),
            (1, "X-Spam-Flag", 0),
            (1, "X-Spam-Status", 0)
        ]
    );
    // Removal comes before our own headers are added.
    let first_add = r
        .iter()
        .position(|r| matches!(r, Reply::AddHeader { .. }))
        .unwrap();
    let last_chg = r
        .iter()
        .rposition(|r| matches!(r, Reply::ChgHeader { .. }))
        .unwrap();
    assert!(last_chg < first_add);
}

#[tokio::test]
async fn spam_gets_flag_report_and_subject_prefix() {
    // Make GTUBE worth 9 points: above rewrite_subject (8), below reject (15).
    let d = Daemon::start("", "[scores]\nGTUBE = 9.0\n");
    let mut c = client(&d).await;
    let r = c.message(&ENV, gtube_mail().as_bytes()).await.unwrap();
    assert_eq!(r.last(), Some(&Reply::Accept));
    assert_eq!(added(&r, "X-Spam-Flag"), Some("YES"));
    assert_eq!(added(&r, "X-Spam-Level"), Some("*********"));
    assert!(added(&r, "X-Spam-Report").unwrap().contains("GTUBE"));
    assert!(r.contains(&Reply::ChgHeader {
        index: 1,
        name: "Subject".into(),
        value: b"[SPAM] test".to_vec()
    }));
}

#[tokio::test]
async fn quarantine_soft_reject_and_discard() {
    for (actions, want) in [
        ("quarantine = 5.0", "quarantine"),
        (
            "soft_reject = 5.0",
            "451 4.7.1 Message deferred, try again later",
        ),
        ("discard = 5.0", "discard"),
    ] {
        let d = Daemon::start("", &format!("[actions]\n{actions}\n"));
        let mut c = client(&d).await;
        let r = c.message(&ENV, gtube_mail().as_bytes()).await.unwrap();
        match want {
            "quarantine" => {
                assert!(
                    r.contains(&Reply::Quarantine("held as spam by repmilter".into())),
                    "{r:?}"
                );
                assert_eq!(r.last(), Some(&Reply::Accept));
            }
            "discard" => assert_eq!(r, vec![Reply::Discard]),
            text => assert_eq!(r, vec![Reply::ReplyCode(text.into())]),
        }
        // Ham passes every time.
        let r = c.message(&ENV, ham().as_bytes()).await.unwrap();
        assert_eq!(r.last(), Some(&Reply::Accept));
    }
}

#[tokio::test]
async fn several_messages_per_connection_with_abort_in_between() {
    let d = Daemon::start("", "");
    let mut c = client(&d).await;
    for i in 0..5 {
        let r = c.message(&ENV, gtube_mail().as_bytes()).await.unwrap();
        assert!(
            matches!(r.last(), Some(Reply::ReplyCode(_))),
            "message {i}: {r:?}"
        );
        // A transaction that the client abandons after the headers (RSET).
        c.command(&Command::Mail {
            sender: "<x@example.org>".into(),
            args: vec![],
        })
        .await
        .unwrap();
        c.command(&Command::Header {
            name: "Subject".into(),
            value: GTUBE.as_bytes().to_vec(),
        })
        .await
        .unwrap();
        c.abort().await.unwrap();
        let r = c.message(&ENV, ham().as_bytes()).await.unwrap();
        assert_eq!(r.last(), Some(&Reply::Accept), "message {i}: {r:?}");
    }
    // QUIT_NC: the connection carries a new SMTP session.
    c.send(&Command::QuitNc).await.unwrap();
    let r = c
        .connect(
            "other.example",
            ConnectAddr::Inet {
                ip: "2001:db8::7".parse().unwrap(),
                port: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(r, vec![], "CONNECT is not answered");
    let r = c.message(&ENV, gtube_mail().as_bytes()).await.unwrap();
    assert!(matches!(r.last(), Some(Reply::ReplyCode(_))));
}

#[tokio::test]
async fn oversized_messages_are_skipped_past_the_limit_and_flagged() {
    let d = Daemon::start("max_message_size = 100000", "[actions]\nreject = 15\n");
    let mut c = client(&d).await;
    // GTUBE at the start of a 300 kB body: found, and the rest is skipped.
    let msg = format!("Subject: big\r\n\r\n{GTUBE}\r\n{}", filler(300_000));
    let r = c.message(&ENV, msg.as_bytes()).await.unwrap();
    assert!(matches!(r.last(), Some(Reply::ReplyCode(_))), "{r:?}");
    // GTUBE past the limit is not seen; the headers say the scan was partial.
    let msg = format!("Subject: big\r\n\r\n{}{GTUBE}\r\n", filler(300_000));
    let r = c.message(&ENV, msg.as_bytes()).await.unwrap();
    assert_eq!(r.last(), Some(&Reply::Accept));
    assert!(
        added(&r, "X-Spam-Status")
            .unwrap()
            .contains("MESSAGE_TRUNCATED"),
        "{r:?}"
    );
}

#[tokio::test]
async fn trusted_networks_and_authenticated_senders_can_be_skipped() {
    let d = Daemon::start(
        "",
        "[trust]\nnetworks = [\"192.0.2.0/24\"]\nnetworks_mode = \"skip\"\nauthenticated_mode = \"skip\"\n",
    );
    // A trusted client is accepted at CONNECT.
    let s = TcpStream::connect(d.addr()).await.unwrap();
    let mut c = Client::new(s);
    c.negotiate(POSTFIX_OFFER).await.unwrap();
    let r = c
        .connect(
            "trusted.example",
            ConnectAddr::Inet {
                ip: "192.0.2.99".parse().unwrap(),
                port: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(r, vec![Reply::Accept]);

    // An authenticated sender from elsewhere is accepted at MAIL, even with GTUBE.
    let s = TcpStream::connect(d.addr()).await.unwrap();
    let addr = ConnectAddr::Inet {
        ip: "198.51.100.1".parse().unwrap(),
        port: 1,
    };
    let (mut c, _) = Client::open(s, "other.example", addr).await.unwrap();
    let env = Transaction {
        mail_macros: &[("{auth_authen}", "alice"), ("{auth_type}", "PLAIN")],
        ..ENV
    };
    let r = c.message(&env, gtube_mail().as_bytes()).await.unwrap();
    assert_eq!(r, vec![Reply::Accept]);
    // The next message, without authentication, is scanned again.
    let r = c.message(&ENV, gtube_mail().as_bytes()).await.unwrap();
    assert!(matches!(r.last(), Some(Reply::ReplyCode(_))), "{r:?}");
}

#[tokio::test]
async fn authenticated_senders_scanned_get_their_score() {
    let d = Daemon::start(
        "",
        "[trust]\nauthenticated_mode = \"scan\"\nauthenticated_score = -2.5\n",
    );
    let mut c = client(&d).await;
    let env = Transaction {
        mail_macros: &[("{auth_authen}", "alice")],
        ..ENV
    };
    let r = c.message(&env, ham().as_bytes()).await.unwrap();
    assert_eq!(added(&r, "X-Spam-Score"), Some("-2.5"));
    assert!(
        added(&r, "X-Spam-Status")
            .unwrap()
            .contains("AUTHENTICATED")
    );
}

#[tokio::test]
async fn a_version_2_mta_without_skip_or_no_reply_flags() {
    let d = Daemon::start("max_message_size = 70000", "");
    let s = TcpStream::connect(d.addr()).await.unwrap();
    let mut c = Client::new(s);
    let reply = c
        .negotiate(Optneg {
            version: 2,
            actions: action::ADDHDRS | action::CHGHDRS,
            protocol: 0x7f,
        })
        .await
        .unwrap();
    assert!(
        matches!(reply, Reply::Optneg { negotiated: Optneg { version: 2, protocol: 0, .. }, ref macros } if macros.is_empty())
    );
    c.connect("h", ConnectAddr::Unknown).await.unwrap();
    // Every step is answered; the big body is never skipped.
    let msg = format!("Subject: x\r\n\r\n{}", filler(200_000));
    let r = c.message(&ENV, msg.as_bytes()).await.unwrap();
    assert_eq!(r.last(), Some(&Reply::Accept));
    assert!(!r.contains(&Reply::Skip));
    let r = c.message(&ENV, gtube_mail().as_bytes()).await.unwrap();
    assert!(matches!(r.last(), Some(Reply::ReplyCode(_))));
}

/// Reads until the daemon closes the connection; fails if it answers with anything.
async fn expect_closed(mut s: TcpStream) {
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("daemon closes a bad connection promptly")
        .unwrap_or(0);
    assert_eq!(
        n,
        0,
        "daemon should close without replying, got {:?}",
        &buf[..n]
    );
}

#[tokio::test]
async fn hostile_input_closes_only_that_connection() {
    let d = Daemon::start("", "");
    // A healthy session stays open across all the attacks.
    let mut healthy = client(&d).await;

    // A length field of 2^31-1.
    let mut s = TcpStream::connect(d.addr()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, &[0x7f, 0xff, 0xff, 0xff, b'O'])
        .await
        .unwrap();
    expect_closed(s).await;

    // An HTTP request.
    let mut s = TcpStream::connect(d.addr()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, b"GET / HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    expect_closed(s).await;

    // Random bytes from a fixed seed.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..20 {
        let bytes: Vec<u8> = (0..512)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut s = TcpStream::connect(d.addr()).await.unwrap();
        let _ = tokio::io::AsyncWriteExt::write_all(&mut s, &bytes).await;
        let mut buf = [0u8; 1024];
        // Garbage may happen to parse as a few frames; the daemon must end it either way.
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "connection with garbage stayed open");
    }

    // A frame cut off mid-way, then the client goes away.
    let mut s = TcpStream::connect(d.addr()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, &[0, 0, 0, 13, b'O', 0, 0, 0, 6])
        .await
        .unwrap();
    drop(s);

    // Commands out of order: MAIL before negotiation, BODY before MAIL.
    let s = TcpStream::connect(d.addr()).await.unwrap();
    let mut c = Client::new(s);
    c.send(&Command::Mail {
        sender: "<a@b>".into(),
        args: vec![],
    })
    .await
    .unwrap();
    assert!(c.recv().await.is_err());
    let mut c = client(&d).await;
    c.send(&Command::Body(b"x".to_vec())).await.unwrap();
    assert!(c.recv().await.is_err());

    // A header name with invalid UTF-8 right where "X-Spam-" would end.
    let mut c = client(&d).await;
    c.command(&Command::Mail {
        sender: "<a@b>".into(),
        args: vec![],
    })
    .await
    .unwrap();
    let mut frame = Vec::new();
    repmilter::milter::codec::write_frame(b'L', b"X-Spam\xff\xff-x\0value\0", &mut frame);
    c.send_raw(&frame).await.unwrap();
    let r = c.command(&Command::EndOfBody(vec![])).await.unwrap();
    assert_eq!(r.last(), Some(&Reply::Accept));

    // The healthy session and new ones still work.
    let r = healthy
        .message(&ENV, gtube_mail().as_bytes())
        .await
        .unwrap();
    assert!(matches!(r.last(), Some(Reply::ReplyCode(_))));
    let mut fresh = client(&d).await;
    let r = fresh.message(&ENV, ham().as_bytes()).await.unwrap();
    assert_eq!(r.last(), Some(&Reply::Accept));
    assert!(d.wait_log("closing milter connection", Duration::from_secs(5)));
    assert!(
        d.log().contains("exceeds the limit of 1048576 bytes"),
        "{}",
        d.log()
    );
}

#[tokio::test]
async fn unix_socket_with_configured_mode() {
    let d = Daemon::start_listening("unix:$DIR/milter.sock", "socket_mode = \"0600\"", "");
    let path = d.dir.path().join("milter.sock");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let s = tokio::net::UnixStream::connect(&path).await.unwrap();
    let mut c = Client::new(s);
    c.negotiate(POSTFIX_OFFER).await.unwrap();
    c.connect("localhost", ConnectAddr::Unix("/x".into()))
        .await
        .unwrap();
    let r = c.message(&ENV, gtube_mail().as_bytes()).await.unwrap();
    assert!(matches!(r.last(), Some(Reply::ReplyCode(_))));
}

#[tokio::test]
async fn inet6_loopback_listener() {
    // Some build sandboxes have no IPv6 at all; that is the machine's limit, not ours.
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        common::skip("this machine has no IPv6 loopback (::1)");
        return;
    }
    let d = Daemon::start_listening("inet6:[::1]:0", "", "");
    let port: u16 = d.listen.rsplit(':').next().unwrap().parse().unwrap();
    assert!(d.listen.starts_with("inet6:[::1]:"), "{}", d.listen);
    let s = TcpStream::connect(("::1", port)).await.unwrap();
    let mut c = Client::new(s);
    c.negotiate(POSTFIX_OFFER).await.unwrap();
    c.connect(
        "v6.example",
        ConnectAddr::Inet {
            ip: "2001:db8::25".parse().unwrap(),
            port: 2,
        },
    )
    .await
    .unwrap();
    let r = c.message(&ENV, gtube_mail().as_bytes()).await.unwrap();
    assert!(matches!(r.last(), Some(Reply::ReplyCode(_))));
}
