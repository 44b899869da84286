//! A real DNS list server for tests and benches: rbldnsd on a loopback UDP port, serving
//! zones written by the caller. The including crate provides `require_tool`.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::require_tool;

/// A real DNS list server: rbldnsd on a loopback UDP port, serving zones written by the test.
pub struct Rbldnsd {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

/// One zone: its name, rbldnsd dataset type (`ip4set`, `ip6trie`, `dnset`) and data.
pub struct Zone<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub data: &'a str,
}

impl Rbldnsd {
    /// Starts rbldnsd with the zones; it re-reads a changed data file within a second.
    /// Returns None (after `require_tool`'s loud skip) when rbldnsd is not installed.
    pub fn start(zones: &[Zone<'_>]) -> Option<Rbldnsd> {
        if !require_tool("rbldnsd") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        // rbldnsd drops root for its own user: it must be able to read the files.
        set_mode(dir.path(), 0o755);
        let mut specs = Vec::new();
        for (i, z) in zones.iter().enumerate() {
            let file = dir.path().join(format!("zone{i}.txt"));
            std::fs::write(&file, z.data).unwrap();
            set_mode(&file, 0o644);
            specs.push(format!("{}:{}:{}", z.name, z.kind, file.display()));
        }
        let port = free_udp_port();
        let mut cmd = Command::new("rbldnsd");
        cmd.args([
            "-n",
            "-b",
            &format!("127.0.0.1/{port}"),
            "-c",
            "1",
            "-t",
            "300:60:3600",
        ]);
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        if is_root {
            cmd.args(["-u", "rbldns"]);
        }
        let child = cmd
            .args(&specs)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rbldnsd");
        let server = Rbldnsd { child, dir, port };
        server.wait_ready(zones[0].name);
        Some(server)
    }

    /// Waits until the server answers a query for its first zone (any answer will do).
    fn wait_ready(&self, zone: &str) {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let query = dns_query_a(&format!("1.0.0.127.{zone}"));
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            let _ = sock.send_to(&query, ("127.0.0.1", self.port));
            let mut buf = [0u8; 512];
            if sock.recv_from(&mut buf).is_ok() {
                return;
            }
        }
        panic!("rbldnsd did not answer on port {}", self.port);
    }

    /// Rewrites the data of zone number `i` (in the order given to `start`).
    pub fn rewrite(&self, i: usize, data: &str) {
        let file = self.dir.path().join(format!("zone{i}.txt"));
        // A new mtime is what rbldnsd looks at; make sure it differs from the last load.
        std::thread::sleep(Duration::from_millis(1100));
        std::fs::write(&file, data).unwrap();
        set_mode(&file, 0o644);
    }
}

impl Drop for Rbldnsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal DNS query packet for the A record of `name`.
fn dns_query_a(name: &str) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}
