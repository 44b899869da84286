//! Scoring: stages add named symbols with scores; the pipeline runs them under a deadline;
//! the policy turns the total into an action.

pub mod policy;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use tokio::time::Instant;

use crate::config::Config;
use crate::message::mime::MimeView;
use crate::message::{Envelope, Message};
use crate::reputation::allow::{AllowLists, AllowStage};
use crate::reputation::lists::{DnsLists, DnsStage};
use crate::signatures::SignatureStage;
use crate::signatures::engine::RuleSet;

/// A named finding with a score.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Symbol {
    pub name: String,
    pub score: f64,
    /// Why it fired, for the report header and `check`.
    pub detail: String,
}

impl Symbol {
    pub fn new(name: impl Into<String>, score: f64, detail: impl Into<String>) -> Self {
        Symbol {
            name: name.into(),
            score,
            detail: detail.into(),
        }
    }
}

/// The total score and the symbols that make it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Verdict {
    pub score: f64,
    pub symbols: Vec<Symbol>,
}

impl Verdict {
    pub fn add(&mut self, s: Symbol) {
        self.score += s.score;
        self.symbols.push(s);
    }

    pub fn has(&self, name: &str) -> bool {
        self.symbols.iter().any(|s| s.name == name)
    }
}

/// What a stage looks at.
#[derive(Debug, Clone, Default)]
pub struct ScanInput {
    pub envelope: Envelope,
    pub message: Message,
    /// Built on first use and shared by every stage of this message.
    view: OnceLock<MimeView>,
}

impl ScanInput {
    pub fn new(envelope: Envelope, message: Message) -> ScanInput {
        ScanInput {
            envelope,
            message,
            view: OnceLock::new(),
        }
    }

    /// The decoded MIME view of the message.
    pub fn view(&self) -> &MimeView {
        self.view.get_or_init(|| MimeView::build(&self.message))
    }
}

pub type StageFuture<'a> = Pin<Box<dyn Future<Output = Vec<Symbol>> + Send + 'a>>;

/// One part of the pipeline. Stages are built once per config and shared by sessions.
///
/// A stage returns symbols with its default scores; the pipeline applies `[scores]`
/// overrides, so no stage needs to know about them.
pub trait Stage: Send + Sync {
    /// Lower-case name, used in `*_TIMEOUT` symbols and logs.
    fn name(&self) -> &'static str;
    /// Scores a message. The pipeline stops waiting at `deadline`; a stage that computes
    /// rather than waits checks it itself, so that it stops using the CPU too, and then
    /// returns [`Stage::timed_out`].
    fn scan<'a>(&'a self, input: &'a ScanInput, deadline: Instant) -> StageFuture<'a>;

    /// The zero-score symbol saying this stage did not finish in time.
    fn timed_out(&self) -> Symbol {
        Symbol::new(
            format!("{}_TIMEOUT", self.name().to_ascii_uppercase()),
            0.0,
            "stage did not finish within milter.message_timeout",
        )
    }
}

/// Stages and the config they were built from.
pub struct Pipeline {
    config: Arc<Config>,
    stages: Vec<Box<dyn Stage>>,
}

impl Pipeline {
    /// The standard pipeline for a config and a compiled rule set.
    pub fn new(config: Arc<Config>, rules: Arc<RuleSet>) -> Pipeline {
        let dns = DnsLists::new(&config);
        Pipeline::with_dns(config, rules, dns)
    }

    /// The standard pipeline with DNS lists built before (and shared across reloads).
    pub fn with_dns(
        config: Arc<Config>,
        rules: Arc<RuleSet>,
        dns: Option<Arc<DnsLists>>,
    ) -> Pipeline {
        let mut stages: Vec<Box<dyn Stage>> = Vec::new();
        // First, so its lookups are on the wire while the other stages compute.
        if let Some(lists) = dns {
            stages.push(Box::new(DnsStage { lists }));
        }
        stages.push(Box::new(TrustStage {
            config: config.clone(),
        }));
        let allow = AllowLists::new(&config.allow);
        for p in &allow.problems {
            tracing::warn!("allowlist entry skipped: {p}");
        }
        if !allow.is_empty() {
            stages.push(Box::new(AllowStage { lists: allow }));
        }
        stages.push(Box::new(MimeStage));
        stages.push(Box::new(crate::signatures::gtube::Gtube));
        stages.push(Box::new(SignatureStage { rules }));
        Pipeline { config, stages }
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Runs every stage; what has not finished by `deadline` counts as absent, with a
    /// zero-score `<STAGE>_TIMEOUT` symbol saying so.
    pub async fn run(&self, input: &ScanInput, deadline: Instant) -> Verdict {
        let mut verdict = Verdict::default();
        if input.message.truncated {
            verdict.add(Symbol::new(
                "MESSAGE_TRUNCATED",
                self.config.score("MESSAGE_TRUNCATED", 0.0),
                format!(
                    "only the first {} body bytes were scanned",
                    self.config.milter.max_message_size
                ),
            ));
        }
        // Stages run together: each is started (its scan called) only when first polled, in
        // order, so the DNS stage's queries go out before the CPU-bound stages compute.
        let runs = self.stages.iter().map(|stage| async move {
            let result =
                tokio::time::timeout_at(deadline, async { stage.scan(input, deadline).await })
                    .await;
            (stage, result)
        });
        for (stage, result) in futures_util::future::join_all(runs).await {
            match result {
                Ok(symbols) => {
                    for mut s in symbols {
                        s.score = self.config.score(&s.name, s.score);
                        verdict.add(s);
                    }
                }
                Err(_) => verdict.add(stage.timed_out()),
            }
        }
        verdict
    }
}

/// Structural anomalies of the MIME view (too many parts, too deep, bad encoding) as symbols.
struct MimeStage;

impl Stage for MimeStage {
    fn name(&self) -> &'static str {
        "mime"
    }

    fn scan<'a>(&'a self, input: &'a ScanInput, _: Instant) -> StageFuture<'a> {
        let dropped = input.message.headers_dropped;
        let excess = (dropped > 0).then(|| {
            Symbol::new(
                "TOO_MANY_HEADERS",
                3.0,
                format!(
                    "{} headers; only the first {} were scanned",
                    dropped + input.message.headers.len(),
                    crate::message::MAX_HEADERS
                ),
            )
        });
        let out = excess
            .into_iter()
            .chain(input.view().anomalies.iter().map(|a| {
                let (name, score) = a.symbol();
                Symbol::new(name, score, format!("{a:?}"))
            }))
            .collect();
        Box::pin(std::future::ready(out))
    }
}

/// Senders from trusted networks or authenticated ones, when they are scanned, get a symbol
/// (with a configurable, usually negative, score). Skipping them is the session's job.
struct TrustStage {
    config: Arc<Config>,
}

impl Stage for TrustStage {
    fn name(&self) -> &'static str {
        "trust"
    }

    fn scan<'a>(&'a self, input: &'a ScanInput, _: Instant) -> StageFuture<'a> {
        let t = &self.config.trust;
        let mut out = Vec::new();
        if let Some(ip) = input.envelope.client_ip
            && t.networks.iter().any(|n| n.contains(ip))
        {
            out.push(Symbol::new(
                "TRUSTED_NETWORK",
                t.networks_score,
                format!("client {ip} is in trust.networks"),
            ));
        }
        if let Some(user) = &input.envelope.auth_user {
            out.push(Symbol::new(
                "AUTHENTICATED",
                t.authenticated_score,
                format!("sender authenticated as {user}"),
            ));
        }
        Box::pin(std::future::ready(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct Slow;
    impl Stage for Slow {
        fn name(&self) -> &'static str {
            "slow"
        }
        fn scan<'a>(&'a self, _: &'a ScanInput, _: Instant) -> StageFuture<'a> {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                vec![Symbol::new("NEVER", 1.0, "")]
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stage_past_the_deadline_counts_as_absent() {
        let config = Arc::new(Config::default());
        let mut p = Pipeline::new(config, Arc::new(RuleSet::load(&[])));
        p.stages.push(Box::new(Slow));
        let input = ScanInput::default();
        let v = p.run(&input, Instant::now() + Duration::from_secs(1)).await;
        assert!(v.has("SLOW_TIMEOUT"));
        assert!(!v.has("NEVER"));
        assert_eq!(v.score, 0.0);
    }

    #[tokio::test]
    async fn score_overrides_apply_to_every_stage() {
        let mut c = Config::default();
        c.scores.insert("GTUBE".into(), 42.0);
        let p = Pipeline::new(Arc::new(c), Arc::new(RuleSet::load(&[])));
        let input = ScanInput::new(
            Envelope::default(),
            Message::from_raw(crate::signatures::gtube::GTUBE.as_bytes(), 100),
        );
        let v = p.run(&input, Instant::now() + Duration::from_secs(5)).await;
        assert_eq!(v.score, 42.0);
    }

    #[tokio::test]
    async fn trusted_and_authenticated_senders_get_their_symbols() {
        let mut c = Config::default();
        c.trust.networks = vec!["192.0.2.0/24".parse().unwrap()];
        c.trust.networks_score = -3.0;
        c.trust.authenticated_score = -1.5;
        let p = Pipeline::new(Arc::new(c), Arc::new(RuleSet::load(&[])));
        let input = ScanInput::new(
            Envelope {
                client_ip: Some("192.0.2.9".parse().unwrap()),
                auth_user: Some("alice".into()),
                ..Envelope::default()
            },
            Message::default(),
        );
        let v = p.run(&input, Instant::now() + Duration::from_secs(5)).await;
        assert!(v.has("TRUSTED_NETWORK") && v.has("AUTHENTICATED"));
        assert_eq!(v.score, -4.5);
    }
}
