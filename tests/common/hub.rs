//! A real `repmilter hub` process on a loopback port, with four gateways: gw1 and gw2
//! (lookup and report), gw3 (lookup only) and ops (admin).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const GW1: &str = "gw1-token-0123456789abcdef";
pub const GW2: &str = "gw2-token-0123456789abcdef";
pub const GW3: &str = "gw3-token-0123456789abcdef";
pub const ADMIN: &str = "admin-token-0123456789abcdef";

pub struct Hub {
    pub child: Child,
    pub url: String,
    /// Its config and store, when the hub owns them (a restarted hub reuses another's).
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Hub {
    pub fn start(hub_extra: &str) -> Hub {
        Hub::start_on("127.0.0.1:0", hub_extra)
    }

    pub fn start_on(listen: &str, hub_extra: &str) -> Hub {
        let dir = tempfile::tempdir().unwrap();
        let mut hub = Hub::start_in(dir.path(), listen, hub_extra);
        hub._dir = Some(dir);
        hub
    }

    /// A hub whose config and store are in `dir` (kept when it stops).
    pub fn start_in(dir: &std::path::Path, listen: &str, hub_extra: &str) -> Hub {
        let config = dir.join("hub.toml");
        std::fs::write(
            &config,
            format!(
                "[hub]\nlisten = \"{listen}\"\npath = \"data/hub.redb\"\n{hub_extra}\n\
                 [[gateway]]\nname = \"gw1\"\ntoken = \"{GW1}\"\n\
                 [[gateway]]\nname = \"gw2\"\ntoken = \"{GW2}\"\n\
                 [[gateway]]\nname = \"gw3\"\ntoken = \"{GW3}\"\nroles = [\"lookup\"]\n\
                 [[gateway]]\nname = \"ops\"\ntoken = \"{ADMIN}\"\nroles = [\"admin\"]\n"
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_repmilter"))
            .args(["hub", "--config"])
            .arg(&config)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(i) = line.find("hub listening on ") {
                    let addr = line[i + 17..]
                        .split_whitespace()
                        .next()
                        .unwrap()
                        .to_string();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the hub starts");
        Hub {
            child,
            url: format!("http://{addr}"),
            _dir: None,
        }
    }
}
