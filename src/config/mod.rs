//! Configuration: a TOML file validated into a typed model, every problem reported at once.
//!
//! The sample `config/repmilter.toml` documents every key. What a reload (SIGHUP) can change:
//! everything except the keys listed by [`Config::restart_only_changes`], which need a restart.

mod dns;
mod reader;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnetwork::IpNetwork;

pub use dns::{Allow, Check, Dns, DnsList, ListKind, ReceivedHops};

/// Checks on names, networks and addresses that list files share with the config.
pub mod dns_names {
    pub use super::dns::{is_dns_name, parse_network, parse_recipient};
}
pub use reader::{Problem, parse_duration};
use reader::{Reader, Table};

/// Where the daemon listens, in the spellings Postfix and Sendmail use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Inet(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Inet(SocketAddr::V4(a)) => write!(f, "inet:{}:{}", a.ip(), a.port()),
            Listen::Inet(SocketAddr::V6(a)) => write!(f, "inet6:[{}]:{}", a.ip(), a.port()),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl std::str::FromStr for Listen {
    type Err = String;

    /// Accepts `inet:HOST:PORT` and `inet6:[HOST]:PORT` (Postfix), `inet:PORT@HOST` and
    /// `inet6:PORT@HOST` (Sendmail), `unix:/path` and `local:/path`. HOST is an IP address or
    /// `localhost`; names are not resolved, so the address cannot change behind an operator's back.
    fn from_str(s: &str) -> Result<Self, String> {
        let (scheme, rest) = s.split_once(':').ok_or_else(|| {
            format!("{s:?} has no scheme: write inet:HOST:PORT, inet6:[HOST]:PORT or unix:/path")
        })?;
        match scheme {
            "unix" | "local" => {
                if rest.is_empty() {
                    return Err("unix socket path is empty".into());
                }
                Ok(Listen::Unix(PathBuf::from(rest)))
            }
            "inet" | "inet6" => {
                let (host, port) = if let Some((port, host)) = rest.split_once('@') {
                    (host, port)
                } else {
                    let (host, port) = rest
                        .rsplit_once(':')
                        .ok_or_else(|| format!("{s:?} has no port"))?;
                    (host.trim_start_matches('[').trim_end_matches(']'), port)
                };
                let port: u16 = port
                    .parse()
                    .map_err(|_| format!("port {port:?} is not a number from 0 to 65535"))?;
                let ip: IpAddr = match host {
                    "localhost" if scheme == "inet6" => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                    "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    _ => host.parse().map_err(|_| {
                        format!("host {host:?} is not an IP address (names are not resolved)")
                    })?,
                };
                if scheme == "inet6" && ip.is_ipv4() {
                    return Err(format!("inet6 needs an IPv6 address, found {ip}"));
                }
                Ok(Listen::Inet(SocketAddr::new(ip, port)))
            }
            other => Err(format!("unknown scheme {other:?}: use inet, inet6 or unix")),
        }
    }
}

/// `[milter]`: the socket and per-message limits.
#[derive(Debug, Clone, PartialEq)]
pub struct MilterConfig {
    /// Where to listen. Default `inet:127.0.0.1:11330`. Restart to change.
    pub listen: Listen,
    /// Permissions of a unix socket. Default 0o660 (the MTA's group connects). Restart to change.
    pub socket_mode: u32,
    /// Concurrent MTA connections served; one past the limit is closed at once (the MTA then
    /// applies its `milter_default_action` instead of waiting out a timeout). Default 1000.
    pub max_connections: usize,
    /// Bytes of each message (headers and body) kept for scanning; the rest is not scanned and
    /// `MESSAGE_TRUNCATED` says so. Default 10 MiB, Postfix's default `message_size_limit`.
    pub max_message_size: usize,
    /// Time from end of message to the verdict. Past it, stages that have not answered count as
    /// absent. Default 20 s, well under Postfix's 300 s `milter_content_timeout`.
    pub message_timeout: Duration,
    /// How long SIGTERM waits for sessions in flight. Default 30 s.
    pub shutdown_timeout: Duration,
    /// Time a new connection has to negotiate (OPTNEG) before it is closed. MTAs negotiate at
    /// once; only a stray or hostile client stays silent. Default 5 s.
    pub handshake_timeout: Duration,
    /// Time each command has to arrive in full, counted from the previous one, however its
    /// bytes trickle in. Postfix's milter connection is silent while it waits for the SMTP
    /// client's next command, up to `smtpd_timeout` (300 s). Default 330 s.
    pub idle_timeout: Duration,
}

/// `[actions]`: score thresholds; an action is off when its key is absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thresholds {
    pub add_header: Option<f64>,
    pub rewrite_subject: Option<f64>,
    pub quarantine: Option<f64>,
    pub soft_reject: Option<f64>,
    pub discard: Option<f64>,
    pub reject: Option<f64>,
}

/// `[policy]`: the words the actions use.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub reject_text: String,
    pub soft_reject_text: String,
    pub subject_prefix: String,
    pub quarantine_reason: String,
}

/// `[headers]`: the SpamAssassin-compatible headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Headers {
    /// X-Spam-Status, X-Spam-Score and X-Spam-Level on every message, ham included.
    pub status: bool,
    /// X-Spam-Report with each symbol and its score.
    pub report: bool,
    /// Remove X-Spam-* headers that arrive from outside, so senders cannot forge a verdict.
    pub remove_incoming: bool,
}

/// How a class of trusted sender is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustMode {
    /// Not scanned at all: accepted as is.
    Skip,
    /// Scanned, with the class's symbol and score added.
    Scan,
}

/// `[trust]`: senders scored differently or not at all.
#[derive(Debug, Clone, PartialEq)]
pub struct Trust {
    pub networks: Vec<IpNetwork>,
    pub networks_mode: TrustMode,
    pub networks_score: f64,
    pub authenticated_mode: TrustMode,
    pub authenticated_score: f64,
}

/// `[rules]`: signature files (a later stage).
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub paths: Vec<PathBuf>,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub path: PathBuf,
    pub milter: MilterConfig,
    pub actions: Thresholds,
    pub policy: Policy,
    pub headers: Headers,
    pub trust: Trust,
    /// `[scores]`: per-symbol score overrides (`GTUBE = 1000.0`).
    pub scores: BTreeMap<String, f64>,
    pub rules: Rules,
    /// `[log] level`: a tracing filter such as `info` or `repmilter=debug`.
    pub log_level: String,
    pub dns: Dns,
    /// `[[dnsbl]]`, `[[dnswl]]` and `[[uribl]]` tables, in file order.
    pub lists: Vec<DnsList>,
    pub allow: Allow,
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: crate::files::ReadError,
    },
    #[error("{} problem(s) in {}:\n{}", problems.len(), path.display(), list(problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Largest config file read. A documented config is a few KiB; even thousands of `[scores]`
/// lines stay far below this, while `/dev/zero` or a log file named by mistake would not.
pub const MAX_CONFIG_FILE: u64 = 4 * 1024 * 1024;

/// Largest `max_message_size`: the body is held in memory per message.
const MAX_MESSAGE_SIZE_LIMIT: u64 = 1 << 30;

/// Smallest `max_message_size`: below this, headers alone fill it and nothing is scanned.
const MIN_MESSAGE_SIZE: u64 = 16 * 1024;

/// Longest `message_timeout` and `shutdown_timeout`: past this, the MTA has long given up.
const MAX_MESSAGE_TIMEOUT: Duration = Duration::from_secs(600);

/// Longest `handshake_timeout`: Postfix gives up on a milter after `milter_connect_timeout`
/// (30 s); a connection silent for longer is not an MTA's.
const MAX_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest `idle_timeout`: libmilter's own read timeout is 7210 s; Sendmail waits up to an hour
/// (`Timeout.command`) for a slow SMTP client.
const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(7200);

/// Longest text in an SMTP reply: a reply line is at most 512 bytes (RFC 5321 4.5.3.1.5),
/// and the code and enhanced code come first.
const MAX_REPLY_TEXT: usize = 400;

impl Default for Config {
    fn default() -> Self {
        Config {
            path: PathBuf::new(),
            milter: MilterConfig {
                listen: Listen::Inet(SocketAddr::from(([127, 0, 0, 1], 11330))),
                socket_mode: 0o660,
                max_connections: 1000,
                max_message_size: 10 * 1024 * 1024,
                message_timeout: Duration::from_secs(20),
                shutdown_timeout: Duration::from_secs(30),
                handshake_timeout: Duration::from_secs(5),
                idle_timeout: Duration::from_secs(330),
            },
            actions: Thresholds {
                add_header: Some(5.0),
                rewrite_subject: Some(8.0),
                reject: Some(15.0),
                ..Thresholds::default()
            },
            policy: Policy {
                reject_text: "Message rejected as spam".into(),
                soft_reject_text: "Message deferred, try again later".into(),
                subject_prefix: "[SPAM] ".into(),
                quarantine_reason: "held as spam by repmilter".into(),
            },
            headers: Headers {
                status: true,
                report: true,
                remove_incoming: true,
            },
            trust: Trust {
                networks: Vec::new(),
                networks_mode: TrustMode::Skip,
                networks_score: 0.0,
                authenticated_mode: TrustMode::Scan,
                authenticated_score: 0.0,
            },
            scores: BTreeMap::new(),
            rules: Rules { paths: Vec::new() },
            log_level: "info".into(),
            dns: Dns::default(),
            lists: Vec::new(),
            allow: Allow {
                score: -20.0,
                ..Allow::default()
            },
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let src =
            crate::files::read_text(path, MAX_CONFIG_FILE).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        Config::parse(&src, path)
    }

    /// Validates config text; `path` names the file in messages and anchors relative paths.
    pub fn parse(src: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut r = Reader::new(src, path);
        let doc = match toml::de::DeTable::parse(src) {
            Ok(doc) => doc,
            Err(e) => {
                let at = e.span().map(|s| s.start).unwrap_or(0);
                r.problem_at(at, "", e.message().trim().to_string());
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    problems: r.finish(),
                });
            }
        };
        let mut c = Config {
            path: path.to_path_buf(),
            ..Config::default()
        };
        let root = doc.get_ref();
        r.known_keys(
            root,
            "",
            &[
                "milter", "actions", "policy", "headers", "trust", "scores", "rules", "log", "dns",
                "dnsbl", "dnswl", "uribl", "allow",
            ],
        );
        if let Some(t) = r.table(root, "", "milter") {
            read_milter(&mut r, t, &mut c.milter);
        }
        if let Some(t) = r.table(root, "", "actions") {
            read_actions(&mut r, t, &mut c.actions);
        }
        if let Some(t) = r.table(root, "", "policy") {
            read_policy(&mut r, t, &mut c.policy);
        }
        if let Some(t) = r.table(root, "", "headers") {
            let p = "headers";
            r.known_keys(t, p, &["status", "report", "remove_incoming"]);
            let h = &mut c.headers;
            h.status = r.bool(t, p, "status").unwrap_or(h.status);
            h.report = r.bool(t, p, "report").unwrap_or(h.report);
            h.remove_incoming = r.bool(t, p, "remove_incoming").unwrap_or(h.remove_incoming);
        }
        if let Some(t) = r.table(root, "", "trust") {
            read_trust(&mut r, t, &mut c.trust);
        }
        if let Some(t) = r.table(root, "", "scores") {
            for (k, v) in t.iter() {
                let name = k.get_ref().to_string();
                let key = format!("scores.{name}");
                if !is_symbol_name(&name) {
                    r.problem_at(
                        k.span().start,
                        &key,
                        "a symbol name is A-Z, 0-9 and _, starting with a letter",
                    );
                    continue;
                }
                if let Some(x) = r.number_value(v, &key) {
                    c.scores.insert(name, x);
                }
            }
        }
        if let Some(t) = r.table(root, "", "rules") {
            r.known_keys(t, "rules", &["paths"]);
            if let Some(paths) = r.string_list(t, "rules", "paths") {
                let base = path.parent().unwrap_or(Path::new("."));
                c.rules.paths = paths.into_iter().map(|(p, _)| base.join(p)).collect();
            }
        }
        if let Some(t) = r.table(root, "", "dns") {
            dns::read_dns(&mut r, t, &mut c.dns);
        }
        c.lists = dns::read_lists(&mut r, root);
        if let Some(t) = r.table(root, "", "allow") {
            let base = path.parent().unwrap_or(Path::new("."));
            dns::read_allow(&mut r, t, base, &mut c.allow);
        }
        if !c.lists.is_empty() && c.dns.timeout >= c.milter.message_timeout {
            let at = root
                .get("dns")
                .and_then(|d| d.get_ref().as_table())
                .and_then(|t| t.get("timeout"))
                .map_or(0, |v| v.span().start);
            r.problem_at(
                at,
                "dns.timeout",
                format!(
                    "{:?} is not shorter than milter.message_timeout ({:?}): DNS answers would be cut off with the whole stage",
                    c.dns.timeout, c.milter.message_timeout
                ),
            );
        }
        if let Some(t) = r.table(root, "", "log") {
            r.known_keys(t, "log", &["level"]);
            if let Some(level) = r.string(t, "log", "level") {
                if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
                    let v = t.get("level").expect("key was just read");
                    r.problem(
                        v,
                        "log.level",
                        format!(
                            "{level:?} is not a log filter such as \"info\" or \"repmilter=debug\""
                        ),
                    );
                } else {
                    c.log_level = level;
                }
            }
        }
        if r.problem_count() == 0 {
            Ok(c)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems: r.finish(),
            })
        }
    }

    /// Keys that differ between `self` (running) and `new` but take effect only on restart.
    pub fn restart_only_changes(&self, new: &Config) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.milter.listen != new.milter.listen {
            v.push("milter.listen");
        }
        if self.milter.socket_mode != new.milter.socket_mode {
            v.push("milter.socket_mode");
        }
        if self.milter.max_connections != new.milter.max_connections {
            v.push("milter.max_connections");
        }
        if self.log_level != new.log_level {
            v.push("log.level");
        }
        if self.milter.shutdown_timeout != new.milter.shutdown_timeout {
            v.push("milter.shutdown_timeout");
        }
        v
    }

    /// The score of a symbol: the `[scores]` override, or the stage's default.
    pub fn score(&self, symbol: &str, default: f64) -> f64 {
        self.scores.get(symbol).copied().unwrap_or(default)
    }
}

pub fn is_symbol_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn read_milter(r: &mut Reader<'_>, t: &Table<'_>, m: &mut MilterConfig) {
    let p = "milter";
    r.known_keys(
        t,
        p,
        &[
            "listen",
            "socket_mode",
            "max_connections",
            "max_message_size",
            "message_timeout",
            "shutdown_timeout",
            "handshake_timeout",
            "idle_timeout",
        ],
    );
    if let Some(s) = r.string(t, p, "listen") {
        match s.parse::<Listen>() {
            Ok(l) => m.listen = l,
            Err(e) => {
                let v = t.get("listen").expect("key was just read");
                r.problem(v, "milter.listen", e);
            }
        }
    }
    if let Some(s) = r.string(t, p, "socket_mode") {
        match u32::from_str_radix(&s, 8) {
            Ok(mode) if mode <= 0o777 => m.socket_mode = mode,
            _ => {
                let v = t.get("socket_mode").expect("key was just read");
                r.problem(
                    v,
                    "milter.socket_mode",
                    format!("{s:?} is not an octal mode such as \"0660\""),
                );
            }
        }
    }
    if let Some(n) = r.integer(t, p, "max_connections", 1_000_000) {
        if n == 0 {
            let v = t.get("max_connections").expect("key was just read");
            r.problem(v, "milter.max_connections", "must be at least 1");
        } else {
            m.max_connections = n as usize;
        }
    }
    if let Some(n) = r.integer(t, p, "max_message_size", MAX_MESSAGE_SIZE_LIMIT) {
        if n < MIN_MESSAGE_SIZE {
            let v = t.get("max_message_size").expect("key was just read");
            let msg = format!("{n} is too small to scan anything: use at least {MIN_MESSAGE_SIZE}");
            r.problem(v, "milter.max_message_size", msg);
        } else {
            m.max_message_size = n as usize;
        }
    }
    if let Some(d) = r.duration(t, p, "message_timeout") {
        if d.is_zero() || d > MAX_MESSAGE_TIMEOUT {
            let v = t.get("message_timeout").expect("key was just read");
            let msg = format!(
                "must be more than 0 and at most {MAX_MESSAGE_TIMEOUT:?} (the MTA gives up first: Postfix's milter_content_timeout is 300s)"
            );
            r.problem(v, "milter.message_timeout", msg);
        } else {
            m.message_timeout = d;
        }
    }
    for (key, field, max) in [
        (
            "handshake_timeout",
            &mut m.handshake_timeout,
            MAX_HANDSHAKE_TIMEOUT,
        ),
        ("idle_timeout", &mut m.idle_timeout, MAX_IDLE_TIMEOUT),
    ] {
        if let Some(d) = r.duration(t, p, key) {
            if d < Duration::from_secs(1) || d > max {
                let v = t.get(key).expect("key was just read");
                r.problem(
                    v,
                    &format!("milter.{key}"),
                    format!("must be between 1s and {max:?}"),
                );
            } else {
                *field = d;
            }
        }
    }
    if let Some(d) = r.duration(t, p, "shutdown_timeout") {
        if d > MAX_MESSAGE_TIMEOUT {
            let v = t.get("shutdown_timeout").expect("key was just read");
            r.problem(
                v,
                "milter.shutdown_timeout",
                format!("must be at most {MAX_MESSAGE_TIMEOUT:?}"),
            );
        } else {
            m.shutdown_timeout = d;
        }
    }
}

fn read_actions(r: &mut Reader<'_>, t: &Table<'_>, a: &mut Thresholds) {
    let p = "actions";
    r.known_keys(
        t,
        p,
        &[
            "add_header",
            "rewrite_subject",
            "quarantine",
            "soft_reject",
            "discard",
            "reject",
        ],
    );
    // An absent key turns the action off, so the defaults do not carry over.
    let mut positive = |key: &str| {
        let x = r.number(t, p, key)?;
        if x <= 0.0 {
            let v = t.get(key).expect("key was just read");
            let msg = format!(
                "{x} would act on ordinary mail, which scores about 0: use a threshold above 0"
            );
            r.problem(v, &format!("actions.{key}"), msg);
            return None;
        }
        Some(x)
    };
    *a = Thresholds {
        add_header: positive("add_header"),
        rewrite_subject: positive("rewrite_subject"),
        quarantine: positive("quarantine"),
        soft_reject: positive("soft_reject"),
        discard: positive("discard"),
        reject: positive("reject"),
    };
}

fn read_policy(r: &mut Reader<'_>, t: &Table<'_>, pol: &mut Policy) {
    let p = "policy";
    r.known_keys(
        t,
        p,
        &[
            "reject_text",
            "soft_reject_text",
            "subject_prefix",
            "quarantine_reason",
        ],
    );
    for (key, field) in [
        ("reject_text", &mut pol.reject_text),
        ("soft_reject_text", &mut pol.soft_reject_text),
        ("subject_prefix", &mut pol.subject_prefix),
        ("quarantine_reason", &mut pol.quarantine_reason),
    ] {
        if let Some(s) = r.string(t, p, key) {
            // These go into SMTP replies and the Subject header as they are: 7-bit text only
            // (a non-ASCII subject prefix would need RFC 2047 encoding).
            let bad = if !s.chars().all(|c| c == ' ' || c.is_ascii_graphic()) {
                Some("must be printable ASCII on one line".to_string())
            } else if s.len() > MAX_REPLY_TEXT {
                Some(format!(
                    "is {} characters; at most {MAX_REPLY_TEXT} fit an SMTP reply",
                    s.len()
                ))
            } else {
                None
            };
            match bad {
                Some(msg) => {
                    let v = t.get(key).expect("key was just read");
                    r.problem(v, &format!("policy.{key}"), msg);
                }
                None => *field = s,
            }
        }
    }
}

fn read_trust(r: &mut Reader<'_>, t: &Table<'_>, tr: &mut Trust) {
    let p = "trust";
    r.known_keys(
        t,
        p,
        &[
            "networks",
            "networks_mode",
            "networks_score",
            "authenticated_mode",
            "authenticated_score",
        ],
    );
    if let Some(items) = r.string_list(t, p, "networks") {
        tr.networks.clear();
        for (s, at) in items {
            match s.parse::<IpNetwork>() {
                Ok(n) => tr.networks.push(n),
                Err(_) => r.problem_at(
                    at,
                    "trust.networks",
                    format!("{s:?} is not an address or network such as 192.0.2.0/24"),
                ),
            }
        }
    }
    for (key, field) in [
        ("networks_mode", &mut tr.networks_mode),
        ("authenticated_mode", &mut tr.authenticated_mode),
    ] {
        if let Some(s) = r.string(t, p, key) {
            match s.as_str() {
                "skip" => *field = TrustMode::Skip,
                "scan" => *field = TrustMode::Scan,
                _ => {
                    let v = t.get(key).expect("key was just read");
                    r.problem(
                        v,
                        &format!("trust.{key}"),
                        format!("{s:?}: expected \"skip\" or \"scan\""),
                    );
                }
            }
        }
    }
    if let Some(x) = r.number(t, p, "networks_score") {
        tr.networks_score = x;
    }
    if let Some(x) = r.number(t, p, "authenticated_score") {
        tr.authenticated_score = x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(s, Path::new("/etc/repmilter/test.toml"))
    }

    #[test]
    fn the_fixed_keys_parse() {
        let c = parse(
            r#"
[milter]
listen = "inet:127.0.0.1:11330"
[actions]
add_header = 5.0
rewrite_subject = 8.0
reject = 15
[rules]
paths = ["rules"]
"#,
        )
        .unwrap();
        assert_eq!(c.actions.reject, Some(15.0));
        assert_eq!(c.actions.quarantine, None);
        assert_eq!(c.rules.paths, vec![PathBuf::from("/etc/repmilter/rules")]);
    }

    #[test]
    fn listen_spellings() {
        let ok = [
            ("inet:127.0.0.1:11330", "inet:127.0.0.1:11330"),
            ("inet:11330@127.0.0.1", "inet:127.0.0.1:11330"),
            ("inet:localhost:25", "inet:127.0.0.1:25"),
            ("inet6:[::1]:11330", "inet6:[::1]:11330"),
            ("inet6:11330@::1", "inet6:[::1]:11330"),
            ("unix:/run/repmilter/sock", "unix:/run/repmilter/sock"),
            ("local:/run/repmilter/sock", "unix:/run/repmilter/sock"),
        ];
        for (input, shown) in ok {
            assert_eq!(
                input.parse::<Listen>().unwrap().to_string(),
                shown,
                "{input}"
            );
        }
        for bad in [
            "127.0.0.1:25",
            "inet:mx.example:25",
            "inet:127.0.0.1:99999",
            "inet6:[127.0.0.1]:1",
            "tcp:1",
            "unix:",
        ] {
            assert!(bad.parse::<Listen>().is_err(), "{bad}");
        }
    }

    /// Every problem, as `line:key message`, starts with one of `want`, one for one.
    fn expect_problems(err: &ConfigError, want: &[&str]) {
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("{err}")
        };
        let got: Vec<String> = problems
            .iter()
            .map(|p| format!("{}:{} {}", p.line, p.key, p.message))
            .collect();
        for w in want {
            assert!(
                got.iter().any(|g| g.starts_with(w)),
                "missing {w:?} in {got:#?}"
            );
        }
        assert_eq!(got.len(), want.len(), "{got:#?}");
    }

    #[test]
    fn every_problem_is_reported_with_line_and_key() {
        let err = parse(
            r#"[milter]
listen = "tcp:foo"
max_conections = 10
message_timeout = 30

[actions]
reject = "high"

[trust]
networks = ["10.0.0.0/8", "not-a-net"]
authenticated_mode = "maybe"

[bogus]
"#,
        )
        .unwrap_err();
        expect_problems(
            &err,
            &[
                "2:milter.listen unknown scheme \"tcp\"",
                "3:milter.max_conections unknown key",
                "4:milter.message_timeout expected a duration",
                "7:actions.reject expected a number, found string",
                "10:trust.networks \"not-a-net\" is not",
                "11:trust.authenticated_mode \"maybe\": expected",
                "13:bogus unknown key",
            ],
        );
        assert!(
            err.to_string()
                .contains("/etc/repmilter/test.toml:3:1: milter.max_conections")
        );
    }

    #[test]
    fn dns_lists_and_allowlists_parse() {
        let c = parse(
            r#"
[dns]
servers = ["127.0.0.1", "[::1]:5353"]
timeout = "2s"
received = "all"
skip_private = false

[[dnsbl]]
name = "ZEN"
zone = "zen.dq.spamhaus.net."
key = "abc123"
codes = [
  { code = "127.0.0.2", symbol = "ZEN_SBL", score = 4.0 },
  { range = "127.0.0.4-127.0.0.7", symbol = "ZEN_XBL", score = 3.5 },
]

[[uribl]]
name = "SURBL"
zone = "multi.surbl.org"
codes = [{ bits = 8, symbol = "SURBL_PH", score = 5 }]

[[dnswl]]
name = "DNSWL"
zone = "list.dnswl.org"

[allow]
networks = ["192.0.2.0/24", "2001:db8::1"]
sender_domains = ["Partner.Example."]
recipients = ["postmaster@our.example", "@vip.example"]
files = ["allow.txt"]
"#,
        )
        .unwrap();
        assert_eq!(c.dns.servers.len(), 2);
        assert_eq!(c.dns.servers[0].port(), 53);
        assert_eq!(c.dns.received, ReceivedHops::All);
        assert_eq!(c.lists.len(), 3);
        let zen = &c.lists[0];
        assert_eq!(zen.zone, "zen.dq.spamhaus.net");
        assert_eq!(zen.query_zone(), "abc123.zen.dq.spamhaus.net");
        assert_eq!(zen.checks, [Check::Client, Check::Received]);
        assert_eq!(zen.codes.len(), 2);
        // Lists come section by section: [[dnsbl]], then [[dnswl]], then [[uribl]].
        assert!(c.lists[1].allow && c.lists[1].score < 0.0);
        assert_eq!(c.lists[2].kind, ListKind::Domain);
        assert_eq!(c.lists[2].checks, [Check::Urls]);
        assert_eq!(c.allow.sender_domains, ["partner.example"]);
        assert_eq!(c.allow.files, [PathBuf::from("/etc/repmilter/allow.txt")]);
    }

    #[test]
    fn dns_problems_are_reported_with_line_and_key() {
        let err = parse(
            r#"[dns]
servers = ["resolver.local"]
timeout = "40s"

[[dnsbl]]
name = "bad name"
zone = "zen..spamhaus.org"
key = "sec ret"
checks = ["urls", "client", "mx"]
codes = [{ code = "127.0.0.2" }, { range = "127.0.0.9-127.0.0.4", symbol = "X" }, { bits = 0, symbol = "Y" }]

[[uribl]]
zone = "multi.surbl.org"
kind = "ip"

[dnswl]
name = "SINGLE"
"#,
        )
        .unwrap_err();
        expect_problems(
            &err,
            &[
                "2:dns.servers \"resolver.local\" is not an address",
                "3:dns.timeout must be between",
                "6:dnsbl[0].name a symbol name",
                "7:dnsbl[0].zone \"zen..spamhaus.org\" is not a DNS name",
                "8:dnsbl[0].key the key must be",
                "9:dnsbl[0].checks \"urls\" is for domain lists",
                "9:dnsbl[0].checks \"mx\" is not a check",
                "10:dnsbl[0].codes[0] a code needs a symbol",
                "10:dnsbl[0].codes[1].range \"127.0.0.9-127.0.0.4\" is not a range",
                "10:dnsbl[0].codes[2].bits a bitmask of 0",
                "14:uribl[0].name [[uribl]] needs a name",
                "14:uribl[0].kind \"ip\": use \"domain\"",
                "16:dnswl expected [[dnswl]] tables",
            ],
        );
        // The key is a secret: the problem names the key, never its value.
        assert!(!err.to_string().contains("sec ret"), "{err}");
    }

    #[test]
    fn dns_timeouts_and_ttls_stay_within_bounds() {
        let err = parse(
            "[milter]\nmessage_timeout = \"4s\"\n[dns]\ntimeout = \"5s\"\nmax_ttl = \"100000h\"\n[[dnsbl]]\nname = \"X\"\nzone = \"x.test\"\n",
        )
        .unwrap_err();
        expect_problems(
            &err,
            &[
                "5:dns.max_ttl must be at most",
                "4:dns.timeout 5s is not shorter than milter.message_timeout",
            ],
        );
    }

    #[test]
    fn values_that_would_break_mail_are_refused() {
        let err = parse(
            "[milter]\nmax_message_size = 100\nmessage_timeout = \"0s\"\nshutdown_timeout = \"2h\"\n[actions]\nreject = 0\nadd_header = -1\n[policy]\nreject_text = \"Spam \u{e9}\"\nsubject_prefix = \"[SPAM]\\t\"\n",
        )
        .unwrap_err();
        let ConfigError::Invalid { problems, .. } = &err else {
            panic!("{err}")
        };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "milter.max_message_size",
                "milter.message_timeout",
                "milter.shutdown_timeout",
                "actions.add_header",
                "actions.reject",
                "policy.reject_text",
                "policy.subject_prefix"
            ]
        );
    }

    #[test]
    fn connection_timeouts_are_bounded() {
        let c = parse("[milter]\nhandshake_timeout = \"2s\"\nidle_timeout = \"1h\"\n").unwrap();
        assert_eq!(c.milter.handshake_timeout, Duration::from_secs(2));
        assert_eq!(c.milter.idle_timeout, Duration::from_secs(3600));
        let err = parse(
            "[milter]\nhandshake_timeout = \"500ms\"\nidle_timeout = \"3h\"\n[dns]\nprobe_interval = \"48h\"\n",
        )
        .unwrap_err();
        expect_problems(
            &err,
            &[
                "2:milter.handshake_timeout must be between 1s and 60s",
                "3:milter.idle_timeout must be between 1s and 7200s",
                "5:dns.probe_interval must be between 1s and 24h",
            ],
        );
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = parse("[milter]\nlisten = \n").unwrap_err();
        let ConfigError::Invalid { problems, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, 2);
    }

    #[test]
    fn scores_take_symbol_names() {
        let c = parse("[scores]\nGTUBE = 500\n").unwrap();
        assert_eq!(c.score("GTUBE", 1000.0), 500.0);
        assert!(parse("[scores]\ngtube = 1\n").is_err());
    }

    #[test]
    fn restart_only_keys_are_named() {
        let a = Config::default();
        let mut b = a.clone();
        b.milter.listen = "inet:127.0.0.1:1".parse().unwrap();
        b.actions.reject = Some(20.0);
        assert_eq!(a.restart_only_changes(&b), vec!["milter.listen"]);
    }
}
