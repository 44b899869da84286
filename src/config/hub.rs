//! The hub's config file (`repmilter hub --config HUB.toml`): where it listens, where it keeps
//! its data, who may talk to it, and the correlation model's settings. `config/hub.toml`
//! documents every key; problems are reported as for the milter's config.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::read::{ConfigError, MAX_CONFIG_FILE};
use super::read_lists::tables;
use super::reader::{Reader, Table, join};

/// What a gateway's token lets it do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Ask about keys.
    Lookup,
    /// Send events and reports.
    Report,
    /// Read stats, manage the allowlist.
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Lookup => "lookup",
            Role::Report => "report",
            Role::Admin => "admin",
        }
    }
}

/// One `[[gateway]]`: a name (the reporter identity evidence is counted by), its token and
/// roles.
#[derive(Debug, Clone, PartialEq)]
pub struct Gateway {
    pub name: String,
    pub token: String,
    pub roles: Vec<Role>,
}

/// Where the hub keeps its data.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreConfig {
    /// One redb file.
    Embedded(PathBuf),
    /// A Redis server (one URL) or the seed nodes of a Redis Cluster.
    Redis { urls: Vec<String>, cluster: bool },
}

#[derive(Debug, Clone, PartialEq)]
pub struct HubConfig {
    pub path: PathBuf,
    /// Default `127.0.0.1:11380`.
    pub listen: SocketAddr,
    /// Default embedded, `hub.redb` beside the config.
    pub store: StoreConfig,
    /// Largest request body, bytes. Default 16 MiB (a sample report is a whole message).
    pub max_body: usize,
    /// Most keys in one lookup. Default 1,000.
    pub max_keys: usize,
    /// Most events in one ingest request. Default 1,000.
    pub max_events: usize,
    /// Requests per second per gateway, and the burst allowed. Default 200 and 400.
    pub rate: u32,
    pub burst: u32,
    /// Connections served at once. Default 1,024.
    pub max_connections: usize,
    /// Time a connection gets to send a request's headers, or may sit idle between
    /// requests. Default 30 s.
    pub header_timeout: Duration,
    /// Time a request's body gets to arrive. Default 60 s.
    pub body_timeout: Duration,
    /// How long an applied event's id is remembered, so that a gateway resending the event
    /// has it counted once. Default 30 days (720 h).
    pub event_retention: Duration,
    pub gateways: Vec<Gateway>,
    pub model: Model,
    pub learn: HubLearn,
}

/// `[learn]` in the hub config: the network's content model, learned from reported samples.
#[derive(Debug, Clone, PartialEq)]
pub struct HubLearn {
    /// Seconds for what was learned to lose half its weight. Default 90 days.
    pub half_life: u64,
    /// Largest share of the model's messages one gateway's samples may make up; a gateway
    /// with more counts scaled down to it, so that no gateway alone shapes (or poisons) the
    /// model. Default 0.5: with one gateway alone, nothing is learned.
    pub max_share: f64,
    /// How often the model is compiled for gateways to fetch. Default 60 s.
    pub interval: Duration,
    /// Gateways that must have seen a feature on a side (spam, or ham) before that side of
    /// it counts. Default 2.
    pub min_reporters: usize,
    /// Features the hub keeps counts of per gateway; past it, a gateway's reports count only
    /// on features it has. Default 500,000.
    pub max_features: usize,
}

impl Default for HubLearn {
    fn default() -> Self {
        HubLearn {
            half_life: 90 * 86_400,
            max_share: 0.5,
            interval: Duration::from_secs(60),
            min_reporters: 2,
            max_features: 500_000,
        }
    }
}

/// The model's settings (`[model]` in the hub config).
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Seconds for evidence to lose half its weight.
    pub half_life: u64,
    /// Gateways needed on the winning side before a key is judged.
    pub min_reporters: usize,
    /// Largest score a key contributes.
    pub max_score: f64,
    /// Score of an allowlisted key.
    pub allow_score: f64,
    /// Evidence a gateway's own reject or discard adds.
    pub verdict_weight: f64,
    /// Share of a co-occurring key's reputation spread to the event's other keys.
    pub spread: f64,
    /// Weight per gateway (1 when absent).
    pub weights: BTreeMap<String, f64>,
    /// How long a gateway may cache an answer, seconds.
    pub ttl: u64,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            half_life: 3 * 24 * 3600,
            min_reporters: 2,
            max_score: 10.0,
            allow_score: -5.0,
            verdict_weight: 0.25,
            spread: 0.5,
            weights: BTreeMap::new(),
            ttl: 300,
        }
    }
}

/// Longest token: bearer tokens are a few dozen characters.
const MAX_TOKEN: usize = 512;

impl HubConfig {
    pub fn load(path: &Path) -> Result<HubConfig, ConfigError> {
        let src =
            crate::files::read_text(path, MAX_CONFIG_FILE).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        HubConfig::parse(&src, path)
    }

    pub fn parse(src: &str, path: &Path) -> Result<HubConfig, ConfigError> {
        let mut r = Reader::new(src, path);
        let invalid = |r: Reader<'_>| ConfigError::Invalid {
            path: path.to_path_buf(),
            problems: r.finish(),
        };
        let doc = match toml::de::DeTable::parse(src) {
            Ok(doc) => doc,
            Err(e) => {
                let at = e.span().map(|s| s.start).unwrap_or(0);
                r.problem_at(at, "", e.message().trim().to_string());
                return Err(invalid(r));
            }
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let mut c = HubConfig {
            path: path.to_path_buf(),
            listen: SocketAddr::from(([127, 0, 0, 1], 11380)),
            store: StoreConfig::Embedded(base.join("hub.redb")),
            max_body: 16 * 1024 * 1024,
            max_keys: 1000,
            max_events: 1000,
            rate: 200,
            burst: 400,
            max_connections: 1024,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            event_retention: Duration::from_secs(30 * 86_400),
            gateways: Vec::new(),
            model: Model::default(),
            learn: HubLearn::default(),
        };
        let root = doc.get_ref();
        r.known_keys(root, "", &["hub", "model", "gateway", "learn"]);
        if let Some(t) = r.table(root, "", "hub") {
            read_hub(&mut r, t, base, &mut c);
        }
        if let Some(t) = r.table(root, "", "learn") {
            read_learn(&mut r, t, &mut c.learn);
        }
        if let Some(t) = r.table(root, "", "model") {
            read_model(&mut r, t, &mut c.model);
        }
        for (i, t) in tables(&mut r, root, "gateway").into_iter().enumerate() {
            let p = format!("gateway[{i}]");
            let Some(g) = read_gateway(&mut r, t, &p, base) else {
                continue;
            };
            if c.gateways
                .iter()
                .any(|x| x.name == g.name || x.token == g.token)
            {
                let v = t.get("name").expect("a gateway has a name");
                r.problem(
                    v,
                    &join(&p, "name"),
                    "this gateway's name or token is another gateway's already",
                );
            } else {
                c.gateways.push(g);
            }
        }
        if c.gateways.is_empty() {
            r.problem_at(
                0,
                "gateway",
                "at least one [[gateway]] with a token is needed",
            );
        }
        if r.problem_count() == 0 {
            Ok(c)
        } else {
            Err(invalid(r))
        }
    }

    /// The gateway a bearer token belongs to.
    pub fn gateway_of(&self, token: &str) -> Option<&Gateway> {
        self.gateways.iter().find(|g| g.token == token)
    }
}

fn read_hub(r: &mut Reader<'_>, t: &Table<'_>, base: &Path, c: &mut HubConfig) {
    let p = "hub";
    r.known_keys(
        t,
        p,
        &[
            "listen",
            "store",
            "path",
            "redis_url",
            "redis_cluster",
            "max_body",
            "max_keys",
            "max_events",
            "rate",
            "burst",
            "max_connections",
            "header_timeout",
            "body_timeout",
            "event_retention",
        ],
    );
    if let Some(s) = r.string(t, p, "listen") {
        match s.parse() {
            Ok(a) => c.listen = a,
            Err(_) => {
                let v = t.get("listen").expect("read");
                r.problem(
                    v,
                    "hub.listen",
                    format!("{s:?} is not an address such as \"127.0.0.1:11380\""),
                );
            }
        }
    }
    let path = r.string(t, p, "path").map(|s| base.join(s));
    let redis = r.string(t, p, "redis_url");
    let cluster: Option<Vec<String>> = r
        .string_list(t, p, "redis_cluster")
        .map(|l| l.into_iter().map(|(s, _)| s).collect());
    for url in redis.iter().chain(cluster.iter().flatten()) {
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            let v = t
                .get("redis_url")
                .or_else(|| t.get("redis_cluster"))
                .expect("read");
            r.problem(v, "hub.store", format!("{url:?} is not a redis:// URL"));
        }
    }
    match r.string(t, p, "store").as_deref() {
        None | Some("embedded") => {
            if let Some(path) = path {
                c.store = StoreConfig::Embedded(path);
            }
        }
        Some("redis") => match (redis, cluster) {
            (Some(url), None) => {
                c.store = StoreConfig::Redis {
                    urls: vec![url],
                    cluster: false,
                }
            }
            (None, Some(urls)) if !urls.is_empty() => {
                c.store = StoreConfig::Redis {
                    urls,
                    cluster: true,
                }
            }
            _ => {
                let v = t.get("store").expect("read");
                r.problem(
                    v,
                    "hub.store",
                    "store = \"redis\" needs redis_url (one server) or redis_cluster (a list of seed nodes), not both",
                );
            }
        },
        Some(other) => {
            let v = t.get("store").expect("read");
            r.problem(
                v,
                "hub.store",
                format!("{other:?}: use \"embedded\" or \"redis\""),
            );
        }
    }
    for (key, field, max) in [
        ("max_body", &mut c.max_body, 1usize << 30),
        ("max_keys", &mut c.max_keys, 100_000),
        ("max_events", &mut c.max_events, 100_000),
        ("max_connections", &mut c.max_connections, 1_000_000),
    ] {
        if let Some(n) = r.integer(t, p, key, max as u64) {
            if n == 0 {
                let v = t.get(key).expect("read");
                r.problem(v, &join(p, key), "must be at least 1");
            } else {
                *field = n as usize;
            }
        }
    }
    for (key, field) in [("rate", &mut c.rate), ("burst", &mut c.burst)] {
        if let Some(n) = r.integer(t, p, key, 1_000_000) {
            if n == 0 {
                let v = t.get(key).expect("read");
                r.problem(v, &join(p, key), "must be at least 1");
            } else {
                *field = n as u32;
            }
        }
    }
    for (key, field) in [
        ("header_timeout", &mut c.header_timeout),
        ("body_timeout", &mut c.body_timeout),
    ] {
        if let Some(d) = r.duration(t, p, key) {
            if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
                let v = t.get(key).expect("read");
                r.problem(v, &join(p, key), "must be between 100ms and 1h");
            } else {
                *field = d;
            }
        }
    }
    if let Some(d) = r.duration(t, p, "event_retention") {
        if d < Duration::from_secs(3600) || d > Duration::from_secs(3650 * 86_400) {
            let v = t.get("event_retention").expect("read");
            r.problem(
                v,
                &join(p, "event_retention"),
                "must be between 1h and 87600h (10 years)",
            );
        } else {
            c.event_retention = d;
        }
    }
}

fn read_learn(r: &mut Reader<'_>, t: &Table<'_>, l: &mut HubLearn) {
    let p = "learn";
    r.known_keys(
        t,
        p,
        &[
            "half_life",
            "max_share",
            "interval",
            "min_reporters",
            "max_features",
        ],
    );
    if let Some(n) = r.integer(t, p, "max_features", 100_000_000) {
        if n == 0 {
            let v = t.get("max_features").expect("read");
            r.problem(v, &join(p, "max_features"), "must be at least 1");
        } else {
            l.max_features = n as usize;
        }
    }
    if let Some(n) = r.integer(t, p, "min_reporters", 1000) {
        if n == 0 {
            let v = t.get("min_reporters").expect("read");
            r.problem(v, &join(p, "min_reporters"), "must be at least 1");
        } else {
            l.min_reporters = n as usize;
        }
    }
    if let Some(d) = r.duration(t, p, "half_life") {
        // Counts are weighted by 2^(age since 2026 / half_life): a half-life of 30 days keeps
        // that within a double for 84 years; shorter ones run out of range within years.
        if d < Duration::from_secs(30 * 86_400) {
            let v = t.get("half_life").expect("read");
            r.problem(v, &join(p, "half_life"), "must be at least 720h (30 days)");
        } else {
            l.half_life = d.as_secs();
        }
    }
    if let Some(d) = r.duration(t, p, "interval") {
        if d < Duration::from_secs(1) || d > Duration::from_secs(86_400) {
            let v = t.get("interval").expect("read");
            r.problem(v, &join(p, "interval"), "must be between 1s and 24h");
        } else {
            l.interval = d;
        }
    }
    if let Some(x) = t.get("max_share") {
        match r.number_value(x, "learn.max_share") {
            Some(f) if f > 0.0 && f < 1.0 => l.max_share = f,
            Some(_) => r.problem(x, "learn.max_share", "must be above 0 and below 1"),
            None => {}
        }
    }
}

fn read_model(r: &mut Reader<'_>, t: &Table<'_>, m: &mut Model) {
    let p = "model";
    r.known_keys(
        t,
        p,
        &[
            "half_life",
            "min_reporters",
            "max_score",
            "allow_score",
            "verdict_weight",
            "spread",
            "ttl",
            "weights",
        ],
    );
    let secs = |r: &mut Reader<'_>, key: &str, min: Duration, max: Duration| {
        let d = r.duration(t, p, key)?;
        if d < min || d > max {
            let v = t.get(key).expect("read");
            r.problem(
                v,
                &join(p, key),
                format!("must be between {min:?} and {max:?}"),
            );
            return None;
        }
        Some(d.as_secs())
    };
    if let Some(s) = secs(
        r,
        "half_life",
        Duration::from_secs(60),
        Duration::from_secs(365 * 86_400),
    ) {
        m.half_life = s;
    }
    if let Some(s) = secs(
        r,
        "ttl",
        Duration::from_secs(1),
        Duration::from_secs(86_400),
    ) {
        m.ttl = s;
    }
    if let Some(n) = r.integer(t, p, "min_reporters", 1000) {
        if n == 0 {
            let v = t.get("min_reporters").expect("read");
            r.problem(v, "model.min_reporters", "must be at least 1");
        } else {
            m.min_reporters = n as usize;
        }
    }
    for (key, field, lo, hi) in [
        ("max_score", &mut m.max_score, 0.0, 1000.0),
        ("allow_score", &mut m.allow_score, -1000.0, 0.0),
        ("verdict_weight", &mut m.verdict_weight, 0.0, 1.0),
        ("spread", &mut m.spread, 0.0, 1.0),
    ] {
        if let Some(x) = r.number(t, p, key) {
            if !(lo..=hi).contains(&x) {
                let v = t.get(key).expect("read");
                r.problem(v, &join(p, key), format!("must be between {lo} and {hi}"));
            } else {
                *field = x;
            }
        }
    }
    if let Some(w) = r.table(t, p, "weights") {
        let mut weights = BTreeMap::new();
        for (k, v) in w.iter() {
            let name = k.get_ref().to_string();
            if let Some(x) = r.number_value(v, &format!("model.weights.{name}")) {
                if (0.0..=10.0).contains(&x) {
                    weights.insert(name, x);
                } else {
                    r.problem(
                        v,
                        &format!("model.weights.{name}"),
                        "must be between 0 and 10",
                    );
                }
            }
        }
        m.weights = weights;
    }
}

fn read_gateway(r: &mut Reader<'_>, t: &Table<'_>, p: &str, base: &Path) -> Option<Gateway> {
    r.known_keys(t, p, &["name", "token", "token_file", "roles"]);
    let before = r.problem_count();
    let name = r.string(t, p, "name");
    if name.as_deref().is_none_or(|n| {
        n.is_empty()
            || n.len() > 64
            || !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    }) {
        let at = t.get("name").map_or(0, |v| v.span().start);
        r.problem_at(
            at,
            &join(p, "name"),
            "a gateway needs a name of letters, digits, '-', '_' and '.' (at most 64)",
        );
    }
    let token = match (r.string(t, p, "token"), r.string(t, p, "token_file")) {
        (Some(tok), None) => Some(tok),
        (None, Some(file)) => {
            let path = base.join(&file);
            match crate::files::read_text(&path, MAX_TOKEN as u64) {
                Ok(s) => Some(s.trim().to_string()),
                Err(e) => {
                    let v = t.get("token_file").expect("read");
                    r.problem(
                        v,
                        &join(p, "token_file"),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            }
        }
        _ => {
            let at = t
                .get("token")
                .or_else(|| t.get("token_file"))
                .map_or(0, |v| v.span().start);
            r.problem_at(
                at,
                &join(p, "token"),
                "give exactly one of token or token_file",
            );
            None
        }
    };
    if let Some(tok) = &token
        && (tok.len() < 16 || tok.len() > MAX_TOKEN || !tok.bytes().all(|b| b.is_ascii_graphic()))
    {
        // The token is a secret: the message names the key, never the value.
        let at = t
            .get("token")
            .or_else(|| t.get("token_file"))
            .map_or(0, |v| v.span().start);
        r.problem_at(
            at,
            &join(p, "token"),
            "a token is 16 to 512 printable characters",
        );
    }
    let mut roles = Vec::new();
    match r.string_list(t, p, "roles") {
        None => roles = vec![Role::Lookup, Role::Report],
        Some(list) => {
            for (s, at) in list {
                match [Role::Lookup, Role::Report, Role::Admin]
                    .into_iter()
                    .find(|x| x.name() == s)
                {
                    Some(role) => roles.push(role),
                    None => r.problem_at(
                        at,
                        &join(p, "roles"),
                        format!("{s:?}: use \"lookup\", \"report\" or \"admin\""),
                    ),
                }
            }
        }
    }
    if r.problem_count() > before {
        return None;
    }
    Some(Gateway {
        name: name?,
        token: token?,
        roles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hub_config_with_gateways_and_a_model() {
        let c = HubConfig::parse(
            "[hub]\nlisten = \"127.0.0.1:0\"\npath = \"data/hub.redb\"\nrate = 50\n[model]\nhalf_life = \"24h\"\nmin_reporters = 3\n[model.weights]\nmx1 = 2.0\n[[gateway]]\nname = \"mx1\"\ntoken = \"0123456789abcdef0123\"\n[[gateway]]\nname = \"ops\"\ntoken = \"fedcba9876543210fedc\"\nroles = [\"admin\"]\n",
            Path::new("/etc/repmilter/hub.toml"),
        )
        .unwrap();
        assert_eq!(
            c.store,
            StoreConfig::Embedded("/etc/repmilter/data/hub.redb".into())
        );
        assert_eq!(c.rate, 50);
        assert_eq!(c.model.half_life, 86_400);
        assert_eq!(c.model.min_reporters, 3);
        assert_eq!(c.model.weights["mx1"], 2.0);
        assert_eq!(c.gateways[0].roles, [Role::Lookup, Role::Report]);
        assert_eq!(
            c.gateway_of("fedcba9876543210fedc").unwrap().roles,
            [Role::Admin]
        );
    }

    #[test]
    fn a_redis_store_is_one_server_or_a_cluster() {
        let gw = "[[gateway]]\nname = \"mx1\"\ntoken = \"0123456789abcdef0123\"\n";
        let parse =
            |hub: &str| HubConfig::parse(&format!("[hub]\n{hub}\n{gw}"), Path::new("h.toml"));
        let c = parse("store = \"redis\"\nredis_url = \"redis://10.0.0.1:6379/\"").unwrap();
        assert_eq!(
            c.store,
            StoreConfig::Redis {
                urls: vec!["redis://10.0.0.1:6379/".into()],
                cluster: false
            }
        );
        let c =
            parse("store = \"redis\"\nredis_cluster = [\"redis://a:7000\", \"redis://b:7000\"]")
                .unwrap();
        assert!(
            matches!(c.store, StoreConfig::Redis { cluster: true, ref urls } if urls.len() == 2)
        );
        for (bad, want) in [
            (
                "store = \"redis\"\nredis_url = \"redis://a/\"\nredis_cluster = [\"redis://b/\"]",
                "needs redis_url (one server) or redis_cluster",
            ),
            (
                "store = \"redis\"\nredis_url = \"http://a/\"",
                "\"http://a/\" is not a redis:// URL",
            ),
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains(want), "{bad}: {err}");
        }
    }

    #[test]
    fn problems_name_the_key_and_never_the_token() {
        let err = HubConfig::parse(
            "[hub]\nstore = \"redis\"\n[model]\nspread = 3\n[[gateway]]\nname = \"bad name\"\ntoken = \"short secret\"\nroles = [\"root\"]\n",
            Path::new("h.toml"),
        )
        .unwrap_err()
        .to_string();
        for want in [
            "h.toml:2:9: hub.store: store = \"redis\" needs redis_url",
            "h.toml:4:10: model.spread: must be between 0 and 1",
            "gateway[0].name: a gateway needs a name",
            "gateway[0].token: a token is 16 to 512",
            "gateway[0].roles: \"root\"",
        ] {
            assert!(err.contains(want), "missing {want:?} in {err}");
        }
        assert!(!err.contains("short secret"), "{err}");
    }
}
