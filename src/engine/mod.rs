//! The engine: a config, its rule set and the pipeline built from them, built at start and
//! rebuilt on reload; each message takes a snapshot (`Arc<Engine>`) and is judged by it.
//!
//! - [`pipeline`]: the stages and how they run under a message's deadline;
//! - `stages`: the stages that belong to no subsystem (MIME structure, trusted senders).

pub mod pipeline;
mod stages;

use std::sync::Arc;

use tokio::time::Instant;

use crate::config::Config;
use crate::feedback::Event;
use crate::feedback::reporter::Reporter;
use crate::learn::Learner;
use crate::message::{Envelope, MAX_HEADER_DELETIONS, Message};
use crate::policy::{self, Decision};
use crate::reputation::hub::HubLookups;
use crate::reputation::keys::key_strings;
use crate::reputation::lists::DnsLists;
use crate::scan::{ScanInput, Symbol, Verdict};
use crate::signatures::ruleset::RuleSet;
use pipeline::Pipeline;

/// A config, its rule set and the pipeline built from them; replaced as a whole on reload.
pub struct Engine {
    pub config: Arc<Config>,
    pub rules: Arc<RuleSet>,
    /// The DNS lists (None when none is configured); kept across reloads that leave their
    /// config alone, so the cache and probe state survive.
    pub dns: Option<Arc<DnsLists>>,
    /// The hub client (None without `[hub]`); kept across reloads that leave `[hub]` alone,
    /// so its cache and breaker survive.
    pub hub: Option<Arc<HubLookups>>,
    /// Where verdicts go as feedback events (None without `[hub]`, and outside the daemon:
    /// `repmilter check` reports nothing); kept across reloads.
    pub reporter: Option<Arc<Reporter>>,
    /// The learned model's reader; kept across reloads that leave `[learn]` alone, so the
    /// model read stays.
    pub learner: Arc<Learner>,
    pipeline: Arc<Pipeline>,
    /// `[trust] networks`, shared by every message's input (SpamAssassin's
    /// `trusted_networks` for its relay pseudo-headers); None when there are none.
    trusted: Option<Arc<[ipnetwork::IpNetwork]>>,
}

impl Engine {
    /// Loads and compiles the configured rule files (off the per-message path) and builds
    /// the pipeline. Each bad rule is logged with file:line and left out.
    pub fn new(config: Config) -> Engine {
        let rules = Arc::new(RuleSet::load(&config.rules.paths));
        log_rule_problems(&rules);
        Engine::with_rules(config, rules)
    }

    /// Why this engine must not judge mail: see [`unusable_rules`].
    pub fn unusable(&self) -> Option<String> {
        unusable_rules(&self.config, &self.rules)
    }

    pub fn with_rules(config: Config, rules: Arc<RuleSet>) -> Engine {
        let dns = DnsLists::new(&config);
        let hub = config.hub.as_ref().map(HubLookups::new);
        let learner = Arc::new(Learner::new(&config.learn));
        Engine::assemble(config, rules, dns, hub, None, learner)
    }

    /// Sends this engine's verdicts to the hub through `reporter`.
    pub fn with_reporter(mut self, reporter: Arc<Reporter>) -> Engine {
        self.reporter = Some(reporter);
        self
    }

    fn assemble(
        config: Config,
        rules: Arc<RuleSet>,
        dns: Option<Arc<DnsLists>>,
        hub: Option<Arc<HubLookups>>,
        reporter: Option<Arc<Reporter>>,
        learner: Arc<Learner>,
    ) -> Engine {
        let config = Arc::new(config);
        let trusted =
            (!config.trust.networks.is_empty()).then(|| Arc::from(config.trust.networks.clone()));
        Engine {
            trusted,
            pipeline: Arc::new(Pipeline::new(
                config.clone(),
                rules.clone(),
                dns.clone(),
                hub.clone(),
                Some(learner.clone()),
            )),
            learner,
            hub,
            reporter,
            rules,
            dns,
            config,
        }
    }

    /// Builds the engine for a reloaded config. Rule files fall back file by file (see
    /// [`RuleSet::reload`]); and if the same rule paths now yield no rule at all while the
    /// running set has some, the running set is kept: an emptied or deleted rule tree must not
    /// turn content filtering off. Removing the paths from `[rules]` does.
    pub fn reload(config: Config, running: &Engine) -> Engine {
        let dns = match &running.dns {
            Some(d) if d.same_config(&config) => Some(d.clone()),
            _ => DnsLists::new(&config),
        };
        let hub = match (&running.hub, &config.hub) {
            (Some(h), Some(c)) if h.same_config(c) => Some(h.clone()),
            (_, c) => c.as_ref().map(HubLookups::new),
        };
        let reporter = reporter_for(&config, running);
        let learner = if running.learner.config == config.learn {
            running.learner.clone()
        } else {
            Arc::new(Learner::new(&config.learn))
        };
        let rules = Arc::new(RuleSet::reload(&config.rules.paths, &running.rules));
        log_rule_problems(&rules);
        if rules.is_empty()
            && !running.rules.is_empty()
            && config.rules.paths == running.config.rules.paths
        {
            tracing::warn!(
                running = running.rules.len(),
                errors = rules.errors(),
                "the rule files yield no rule; keeping the running rule set (to run without \
                 rules, remove the paths from [rules])"
            );
            return Engine::assemble(config, running.rules.clone(), dns, hub, reporter, learner);
        }
        Engine::assemble(config, rules, dns, hub, reporter, learner)
    }

    /// A message's features for the learned model, as the daemon computes them when it
    /// judges the message: its content and the symbols of the content stages. For training.
    pub fn learn_features(&self, input: &ScanInput) -> Vec<u64> {
        let symbols = self.content_symbols(input);
        crate::learn::features::with_symbols(crate::learn::features::of(input), &symbols)
    }

    /// The symbols of the content stages the learner reads, run now without a deadline.
    pub fn content_symbols(&self, input: &ScanInput) -> Vec<Symbol> {
        self.pipeline.content_symbols(input)
    }

    /// What the stages read of one message, with what the config says about our networks.
    pub fn input(&self, envelope: Envelope, message: Message) -> ScanInput {
        let mut input = ScanInput::new(envelope, message);
        input.trusted = self.trusted.clone();
        input
    }

    /// Scores a message and decides what to do with it, within `milter.message_timeout`.
    pub async fn judge(&self, input: Arc<ScanInput>) -> (Verdict, Decision) {
        let deadline = Instant::now() + self.config.milter.message_timeout;
        self.judge_until(input, deadline).await
    }

    pub async fn judge_until(
        &self,
        input: Arc<ScanInput>,
        deadline: Instant,
    ) -> (Verdict, Decision) {
        // More forged verdict headers than can be removed: delivering the message would leave
        // forged verdicts in it, so it is refused, unscanned.
        let forged = input.message.spam_headers;
        if self.config.headers.remove_incoming && forged > MAX_HEADER_DELETIONS as usize {
            let why = format!(
                "{forged} X-Spam headers; at most {MAX_HEADER_DELETIONS} forged verdicts are removed"
            );
            let mut verdict = Verdict::default();
            verdict.add(Symbol::new("TOO_MANY_SPAM_HEADERS", 0.0, why));
            let decision = policy::refuse("Message has too many X-Spam headers");
            return (verdict, decision);
        }
        let verdict = self.pipeline.run(input.clone(), deadline).await;
        let decision = policy::decide(&self.config, &verdict);
        if let Some(r) = &self.reporter {
            let keys = key_strings(&input).to_vec();
            r.report(&Event::verdict(keys, &verdict, decision.action.to_string()));
        }
        (verdict, decision)
    }
}

/// The reporter a reloaded engine uses: the running one, sent to the hub the new config names
/// (its spool is restart-only); a new one when `[hub]` appears; none when it goes (what is
/// spooled waits there for the next start with `[hub]`).
fn reporter_for(config: &Config, running: &Engine) -> Option<Arc<Reporter>> {
    let c = config.hub.as_ref()?;
    if let Some(r) = &running.reporter {
        r.retarget(c);
        return Some(r.clone());
    }
    if tokio::runtime::Handle::try_current().is_err() {
        return None;
    }
    match Reporter::start(c) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!("feedback events will not be sent: {e}");
            None
        }
    }
}

/// Why `rules` must not judge mail: rule paths were given and not one rule compiled from
/// them (every file broken, or a directory left empty), so every message would pass as clean
/// while the operator believes the rules run.
pub fn unusable_rules(config: &Config, rules: &RuleSet) -> Option<String> {
    if config.rules.paths.is_empty() || !rules.is_empty() {
        return None;
    }
    let paths: Vec<String> = config
        .rules
        .paths
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    Some(format!(
        "no rule compiled from rules.paths ({}): {} rule problem(s); `repmilter rules lint` lists them",
        paths.join(", "),
        rules.errors()
    ))
}

/// Rule problems logged per rule set compiled; a garbage file has one per line, and
/// `repmilter rules lint` lists them all.
const MAX_LOGGED_RULE_PROBLEMS: usize = 20;

fn log_rule_problems(rules: &RuleSet) {
    use crate::signatures::rules::Severity;
    for p in rules
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Note)
    {
        tracing::debug!("rule note: {p}");
    }
    let shown: Vec<_> = rules
        .problems
        .iter()
        .filter(|p| p.severity != Severity::Note)
        .collect();
    for p in shown.iter().take(MAX_LOGGED_RULE_PROBLEMS) {
        match p.severity {
            Severity::Error => tracing::warn!("rule skipped: {p}"),
            Severity::Warning => tracing::info!("rule warning: {p}"),
            Severity::Note => {}
        }
    }
    if let Some(more) = shown.len().checked_sub(MAX_LOGGED_RULE_PROBLEMS)
        && more > 0
    {
        tracing::warn!("{more} more rule problems; `repmilter rules lint` lists them all");
    }
    for k in &rules.kept {
        tracing::warn!(
            file = %k.path.display(),
            rules = k.rules,
            "new version of a rule file refused ({}); its previous version stays in use",
            k.why
        );
    }
    tracing::info!(
        rules = rules.len(),
        errors = rules.errors(),
        "rule set compiled"
    );
}
