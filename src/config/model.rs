//! The validated configuration: what every part of the daemon reads. Defaults are documented
//! on each field and in the sample `config/repmilter.toml`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnetwork::IpNetwork;

pub use super::lists::{Allow, Check, Code, CodeMatch, Dns, DnsList, ListKind, ReceivedHops};
pub use crate::logging::LogFormat;
pub use crate::milter::Listen;

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
    /// Owner and group given to a unix socket after it is bound (Postfix's chrooted smtpd
    /// connects as `postfix`); unchanged when absent. Restart to change.
    pub socket_owner: Option<UserAccount>,
    pub socket_group: Option<GroupAccount>,
    /// When started as root: the user (and its groups) the daemon becomes once its sockets
    /// are bound. Restart to change.
    pub user: Option<UserAccount>,
}

/// A system user, resolved when the config is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAccount {
    pub name: String,
    pub uid: u32,
    /// Its primary group.
    pub gid: u32,
}

/// A system group, resolved when the config is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupAccount {
    pub name: String,
    pub gid: u32,
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

/// `[rules]`: signature files and directories.
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
    /// `[log] format`: one line of text or one JSON object per event.
    pub log_format: LogFormat,
    /// `[log] syslog`: events go to the local syslog (facility mail) as well as stderr.
    pub log_syslog: bool,
    /// `[metrics] listen`: the monitor's HTTP listener (Prometheus metrics, the dashboard,
    /// `repmilter stats`); off when absent.
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub dns: Dns,
    /// `[[dnsbl]]`, `[[dnswl]]` and `[[uribl]]` tables, in file order.
    pub lists: Vec<DnsList>,
    pub allow: Allow,
    /// `[hub]`: the reputation hub this gateway asks and reports to; none by default.
    pub hub: Option<HubClient>,
    /// `[learn]`: the learned content model.
    pub learn: Learn,
}

/// `[learn]`: the learned content model.
#[derive(Debug, Clone, PartialEq)]
pub struct Learn {
    /// The model file. Default `learn.model` beside the config.
    pub model: PathBuf,
    /// A model trained on fewer spam or ham messages than these scores nothing. Default 200
    /// each.
    pub min_spam: u64,
    pub min_ham: u64,
    /// Local training: counts lose half their weight in this time. Default 90 days.
    pub half_life: Duration,
}

impl Default for Learn {
    fn default() -> Self {
        Learn {
            model: PathBuf::from("learn.model"),
            min_spam: 200,
            min_ham: 200,
            half_life: Duration::from_secs(90 * 86_400),
        }
    }
}

/// `[hub]` in the milter's config.
#[derive(Debug, Clone, PartialEq)]
pub struct HubClient {
    /// The hub's base URL, `http://host:port` (`/v1/...` is appended).
    pub url: String,
    /// The gateway's bearer token (from `token` or `token_file`).
    pub token: String,
    /// Budget for the hub lookup of one message. Default 1 s.
    pub timeout: Duration,
    /// Answers kept in the lookup cache. Default 100,000 keys.
    pub cache_size: usize,
    /// Directory of the event spool. Default `spool` beside the config.
    pub spool: PathBuf,
    /// Most bytes the spool may hold before events are dropped (counted and logged). Default
    /// 256 MiB.
    pub spool_max: u64,
    /// Send the message itself with reported samples (never with verdicts). Default false:
    /// only keys and hashes leave the gateway.
    pub share_samples: bool,
    /// How often the spool is made durable (fsync) and shipped. Default 500 ms: a power
    /// loss loses at most that much of the verdicts (a crashed daemon loses none).
    pub sync_interval: Duration,
    /// How long a failing hub is left alone before one lookup tries it again. Default 30 s.
    pub cool_down: Duration,
    /// How often the network's learned model is fetched (a conditional GET). Default 5 min.
    pub model_interval: Duration,
}

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
                socket_owner: None,
                socket_group: None,
                user: None,
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
            log_format: LogFormat::Text,
            log_syslog: false,
            metrics_listen: None,
            dns: Dns::default(),
            lists: Vec::new(),
            allow: Allow {
                score: -20.0,
                ..Allow::default()
            },
            hub: None,
            learn: Learn::default(),
        }
    }
}

impl Config {
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
