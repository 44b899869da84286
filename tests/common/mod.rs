//! Shared by the integration tests: a real daemon on a loopback port, and tool checks.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// Whether an external tool is installed. Under CI=true a missing tool fails the test; on a
/// developer machine the test is skipped, and says so (see [`skip`]).
pub fn require_tool(name: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name} || test -x /usr/sbin/{name}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        skip(&format!("{name} is not installed (.ci/run installs it)"));
    }
    found
}

/// Skips the calling test for a missing prerequisite: under CI=true (set by .ci/run) the test
/// fails instead. The notice is written to the terminal directly, past the test harness's
/// output capture, so that a run of "all passed" still shows what did not run.
pub fn skip(why: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test} cannot run: {why}");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\nSKIPPED {test}: {why}");
}

/// A running `repmilter serve` with its own config in a temp dir.
pub struct Daemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    /// `inet:127.0.0.1:PORT` or `unix:/path`, as logged by the daemon.
    pub listen: String,
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts the daemon with `[milter] listen = inet:127.0.0.1:0` and `extra` appended to
    /// the config (extra may add tables; milter keys go through `milter_extra`). `$DIR` in
    /// `listen` and `extra` is the daemon's temp dir, whose `rules/` folder holds one rule
    /// that never fires, `rules/fixture.cf` (the daemon refuses rule paths that yield no
    /// rule), so a test's own rule files come on top of it.
    pub fn start(milter_extra: &str, extra: &str) -> Daemon {
        Self::start_listening("inet:127.0.0.1:0", milter_extra, extra)
    }

    pub fn start_listening(listen: &str, milter_extra: &str, extra: &str) -> Daemon {
        Self::start_with(&[], listen, milter_extra, extra)
    }

    /// As [`Daemon::start_listening`], with `files` (path in the temp dir, content) written
    /// first: the config may name them, and a config naming a missing file is refused.
    pub fn start_with(
        files: &[(&str, &str)],
        listen: &str,
        milter_extra: &str,
        extra: &str,
    ) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let config_path = dir.path().join("repmilter.toml");
        let d = dir.path().to_str().unwrap();
        let listen = listen.replace("$DIR", d);
        let extra = extra.replace("$DIR", d);
        std::fs::create_dir_all(dir.path().join("rules")).unwrap();
        std::fs::write(
            dir.path().join("rules/fixture.cf"),
            "header FIXTURE_NEVER X-Repmilter-Test-Fixture =~ /never/\nscore FIXTURE_NEVER 0.01\n",
        )
        .unwrap();
        std::fs::write(&config_path, config_text(&listen, milter_extra, &extra)).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_repmilter"))
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "repmilter=debug,info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start repmilter");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // The line is in the log before anyone is told the address, so a test that
                // starts once it knows the address finds the line there.
                log2.lock().unwrap().push(line.clone());
                if let Some(i) = line.find("listening on ") {
                    let rest = &line[i + "listening on ".len()..];
                    // Text lines end the address at a space, JSON ones at a quote.
                    let addr = rest
                        .split(|c: char| c.is_whitespace() || c == '"')
                        .next()
                        .unwrap_or_default();
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let listen = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!(
                    "daemon did not start; log:\n{}",
                    log.lock().unwrap().join("\n")
                )
            });
        // Serving with its first rule set: files written from here on are seen as changes.
        let start = Instant::now();
        while !log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("engine in use"))
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "daemon did not load its engine; log:\n{}",
                log.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let port = listen
            .strip_prefix("inet:127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        Daemon {
            child,
            dir,
            config_path,
            listen,
            port,
            log,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its status code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn rewrite_config(&self, listen: &str, milter_extra: &str, extra: &str) {
        std::fs::write(&self.config_path, config_text(listen, milter_extra, extra)).unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn config_text(listen: &str, milter_extra: &str, extra: &str) -> String {
    format!("[milter]\nlisten = \"{listen}\"\n{milter_extra}\n{extra}\n")
}

pub fn repmilter() -> Command {
    Command::new(env!("CARGO_BIN_EXE_repmilter"))
}

pub fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

pub fn ham() -> String {
    "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: lunch\r\nMessage-ID: <1@example.org>\r\n\r\nShall we meet at noon?\r\n".to_string()
}

pub fn gtube_mail() -> String {
    format!(
        "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: test\r\n\r\nThis is the GTUBE:\r\n{GTUBE}\r\n"
    )
}

/// A body of about `n` bytes of plain text lines.
pub fn filler(n: usize) -> String {
    let line = "The quick brown fox jumps over the lazy dog, again and again.\r\n";
    line.repeat(n / line.len() + 1)
}

#[path = "rbldnsd.rs"]
mod rbldnsd;
#[allow(unused_imports)]
pub use rbldnsd::{Rbldnsd, Zone, free_udp_port};

#[path = "hub.rs"]
pub mod hub;
