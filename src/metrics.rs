//! What the daemon has been doing, for operators: Prometheus counters and histograms, the
//! recent verdicts and per-interval action counts behind the dashboard.
//!
//! One process-wide set ([`get`]), as a Prometheus client library keeps its default
//! registry: sessions, stages, DNS lists and reloads record into it from wherever they run,
//! and the monitor listener reads it. Recording is a few atomic adds and, per label value, a
//! read lock on a map; nothing here blocks on I/O. Labels hold only names from the config
//! and the rule set (actions, stages, lists, symbols), never a peer's words, so the number of
//! series is bounded by the configuration.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use serde::{Deserialize, Serialize};

/// Actions in the order the dashboard and `repmilter stats` show them.
pub const ACTIONS: [&str; 7] = [
    "accept",
    "add_header",
    "rewrite_subject",
    "quarantine",
    "soft_reject",
    "discard",
    "reject",
];

/// Verdicts kept for the dashboard's "recent" table.
pub const RECENT: usize = 50;

/// Length of one interval of the action history.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Intervals kept: one hour.
pub const INTERVALS: usize = 360;

/// Symbols listed per recent verdict; a message can carry hundreds.
const RECENT_SYMBOLS: usize = 40;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabel {
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SymbolLabel {
    pub symbol: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListLabel {
    pub list: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListResultLabel {
    pub list: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn scan_histogram() -> Histogram {
    // 50 µs to about 26 s: a cheap scan to one cut off at the longest message_timeout.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

/// Every metric, registered once.
pub struct Metrics {
    registry: Registry,
    pub messages: Family<ActionLabel, Counter>,
    pub scan_seconds: HistogramFamily<StageLabel>,
    pub symbols: Family<SymbolLabel, Counter>,
    pub dns_lookups: Family<ListLabel, Counter>,
    pub dns_answers: Family<ListResultLabel, Counter>,
    pub dns_enabled: Family<ListLabel, Gauge>,
    pub dns_cache: Family<ResultLabel, Counter>,
    pub rules: Gauge,
    pub reloads: Family<ResultLabel, Counter>,
    pub sessions_open: Gauge,
    pub connections: Counter,
    pub errors: Family<KindLabel, Counter>,
    recent: Mutex<VecDeque<Recent>>,
    history: Mutex<VecDeque<Interval>>,
    /// Label values recorded so far, for the summary (a family cannot list its labels).
    seen: Mutex<Seen>,
    started: u64,
}

#[derive(Default)]
struct Seen {
    symbols: BTreeSet<String>,
    stages: BTreeSet<&'static str>,
    lists: BTreeSet<String>,
    errors: BTreeSet<String>,
}

/// Everything the dashboard and `repmilter stats` show, in one JSON document.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub version: String,
    /// Unix time of the summary and of the daemon's start, seconds.
    pub now: u64,
    pub started: u64,
    pub rules: i64,
    pub sessions_open: i64,
    pub connections: u64,
    /// Messages by action, in [`ACTIONS`] order.
    pub actions: Vec<(String, u64)>,
    /// The most frequent symbols, most frequent first.
    pub top_symbols: Vec<(String, u64)>,
    pub stages: Vec<StageTime>,
    pub lists: Vec<ListHealth>,
    pub dns_cache_hits: u64,
    pub dns_cache_misses: u64,
    pub reloads_ok: u64,
    pub reloads_refused: u64,
    pub errors: BTreeMap<String, u64>,
    pub history: Vec<Interval>,
    pub recent: Vec<Recent>,
}

/// One stage's time per message.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageTime {
    pub stage: String,
    pub count: u64,
    pub mean_ms: f64,
}

/// One DNS list: in use or not, and how its lookups went.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ListHealth {
    pub list: String,
    /// None until its first probe.
    pub enabled: Option<bool>,
    pub lookups: u64,
    /// By result: listed, not_listed, blocked, timeout, fail.
    pub results: BTreeMap<String, u64>,
}

/// Symbols in the summary's top list.
pub const TOP_SYMBOLS: usize = 20;

/// DNS list results, as counted in `dns_answers`.
pub const DNS_RESULTS: [&str; 5] = ["listed", "not_listed", "blocked", "timeout", "fail"];

/// One verdict, as the dashboard lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Recent {
    /// Unix time, seconds.
    pub time: u64,
    pub queue_id: String,
    pub client: String,
    pub from: String,
    pub rcpts: usize,
    pub size: usize,
    pub score: f64,
    pub action: String,
    pub symbols: Vec<(String, f64)>,
    pub elapsed_ms: f64,
}

/// Messages by action over one [`INTERVAL`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Interval {
    /// Unix time the interval starts, seconds.
    pub start: u64,
    /// Counts in [`ACTIONS`] order.
    pub actions: [u64; ACTIONS.len()],
}

/// The process-wide metrics.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("repmilter");
        let m = Metrics {
            messages: Family::default(),
            scan_seconds: HistogramFamily::new_with_constructor(scan_histogram),
            symbols: Family::default(),
            dns_lookups: Family::default(),
            dns_answers: Family::default(),
            dns_enabled: Family::default(),
            dns_cache: Family::default(),
            rules: Gauge::default(),
            reloads: Family::default(),
            sessions_open: Gauge::default(),
            connections: Counter::default(),
            errors: Family::default(),
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
            history: Mutex::new(VecDeque::with_capacity(INTERVALS)),
            seen: Mutex::new(Seen::default()),
            started: now_secs(),
            registry: Registry::default(),
        };
        registry.register(
            "messages",
            "Messages judged, by the action taken",
            m.messages.clone(),
        );
        registry.register_with_unit(
            "scan",
            "Time each stage took per message (stage \"message\": the whole judgement)",
            Unit::Seconds,
            m.scan_seconds.clone(),
        );
        registry.register(
            "symbol_hits",
            "Messages each symbol was added to",
            m.symbols.clone(),
        );
        registry.register(
            "dns_lookups",
            "DNS list lookups asked by messages (cache hits included)",
            m.dns_lookups.clone(),
        );
        registry.register(
            "dns_answers",
            "DNS list results: listed, not_listed, blocked (an error code), timeout, fail",
            m.dns_answers.clone(),
        );
        registry.register(
            "dns_list_enabled",
            "1 while a DNS list's probes pass, 0 while it is disabled",
            m.dns_enabled.clone(),
        );
        registry.register(
            "dns_cache",
            "DNS list lookups answered from the cache (hit) or sent on (miss)",
            m.dns_cache.clone(),
        );
        registry.register(
            "rules",
            "Signature rules in the rule set in use",
            m.rules.clone(),
        );
        registry.register(
            "reloads",
            "Engine rebuilds (SIGHUP, rule file changes): ok or refused",
            m.reloads.clone(),
        );
        registry.register(
            "sessions_open",
            "MTA connections open now",
            m.sessions_open.clone(),
        );
        registry.register(
            "connections",
            "MTA connections accepted",
            m.connections.clone(),
        );
        registry.register(
            "errors",
            "Connections closed on an error, by kind",
            m.errors.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The metrics in Prometheus' text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String does not fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Records one judged message: its action and symbols, the whole judgement's time, a
    /// line in the recent table, a count in the current interval.
    pub fn message(&self, verdict: Recent) {
        let slot = ACTIONS.iter().position(|a| *a == verdict.action);
        let action = slot.map_or("other", |i| ACTIONS[i]);
        self.messages.get_or_create(&ActionLabel { action }).inc();
        for (name, _) in &verdict.symbols {
            let label = SymbolLabel {
                symbol: name.clone(),
            };
            if self.symbols.get(&label).map(|c| c.inc()).is_none() {
                self.symbols.get_or_create(&label).inc();
                self.seen().symbols.insert(name.clone());
            }
        }
        self.stage_time("message", verdict.elapsed_ms / 1000.0);
        {
            let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
            let start = verdict.time - verdict.time % INTERVAL.as_secs();
            if history.back().is_none_or(|b| b.start < start) {
                if history.len() == INTERVALS {
                    history.pop_front();
                }
                history.push_back(Interval {
                    start,
                    actions: [0; ACTIONS.len()],
                });
            }
            if let (Some(b), Some(i)) = (history.back_mut(), slot) {
                b.actions[i] += 1;
            }
        }
        let mut verdict = verdict;
        verdict.symbols.truncate(RECENT_SYMBOLS);
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(verdict);
    }

    /// Records how long `stage` took for one message.
    pub fn stage_time(&self, stage: &'static str, seconds: f64) {
        let label = StageLabel { stage };
        if self
            .scan_seconds
            .get(&label)
            .map(|h| h.observe(seconds))
            .is_none()
        {
            self.scan_seconds.get_or_create(&label).observe(seconds);
            self.seen().stages.insert(stage);
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One DNS list result for one message's lookup (see `dns_answers` for the results).
    pub fn dns_result(&self, list: &str, result: &str) {
        if !self.dns_lookups.contains(&ListLabel {
            list: list.to_string(),
        }) {
            self.seen().lists.insert(list.to_string());
        }
        self.dns_lookups
            .get_or_create(&ListLabel {
                list: list.to_string(),
            })
            .inc();
        self.dns_answers
            .get_or_create(&ListResultLabel {
                list: list.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    pub fn dns_enabled(&self, list: &str, enabled: bool) {
        self.seen().lists.insert(list.to_string());
        self.dns_enabled
            .get_or_create(&ListLabel {
                list: list.to_string(),
            })
            .set(i64::from(enabled));
    }

    pub fn dns_cache(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.dns_cache
            .get_or_create(&ResultLabel {
                result: result.to_string(),
            })
            .inc();
    }

    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "refused" };
        self.reloads
            .get_or_create(&ResultLabel {
                result: result.to_string(),
            })
            .inc();
    }

    pub fn error(&self, kind: &str) {
        self.seen().errors.insert(kind.to_string());
        self.errors
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// The recent verdicts, oldest first.
    pub fn recent(&self) -> Vec<Recent> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().cloned().collect()
    }

    /// The action history, oldest interval first, from the first interval with a message;
    /// intervals without one are absent.
    pub fn history(&self) -> Vec<Interval> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history.iter().cloned().collect()
    }

    /// Everything the dashboard and `repmilter stats` show.
    pub fn summary(&self) -> Summary {
        let seen = self.seen();
        let count = |f: &Family<ResultLabel, Counter>, result: &str| {
            f.get(&ResultLabel {
                result: result.to_string(),
            })
            .map_or(0, |c| c.get())
        };
        let mut top: Vec<(String, u64)> = seen
            .symbols
            .iter()
            .map(|s| {
                let n = self
                    .symbols
                    .get(&SymbolLabel { symbol: s.clone() })
                    .map_or(0, |c| c.get());
                (s.clone(), n)
            })
            .collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(TOP_SYMBOLS);
        Summary {
            version: env!("CARGO_PKG_VERSION").to_string(),
            now: now_secs(),
            started: self.started,
            rules: self.rules.get(),
            sessions_open: self.sessions_open.get(),
            connections: self.connections.get(),
            actions: ACTIONS
                .iter()
                .map(|a| {
                    let label = ActionLabel { action: a };
                    (
                        a.to_string(),
                        self.messages.get(&label).map_or(0, |c| c.get()),
                    )
                })
                .collect(),
            top_symbols: top,
            stages: seen
                .stages
                .iter()
                .filter_map(|s| {
                    let h = self.scan_seconds.get(&StageLabel { stage: s })?;
                    let count = h.count();
                    Some(StageTime {
                        stage: s.to_string(),
                        count,
                        mean_ms: if count == 0 {
                            0.0
                        } else {
                            h.sum() * 1000.0 / count as f64
                        },
                    })
                })
                .collect(),
            lists: seen
                .lists
                .iter()
                .map(|l| {
                    let label = ListLabel { list: l.clone() };
                    ListHealth {
                        list: l.clone(),
                        enabled: self.dns_enabled.get(&label).map(|g| g.get() != 0),
                        lookups: self.dns_lookups.get(&label).map_or(0, |c| c.get()),
                        results: DNS_RESULTS
                            .iter()
                            .map(|r| {
                                let n = self
                                    .dns_answers
                                    .get(&ListResultLabel {
                                        list: l.clone(),
                                        result: r.to_string(),
                                    })
                                    .map_or(0, |c| c.get());
                                (r.to_string(), n)
                            })
                            .collect(),
                    }
                })
                .collect(),
            dns_cache_hits: count(&self.dns_cache, "hit"),
            dns_cache_misses: count(&self.dns_cache, "miss"),
            reloads_ok: count(&self.reloads, "ok"),
            reloads_refused: count(&self.reloads, "refused"),
            errors: seen
                .errors
                .iter()
                .map(|k| {
                    let n = self
                        .errors
                        .get(&KindLabel { kind: k.clone() })
                        .map_or(0, |c| c.get());
                    (k.clone(), n)
                })
                .collect(),
            history: self.history(),
            recent: self.recent(),
        }
    }

    /// Unix time now, as the recent table and history count it.
    pub fn now(&self) -> u64 {
        now_secs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(time: u64, action: &str, symbols: &[&str]) -> Recent {
        Recent {
            time,
            queue_id: "Q1".into(),
            client: "192.0.2.1".into(),
            from: "a@example.org".into(),
            rcpts: 1,
            size: 100,
            score: 1.0,
            action: action.into(),
            symbols: symbols.iter().map(|s| (s.to_string(), 1.0)).collect(),
            elapsed_ms: 0.5,
        }
    }

    #[test]
    fn messages_count_by_action_symbol_and_interval() {
        let m = Metrics::new();
        m.message(verdict(1_000, "reject", &["GTUBE", "X"]));
        m.message(verdict(1_005, "accept", &["X"]));
        m.message(verdict(1_012, "reject", &[]));
        let text = m.encode();
        for line in [
            "repmilter_messages_total{action=\"reject\"} 2",
            "repmilter_messages_total{action=\"accept\"} 1",
            "repmilter_symbol_hits_total{symbol=\"X\"} 2",
            "repmilter_symbol_hits_total{symbol=\"GTUBE\"} 1",
            "repmilter_scan_seconds_count{stage=\"message\"} 3",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        let h = m.history();
        let reject = ACTIONS.iter().position(|a| *a == "reject").unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(
            (h[0].start, h[0].actions[0], h[0].actions[reject]),
            (1_000, 1, 1)
        );
        assert_eq!((h[1].start, h[1].actions[reject]), (1_010, 1));
        assert_eq!(m.recent().len(), 3);
        let sum = m.summary();
        assert_eq!(sum.top_symbols[0], ("X".to_string(), 2));
        assert_eq!(sum.actions[0], ("accept".to_string(), 1));
        assert_eq!(sum.stages[0].stage, "message");
        assert_eq!(sum.stages[0].count, 3);
    }

    #[test]
    fn dns_lists_errors_and_reloads_are_summarised() {
        let m = Metrics::new();
        m.dns_enabled("IPBL", true);
        m.dns_result("IPBL", "listed");
        m.dns_result("IPBL", "not_listed");
        m.dns_result("IPBL", "not_listed");
        m.dns_result("URIBL", "timeout");
        m.dns_cache(true);
        m.dns_cache(false);
        m.dns_cache(true);
        m.error("bad_frame");
        m.reload(true);
        m.reload(false);
        let s = m.summary();
        let ip = &s.lists[0];
        assert_eq!(
            (ip.list.as_str(), ip.enabled, ip.lookups),
            ("IPBL", Some(true), 3)
        );
        assert_eq!((ip.results["listed"], ip.results["not_listed"]), (1, 2));
        let uri = &s.lists[1];
        assert_eq!((uri.enabled, uri.results["timeout"]), (None, 1));
        assert_eq!((s.dns_cache_hits, s.dns_cache_misses), (2, 1));
        assert_eq!((s.reloads_ok, s.reloads_refused), (1, 1));
        assert_eq!(s.errors["bad_frame"], 1);
        let text = m.encode();
        assert!(
            text.contains("repmilter_dns_answers_total{list=\"IPBL\",result=\"not_listed\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("repmilter_dns_list_enabled{list=\"IPBL\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn the_recent_table_and_history_stay_bounded() {
        let m = Metrics::new();
        let many: Vec<String> = (0..100).map(|i| format!("S{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        for i in 0..(INTERVALS as u64 + 20) {
            m.message(verdict(i * 10, "accept", &many));
        }
        assert_eq!(m.recent().len(), RECENT);
        assert!(m.recent().iter().all(|r| r.symbols.len() == RECENT_SYMBOLS));
        let h = m.history();
        assert_eq!(h.len(), INTERVALS);
        assert_eq!(h.last().unwrap().start, (INTERVALS as u64 + 19) * 10);
    }
}
