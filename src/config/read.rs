//! Reading a config file into the model: every problem with file, line, column and key, all
//! at once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnetwork::IpNetwork;

use super::model::*;
use super::read_lists;
use super::reader::{Problem, Reader, Table};

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

impl Config {
    /// Reads and validates a config file, and checks that the files it names can be read.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let src =
            crate::files::read_text(path, MAX_CONFIG_FILE).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        Config::parse_with(Reader::new(&src, path).checking_files(), &src, path)
    }

    /// Validates config text; `path` names the file in messages and anchors relative paths.
    /// The rules paths and allowlist files it names are not looked at: [`Config::load`] does.
    pub fn parse(src: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::parse_with(Reader::new(src, path), src, path)
    }

    fn parse_with(mut r: Reader<'_>, src: &str, path: &Path) -> Result<Config, ConfigError> {
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
                "dnsbl", "dnswl", "uribl", "allow", "hub", "learn", "metrics",
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
                for (p, at) in paths {
                    let full = base.join(p);
                    r.readable(&full, true, at, "rules.paths");
                    c.rules.paths.push(full);
                }
            }
        }
        if let Some(t) = r.table(root, "", "dns") {
            read_lists::read_dns(&mut r, t, &mut c.dns);
        }
        c.lists = read_lists::read_lists(&mut r, root);
        if let Some(t) = r.table(root, "", "allow") {
            let base = path.parent().unwrap_or(Path::new("."));
            read_lists::read_allow(&mut r, t, base, &mut c.allow);
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
        let base = path.parent().unwrap_or(Path::new("."));
        c.learn.model = base.join(&c.learn.model);
        if let Some(t) = r.table(root, "", "learn") {
            let p = "learn";
            r.known_keys(t, p, &["model", "min_spam", "min_ham", "half_life"]);
            if let Some(m) = r.string(t, p, "model") {
                c.learn.model = base.join(m);
            }
            c.learn.min_spam = r
                .integer(t, p, "min_spam", 1 << 40)
                .unwrap_or(c.learn.min_spam);
            c.learn.min_ham = r
                .integer(t, p, "min_ham", 1 << 40)
                .unwrap_or(c.learn.min_ham);
            if let Some(d) = r.duration(t, p, "half_life") {
                if d < Duration::from_secs(3600) {
                    let v = t.get("half_life").expect("read");
                    r.problem(v, "learn.half_life", "must be at least 1h");
                } else {
                    c.learn.half_life = d;
                }
            }
        }
        if let Some(t) = r.table(root, "", "hub") {
            let base = path.parent().unwrap_or(Path::new("."));
            c.hub = read_hub(&mut r, t, base, c.milter.message_timeout);
        }
        if let Some(t) = r.table(root, "", "metrics") {
            r.known_keys(t, "metrics", &["listen"]);
            if let Some(s) = r.string(t, "metrics", "listen") {
                match s.parse::<std::net::SocketAddr>() {
                    Ok(a) => c.metrics_listen = Some(a),
                    Err(_) => {
                        let v = t.get("listen").expect("key was just read");
                        r.problem(
                            v,
                            "metrics.listen",
                            format!("{s:?} is not an address and port such as \"127.0.0.1:11334\" (plain HTTP; no scheme)"),
                        );
                    }
                }
            }
        }
        if let Some(t) = r.table(root, "", "log") {
            r.known_keys(t, "log", &["level", "format", "syslog"]);
            if let Some(f) = r.string(t, "log", "format") {
                match f.as_str() {
                    "text" => c.log_format = LogFormat::Text,
                    "json" => c.log_format = LogFormat::Json,
                    _ => {
                        let v = t.get("format").expect("key was just read");
                        r.problem(
                            v,
                            "log.format",
                            format!("{f:?} is not \"text\" or \"json\""),
                        );
                    }
                }
            }
            c.log_syslog = r.bool(t, "log", "syslog").unwrap_or(c.log_syslog);
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
            "socket_owner",
            "socket_group",
            "user",
        ],
    );
    for key in ["socket_owner", "user"] {
        if let Some(name) = r.string(t, p, key) {
            let v = t.get(key).expect("key was just read");
            match nix::unistd::User::from_name(&name) {
                Ok(Some(u)) => {
                    let account = UserAccount {
                        name,
                        uid: u.uid.as_raw(),
                        gid: u.gid.as_raw(),
                    };
                    if key == "user" {
                        m.user = Some(account);
                    } else {
                        m.socket_owner = Some(account);
                    }
                }
                Ok(None) => r.problem(
                    v,
                    &format!("milter.{key}"),
                    format!("no user named {name:?} on this system"),
                ),
                Err(e) => r.problem(
                    v,
                    &format!("milter.{key}"),
                    format!("cannot look up user {name:?}: {e}"),
                ),
            }
        }
    }
    if let Some(name) = r.string(t, p, "socket_group") {
        let v = t.get("socket_group").expect("key was just read");
        match nix::unistd::Group::from_name(&name) {
            Ok(Some(g)) => {
                m.socket_group = Some(GroupAccount {
                    name,
                    gid: g.gid.as_raw(),
                })
            }
            Ok(None) => r.problem(
                v,
                "milter.socket_group",
                format!("no group named {name:?} on this system"),
            ),
            Err(e) => r.problem(
                v,
                "milter.socket_group",
                format!("cannot look up group {name:?}: {e}"),
            ),
        }
    }
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
    // Each action is meant to be harsher than the one before it; a threshold below an earlier
    // one's would hide that earlier action for every score (discard stands apart).
    let ladder = [
        ("add_header", a.add_header),
        ("rewrite_subject", a.rewrite_subject),
        ("quarantine", a.quarantine),
        ("soft_reject", a.soft_reject),
        ("reject", a.reject),
    ];
    let set: Vec<(&str, f64)> = ladder
        .iter()
        .filter_map(|&(k, x)| x.map(|x| (k, x)))
        .collect();
    for pair in set.windows(2) {
        let ((low, x), (high, y)) = (pair[0], pair[1]);
        if y < x {
            let v = t.get(high).expect("set keys were read");
            let msg = format!(
                "{y} is below {low} ({x}): thresholds go add_header <= rewrite_subject <= quarantine <= soft_reject <= reject, so {low} would never be taken"
            );
            r.problem(v, &format!("actions.{high}"), msg);
        }
    }
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

/// Longest hub token.
const MAX_TOKEN: u64 = 512;

fn read_hub(
    r: &mut Reader<'_>,
    t: &Table<'_>,
    base: &Path,
    message_timeout: Duration,
) -> Option<HubClient> {
    let p = "hub";
    r.known_keys(
        t,
        p,
        &[
            "url",
            "token",
            "token_file",
            "timeout",
            "cache_size",
            "spool",
            "spool_max",
            "share_samples",
            "sync_interval",
            "cool_down",
            "model_interval",
        ],
    );
    let before = r.problem_count();
    let url = r
        .string(t, p, "url")
        .map(|u| u.trim_end_matches('/').to_string());
    match &url {
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
            if reqwest::Url::parse(u).is_err() {
                let v = t.get("url").expect("read");
                r.problem(v, "hub.url", format!("{u:?} is not a URL"));
            }
        }
        Some(u) => {
            let v = t.get("url").expect("read");
            r.problem(
                v,
                "hub.url",
                format!("{u:?}: use http://host:port or https://host:port"),
            );
        }
        None => r.problem_at(0, "hub.url", "[hub] needs a url"),
    }
    let token = match (r.string(t, p, "token"), r.string(t, p, "token_file")) {
        (Some(tok), None) => Some(tok),
        (None, Some(file)) => match crate::files::read_text(&base.join(&file), MAX_TOKEN) {
            Ok(s) => Some(s.trim().to_string()),
            Err(e) => {
                let v = t.get("token_file").expect("read");
                r.problem(v, "hub.token_file", format!("cannot read {file}: {e}"));
                None
            }
        },
        _ => {
            let at = t
                .get("token")
                .or_else(|| t.get("token_file"))
                .map_or(0, |v| v.span().start);
            r.problem_at(at, "hub.token", "give exactly one of token or token_file");
            None
        }
    };
    if let Some(tok) = &token
        && (tok.is_empty()
            || tok.len() > MAX_TOKEN as usize
            || !tok.bytes().all(|b| b.is_ascii_graphic()))
    {
        // The token is a secret: the problem names the key, never the value.
        let at = t
            .get("token")
            .or_else(|| t.get("token_file"))
            .map_or(0, |v| v.span().start);
        r.problem_at(at, "hub.token", "a token is 1 to 512 printable characters");
    }
    let mut hub = HubClient {
        url: url.unwrap_or_default(),
        token: token.unwrap_or_default(),
        timeout: Duration::from_secs(1),
        cache_size: 100_000,
        spool: base.join("spool"),
        spool_max: 256 * 1024 * 1024,
        share_samples: false,
        sync_interval: Duration::from_millis(500),
        cool_down: Duration::from_secs(30),
        model_interval: Duration::from_secs(300),
    };
    if let Some(d) = r.duration(t, p, "model_interval") {
        if d < Duration::from_secs(1) || d > Duration::from_secs(86_400) {
            let v = t.get("model_interval").expect("read");
            r.problem(v, "hub.model_interval", "must be between 1s and 24h");
        } else {
            hub.model_interval = d;
        }
    }
    if let Some(d) = r.duration(t, p, "cool_down") {
        if d < Duration::from_secs(1) || d > Duration::from_secs(3600) {
            let v = t.get("cool_down").expect("read");
            r.problem(v, "hub.cool_down", "must be between 1s and 1h");
        } else {
            hub.cool_down = d;
        }
    }
    if let Some(d) = r.duration(t, p, "sync_interval") {
        if d < Duration::from_millis(10) || d > Duration::from_secs(60) {
            let v = t.get("sync_interval").expect("read");
            r.problem(v, "hub.sync_interval", "must be between 10ms and 60s");
        } else {
            hub.sync_interval = d;
        }
    }
    if let Some(d) = r.duration(t, p, "timeout") {
        if d < Duration::from_millis(10) || d >= message_timeout {
            let v = t.get("timeout").expect("read");
            r.problem(
                v,
                "hub.timeout",
                format!("must be at least 10ms and shorter than milter.message_timeout ({message_timeout:?})"),
            );
        } else {
            hub.timeout = d;
        }
    }
    if let Some(n) = r.integer(t, p, "cache_size", 10_000_000) {
        hub.cache_size = (n as usize).max(1);
    }
    if let Some(s) = r.string(t, p, "spool") {
        hub.spool = base.join(s);
    }
    if let Some(n) = r.integer(t, p, "spool_max", 1 << 40) {
        hub.spool_max = n.max(1024 * 1024);
    }
    hub.share_samples = r.bool(t, p, "share_samples").unwrap_or(false);
    (r.problem_count() == before).then_some(hub)
}
