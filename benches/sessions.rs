//! Memory at many concurrent sessions: the release daemon with the shipped config and rules,
//! driven by N MTA connections at once over loopback. Reports the daemon's resident memory
//! (VmRSS, and VmHWM for the peak) read from /proc after each phase:
//!
//! 1. N connections negotiated and connected, idle between messages;
//! 2. each with a message in progress (envelope, headers, the first body chunk);
//! 3. all messages finished at once (N scans asked for together), then each connection sends
//!    `ROUNDS` more messages.
//!
//! Run: `cargo bench --bench sessions` (N = 1000; `REPMILTER_SESSIONS` changes it). Messages
//! come from the SpamAssassin corpus when `benches/fetch-corpus.sh` has fetched it, otherwise
//! a 10 KB plain message is used. `cargo test --all-targets` runs it with 20 sessions as a
//! check that every message gets its verdict.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use repmilter::milter::client::{Client, POSTFIX_OFFER};
use repmilter::milter::codec::{Command, ConnectAddr, Reply};
use tokio::net::TcpStream;

#[path = "common/corpus.rs"]
mod corpus;

const ROUNDS: usize = 3;

fn messages() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if let Some(dir) = corpus::dir() {
        for folder in ["easy-ham-1", "spam-1"] {
            let files = corpus::files(&dir, folder);
            out.extend(files.iter().take(500).filter_map(|f| corpus::message(f)));
        }
    }
    if out.is_empty() {
        let mut m = String::from(
            "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: figures\r\n\r\n",
        );
        while m.len() < 10 * 1024 {
            m.push_str("Here are the figures we discussed; please check the totals.\r\n");
        }
        out.push(m.into_bytes());
    }
    out
}

struct Daemon {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(sessions: usize) -> Daemon {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("repmilter.toml");
    std::fs::write(
        &config,
        format!(
            "[milter]\nlisten = \"inet:127.0.0.1:0\"\nmax_connections = {}\n[rules]\npaths = [\"{}\"]\n",
            sessions + 16,
            root.join("rules").display()
        ),
    )
    .unwrap();
    let mut child = Process::new(env!("CARGO_BIN_EXE_repmilter"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn,repmilter::daemon=info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(i) = line.find("listening on inet:") {
                let addr = line[i + "listening on inet:".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_string();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    Daemon {
        child,
        addr,
        _dir: dir,
    }
}

/// VmRSS and VmHWM of a process, in MiB.
fn memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap()
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn open(addr: &str) -> Client<TcpStream> {
    let s = TcpStream::connect(addr).await.unwrap();
    let mut c = Client::new(s);
    c.negotiate(POSTFIX_OFFER).await.unwrap();
    c.connect(
        "client.example",
        ConnectAddr::Inet {
            ip: "192.0.2.10".parse().unwrap(),
            port: 40000,
        },
    )
    .await
    .unwrap();
    c
}

/// Sends a message up to its first body chunk; returns the rest of the body.
async fn begin(c: &mut Client<TcpStream>, raw: &[u8]) -> Vec<u8> {
    c.command(&Command::Mail {
        sender: "<alice@example.org>".into(),
        args: vec![],
    })
    .await
    .unwrap();
    c.command(&Command::Rcpt {
        recipient: "<bob@example.net>".into(),
        args: vec![],
    })
    .await
    .unwrap();
    let mut headers = Vec::new();
    let body_start = repmilter::message::each_header(raw, |n, v| headers.push((n, v)));
    for (name, value) in headers {
        c.command(&Command::Header { name, value }).await.unwrap();
    }
    c.command(&Command::Eoh).await.unwrap();
    let body = &raw[body_start..];
    let half = body.len() / 2;
    c.command(&Command::Body(body[..half].to_vec()))
        .await
        .unwrap();
    body[half..].to_vec()
}

async fn finish(c: &mut Client<TcpStream>, rest: Vec<u8>) {
    c.command(&Command::Body(rest)).await.unwrap();
    let r = c.command(&Command::EndOfBody(Vec::new())).await.unwrap();
    assert!(
        matches!(r.last(), Some(Reply::Accept | Reply::ReplyCode(_))),
        "{r:?}"
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sessions: usize = match std::env::var("REPMILTER_SESSIONS") {
        Ok(n) => n.parse().expect("REPMILTER_SESSIONS is a number"),
        Err(_) if full => 1000,
        Err(_) => 20,
    };
    let messages = messages();
    let d = start(sessions);
    let pid = d.child.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (rss0, _) = memory(pid);
        let mut clients = Vec::new();
        for _ in 0..sessions {
            clients.push(open(&d.addr).await);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (rss_idle, _) = memory(pid);

        let mut rests = Vec::new();
        for (i, c) in clients.iter_mut().enumerate() {
            rests.push(begin(c, &messages[i % messages.len()]).await);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (rss_open, _) = memory(pid);

        let start = Instant::now();
        let tasks: Vec<_> = clients
            .into_iter()
            .zip(rests)
            .enumerate()
            .map(|(i, (mut c, rest))| {
                let messages = messages.clone();
                tokio::spawn(async move {
                    finish(&mut c, rest).await;
                    for round in 1..=ROUNDS {
                        let raw = &messages[(i + round * 7919) % messages.len()];
                        let rest = begin(&mut c, raw).await;
                        finish(&mut c, rest).await;
                    }
                    c
                })
            })
            .collect();
        let mut clients = Vec::new();
        for t in tasks {
            clients.push(t.await.unwrap());
        }
        let elapsed = start.elapsed();
        let (rss_after, hwm) = memory(pid);
        let scanned = sessions * (ROUNDS + 1);
        println!(
            "sessions: {sessions}, messages: {scanned} ({} distinct), {:.0} messages/s",
            messages.len(),
            scanned as f64 / elapsed.as_secs_f64()
        );
        println!("daemon RSS at start:                         {rss0:7.1} MiB");
        println!("daemon RSS, {sessions} sessions idle:              {rss_idle:7.1} MiB");
        println!("daemon RSS, {sessions} messages in progress:       {rss_open:7.1} MiB");
        println!("daemon RSS after {scanned} messages, all at once: {rss_after:7.1} MiB");
        println!("daemon peak RSS (VmHWM):                     {hwm:7.1} MiB");
        for c in clients {
            c.quit().await.unwrap();
        }
    });
}
