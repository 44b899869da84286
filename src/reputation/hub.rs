//! The hub lookup stage: every key of a message asked of the hub in one request, through a
//! cache, under the message's budget, behind a circuit breaker.
//!
//! Answers are cached for the TTL the hub gives (negative and neutral answers too); keys in
//! flight for another message are awaited, not asked again. The breaker opens after
//! [`FAILURES_TO_OPEN`] failed requests in a row, or at once for the time a 429's
//! `Retry-After` asks; while open no request is sent and messages get a zero-score
//! `HUB_UNAVAILABLE`. After `hub.cool_down` (30 s) one request is let through; its success closes the
//! breaker. Mail never waits for a hub that is down: past the budget the stage is cut off
//! with `HUB_TIMEOUT`.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::Shared;

use super::cache::{Cache, SystemClock, TtlBounds};
use super::keys::{Key, key_strings};
use crate::config::HubClient;
use crate::scan::{Lookup, LookupFuture, ScanInput, Symbol};
use crate::warn::WarnLimiter;

/// Failed requests in a row that open the breaker.
pub const FAILURES_TO_OPEN: u32 = 3;

/// Longest a 429's Retry-After is believed.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Why the hub gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubFailure {
    /// Not reachable, an error status, or an answer that does not parse.
    Unavailable(String),
    /// 429: come back after this long.
    RateLimited(Duration),
}

impl std::fmt::Display for HubFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HubFailure::Unavailable(why) => f.write_str(why),
            HubFailure::RateLimited(d) => write!(f, "rate limited for {d:?}"),
        }
    }
}

/// A key's answer: score contribution, why, and for how long it holds.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Answer {
    pub key: String,
    pub score: f64,
    pub why: String,
    pub ttl: u64,
}

pub type AnswersFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Answer>, HubFailure>> + Send + 'a>>;

/// Asks the hub about keys: [`HttpHub`] over HTTP; tests give their own.
pub trait HubApi: Send + Sync {
    fn lookup<'a>(&'a self, keys: &'a [String]) -> AnswersFuture<'a>;
}

/// The hub over HTTP: `POST {url}/v1/lookup` with the gateway's bearer token.
pub struct HttpHub {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl HttpHub {
    pub fn new(config: &HubClient) -> HttpHub {
        HttpHub {
            // The stage's budget cuts a request off first (HUB_TIMEOUT); this is a backstop
            // for a request that outlives it.
            client: reqwest::Client::builder()
                .timeout(config.timeout + Duration::from_secs(1))
                // Below the hub's 30 s idle limit, so a pooled connection is not reused as the hub
                // closes it.
                .pool_idle_timeout(Duration::from_secs(20))
                .build()
                .expect("an HTTP client builds with rustls"),
            url: format!("{}/v1/lookup", config.url),
            token: config.token.clone(),
        }
    }
}

#[derive(serde::Deserialize)]
struct LookupReply {
    results: Vec<Answer>,
}

impl HubApi for HttpHub {
    fn lookup<'a>(&'a self, keys: &'a [String]) -> AnswersFuture<'a> {
        Box::pin(async move {
            let resp = self
                .client
                .post(&self.url)
                .bearer_auth(&self.token)
                .json(&serde_json::json!({ "keys": keys }))
                .send()
                .await
                .map_err(|e| HubFailure::Unavailable(e.without_url().to_string()))?;
            let status = resp.status();
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                let secs = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(1);
                return Err(HubFailure::RateLimited(Duration::from_secs(secs)));
            }
            if !status.is_success() {
                return Err(HubFailure::Unavailable(format!("hub answered {status}")));
            }
            let reply: LookupReply = resp
                .json()
                .await
                .map_err(|e| HubFailure::Unavailable(format!("bad answer: {}", e.without_url())))?;
            Ok(reply.results)
        })
    }
}

/// Open, closed, or letting one request through.
#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

impl Breaker {
    /// Whether a request may go out now.
    fn allow(&mut self, now: Instant) -> bool {
        match self.open_until {
            None => true,
            Some(t) if now < t => false,
            Some(_) if self.probing => false,
            Some(_) => {
                self.probing = true;
                true
            }
        }
    }

    fn success(&mut self) {
        *self = Breaker::default();
    }

    fn failure(&mut self, now: Instant, why: &HubFailure, cool_down: Duration) {
        self.probing = false;
        self.failures += 1;
        let wait = match why {
            HubFailure::RateLimited(d) => Some((*d).min(MAX_RETRY_AFTER)),
            HubFailure::Unavailable(_) if self.failures >= FAILURES_TO_OPEN => Some(cool_down),
            HubFailure::Unavailable(_) => None,
        };
        if let Some(w) = wait {
            self.open_until = Some(now + w);
        }
    }
}

type Batch =
    Shared<Pin<Box<dyn Future<Output = Result<Arc<HashMap<String, Answer>>, HubFailure>> + Send>>>;

/// The hub client state shared by all sessions: cache, breaker, counters.
pub struct HubLookups {
    api: Arc<dyn HubApi>,
    cache: Cache<Answer, HubFailure>,
    breaker: Mutex<Breaker>,
    cool_down: Duration,
    config: HubClient,
    warn: WarnLimiter,
}

impl HubLookups {
    pub fn new(config: &HubClient) -> Arc<HubLookups> {
        HubLookups::with_api(config, Arc::new(HttpHub::new(config)))
    }

    pub fn with_api(config: &HubClient, api: Arc<dyn HubApi>) -> Arc<HubLookups> {
        Arc::new(HubLookups {
            api,
            cache: Cache::new(
                NonZeroUsize::new(config.cache_size).unwrap_or(NonZeroUsize::MIN),
                TtlBounds {
                    min: Duration::from_secs(1),
                    max: Duration::from_secs(86_400),
                },
                Arc::new(SystemClock),
            ),
            breaker: Mutex::new(Breaker::default()),
            cool_down: config.cool_down,
            config: config.clone(),
            warn: WarnLimiter::default(),
        })
    }

    /// Whether a new config can keep this client (and its cache and breaker).
    pub fn same_config(&self, config: &HubClient) -> bool {
        self.config == *config
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The symbols for a message's keys.
    pub async fn check(&self, input: &ScanInput) -> Vec<Symbol> {
        let keys = key_strings(input);
        if keys.is_empty() {
            return Vec::new();
        }
        let misses: Vec<String> = keys
            .iter()
            .filter(|k| self.cache.get(k).is_none())
            .cloned()
            .collect();
        if !misses.is_empty() && !self.breaker().allow(Instant::now()) {
            return vec![Symbol::new(
                "HUB_UNAVAILABLE",
                0.0,
                "the hub failed recently; not asked until it answers again",
            )];
        }
        let batch = self.batch(misses);
        let answers = futures_util::future::join_all(keys.iter().map(|k| {
            let batch = batch.clone();
            self.cache.get_or_fetch(k, move || async move {
                let all = batch.await?;
                let a = all.get(k).cloned().unwrap_or_else(|| Answer {
                    key: k.clone(),
                    score: 0.0,
                    why: "not in the hub's answer".into(),
                    ttl: 60,
                });
                let ttl = Duration::from_secs(a.ttl);
                Ok((a, ttl))
            })
        }))
        .await;
        // The breaker hears how this message's request went, if it went out.
        if let Some(done) = batch.peek() {
            let mut b = self.breaker();
            match done {
                Ok(_) => b.success(),
                Err(e) => b.failure(Instant::now(), e, self.cool_down),
            }
        }
        let mut failed = None;
        let mut best: HashMap<&'static str, Answer> = HashMap::new();
        for (k, a) in keys.iter().zip(answers) {
            match a {
                Ok(a) if a.score != 0.0 => {
                    let kind = k.parse::<Key>().map_or("key", |k| k.kind());
                    let e = best.entry(kind).or_insert_with(|| a.clone());
                    if a.score.abs() > e.score.abs() {
                        *e = a;
                    }
                }
                Ok(_) => {}
                Err(e) => failed = Some(e),
            }
        }
        let mut out: Vec<Symbol> = best
            .into_iter()
            .map(|(kind, a)| {
                let side = if a.score > 0.0 { "SPAM" } else { "HAM" };
                let name = match kind {
                    "fuzzy" if a.score > 0.0 => "HUB_FUZZY".to_string(),
                    k => format!("HUB_{side}_{}", k.to_ascii_uppercase()),
                };
                Symbol::new(name, a.score, format!("{}: {}", a.key, a.why))
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(e) = failed {
            if let Some(suppressed) = self.warn.allow() {
                tracing::warn!(suppressed, "hub lookup failed: {e}");
            }
            out.push(Symbol::new(
                "HUB_UNAVAILABLE",
                0.0,
                format!("hub lookup failed: {e}"),
            ));
        }
        out
    }

    /// One request for the keys no cache entry holds, shared by the keys' fetches; it runs
    /// only if one of them is the first to ask for its key.
    fn batch(&self, misses: Vec<String>) -> Batch {
        let api = self.api.clone();
        let fut: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(async move {
            if misses.is_empty() {
                return Ok(Arc::new(HashMap::new()));
            }
            let answers = api.lookup(&misses).await?;
            Ok(Arc::new(
                answers.into_iter().map(|a| (a.key.clone(), a)).collect(),
            ))
        });
        fut.shared()
    }
}

/// The hub client as a pipeline stage.
pub struct HubStage {
    pub lookups: Arc<HubLookups>,
}

impl Lookup for HubStage {
    fn name(&self) -> &'static str {
        "hub"
    }

    fn scan<'a>(&'a self, input: &'a ScanInput) -> LookupFuture<'a> {
        let budget = self.lookups.config.timeout;
        Box::pin(async move {
            match tokio::time::timeout(budget, self.lookups.check(input)).await {
                Ok(symbols) => symbols,
                Err(_) => {
                    self.lookups.breaker().failure(
                        Instant::now(),
                        &HubFailure::Unavailable("no answer within hub.timeout".into()),
                        self.lookups.cool_down,
                    );
                    vec![Symbol::new(
                        "HUB_TIMEOUT",
                        0.0,
                        format!("no answer from the hub within hub.timeout ({budget:?})"),
                    )]
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Envelope, Message};
    use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

    /// A hub that answers from a table, or fails as told.
    #[derive(Default)]
    struct Fake {
        scores: Mutex<HashMap<String, f64>>,
        /// 0 answer, 1 fail, 2 rate limit.
        mode: AtomicU8,
        calls: AtomicU64,
    }

    impl HubApi for Fake {
        fn lookup<'a>(&'a self, keys: &'a [String]) -> AnswersFuture<'a> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let mode = self.mode.load(Ordering::Relaxed);
            let scores = self.scores.lock().unwrap().clone();
            Box::pin(async move {
                match mode {
                    1 => Err(HubFailure::Unavailable("connection refused".into())),
                    2 => Err(HubFailure::RateLimited(Duration::from_secs(60))),
                    _ => Ok(keys
                        .iter()
                        .map(|k| Answer {
                            key: k.clone(),
                            score: scores.get(k).copied().unwrap_or(0.0),
                            why: "test".into(),
                            ttl: 300,
                        })
                        .collect()),
                }
            })
        }
    }

    fn config() -> HubClient {
        HubClient {
            url: "http://127.0.0.1:1".into(),
            token: "t".into(),
            timeout: Duration::from_secs(1),
            cache_size: 1000,
            spool: "spool".into(),
            spool_max: 1 << 20,
            share_samples: false,
            sync_interval: Duration::from_millis(500),
            cool_down: Duration::from_secs(30),
            model_interval: Duration::from_secs(300),
        }
    }

    fn input() -> ScanInput {
        ScanInput::new(
            Envelope {
                client_ip: Some("192.0.2.1".parse().unwrap()),
                ..Envelope::default()
            },
            Message::from_raw(
                b"From: a@b.example\r\n\r\nsee http://evil.example/x\r\n",
                1 << 20,
            ),
        )
    }

    fn names(v: &[Symbol]) -> Vec<&str> {
        v.iter().map(|s| s.name.as_str()).collect()
    }

    fn lookups(fake: &Arc<Fake>, cool_down: Duration) -> Arc<HubLookups> {
        let l = HubLookups::with_api(&config(), fake.clone());
        let mut l = Arc::try_unwrap(l).ok().unwrap();
        l.cool_down = cool_down;
        Arc::new(l)
    }

    #[tokio::test]
    async fn answers_become_one_symbol_per_kind_and_are_cached() {
        let fake = Arc::new(Fake::default());
        fake.scores.lock().unwrap().extend([
            ("domain:evil.example".to_string(), 6.0),
            ("ip:192.0.2.1".to_string(), -2.0),
        ]);
        let l = lookups(&fake, Duration::from_secs(30));
        let v = l.check(&input()).await;
        assert_eq!(names(&v), ["HUB_HAM_IP", "HUB_SPAM_DOMAIN"]);
        assert_eq!(v.iter().map(|s| s.score).sum::<f64>(), 4.0);
        // Every key was asked in one request; the next message asks nothing.
        assert_eq!(fake.calls.load(Ordering::Relaxed), 1);
        l.check(&input()).await;
        assert_eq!(fake.calls.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn the_breaker_opens_after_failures_and_closes_when_the_hub_answers() {
        let fake = Arc::new(Fake::default());
        fake.mode.store(1, Ordering::Relaxed);
        let l = lookups(&fake, Duration::from_millis(100));
        for _ in 0..FAILURES_TO_OPEN {
            assert_eq!(names(&l.check(&input()).await), ["HUB_UNAVAILABLE"]);
        }
        // Open: no request goes out.
        let calls = fake.calls.load(Ordering::Relaxed);
        assert_eq!(names(&l.check(&input()).await), ["HUB_UNAVAILABLE"]);
        assert_eq!(fake.calls.load(Ordering::Relaxed), calls);
        // After the cool-down one request goes through; the hub is back, so it closes.
        fake.mode.store(0, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(l.check(&input()).await.is_empty());
        assert_eq!(fake.calls.load(Ordering::Relaxed), calls + 1);
        assert!(l.breaker().open_until.is_none());
    }

    #[tokio::test]
    async fn a_rate_limit_is_honoured_at_once() {
        let fake = Arc::new(Fake::default());
        fake.mode.store(2, Ordering::Relaxed);
        let l = lookups(&fake, Duration::from_secs(30));
        assert_eq!(names(&l.check(&input()).await), ["HUB_UNAVAILABLE"]);
        let calls = fake.calls.load(Ordering::Relaxed);
        fake.mode.store(0, Ordering::Relaxed);
        // Retry-After: 60 s; nothing is sent before then.
        assert_eq!(names(&l.check(&input()).await), ["HUB_UNAVAILABLE"]);
        assert_eq!(fake.calls.load(Ordering::Relaxed), calls);
    }
}
