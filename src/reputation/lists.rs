//! The DNS list stage: for each message, every configured list is asked about the addresses
//! and domains it checks, all lookups at once, deduplicated, under one time budget. What has
//! not answered by then counts as not listed, with a `<LIST>_TIMEOUT` symbol.
//!
//! An answer that is an error code (see `dnsbl::classify`) never scores: it adds a zero-score
//! `<LIST>_BLOCKED` symbol, a rate-limited warning and a count in [`Stats`]. Each zone is
//! probed periodically (127.0.0.2 must be listed, 127.0.0.1 must not; a random name must not
//! be listed in a domain list); a zone that lists everything or answers nothing is disabled,
//! loudly, until its probes pass again. The query key of a list is part of the query name
//! only: logs, symbols and replies name the zone without it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use ipnetwork::IpNetwork;
use tokio::time::Instant;

use super::cache::{Cache, SystemClock, TtlBounds};
use super::dnsbl::{self, Answer};
use super::hops::{self, Source};
use super::resolver::{Failure, Resolve, Resolver};
use crate::config::{Check, Config, Dns, DnsList, ListKind};
use crate::config::{Code, CodeMatch};
use crate::message::mime;
use crate::message::urls::registered_domain;
use crate::scan::{Lookup, LookupFuture, ScanInput, Symbol};
use crate::warn::WarnLimiter;

/// Symbol added when a message has more domains than `dns.max_domain_queries` allows.
pub const QUERY_LIMIT_SYMBOL: &str = "DNS_QUERY_LIMIT";

/// Counters for operators (logged after each probe round) and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Lookups asked of the cache (each may be a hit, a shared miss or a query).
    pub lookups: AtomicU64,
    /// Answers that were error codes, never counted as listings.
    pub blocked: AtomicU64,
    pub timeouts: AtomicU64,
    pub failures: AtomicU64,
}

struct Zone {
    list: DnsList,
    query_zone: String,
    codes: Vec<Code>,
    enabled: AtomicBool,
}

/// The configured lists with their resolver, cache and probe state; shared by all sessions
/// and kept across reloads that do not change them.
pub struct DnsLists {
    dns: Dns,
    trusted: Vec<IpNetwork>,
    zones: Vec<Zone>,
    resolver: Arc<dyn Resolve>,
    cache: Cache<Vec<Ipv4Addr>, Failure>,
    pub stats: Stats,
    warn: WarnLimiter,
}

/// One question of one message: a list and an item (address or domain).
struct Query {
    zone: usize,
    item: String,
    name: String,
}

impl DnsLists {
    /// None when no list is configured.
    pub fn new(config: &Config) -> Option<Arc<DnsLists>> {
        // Half the budget per attempt: a lost UDP packet gets one retry within the budget.
        let per_attempt = (config.dns.timeout / 2).max(Duration::from_millis(5));
        let resolver = Resolver::new(&config.dns.servers, per_attempt, config.dns.min_ttl);
        DnsLists::with_resolver(config, Arc::new(resolver))
    }

    /// The lists asking `resolver` (a [`super::resolver::Table`] in tests).
    pub fn with_resolver(config: &Config, resolver: Arc<dyn Resolve>) -> Option<Arc<DnsLists>> {
        if config.lists.is_empty() {
            return None;
        }
        let dns = config.dns.clone();
        let zones = config
            .lists
            .iter()
            .map(|l| Zone {
                query_zone: l.query_zone(),
                codes: if l.codes.is_empty() {
                    // Without a code map any listing code is the list's own symbol.
                    vec![Code {
                        when: CodeMatch::Range(
                            Ipv4Addr::new(127, 0, 0, 0),
                            Ipv4Addr::new(127, 255, 255, 255),
                        ),
                        symbol: l.name.clone(),
                        score: l.score,
                    }]
                } else {
                    l.codes.clone()
                },
                list: l.clone(),
                enabled: AtomicBool::new(true),
            })
            .collect();
        let ttl = TtlBounds {
            min: dns.min_ttl,
            max: dns.max_ttl,
        };
        Some(Arc::new(DnsLists {
            resolver,
            cache: Cache::new(
                NonZeroUsize::new(dns.cache_size).unwrap_or(NonZeroUsize::MIN),
                ttl,
                Arc::new(SystemClock),
            ),
            trusted: config.trust.networks.clone(),
            zones,
            dns,
            stats: Stats::default(),
            warn: WarnLimiter::default(),
        }))
    }

    /// Whether a new config can keep these lists (and their cache and probe state).
    pub fn same_config(&self, config: &Config) -> bool {
        self.dns == config.dns
            && self.trusted == config.trust.networks
            && self.zones.len() == config.lists.len()
            && self
                .zones
                .iter()
                .zip(&config.lists)
                .all(|(z, l)| z.list == *l)
    }

    /// Queries sent to the DNS servers so far (cache hits and shared misses excluded).
    pub fn queries(&self) -> u64 {
        self.resolver.queries()
    }

    /// Whether the list named `name` is in use (its probes pass, or have not run yet).
    pub fn enabled(&self, name: &str) -> Option<bool> {
        self.zones
            .iter()
            .find(|z| z.list.name == name)
            .map(|z| z.enabled.load(Ordering::Relaxed))
    }

    /// The A records for `name`, from the cache or the servers.
    async fn lookup(&self, name: &str) -> Result<Vec<Ipv4Addr>, Failure> {
        self.stats.lookups.fetch_add(1, Ordering::Relaxed);
        let sent = AtomicBool::new(false);
        let answer = self
            .cache
            .get_or_fetch(name, || {
                sent.store(true, Ordering::Relaxed);
                self.resolver.lookup_a(name)
            })
            .await;
        crate::metrics::get().dns_cache(!sent.load(Ordering::Relaxed));
        answer
    }

    /// Starts the client-address lookups at CONNECT, so their answers are in the cache (or
    /// on the way) by the end of the message.
    pub fn prefetch(self: &Arc<Self>, client: IpAddr) {
        let names: Vec<String> = self
            .zones
            .iter()
            .filter(|z| {
                z.list.kind == ListKind::Ip
                    && z.list.checks.contains(&Check::Client)
                    && z.enabled.load(Ordering::Relaxed)
            })
            .map(|z| dnsbl::ip_query(client, &z.query_zone))
            .collect();
        let wanted = !hops::select(
            Some(client),
            &[],
            &self.trusted,
            self.dns.skip_private,
            crate::config::ReceivedHops::Off,
        )
        .is_empty();
        if names.is_empty() || !wanted {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + me.dns.timeout;
            let lookups = names
                .iter()
                .map(|n| tokio::time::timeout_at(deadline, me.lookup(n)));
            futures_util::future::join_all(lookups).await;
        });
    }

    /// The questions for one message, and symbols for lists that are disabled or capped.
    fn queries_for(&self, input: &ScanInput, out: &mut Vec<Symbol>) -> Vec<Query> {
        let env = &input.envelope;
        let received: Vec<String> = input
            .message
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("Received"))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect();
        let addrs = hops::select(
            env.client_ip,
            &received,
            &self.trusted,
            self.dns.skip_private,
            self.dns.received,
        );
        let mut domains: HashMap<Check, Vec<String>> = HashMap::new();
        let mut queries = Vec::new();
        let mut domain_queries = 0usize;
        let mut capped = false;
        for (zi, z) in self.zones.iter().enumerate() {
            if !z.enabled.load(Ordering::Relaxed) {
                out.push(Symbol::new(
                    format!("{}_DISABLED", z.list.name),
                    0.0,
                    format!("{} is disabled until its probes pass again", z.list.zone),
                ));
                continue;
            }
            match z.list.kind {
                ListKind::Ip => {
                    for (ip, source) in &addrs {
                        let check = match source {
                            Source::Client => Check::Client,
                            Source::Received => Check::Received,
                        };
                        if z.list.checks.contains(&check) {
                            queries.push(Query {
                                zone: zi,
                                item: ip.to_string(),
                                name: dnsbl::ip_query(*ip, &z.query_zone),
                            });
                        }
                    }
                }
                ListKind::Domain => {
                    let mut seen: Vec<String> = Vec::new();
                    for check in &z.list.checks {
                        let list = domains
                            .entry(*check)
                            .or_insert_with(|| domains_for(*check, input));
                        for d in list.iter() {
                            if seen.contains(d) {
                                continue;
                            }
                            seen.push(d.clone());
                            let Some(name) = dnsbl::domain_query(d, &z.query_zone) else {
                                continue;
                            };
                            if domain_queries >= self.dns.max_domain_queries {
                                capped = true;
                                break;
                            }
                            domain_queries += 1;
                            queries.push(Query {
                                zone: zi,
                                item: d.clone(),
                                name,
                            });
                        }
                    }
                }
            }
        }
        if capped {
            out.push(Symbol::new(
                QUERY_LIMIT_SYMBOL,
                0.0,
                format!(
                    "more domains than dns.max_domain_queries ({}); the rest were not looked up",
                    self.dns.max_domain_queries
                ),
            ));
        }
        queries
    }

    /// Looks the message up in every list; returns the symbols.
    pub async fn check(&self, input: &ScanInput) -> Vec<Symbol> {
        let mut out = Vec::new();
        let queries = self.queries_for(input, &mut out);
        if queries.is_empty() {
            return out;
        }
        let deadline = Instant::now() + self.dns.timeout;
        let mut names: Vec<&str> = queries.iter().map(|q| q.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let answers: HashMap<&str, Result<Vec<Ipv4Addr>, Failure>> =
            futures_util::future::join_all(names.iter().map(|&n| async move {
                let r = match tokio::time::timeout_at(deadline, self.lookup(n)).await {
                    Ok(r) => r,
                    Err(_) => Err(Failure::Timeout),
                };
                (n, r)
            }))
            .await
            .into_iter()
            .collect();
        let mut symbols: Vec<Symbol> = Vec::new();
        let mut add = |s: Symbol| match symbols.iter_mut().find(|x| x.name == s.name) {
            Some(existing) => {
                if !existing.detail.ends_with(", ...") {
                    existing.detail.push_str(", ...");
                }
            }
            None => symbols.push(s),
        };
        let metrics = crate::metrics::get();
        for q in &queries {
            let z = &self.zones[q.zone];
            let name = &z.list.name;
            let answer = &answers[q.name.as_str()];
            let result = match answer {
                Ok(addrs) if addrs.is_empty() => "not_listed",
                Ok(addrs)
                    if addrs
                        .iter()
                        .all(|a| matches!(dnsbl::classify(*a), Answer::Error(_))) =>
                {
                    "blocked"
                }
                Ok(_) => "listed",
                Err(Failure::Timeout) => "timeout",
                Err(Failure::Error(_)) => "fail",
            };
            metrics.dns_result(name, result);
            match answer {
                Ok(addrs) if addrs.is_empty() => {}
                Ok(addrs) => {
                    let found = dnsbl::interpret(addrs, &z.codes, &format!("{name}_UNKNOWN"));
                    for (symbol, score) in found.symbols {
                        let codes: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                        add(Symbol::new(
                            symbol,
                            score,
                            format!(
                                "{} listed in {} ({})",
                                q.item,
                                z.list.zone,
                                codes.join(", ")
                            ),
                        ));
                    }
                    if !found.unmapped.is_empty() {
                        tracing::info!(list = %name, zone = %z.list.zone, item = %q.item, codes = ?found.unmapped, "return code not in the list's codes: counted with score 0");
                    }
                    for (addr, why) in found.errors {
                        self.stats.blocked.fetch_add(1, Ordering::Relaxed);
                        if let Some(suppressed) = self.warn.allow() {
                            tracing::warn!(list = %name, zone = %z.list.zone, item = %q.item, answer = %addr, suppressed, "DNS list answered with an error code, not a listing: {why}");
                        }
                        add(Symbol::new(
                            format!("{name}_BLOCKED"),
                            0.0,
                            format!("{} answered {addr} for {}: {why}", z.list.zone, q.item),
                        ));
                    }
                }
                Err(Failure::Timeout) => {
                    self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                    add(Symbol::new(
                        format!("{name}_TIMEOUT"),
                        0.0,
                        format!(
                            "no answer from {} within dns.timeout ({:?}) for {}",
                            z.list.zone, self.dns.timeout, q.item
                        ),
                    ));
                }
                Err(Failure::Error(e)) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    if let Some(suppressed) = self.warn.allow() {
                        tracing::warn!(list = %name, zone = %z.list.zone, item = %q.item, suppressed, "DNS lookup failed: {e}");
                    }
                    add(Symbol::new(
                        format!("{name}_FAIL"),
                        0.0,
                        format!("lookup in {} failed for {}: {e}", z.list.zone, q.item),
                    ));
                }
            }
        }
        out.extend(symbols);
        out
    }

    /// Probes every zone once, concurrently, and enables or disables each.
    pub async fn probe_all(&self) {
        let probes = self.zones.iter().map(|z| async move {
            let verdict = self.probe(z).await;
            let was = z.enabled.swap(verdict.is_ok(), Ordering::Relaxed);
            crate::metrics::get().dns_enabled(&z.list.name, verdict.is_ok());
            match (&verdict, was) {
                (Err(why), true) => tracing::error!(list = %z.list.name, zone = %z.list.zone, "DNS list disabled: {why}"),
                (Ok(()), false) => tracing::warn!(list = %z.list.name, zone = %z.list.zone, "DNS list enabled again: its probes pass"),
                _ => {}
            }
        });
        futures_util::future::join_all(probes).await;
        tracing::info!(
            lookups = self.stats.lookups.load(Ordering::Relaxed),
            queries = self.queries(),
            blocked = self.stats.blocked.load(Ordering::Relaxed),
            timeouts = self.stats.timeouts.load(Ordering::Relaxed),
            failures = self.stats.failures.load(Ordering::Relaxed),
            cached = self.cache.len(),
            "DNS list counters"
        );
    }

    /// Ok when the zone behaves: it does not list what no list may list, and it answers.
    async fn probe(&self, z: &Zone) -> Result<(), String> {
        let (never, always) = match z.list.kind {
            ListKind::Ip => (
                (
                    "127.0.0.1".to_string(),
                    dnsbl::ip_query(IpAddr::from([127, 0, 0, 1]), &z.query_zone),
                ),
                Some((
                    "127.0.0.2".to_string(),
                    dnsbl::ip_query(IpAddr::from([127, 0, 0, 2]), &z.query_zone),
                )),
            ),
            ListKind::Domain => {
                let label = format!("repmilter-probe-{:016x}.invalid", random());
                let name = dnsbl::domain_query(&label, &z.query_zone).ok_or("zone too long")?;
                let known =
                    z.list.test_domain.as_ref().and_then(|d| {
                        dnsbl::domain_query(d, &z.query_zone).map(|n| (d.clone(), n))
                    });
                ((label, name), known)
            }
        };
        let ask = |name: String| async move {
            match tokio::time::timeout(self.dns.timeout, self.resolver.lookup_a(&name)).await {
                Ok(r) => r.map(|(addrs, _ttl)| addrs),
                Err(_) => Err(Failure::Timeout),
            }
        };
        let listed = |addrs: &[Ipv4Addr]| {
            addrs
                .iter()
                .any(|a| matches!(dnsbl::classify(*a), Answer::Listed(_)))
        };
        let errors = |addrs: &[Ipv4Addr]| -> Vec<&'static str> {
            addrs
                .iter()
                .filter_map(|a| match dnsbl::classify(*a) {
                    Answer::Error(why) => Some(why),
                    Answer::Listed(_) => None,
                })
                .collect()
        };
        let (never_answer, always_answer) = match always {
            Some((item, name)) => {
                let (a, b) = tokio::join!(ask(never.1.clone()), ask(name));
                (a, Some((item, b)))
            }
            None => (ask(never.1.clone()).await, None),
        };
        if let Ok(addrs) = &never_answer {
            if listed(addrs) {
                return Err(format!(
                    "it lists {}, which no list may list: the zone lists everything",
                    never.0
                ));
            }
            for why in errors(addrs) {
                tracing::warn!(list = %z.list.name, zone = %z.list.zone, "probe answered with an error code: {why}");
            }
        }
        match (&never_answer, always_answer) {
            (_, Some((item, Ok(addrs)))) => {
                if !listed(&addrs) && errors(&addrs).is_empty() {
                    return Err(format!(
                        "it does not list {item}, which it must: the zone answers nothing"
                    ));
                }
                Ok(())
            }
            (_, Some((item, Err(e)))) => Err(format!("no answer for {item} ({e})")),
            (Err(e), None) => Err(format!("no answer to its probe ({e})")),
            (Ok(_), None) => Ok(()),
        }
    }

    /// Probes the zones every `dns.probe_interval` for as long as the lists are in use.
    pub fn spawn_probes(self: &Arc<Self>) {
        let weak: Weak<DnsLists> = Arc::downgrade(self);
        let interval = self.dns.probe_interval;
        tokio::spawn(async move {
            loop {
                let Some(me) = weak.upgrade() else {
                    return;
                };
                me.probe_all().await;
                drop(me);
                tokio::time::sleep(interval).await;
            }
        });
    }
}

/// The domains a check asks about, registered domains, each once, in message order.
fn domains_for(check: Check, input: &ScanInput) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |host: &str| {
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() || host.parse::<IpAddr>().is_ok() || host.starts_with('[') {
            return;
        }
        let d = registered_domain(&host);
        if !out.contains(&d) {
            out.push(d);
        }
    };
    let domain_of = |addr: &str| addr.rsplit_once('@').map(|(_, d)| d.to_string());
    match check {
        Check::Urls => {
            for u in &input.view().urls {
                push(&u.domain);
            }
        }
        Check::MailFrom => {
            if let Some(d) = domain_of(&input.envelope.from) {
                push(&d);
            }
        }
        Check::From => {
            if let Some(raw) = input.message.header("From") {
                for (_, addr) in mime::addresses(raw) {
                    if let Some(d) = addr.as_deref().and_then(domain_of) {
                        push(&d);
                    }
                }
            }
        }
        Check::Helo => push(&input.envelope.helo),
        Check::Client | Check::Received => {}
    }
    out
}

/// Not cryptographic: a label no list has, different for each probe.
fn random() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// The lists as a pipeline stage.
pub struct DnsStage {
    pub lists: Arc<DnsLists>,
}

impl Lookup for DnsStage {
    fn name(&self) -> &'static str {
        "dns"
    }

    fn scan<'a>(&'a self, input: &'a ScanInput) -> LookupFuture<'a> {
        Box::pin(self.lists.check(input))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Envelope, Message};
    use crate::reputation::resolver::Table;
    use std::path::Path;

    const LISTS: &str = r#"
[dns]
timeout = "1s"
max_domain_queries = 3
received = "all"

[trust]
networks = ["10.0.0.0/8"]

[[dnsbl]]
name = "IPBL"
zone = "ip.test"
codes = [{ code = "127.0.0.2", symbol = "IPBL_SPAM", score = 3.0 }]

[[uribl]]
name = "URI"
zone = "uri.test"
checks = ["urls", "mail_from", "from", "helo"]
score = 2.0
test_domain = "listed.example"
"#;

    fn lists(table: &Arc<Table>) -> Arc<DnsLists> {
        let config = Config::parse(LISTS, Path::new("t.toml")).unwrap();
        DnsLists::with_resolver(&config, table.clone()).unwrap()
    }

    fn input(client: &str, raw: &str) -> ScanInput {
        ScanInput::new(
            Envelope {
                client_ip: Some(client.parse().unwrap()),
                from: "a@sender.example".into(),
                helo: "mx.helo.example".into(),
                ..Envelope::default()
            },
            Message::from_raw(raw.as_bytes(), 1 << 20),
        )
    }

    fn names(v: &[Symbol]) -> Vec<&str> {
        v.iter().map(|s| s.name.as_str()).collect()
    }

    #[tokio::test]
    async fn queries_cover_the_client_the_hops_behind_relays_and_domains_once_each() {
        let table = Arc::new(Table::default());
        let l = lists(&table);
        // The client is one of our relays: the hops below it are checked, each once.
        let raw = "Received: from a ([192.0.2.7]) by relay\r\nReceived: from b ([192.0.2.7]) by x\r\nReceived: from c ([198.51.100.9]) by y\r\nFrom: b@from.example\r\n\r\nhttp://www.url.example/x http://url.example/y\r\n";
        l.check(&input("10.1.2.3", raw)).await;
        let mut asked = table.asked();
        asked.sort();
        assert_eq!(
            asked,
            [
                "7.2.0.192.ip.test",
                "9.100.51.198.ip.test",
                // URL, envelope sender, From and HELO domains, in that order: the fourth is
                // past dns.max_domain_queries.
                "from.example.uri.test",
                "sender.example.uri.test",
                "url.example.uri.test",
            ]
        );
        // An untrusted client is where the mail entered: only it is checked; and the domain
        // cap says so.
        let v = l.check(&input("192.0.2.9", raw)).await;
        assert_eq!(table.asked()[0], "9.2.0.192.ip.test");
        assert!(names(&v).contains(&QUERY_LIMIT_SYMBOL), "{v:?}");
    }

    #[tokio::test]
    async fn answers_become_symbols_and_errors_never_score() {
        let table = Arc::new(Table::default());
        let l = lists(&table);
        table.list("9.2.0.192.ip.test", &["127.0.0.2", "127.0.0.9"]);
        table.list("url.example.uri.test", &["127.255.255.254"]);
        table.set(
            "sender.example.uri.test",
            Err(Failure::Error("SERVFAIL".into())),
        );
        let raw = "From: b@sender.example\r\n\r\nhttp://url.example/\r\n";
        let v = l.check(&input("192.0.2.9", raw)).await;
        let got: Vec<(&str, f64)> = v.iter().map(|s| (s.name.as_str(), s.score)).collect();
        assert_eq!(
            got,
            [
                ("IPBL_SPAM", 3.0),
                // A listing code the map does not name counts, with nothing.
                ("IPBL_UNKNOWN", 0.0),
                ("URI_BLOCKED", 0.0),
                ("URI_FAIL", 0.0),
            ]
        );
        assert_eq!(l.stats.blocked.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_list_that_does_not_answer_costs_the_budget_and_no_more() {
        let table = Arc::new(Table::default());
        let l = lists(&table);
        table.hang("9.2.0.192.ip.test");
        let started = Instant::now();
        let v = l.check(&input("192.0.2.9", "\r\nhi\r\n")).await;
        assert_eq!(names(&v), ["IPBL_TIMEOUT"]);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        // A repeated question is answered from the cache: no query.
        let before = table.queries();
        table.list("x.example.uri.test", &["127.0.0.2"]);
        let raw = "\r\nhttp://x.example/\r\n";
        l.check(&input("10.9.9.9", raw)).await;
        l.check(&input("10.9.9.9", raw)).await;
        assert_eq!(table.queries() - before, 1);
    }

    #[tokio::test]
    async fn probes_disable_a_zone_that_lists_everything_or_nothing_and_enable_it_again() {
        let table = Arc::new(Table::default());
        let l = lists(&table);
        // IP list: 127.0.0.2 must be listed and 127.0.0.1 must not.
        table.list("2.0.0.127.ip.test", &["127.0.0.2"]);
        table.list("listed.example.uri.test", &["127.0.0.2"]);
        l.probe_all().await;
        assert_eq!(l.enabled("IPBL"), Some(true));
        assert_eq!(l.enabled("URI"), Some(true));
        // A list that answers everything: 127.0.0.1 listed.
        table.list("1.0.0.127.ip.test", &["127.0.0.2"]);
        // A domain list that stopped listing its test domain.
        table.set("listed.example.uri.test", Ok(Vec::new()));
        l.probe_all().await;
        assert_eq!(l.enabled("IPBL"), Some(false));
        assert_eq!(l.enabled("URI"), Some(false));
        let v = l
            .check(&input("192.0.2.9", "\r\nhttp://url.example/\r\n"))
            .await;
        assert_eq!(names(&v), ["IPBL_DISABLED", "URI_DISABLED"]);
        // An error code (query through a public resolver) does not disable a zone; fixed
        // zones are enabled again.
        table.list("1.0.0.127.ip.test", &["127.255.255.254"]);
        table.list("listed.example.uri.test", &["127.0.0.2"]);
        l.probe_all().await;
        assert_eq!(l.enabled("IPBL"), Some(true));
        assert_eq!(l.enabled("URI"), Some(true));
        // No answer at all disables.
        table.set("2.0.0.127.ip.test", Err(Failure::Timeout));
        l.probe_all().await;
        assert_eq!(l.enabled("IPBL"), Some(false));
    }
}
