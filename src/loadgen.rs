//! `repmilter bench`: a load generator that speaks the MTA side of the milter protocol to any
//! milter (repmilter, rspamd's proxy, spamass-milter), replaying a directory of messages.
//!
//! Closed loop by default: `concurrency` sessions each send their next message as soon as the
//! last one has its verdict. With `rate`, open loop: messages start on a fixed schedule,
//! whatever the milter's answers, so a slow milter shows as latency and not as a lower
//! offered load. Latency is what an MTA waits on: from sending end-of-body to the final
//! reply. With the milter's pid, the CPU time its process used per message is read from
//! /proc, so the client's own limits are not taken for the server's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::milter::Listen;
use crate::milter::client::{Client, ClientError, Transaction};
use crate::milter::codec::{ConnectAddr, Reply};

/// What to send, where, and how much.
#[derive(Debug, Clone)]
pub struct Options {
    pub target: Listen,
    /// Messages to replay, in order, round after round.
    pub messages: Arc<Vec<Vec<u8>>>,
    /// Sessions at once.
    pub concurrency: usize,
    /// Stop after this many messages...
    pub count: Option<u64>,
    /// ...or after this long (the first to come).
    pub duration: Option<Duration>,
    /// Messages per connection before it is closed and another opened.
    pub per_connection: usize,
    /// Messages started per second (open loop); None: closed loop.
    pub rate: Option<f64>,
    /// The milter's process, whose CPU time per message is reported.
    pub target_pid: Option<u32>,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
    /// Longest wait for the milter at one step (connecting, or one message): past it the
    /// session counts as an error, so a milter that hangs ends the run instead of stalling it.
    pub timeout: Duration,
}

/// Why the corpus could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no messages under {0} (files ending in .json are skipped)")]
    Empty(PathBuf),
}

/// The message files under `dir` (recursively, in name order), or `dir` itself when it is a
/// file. Files ending in `.json` (the npm corpus' metadata twins) are skipped.
pub fn message_files(dir: &Path) -> Result<Vec<PathBuf>, CorpusError> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CorpusError> {
        let read = |source| CorpusError::Read {
            path: dir.to_path_buf(),
            source,
        };
        let mut entries: Vec<(PathBuf, std::fs::FileType)> = std::fs::read_dir(dir)
            .map_err(read)?
            .map(|e| e.and_then(|e| Ok((e.path(), e.file_type()?))))
            .collect::<Result<_, _>>()
            .map_err(read)?;
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (p, kind) in entries {
            // A symbolic link to a directory is not followed: two links back up the tree
            // would make the walk exponential. A link to a file is a message like any other.
            if kind.is_dir() {
                walk(&p, out)?;
            } else if p.is_file() && p.extension().is_none_or(|e| e != "json") {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    if dir.is_file() {
        files.push(dir.to_path_buf());
    } else {
        walk(dir, &mut files)?;
    }
    Ok(files)
}

/// Every message under `dir` (see [`message_files`]), without a leading mbox `From ` line,
/// which an MTA never passes on. Empty files are skipped.
pub fn read_corpus(dir: &Path) -> Result<Vec<Vec<u8>>, CorpusError> {
    let files = message_files(dir)?;
    let mut out = Vec::with_capacity(files.len());
    for path in files {
        let raw = std::fs::read(&path).map_err(|source| CorpusError::Read {
            path: path.clone(),
            source,
        })?;
        let raw = match raw.strip_prefix(b"From ") {
            Some(rest) => match memchr::memchr(b'\n', rest) {
                Some(i) => rest[i + 1..].to_vec(),
                None => Vec::new(),
            },
            None => raw,
        };
        if !raw.is_empty() {
            out.push(raw);
        }
    }
    if out.is_empty() {
        return Err(CorpusError::Empty(dir.to_path_buf()));
    }
    Ok(out)
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: f64,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub concurrency: usize,
    pub rate: Option<f64>,
    /// Messages that got a verdict.
    pub messages: u64,
    /// Sessions that failed (connection refused or closed, bad frames), by kind.
    pub errors: BTreeMap<String, u64>,
    pub seconds: f64,
    pub messages_per_second: f64,
    /// From sending end-of-body to the final reply.
    pub latency_us: Latency,
    /// The final reply of each message: accept, continue, reject, tempfail, discard,
    /// quarantine or the SMTP code given.
    pub actions: BTreeMap<String, u64>,
    /// The milter process's user and system CPU time per message, with `target_pid`.
    pub target_cpu_us_per_message: Option<f64>,
    /// The milter process's peak resident memory (VmHWM), with `target_pid`.
    pub target_peak_rss_kib: Option<u64>,
}

impl Report {
    /// The report as a table for a terminal.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let l = &self.latency_us;
        let _ = writeln!(s, "target             {}", self.target);
        let load = match self.rate {
            Some(r) => format!(
                "open loop, {r} messages/s offered, {} sessions",
                self.concurrency
            ),
            None => format!("closed loop, {} sessions", self.concurrency),
        };
        let _ = writeln!(s, "load               {load}");
        let _ = writeln!(
            s,
            "messages           {} in {:.2} s: {:.1} messages/s",
            self.messages, self.seconds, self.messages_per_second
        );
        let _ = writeln!(
            s,
            "latency (EOB)      p50 {} µs, p95 {} µs, p99 {} µs, max {} µs, mean {:.0} µs",
            l.p50, l.p95, l.p99, l.max, l.mean
        );
        let actions: Vec<String> = self
            .actions
            .iter()
            .map(|(a, n)| format!("{a} {n}"))
            .collect();
        let _ = writeln!(s, "actions            {}", actions.join(", "));
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(a, n)| format!("{a} {n}"))
            .collect();
        let errors = if errors.is_empty() {
            "none".to_string()
        } else {
            errors.join(", ")
        };
        let _ = writeln!(s, "errors             {errors}");
        if let Some(cpu) = self.target_cpu_us_per_message {
            let _ = writeln!(s, "target CPU         {cpu:.1} µs per message");
        }
        if let Some(rss) = self.target_peak_rss_kib {
            let _ = writeln!(s, "target peak RSS    {rss} KiB");
        }
        s
    }
}

/// A byte stream to the milter, TCP or Unix.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn dial(target: &Listen) -> std::io::Result<Box<dyn Io>> {
    Ok(match target {
        Listen::Inet(addr) => {
            let s = tokio::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            Box::new(s)
        }
        Listen::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
    })
}

/// The name of a message's outcome, from the replies to its last step.
fn action(replies: &[Reply]) -> String {
    if replies.iter().any(|r| matches!(r, Reply::Quarantine(_))) {
        return "quarantine".into();
    }
    match replies.iter().rev().find(|r| r.is_final()) {
        Some(Reply::Accept) => "accept".into(),
        Some(Reply::Continue) => "continue".into(),
        Some(Reply::Reject) => "reject".into(),
        Some(Reply::Tempfail) => "tempfail".into(),
        Some(Reply::Discard) => "discard".into(),
        Some(Reply::ReplyCode(text)) => format!("reply {}", text.get(..3).unwrap_or(text)),
        Some(other) => format!("{other:?}").to_lowercase(),
        None => "none".into(),
    }
}

fn error_kind(e: &ClientError) -> String {
    match e {
        ClientError::Io(e) => format!("i/o: {}", e.kind()),
        ClientError::Frame(_) => "bad frame".into(),
        ClientError::Payload(_) => "bad reply".into(),
        ClientError::Closed => "closed by the milter".into(),
        ClientError::Negotiation(_) => "negotiation refused".into(),
    }
}

/// User plus system CPU time a process has used so far, from /proc.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing ')'.
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime, fields 14 and 15 of the line, in USER_HZ: 100 on every Linux.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// A process's CPU time so far and its peak resident memory in KiB, from /proc.
fn process_usage(pid: u32) -> Option<(Duration, u64)> {
    let cpu = process_cpu(pid)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    Some((cpu, hwm))
}

struct Shared {
    opts: Options,
    started: Instant,
    /// Messages handed out (closed loop) or scheduled (open loop).
    next: AtomicU64,
    done: AtomicU64,
    stop: AtomicBool,
    results: std::sync::Mutex<Results>,
}

#[derive(Default)]
struct Results {
    latency: Option<Histogram<u64>>,
    actions: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
}

impl Shared {
    /// The index of the next message to send and when to start it, or None when the run is
    /// over.
    fn claim(&self) -> Option<(u64, Option<Instant>)> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        if self
            .opts
            .duration
            .is_some_and(|d| self.started.elapsed() >= d)
        {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if self.opts.count.is_some_and(|n| i >= n) {
            return None;
        }
        let at = self
            .opts
            .rate
            .map(|r| self.started + Duration::from_secs_f64(i as f64 / r));
        Some((i, at))
    }

    fn record(&self, latency: Duration, replies: &[Reply]) {
        let mut r = self.results.lock().unwrap_or_else(|e| e.into_inner());
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        if let Some(h) = r.latency.as_mut() {
            h.saturating_record(us);
        }
        *r.actions.entry(action(replies)).or_default() += 1;
        drop(r);
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    fn error(&self, e: &ClientError) {
        let mut r = self.results.lock().unwrap_or_else(|e| e.into_inner());
        *r.errors.entry(error_kind(e)).or_default() += 1;
    }
}

async fn session(shared: &Shared, first: (u64, Option<Instant>)) -> Result<(), ClientError> {
    let opts = &shared.opts;
    let timed_out = || ClientError::Io(std::io::ErrorKind::TimedOut.into());
    let addr = ConnectAddr::Inet {
        ip: std::net::IpAddr::from([192, 0, 2, 10]),
        port: 25,
    };
    let open = async {
        let stream = dial(&opts.target).await?;
        Client::open(stream, "bench.example.net", addr).await
    };
    let (mut client, _) = tokio::time::timeout(opts.timeout, open)
        .await
        .map_err(|_| timed_out())??;
    let env = Transaction {
        from: "sender@bench.example.net",
        rcpts: &["rcpt@example.org"],
        mail_macros: &[("i", "BENCH")],
    };
    let mut claim = Some(first);
    for sent in 0..opts.per_connection.max(1) {
        let (i, at) = match claim.take() {
            Some(c) => c,
            None => match shared.claim() {
                Some(c) => c,
                None => break,
            },
        };
        if let Some(at) = at {
            tokio::time::sleep_until(at.into()).await;
        }
        let raw = &opts.messages[(i % opts.messages.len() as u64) as usize];
        let (replies, eob) = tokio::time::timeout(opts.timeout, client.message_timed(&env, raw))
            .await
            .map_err(|_| timed_out())??;
        shared.record(eob.unwrap_or_default(), &replies);
        if sent + 1 < opts.per_connection {
            client.abort().await?;
        }
    }
    client.quit().await
}

async fn worker(shared: Arc<Shared>) {
    while let Some(first) = shared.claim() {
        if let Err(e) = session(&shared, first).await {
            shared.error(&e);
            // A milter that refuses connections would otherwise spin this loop.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Runs the load and reports what it measured.
pub async fn run(opts: Options) -> Report {
    let usage_before = opts.target_pid.and_then(process_usage);
    let total = opts.count;
    let shared = Arc::new(Shared {
        started: Instant::now(),
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        results: std::sync::Mutex::new(Results {
            // 1 µs to an hour, three significant digits.
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3).ok(),
            ..Results::default()
        }),
        opts,
    });
    let bar = shared.opts.progress.then(|| {
        let bar = match (total, shared.opts.duration) {
            (Some(n), _) => indicatif::ProgressBar::new(n),
            (None, Some(d)) => indicatif::ProgressBar::new(d.as_secs()),
            (None, None) => indicatif::ProgressBar::new_spinner(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let workers: Vec<_> = (0..shared.opts.concurrency.max(1))
        .map(|_| tokio::spawn(worker(shared.clone())))
        .collect();
    let progress = bar.clone().map(|bar| {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let done = shared.done.load(Ordering::Relaxed);
                let secs = shared.started.elapsed().as_secs_f64();
                match total {
                    Some(_) => bar.set_position(done),
                    None => bar.set_position(secs as u64),
                }
                bar.set_message(format!("{:.0} messages/s", done as f64 / secs.max(1e-9)));
            }
        })
    });
    for w in workers {
        let _ = w.await;
    }
    if let Some(p) = progress {
        p.abort();
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let seconds = shared.started.elapsed().as_secs_f64();
    let usage_after = shared.opts.target_pid.and_then(process_usage);
    let results = std::mem::take(&mut *shared.results.lock().unwrap_or_else(|e| e.into_inner()));
    let messages = shared.done.load(Ordering::Relaxed);
    let latency_us = match &results.latency {
        Some(h) if !h.is_empty() => Latency {
            p50: h.value_at_quantile(0.50),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
            mean: h.mean(),
        },
        _ => Latency {
            p50: 0,
            p95: 0,
            p99: 0,
            max: 0,
            mean: 0.0,
        },
    };
    let (cpu, rss) = match (usage_before, usage_after) {
        (Some((before, _)), Some((after, hwm))) if messages > 0 => (
            Some((after - before).as_secs_f64() * 1e6 / messages as f64),
            Some(hwm),
        ),
        _ => (None, None),
    };
    Report {
        target: shared.opts.target.to_string(),
        concurrency: shared.opts.concurrency,
        rate: shared.opts.rate,
        messages,
        errors: results.errors,
        seconds,
        messages_per_second: messages as f64 / seconds.max(1e-9),
        latency_us,
        actions: results.actions,
        target_cpu_us_per_message: cpu,
        target_peak_rss_kib: rss,
    }
}

/// A milter that accepts every message, in this process, on a loopback port: run against it,
/// the load generator measures its own ceiling (what it can drive with no filtering at all),
/// so that nobody takes the client's limit for a milter's.
pub async fn accept_all() -> std::io::Result<Listen> {
    use crate::milter::codec::{Command, Optneg};
    use crate::milter::connection::Connection;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut conn = Connection::new(stream);
                let far = tokio::time::Instant::now() + Duration::from_secs(3600);
                while let Ok(Some(command)) = conn.read_command(far).await {
                    let reply = match command {
                        // Every step, no macros asked for: the client does all its work.
                        Command::Optneg(offer) => Reply::Optneg {
                            negotiated: Optneg {
                                version: offer.version.min(6),
                                actions: 0,
                                protocol: 0,
                            },
                            macros: Vec::new(),
                        },
                        Command::EndOfBody(_) => Reply::Accept,
                        Command::Macro { .. } | Command::Abort => continue,
                        Command::Quit | Command::QuitNc => break,
                        _ => Reply::Continue,
                    };
                    if conn
                        .write_replies(&[reply], Duration::from_secs(60))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    Ok(Listen::Inet(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_back_up_the_tree_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("a.eml"), "Subject: a\n\na\n").unwrap();
        std::fs::write(d.join("sub/b.eml"), "Subject: b\n\nb\n").unwrap();
        // Without the guard: 2^depth paths, until the path is too long.
        for name in ["loop1", "loop2", "sub/up"] {
            std::os::unix::fs::symlink(d, d.join(name)).unwrap();
        }
        std::os::unix::fs::symlink(d.join("a.eml"), d.join("link.eml")).unwrap();
        let files = message_files(d).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.strip_prefix(d).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["a.eml", "link.eml", "sub/b.eml"]);
    }

    #[test]
    fn the_corpus_is_read_without_mbox_lines_or_json_twins() {
        let dir = std::env::temp_dir().join(format!("repmilter-corpus-{}", std::process::id()));
        let sub = dir.join("spam");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join("2.txt"),
            "From x@y Mon Jan 1\nSubject: b\n\nbody\n",
        )
        .unwrap();
        std::fs::write(sub.join("1.txt"), "Subject: a\n\nbody\n").unwrap();
        std::fs::write(sub.join("1.json"), "{}").unwrap();
        std::fs::write(dir.join("empty"), "").unwrap();
        let got = read_corpus(&dir).unwrap();
        assert_eq!(
            got,
            [
                b"Subject: a\n\nbody\n".to_vec(),
                b"Subject: b\n\nbody\n".to_vec()
            ]
        );
        let none = dir.join("nothing");
        std::fs::create_dir_all(&none).unwrap();
        let e = read_corpus(&none).unwrap_err().to_string();
        assert!(e.contains("no messages under"), "{e}");
        let e = read_corpus(&dir.join("absent")).unwrap_err().to_string();
        assert!(e.contains("cannot read"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn actions_are_named_by_the_final_reply() {
        assert_eq!(action(&[Reply::Accept]), "accept");
        assert_eq!(
            action(&[
                Reply::AddHeader {
                    name: "X".into(),
                    value: b"y".to_vec()
                },
                Reply::Continue
            ]),
            "continue"
        );
        assert_eq!(
            action(&[Reply::ReplyCode("550 5.7.1 spam".into())]),
            "reply 550"
        );
        assert_eq!(
            action(&[Reply::Quarantine("spam".into()), Reply::Continue]),
            "quarantine"
        );
    }
}
