//! Milter benchmarks: the codec alone, and whole sessions against the real server on loopback.
//!
//! Run: `cargo bench --bench milter`. Each benchmark checks its result (frame count, verdict),
//! so a faster wrong answer cannot pass; `cargo test --all-targets` runs each once as a test.
//!
//! The client leaves Nagle's algorithm on, as Postfix does for milter sockets, so the numbers
//! include what a real MTA's small back-to-back writes cost.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use repmilter::config::Config;
use repmilter::engine::Engine;
use repmilter::milter::client::{Client, POSTFIX_OFFER, Transaction};
use repmilter::milter::codec::{self, Command, ConnectAddr, Reply};
use repmilter::milter::server::{self, Listener};
use repmilter::session;
use tokio::net::TcpStream;
use tokio::sync::watch;

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// A plain 10 KB message with a dozen headers, as the session benchmark asks.
fn message_10k(extra_body: &str) -> String {
    let mut m = String::new();
    m.push_str("Received: from client.example (client.example [192.0.2.10])\r\n\tby mx.example.org (Postfix) with ESMTP id 4ABC123\r\n\tfor <bob@example.net>; Sat, 28 Nov 2026 12:00:00 +0000 (UTC)\r\n");
    m.push_str("From: Alice Example <alice@example.org>\r\nTo: Bob <bob@example.net>\r\n");
    m.push_str("Subject: quarterly figures and the meeting on Thursday\r\nDate: Sat, 28 Nov 2026 12:00:00 +0000\r\n");
    m.push_str("Message-ID: <20261128120000.1234@example.org>\r\nMIME-Version: 1.0\r\n");
    m.push_str("Content-Type: text/plain; charset=utf-8\r\nX-Mailer: bench\r\n\r\n");
    let line = "Here are the figures we discussed; please check the totals before Thursday.\r\n";
    while m.len() < 10 * 1024 {
        m.push_str(line);
    }
    m.push_str(extra_body);
    m
}

/// The command stream an MTA sends for one message, and how many commands it holds.
fn command_stream(raw: &str) -> (Vec<u8>, usize) {
    let msg = repmilter::message::Message::from_raw(raw.as_bytes(), usize::MAX);
    let mut cmds = vec![
        Command::Optneg(POSTFIX_OFFER),
        Command::Connect {
            hostname: "client.example".into(),
            addr: ConnectAddr::Inet {
                ip: "192.0.2.10".parse().unwrap(),
                port: 40000,
            },
        },
        Command::Helo("client.example".into()),
        Command::Mail {
            sender: "<alice@example.org>".into(),
            args: vec!["SIZE=10240".into()],
        },
        Command::Rcpt {
            recipient: "<bob@example.net>".into(),
            args: vec![],
        },
    ];
    for (name, value) in msg.headers {
        cmds.push(Command::Header { name, value });
    }
    cmds.push(Command::Eoh);
    for chunk in msg.body.chunks(codec::MAX_BODY_CHUNK) {
        cmds.push(Command::Body(chunk.to_vec()));
    }
    cmds.push(Command::EndOfBody(vec![]));
    cmds.push(Command::Quit);
    let mut buf = Vec::new();
    for c in &cmds {
        c.encode(&mut buf);
    }
    (buf, cmds.len())
}

fn bench_codec(c: &mut Criterion) {
    let (stream, count) = command_stream(&message_10k(""));
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("parse_10k_message_stream", |b| {
        b.iter(|| {
            let mut rest = black_box(&stream[..]);
            let mut n = 0;
            while let Some((frame, used)) = codec::parse_frame(rest).unwrap() {
                black_box(Command::parse(frame).unwrap());
                rest = &rest[used..];
                n += 1;
            }
            assert_eq!(n, count);
        })
    });
    let replies = [
        Reply::AddHeader {
            name: "X-Spam-Status".into(),
            value: b"No, score=0.0 required=5.0 tests=none version=repmilter-0.1.0".to_vec(),
        },
        Reply::AddHeader {
            name: "X-Spam-Score".into(),
            value: b"0.0".to_vec(),
        },
        Reply::Accept,
    ];
    g.throughput(Throughput::Elements(replies.len() as u64));
    g.bench_function("encode_eom_replies", |b| {
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            out.clear();
            for r in black_box(&replies) {
                r.encode(&mut out);
            }
            assert!(out.len() > 100);
        })
    });
    g.finish();
}

struct Server {
    addr: String,
    _stop: watch::Sender<bool>,
}

/// The real server and sessions on 127.0.0.1:0, with the default config.
fn start_server(rt: &tokio::runtime::Runtime) -> Server {
    let config = Config::default();
    rt.block_on(async {
        let listen = "inet:127.0.0.1:0".parse().unwrap();
        let listener = Listener::bind(
            &listen,
            repmilter::milter::server::SocketAccess {
                mode: 0o660,
                owner: None,
                group: None,
            },
        )
        .await
        .unwrap();
        let addr = listener.local().trim_start_matches("inet:").to_string();
        let (engine_tx, engines) = watch::channel(Arc::new(Engine::new(config)));
        let (stop, stop_rx) = watch::channel(false);
        let threads = server::Threads {
            count: 1,
            stack_size: 8 << 20,
            runtime: || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            },
        };
        let mut serving = server::serve(
            listener,
            threads,
            1000,
            stop_rx,
            Duration::from_secs(1),
            move |s, peer, shutdown| {
                let engines = engines.clone();
                async move {
                    let _ = session::run(s, engines, shutdown, peer).await;
                }
            },
        )
        .unwrap();
        tokio::spawn(async move {
            let _keep_engine_channel_open = engine_tx;
            serving.finished().await;
        });
        Server { addr, _stop: stop }
    })
}

const ENV: Transaction<'static> = Transaction {
    from: "alice@example.org",
    rcpts: &["bob@example.net"],
    mail_macros: &[("{auth_type}", ""), ("i", "4ABC123")],
};

/// One whole milter session: negotiate, connect, headers, 10 KB body, end of message, quit.
async fn one_session(addr: &str, raw: &[u8]) -> Vec<Reply> {
    let client_addr = ConnectAddr::Inet {
        ip: "192.0.2.10".parse().unwrap(),
        port: 40000,
    };
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut c, _) = Client::open(stream, "client.example", client_addr)
        .await
        .unwrap();
    let r = c.message(&ENV, raw).await.unwrap();
    c.quit().await.unwrap();
    r
}

fn bench_sessions(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = start_server(&rt);
    let ham = message_10k("");
    let spam = message_10k(&format!("{GTUBE}\r\n"));

    let mut g = c.benchmark_group("session");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_10k_ham_per_connection", |b| {
        b.iter(|| {
            let r = rt.block_on(one_session(&server.addr, ham.as_bytes()));
            assert_eq!(r.last(), Some(&Reply::Accept));
        })
    });
    g.bench_function("one_10k_gtube_per_connection", |b| {
        b.iter(|| {
            let r = rt.block_on(one_session(&server.addr, spam.as_bytes()));
            assert!(matches!(r.last(), Some(Reply::ReplyCode(t)) if t.starts_with("550 5.7.1")));
        })
    });

    // Aggregate throughput: 16 connections at once, each carrying 8 messages, as Postfix
    // reuses a milter connection for the messages of one SMTP session.
    const CONNS: usize = 16;
    const PER_CONN: usize = 8;
    g.throughput(Throughput::Elements((CONNS * PER_CONN) as u64));
    g.bench_function("16_connections_x_8_messages_10k", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut tasks = Vec::new();
                for _ in 0..CONNS {
                    let addr = server.addr.clone();
                    let raw = ham.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut c = Client::new(TcpStream::connect(&addr).await.unwrap());
                        c.negotiate(POSTFIX_OFFER).await.unwrap();
                        c.connect("client.example", ConnectAddr::Unknown)
                            .await
                            .unwrap();
                        let mut accepted = 0;
                        for _ in 0..PER_CONN {
                            let r = c.message(&ENV, raw.as_bytes()).await.unwrap();
                            accepted += usize::from(r.last() == Some(&Reply::Accept));
                        }
                        c.quit().await.unwrap();
                        accepted
                    }));
                }
                let mut total = 0;
                for t in tasks {
                    total += t.await.unwrap();
                }
                assert_eq!(total, CONNS * PER_CONN);
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench_codec, bench_sessions);
criterion_main!(benches);
