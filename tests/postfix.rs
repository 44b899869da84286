//! End to end through a real Postfix: a private instance started by the test in a temp dir
//! (its own config and queue directories, listening on a loopback port), relaying to
//! smtp-sink, with smtpd_milters pointing at the daemon. swaks is the SMTP client.

mod common;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, GTUBE, Rbldnsd, Zone, require_tool};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Postfix {
    dir: tempfile::TempDir,
    conf: PathBuf,
    smtp_port: u16,
    sink: Child,
    sink_dir: PathBuf,
}

impl Postfix {
    fn start(milter_port: u16) -> Postfix {
        Self::start_milter(&format!("inet:127.0.0.1:{milter_port}"))
    }

    /// A Postfix whose smtpd_milters is `milter` (Postfix's spelling: inet:HOST:PORT or
    /// unix:PATH).
    fn start_milter(milter: &str) -> Postfix {
        let dir = tempfile::tempdir().unwrap();
        // Postfix's daemons and smtp-sink run as the postfix user and must reach their files.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let conf = dir.path().join("conf");
        let queue = dir.path().join("queue");
        let data = dir.path().join("data");
        let sink_dir = dir.path().join("sink");
        for d in [&conf, &queue, &data, &sink_dir] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::set_permissions(&sink_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let chown = Command::new("chown")
            .arg("postfix:postfix")
            .arg(&data)
            .status()
            .unwrap();
        assert!(chown.success(), "chown of the data directory failed");
        let smtp_port = free_port();
        let sink_port = free_port();

        let sink = Command::new("smtp-sink")
            .args(["-u", "postfix", "-d"])
            .arg(format!("{}/msg.", sink_dir.display()))
            .arg(format!("127.0.0.1:{sink_port}"))
            .arg("64")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smtp-sink");

        let main_cf = format!(
            r#"compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.repmilter.test
mydomain = repmilter.test
mydestination =
local_recipient_maps =
relay_domains =
relayhost = [127.0.0.1]:{sink_port}
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
alias_maps =
alias_database =
biff = no
smtputf8_enable = no
smtp_dns_support_level = disabled
maillog_file = {log}
maillog_file_prefixes = {dir}
syslog_name = postfix-repmilter-test
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
smtpd_milters = {milter}
non_smtpd_milters =
milter_protocol = 6
milter_default_action = tempfail
milter_connect_timeout = 5s
milter_command_timeout = 10s
milter_content_timeout = 30s
"#,
            queue = queue.display(),
            data = data.display(),
            log = dir.path().join("maillog").display(),
            dir = dir.path().display(),
        );
        std::fs::write(conf.join("main.cf"), main_cf).unwrap();
        let master_cf = format!(
            "127.0.0.1:{smtp_port} inet n - n - - smtpd\n\
             pickup unix n - n 60 1 pickup\n\
             cleanup unix n - n - 0 cleanup\n\
             qmgr unix n - n 300 1 qmgr\n\
             rewrite unix - - n - - trivial-rewrite\n\
             bounce unix - - n - 0 bounce\n\
             defer unix - - n - 0 bounce\n\
             trace unix - - n - 0 bounce\n\
             verify unix - - n - 1 verify\n\
             flush unix n - n 1000? 0 flush\n\
             proxymap unix - - n - - proxymap\n\
             smtp unix - - n - - smtp\n\
             relay unix - - n - - smtp\n\
             showq unix n - n - - showq\n\
             error unix - - n - - error\n\
             retry unix - - n - - error\n\
             discard unix - - n - - discard\n\
             anvil unix - - n - 1 anvil\n\
             scache unix - - n - 1 scache\n\
             postlog unix-dgram n - n - 1 postlogd\n"
        );
        std::fs::write(conf.join("master.cf"), master_cf).unwrap();

        let out = postfix_cmd(&conf, &["start"]);
        assert!(
            out.status.success(),
            "postfix start failed:\n{}{}\nmaillog:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.path().join("maillog")).unwrap_or_default()
        );
        let pf = Postfix {
            dir,
            conf,
            smtp_port,
            sink,
            sink_dir,
        };
        pf.wait_for_smtp();
        pf
    }

    fn wait_for_smtp(&self) {
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.smtp_port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "postfix smtpd did not come up:\n{}",
                self.maillog()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// Sends one message with swaks; returns its output and whether it exited 0.
    fn swaks(&self, subject: &str, body: &str, extra_header: Option<&str>) -> (String, bool) {
        self.swaks_from("127.0.0.1", subject, body, extra_header)
    }

    /// Sends one message with swaks from the local address `source`.
    fn swaks_from(
        &self,
        source: &str,
        subject: &str,
        body: &str,
        extra_header: Option<&str>,
    ) -> (String, bool) {
        let mut cmd = Command::new("swaks");
        cmd.args(["--local-interface", source]);
        cmd.args(["--server", &format!("127.0.0.1:{}", self.smtp_port)])
            .args(["--from", "alice@example.org", "--to", "bob@example.net"])
            .args(["--helo", "client.example"])
            .args(["--header", &format!("Subject: {subject}")])
            .args(["--body", body])
            .args(["--timeout", "60"]);
        if let Some(h) = extra_header {
            cmd.args(["--add-header", h]);
        }
        let out: Output = cmd.output().expect("run swaks");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (text, out.status.success())
    }

    /// Waits for a delivered message containing `needle`; returns its text.
    fn delivered(&self, needle: &str, timeout: Duration) -> Option<String> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            for entry in std::fs::read_dir(&self.sink_dir).unwrap() {
                let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
                if text.contains(needle) {
                    return Some(text);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    fn queue_listing(&self) -> String {
        let out = Command::new("postqueue")
            .arg("-c")
            .arg(&self.conf)
            .arg("-p")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = postfix_cmd(&self.conf, &["stop"]);
        let _ = self.sink.kill();
        let _ = self.sink.wait();
    }
}

fn postfix_cmd(conf: &Path, args: &[&str]) -> Output {
    Command::new("postfix")
        .arg("-c")
        .arg(conf)
        .args(args)
        .output()
        .expect("run postfix")
}

fn tools_present() -> bool {
    let tools = ["postfix", "smtp-sink", "postqueue", "swaks", "rbldnsd"];
    if !tools.iter().all(|t| require_tool(t)) {
        return false;
    }
    // A private Postfix instance starts as root.
    let uid = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        common::skip("a private Postfix instance needs root");
        return false;
    }
    true
}

#[test]
fn through_a_real_postfix() {
    if !tools_present() {
        return;
    }
    // A DNS list that lists 127.0.0.2, queried with a key that must stay secret.
    let dns = Rbldnsd::start(&[Zone {
        name: "s3cr3tkey.ip.test",
        kind: "ip4set",
        data: "127.0.0.2\n",
    }])
    .expect("rbldnsd");
    let lists = format!(
        "[dns]\nservers = [\"127.0.0.1:{}\"]\nskip_private = false\n\n\
         [[dnsbl]]\nname = \"TEST_BL\"\nzone = \"ip.test\"\nkey = \"s3cr3tkey\"\nscore = 20.0\n",
        dns.port
    );
    let mut daemon = Daemon::start("", &lists);
    let pf = Postfix::start(daemon.port);

    // GTUBE is refused at end of data with 550 5.7.1.
    let (out, ok) = pf.swaks("gtube", &format!("Hello\n{GTUBE}\n"), None);
    assert!(!ok, "swaks succeeded for GTUBE:\n{out}");
    assert!(
        out.contains("550 5.7.1 Message rejected as spam"),
        "{out}\nmaillog:\n{}",
        pf.maillog()
    );

    // A clean message is delivered with X-Spam-Status: No, and a forged flag is gone.
    let (out, ok) = pf.swaks(
        "clean message",
        "Shall we meet at noon?",
        Some("X-Spam-Flag: YES"),
    );
    assert!(
        ok,
        "swaks failed for ham:\n{out}\nmaillog:\n{}",
        pf.maillog()
    );
    let msg = pf
        .delivered("Subject: clean message", Duration::from_secs(60))
        .unwrap_or_else(|| panic!("ham not delivered to smtp-sink\nmaillog:\n{}", pf.maillog()));
    assert!(
        msg.contains("X-Spam-Status: No, score=0.0 required=5.0"),
        "{msg}"
    );
    assert!(msg.contains("X-Spam-Score: 0.0"), "{msg}");
    assert!(
        !msg.contains("X-Spam-Flag"),
        "forged X-Spam-Flag survived:\n{msg}"
    );
    assert!(daemon.wait_log("message scored", Duration::from_secs(5)));
    // The info line carries Postfix's queue id.
    let line = daemon
        .log()
        .lines()
        .find(|l| l.contains("message scored") && l.contains("action=accept"))
        .unwrap()
        .to_string();
    assert!(
        !line.contains("queue_id=\"-\"") && line.contains("queue_id=\""),
        "{line}"
    );

    // A client at a listed address (swaks bound to 127.0.0.2) is rejected at end of data.
    let (out, ok) = pf.swaks_from("127.0.0.2", "from a listed host", "Hello again", None);
    assert!(!ok, "swaks succeeded from a listed address:\n{out}");
    assert!(
        out.contains("550 5.7.1 Message rejected as spam"),
        "{out}\nmaillog:\n{}\ndaemon:\n{}",
        pf.maillog(),
        daemon.log()
    );
    assert!(
        daemon.wait_log("TEST_BL", Duration::from_secs(5)),
        "{}",
        daemon.log()
    );
    assert!(
        !daemon.log().contains("s3cr3tkey") && !out.contains("s3cr3tkey"),
        "the query key leaked:\n{}\n{out}",
        daemon.log()
    );

    // With the daemon stopped, Postfix answers 4xx: mail is neither accepted unfiltered nor lost.
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(30)), Some(0));
    let (out, ok) = pf.swaks("while down", "Shall we meet at one?", None);
    assert!(!ok, "swaks succeeded with the milter down:\n{out}");
    assert!(
        out.lines().any(|l| l.starts_with("<** 4")),
        "no 4xx answer with the milter down:\n{out}\nmaillog:\n{}",
        pf.maillog()
    );
    assert!(
        pf.delivered("Subject: while down", Duration::from_secs(3))
            .is_none()
    );
    let queue = pf.queue_listing();
    assert!(queue.contains("Mail queue is empty"), "{queue}");
}

/// Runs a command to the end; panics with its output when it fails.
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// The value of `key=` in a unit file or in `systemctl show` output.
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in the unit:\n{unit}"))
}

/// The Debian package, as an administrator meets it: built with cargo-deb, clean under
/// lintian, installed with dpkg (user, files, unit), the unit started, reloaded and stopped
/// by a real systemd, and Postfix talking to the daemon over a unix socket owned by the
/// postfix group. It installs a package on this machine, so it runs under CI
/// (CI=true) or when asked (REPMILTER_TEST_PACKAGE=1), and is skipped, loudly, otherwise.
#[test]
fn the_debian_package_installs_and_postfix_talks_to_it_over_a_unix_socket() {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    if !ci && std::env::var("REPMILTER_TEST_PACKAGE").as_deref() != Ok("1") {
        common::skip("installs the Debian package system-wide: set REPMILTER_TEST_PACKAGE=1");
        return;
    }
    if !tools_present()
        || ![
            "cargo-deb",
            "lintian",
            "dpkg",
            "systemd-analyze",
            "unshare",
            "nsenter",
        ]
        .iter()
        .all(|t| require_tool(t))
    {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = run_ok(Command::new("bash").arg(root.join("packaging/build-deb.sh")));
    let deb = built
        .lines()
        .rev()
        .find(|l| l.trim_end().ends_with(".deb"))
        .map(|l| PathBuf::from(l.trim()))
        .unwrap_or_else(|| panic!("no .deb named in:\n{built}"));
    // lintian's verdict: no error and no warning.
    run_ok(
        Command::new("lintian")
            .args(["--fail-on", "error,warning"])
            .arg(&deb),
    );
    run_ok(Command::new("dpkg").arg("-i").arg(&deb));

    // What goes where.
    for f in [
        "/usr/sbin/repmilter",
        "/etc/repmilter/repmilter.toml",
        "/etc/repmilter/rules.d/README",
        "/usr/share/repmilter/rules/10-phishing.cf",
        "/usr/share/repmilter/rules/lists/phishing.txt",
        "/usr/share/man/man8/repmilter.8.gz",
        "/usr/share/man/man5/repmilter.toml.5.gz",
        "/usr/lib/systemd/system/repmilter.service",
        "/usr/share/doc/repmilter/copyright",
    ] {
        assert!(Path::new(f).exists(), "{f} not installed");
    }
    let groups = run_ok(Command::new("id").args(["-nG", "repmilter"]));
    assert!(
        groups.split_whitespace().any(|g| g == "postfix"),
        "{groups}"
    );
    run_ok(
        Command::new("systemd-analyze")
            .args(["verify", "/usr/lib/systemd/system/repmilter.service"]),
    );
    let check = run_ok(Command::new("/usr/sbin/repmilter").args([
        "config",
        "check",
        "--config",
        "/etc/repmilter/repmilter.toml",
    ]));
    assert!(check.contains("ok (listen inet:127.0.0.1:11330"), "{check}");
    let man = run_ok(Command::new("man").args(["-P", "cat", "5", "repmilter.toml"]));
    assert!(man.contains("socket_group"), "{man}");

    // The unit started by a real systemd: CI's PID 1 is not systemd, so systemd boots as PID 1
    // of a throwaway container over this machine's own files (the package just installed),
    // with Postfix's milter directory bound in so the socket is shared with the Postfix here.
    let unit = std::fs::read_to_string("/usr/lib/systemd/system/repmilter.service").unwrap();
    assert_eq!(unit_value(&unit, "Type"), "notify");
    assert_eq!(unit_value(&unit, "User"), "repmilter");
    let socket = "/var/spool/postfix/repmilter/milter.sock";
    let installed = std::fs::read_to_string("/etc/repmilter/repmilter.toml").unwrap();
    let config = installed
        .replace(
            "listen = \"inet:127.0.0.1:11330\"",
            &format!("listen = \"unix:{socket}\""),
        )
        .replace(
            "\n# socket_group = \"postfix\"\n",
            "\nsocket_group = \"postfix\"\n",
        );
    assert!(config.contains(&format!("unix:{socket}")) && config.contains("\nsocket_group"));
    let container = Container::boot(&["/var/spool/postfix/repmilter"]);
    container.write("/etc/repmilter/repmilter.toml", &config);
    container.systemctl(&["start", "repmilter"]);
    let (active, pid) = container.state();
    assert_eq!(active, "active/running");
    let owner = run_ok(Command::new("stat").args(["-c", "%U:%G %a"]).arg(socket));
    assert_eq!(owner.trim(), "repmilter:postfix 660");
    let ps = container.run(&["ps", "-o", "user:32=,group:32=", "-p", &pid]);
    assert_eq!(
        ps.split_whitespace().collect::<Vec<_>>(),
        ["repmilter", "repmilter"]
    );

    let pf = Postfix::start_milter(&format!("unix:{socket}"));
    let (out, ok) = pf.swaks("gtube", &format!("Hello\n{GTUBE}\n"), None);
    assert!(!ok, "swaks succeeded for GTUBE:\n{out}");
    assert!(
        out.contains("550 5.7.1 Message rejected as spam"),
        "{out}\nmaillog:\n{}\njournal:\n{}",
        pf.maillog(),
        container.journal()
    );
    let (out, ok) = pf.swaks("packaged ham", "Shall we meet at noon?", None);
    assert!(ok, "{out}\nmaillog:\n{}", pf.maillog());
    let msg = pf
        .delivered("Subject: packaged ham", Duration::from_secs(60))
        .unwrap_or_else(|| panic!("ham not delivered\nmaillog:\n{}", pf.maillog()));
    assert!(msg.contains("X-Spam-Status: No"), "{msg}");

    // systemctl reload: the same process reloads; a config that does not check is refused by
    // ExecReload before the daemon is signalled, and the daemon goes on with what it had.
    // systemd 252 (Debian 12) has no Type=notify-reload: `systemctl reload` returns once
    // ExecReload has sent SIGHUP, and the unit shows reloading/reload from the daemon's
    // RELOADING=1 until its READY=1, when the new rules are in place.
    container.systemctl(&["reload", "repmilter"]);
    assert_eq!(
        container.settled_state(),
        ("active/running".to_string(), pid.clone())
    );
    let journal = container.journal();
    assert!(journal.contains("config reloaded"), "{journal}");
    container.write(
        "/etc/repmilter/repmilter.toml",
        &config.replace("[milter]", "[milter]\nlisten_typo = 1"),
    );
    let refused = container.try_systemctl(&["reload", "repmilter"]);
    assert!(!refused.status.success(), "a broken config reloaded");
    assert_eq!(
        container.settled_state(),
        ("active/running".to_string(), pid.clone())
    );
    let (out, ok) = pf.swaks("gtube again", &format!("Hello\n{GTUBE}\n"), None);
    assert!(!ok && out.contains("550 5.7.1"), "{out}");
    container.write("/etc/repmilter/repmilter.toml", &config);

    // systemctl stop: a clean exit, and the socket is gone.
    container.systemctl(&["stop", "repmilter"]);
    let result = container.run(&[
        "systemctl",
        "show",
        "repmilter",
        "-p",
        "Result",
        "-p",
        "ExecMainStatus",
    ]);
    assert!(
        result.contains("Result=success") && result.contains("ExecMainStatus=0"),
        "{result}"
    );
    assert!(
        !Path::new(socket).exists(),
        "the socket outlived the daemon"
    );
    drop(pf);
    drop(container);

    // Purged, it leaves neither its files nor its user behind.
    run_ok(Command::new("dpkg").args(["--purge", "repmilter"]));
    assert!(!Path::new("/usr/sbin/repmilter").exists());
    let user = Command::new("id").arg("repmilter").output().unwrap();
    assert!(!user.status.success(), "the repmilter user is still there");
}

/// systemd booted as PID 1 of a container made of this machine's files (testdata/systemd/
/// container.sh): writes go to a tmpfs, so the host keeps its /etc and /tmp; killed on drop.
struct Container {
    dir: tempfile::TempDir,
    script: PathBuf,
}

impl Container {
    fn boot(binds: &[&str]) -> Container {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/systemd/container.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(&script).arg("start").arg(dir.path());
        for b in binds {
            cmd.args(["--bind", b]);
        }
        let container = Container { dir, script };
        run_ok(&mut cmd);
        container
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(&self.script)
            .arg("run")
            .arg(self.dir.path())
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> String {
        run_ok(&mut self.command(args))
    }

    fn try_systemctl(&self, args: &[&str]) -> Output {
        self.command(&["systemctl"]).args(args).output().unwrap()
    }

    /// `systemctl ARGS`; on failure, the panic carries systemctl's words and the journal.
    fn systemctl(&self, args: &[&str]) {
        let out = self.try_systemctl(args);
        assert!(
            out.status.success(),
            "systemctl {args:?}: {}{}\njournal:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.journal()
        );
    }

    /// ("ActiveState/SubState", MainPID) of repmilter.service.
    fn state(&self) -> (String, String) {
        let show = self.run(&[
            "systemctl",
            "show",
            "repmilter",
            "-p",
            "ActiveState",
            "-p",
            "SubState",
            "-p",
            "MainPID",
        ]);
        (
            format!(
                "{}/{}",
                unit_value(&show, "ActiveState"),
                unit_value(&show, "SubState")
            ),
            unit_value(&show, "MainPID").to_string(),
        )
    }

    /// `state()` once the unit has left reloading (the daemon's RELOADING=1 ... READY=1),
    /// or after 60 seconds whatever it is then.
    fn settled_state(&self) -> (String, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let state = self.state();
            if !state.0.starts_with("reloading") || Instant::now() > deadline {
                return state;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn journal(&self) -> String {
        let out = self
            .command(&["journalctl", "--no-pager", "-o", "short-monotonic"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes a file inside the container (its overlay, not the host).
    fn write(&self, path: &str, text: &str) {
        use std::io::Write;
        let mut child = self
            .command(&["sh", "-c", "cat > \"$0\"", path])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "writing {path}");
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}
