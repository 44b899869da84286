//! The pipeline: which stages a message goes through, and how they run under its deadline.
//!
//! Compute stages run one after the other: for a small message on the runtime thread that
//! received it, for a larger one on a blocking thread, at most [`scan_slots`] of those at a
//! time across the daemon. Lookup stages are awaited on the runtime beside them, so a slow
//! DNS server holds no thread. Both start from the MIME view, which the compute side builds
//! first. What has not answered by the deadline counts as absent, with a zero-score
//! `<STAGE>_TIMEOUT` symbol.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{Semaphore, oneshot};
use tokio::time::Instant;

use super::stages::{MimeStage, TrustStage};
use crate::config::Config;
use crate::learn::{LearnStage, Learner};
use crate::reputation::allow::{AllowLists, AllowStage};
use crate::reputation::hub::{HubLookups, HubStage};
use crate::reputation::lists::{DnsLists, DnsStage};
use crate::scan::{Compute, Lookup, ScanInput, Symbol, Verdict};
use crate::signatures::SignatureStage;
use crate::signatures::gtube::Gtube;
use crate::signatures::ruleset::RuleSet;

/// One stage of the pipeline, by the kind of work it does.
pub enum Stage {
    Compute(Box<dyn Compute>),
    Lookup(Box<dyn Lookup>),
}

impl Stage {
    fn name(&self) -> &'static str {
        match self {
            Stage::Compute(s) => s.name(),
            Stage::Lookup(s) => s.name(),
        }
    }
}

/// Stages and the config they were built from.
pub struct Pipeline {
    config: Arc<Config>,
    stages: Vec<Stage>,
    /// No compute stage may run long: small messages are scanned in place.
    inline: bool,
    /// The runtime whose blocking threads scan the larger messages: the one the pipeline was
    /// built on (the daemon's main runtime), not each session thread's own, so the daemon has
    /// one pool of them, bounded once. None outside a runtime: then the caller's.
    pool: Option<tokio::runtime::Handle>,
}

/// Extra time past the deadline before compute stages that ignore it are given up on (their
/// thread finishes on its own; the message is judged without them).
const COMPUTE_GRACE: Duration = Duration::from_secs(1);

/// Messages up to this size are scanned on the runtime thread that received them (see
/// `Pipeline::compute`). Most mail is smaller; a scan's time grows with its text, so larger
/// messages go to a blocking thread rather than hold a runtime thread.
pub const INLINE_BYTES: usize = 64 * 1024;

/// Messages whose compute stages may run at once, daemon-wide: twice the cores, so that a
/// long scan does not hold the others back while the cores stay busy. More would only add
/// memory (each scan holds its message's decoded view) and switching.
pub fn scan_slots() -> usize {
    2 * std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn slots() -> Arc<Semaphore> {
    static SLOTS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    SLOTS
        .get_or_init(|| Arc::new(Semaphore::new(scan_slots())))
        .clone()
}

impl Pipeline {
    /// The standard pipeline: the one place that lists the stages, in the order their
    /// symbols appear. DNS lists are built by the caller so that they can outlive a reload.
    pub fn new(
        config: Arc<Config>,
        rules: Arc<RuleSet>,
        dns: Option<Arc<DnsLists>>,
        hub: Option<Arc<HubLookups>>,
        learner: Option<Arc<Learner>>,
    ) -> Pipeline {
        let mut stages = Vec::new();
        if let Some(lists) = dns {
            stages.push(Stage::Lookup(Box::new(DnsStage { lists })));
        }
        if let Some(lookups) = hub {
            stages.push(Stage::Lookup(Box::new(HubStage { lookups })));
        }
        stages.push(Stage::Compute(Box::new(TrustStage {
            config: config.clone(),
        })));
        let allow = AllowLists::new(&config.allow);
        for p in &allow.problems {
            tracing::warn!("allowlist entry skipped: {p}");
        }
        if !allow.is_empty() {
            stages.push(Stage::Compute(Box::new(AllowStage { lists: allow })));
        }
        stages.push(Stage::Compute(Box::new(MimeStage)));
        stages.push(Stage::Compute(Box::new(Gtube)));
        stages.push(Stage::Compute(Box::new(SignatureStage { rules })));
        if let Some(learner) = learner {
            stages.push(Stage::Compute(Box::new(LearnStage { learner })));
        }
        Pipeline::of(config, stages)
    }

    /// A pipeline of the given stages (the standard one, or a test's).
    pub fn of(config: Arc<Config>, stages: Vec<Stage>) -> Pipeline {
        let inline = !stages
            .iter()
            .any(|s| matches!(s, Stage::Compute(c) if c.may_run_long()));
        Pipeline {
            config,
            stages,
            inline,
            pool: tokio::runtime::Handle::try_current().ok(),
        }
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The symbols of the compute stages before the learner, run now without a deadline
    /// (what the learner reads of a message it is trained on).
    pub fn content_symbols(&self, input: &ScanInput) -> Vec<Symbol> {
        let far = std::time::Instant::now() + Duration::from_secs(3600);
        let mut out: Vec<Symbol> = Vec::new();
        for s in &self.stages {
            if let Stage::Compute(c) = s
                && c.name() != "learn"
            {
                let found = c.scan_after(input, far, &out);
                out.extend(found);
            }
        }
        out
    }

    /// Runs every stage; what has not finished by `deadline` counts as absent.
    pub async fn run(self: &Arc<Self>, input: Arc<ScanInput>, deadline: Instant) -> Verdict {
        let mut verdict = Verdict::default();
        if input.message.truncated {
            verdict.add(Symbol::new(
                "MESSAGE_TRUNCATED",
                self.config.score("MESSAGE_TRUNCATED", 0.0),
                format!(
                    "only the first {} bytes were scanned",
                    self.config.milter.max_message_size
                ),
            ));
        }
        let has_lookups = self.stages.iter().any(|s| matches!(s, Stage::Lookup(_)));
        let (view_built, view_ready) = oneshot::channel();
        let computed = self.compute(input.clone(), deadline, has_lookups.then_some(view_built));
        let looked_up = async {
            if !has_lookups {
                return Some(Vec::new());
            }
            // Lookups read the view (URLs, domains); without it the compute side never
            // started, and the deadline has passed.
            if view_ready.await.is_err() {
                return None;
            }
            let lookups = self.stages.iter().filter_map(|s| match s {
                Stage::Lookup(l) => Some(async {
                    let started = Instant::now();
                    let found = tokio::time::timeout_at(deadline, l.scan(&input)).await;
                    crate::metrics::get().stage_time(l.name(), started.elapsed().as_secs_f64());
                    found
                }),
                Stage::Compute(_) => None,
            });
            Some(futures_util::future::join_all(lookups).await)
        };
        let (computed, looked_up) = futures_util::future::join(computed, looked_up).await;
        let mut computed = computed.map(Vec::into_iter);
        let mut looked_up = looked_up.map(Vec::into_iter);
        for stage in &self.stages {
            let symbols = match stage {
                Stage::Compute(_) => computed.as_mut().and_then(Iterator::next),
                Stage::Lookup(_) => looked_up
                    .as_mut()
                    .and_then(Iterator::next)
                    .and_then(Result::ok),
            };
            match symbols {
                Some(symbols) => {
                    for mut s in symbols {
                        s.score = self.config.score(&s.name, s.score);
                        verdict.add(s);
                    }
                }
                None => verdict.add(Symbol::timed_out(stage.name())),
            }
        }
        verdict
    }

    /// The compute stages' symbols in stage order, or None if they did not run in time.
    ///
    /// A message of at most [`INLINE_BYTES`] is scanned on the runtime's own thread: for
    /// such a message the hand-off to a blocking thread and back (two futex wake-ups, two
    /// context switches) cost about as much CPU as the scan itself. Larger ones, and every
    /// message when a stage may run long (backtracking rules: a crafted message can spend
    /// each one's time budget), go to a blocking thread, so that a long scan never holds a
    /// runtime thread (and the sessions it serves), and can be given up on at the deadline.
    async fn compute(
        self: &Arc<Self>,
        input: Arc<ScanInput>,
        deadline: Instant,
        view_built: Option<oneshot::Sender<()>>,
    ) -> Option<Vec<Vec<Symbol>>> {
        if self.inline && input.message.size() <= INLINE_BYTES {
            if let Some(built) = view_built {
                build_view(&input, built);
                // Lets the lookups send their queries before the scan holds this thread.
                tokio::task::yield_now().await;
            }
            return Some(self.compute_stages(&input, deadline));
        }
        let permit = match slots().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => tokio::time::timeout_at(deadline, slots().acquire_owned())
                .await
                .ok()?
                .ok()?,
        };
        let me = self.clone();
        let work = move || {
            let _permit = permit;
            if let Some(built) = view_built {
                build_view(&input, built);
            }
            me.compute_stages(&input, deadline)
        };
        let task = match &self.pool {
            Some(pool) => pool.spawn_blocking(work),
            None => tokio::task::spawn_blocking(work),
        };
        match tokio::time::timeout_at(deadline + COMPUTE_GRACE, task).await {
            Ok(Ok(symbols)) => Some(symbols),
            Ok(Err(e)) => {
                tracing::error!("a scan failed: {e}");
                None
            }
            Err(_) => {
                tracing::warn!(
                    "compute stages still running past the deadline; judged without them"
                );
                None
            }
        }
    }

    /// Runs the compute stages one after the other, each seeing the symbols of those before.
    fn compute_stages(&self, input: &ScanInput, deadline: Instant) -> Vec<Vec<Symbol>> {
        let metrics = crate::metrics::get();
        let mut earlier: Vec<Symbol> = Vec::new();
        self.stages
            .iter()
            .filter_map(|s| match s {
                Stage::Compute(c) => {
                    let started = std::time::Instant::now();
                    let found = c.scan_after(input, deadline.into_std(), &earlier);
                    metrics.stage_time(c.name(), started.elapsed().as_secs_f64());
                    earlier.extend(found.iter().cloned());
                    Some(found)
                }
                Stage::Lookup(_) => None,
            })
            .collect()
    }
}

/// Builds the message's MIME view (timed as its own stage) and tells the lookups waiting
/// for it.
fn build_view(input: &ScanInput, built: oneshot::Sender<()>) {
    let started = std::time::Instant::now();
    input.view();
    crate::metrics::get().stage_time("mime_view", started.elapsed().as_secs_f64());
    let _ = built.send(());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Envelope, Message};
    use crate::scan::LookupFuture;

    struct Slow;
    impl Lookup for Slow {
        fn name(&self) -> &'static str {
            "slow"
        }
        fn scan<'a>(&'a self, _: &'a ScanInput) -> LookupFuture<'a> {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                vec![Symbol::new("NEVER", 1.0, "")]
            })
        }
    }

    struct Fixed(&'static str, f64);
    impl Compute for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }
        fn scan(&self, _: &ScanInput, _: std::time::Instant) -> Vec<Symbol> {
            vec![Symbol::new(self.0, self.1, "")]
        }
    }

    fn standard(c: Config) -> Arc<Pipeline> {
        Arc::new(Pipeline::new(
            Arc::new(c),
            Arc::new(RuleSet::load(&[])),
            None,
            None,
            None,
        ))
    }

    #[tokio::test]
    async fn a_stage_past_the_deadline_counts_as_absent() {
        let p = Arc::new(Pipeline::of(
            Arc::new(Config::default()),
            vec![
                Stage::Lookup(Box::new(Slow)),
                Stage::Compute(Box::new(Fixed("FIXED", 2.0))),
            ],
        ));
        let input = Arc::new(ScanInput::default());
        let v = p
            .run(input, Instant::now() + Duration::from_millis(200))
            .await;
        let names: Vec<&str> = v.symbols.iter().map(|s| s.name.as_str()).collect();
        // In stage order, the lookup first.
        assert_eq!(names, ["SLOW_TIMEOUT", "FIXED"]);
        assert_eq!(v.score, 2.0);
    }

    #[tokio::test]
    async fn score_overrides_apply_to_every_stage() {
        let mut c = Config::default();
        c.scores.insert("GTUBE".into(), 42.0);
        let input = ScanInput::new(
            Envelope::default(),
            Message::from_raw(crate::signatures::gtube::GTUBE.as_bytes(), 100),
        );
        let v = standard(c)
            .run(Arc::new(input), Instant::now() + Duration::from_secs(5))
            .await;
        assert_eq!(v.score, 42.0);
    }

    #[tokio::test]
    async fn trusted_and_authenticated_senders_get_their_symbols() {
        let mut c = Config::default();
        c.trust.networks = vec!["192.0.2.0/24".parse().unwrap()];
        c.trust.networks_score = -3.0;
        c.trust.authenticated_score = -1.5;
        let input = ScanInput::new(
            Envelope {
                client_ip: Some("192.0.2.9".parse().unwrap()),
                auth_user: Some("alice".into()),
                ..Envelope::default()
            },
            Message::default(),
        );
        let v = standard(c)
            .run(Arc::new(input), Instant::now() + Duration::from_secs(5))
            .await;
        assert!(v.has("TRUSTED_NETWORK") && v.has("AUTHENTICATED"));
        assert_eq!(v.score, -4.5);
    }

    /// Records the thread it ran on.
    struct Where(Arc<std::sync::Mutex<Option<std::thread::ThreadId>>>);
    impl Compute for Where {
        fn name(&self) -> &'static str {
            "where"
        }
        fn scan(&self, _: &ScanInput, _: std::time::Instant) -> Vec<Symbol> {
            *self.0.lock().unwrap() = Some(std::thread::current().id());
            Vec::new()
        }
    }

    /// Like `Where`, but says it may run long.
    struct Long(Where);
    impl Compute for Long {
        fn name(&self) -> &'static str {
            "long"
        }
        fn may_run_long(&self) -> bool {
            true
        }
        fn scan(&self, input: &ScanInput, deadline: std::time::Instant) -> Vec<Symbol> {
            self.0.scan(input, deadline)
        }
    }

    #[tokio::test]
    async fn a_stage_that_may_run_long_never_runs_in_place() {
        let seen = Arc::new(std::sync::Mutex::new(None));
        let p = Arc::new(Pipeline::of(
            Arc::new(Config::default()),
            vec![Stage::Compute(Box::new(Long(Where(seen.clone()))))],
        ));
        let input = ScanInput::new(
            Envelope::default(),
            Message::from_raw(b"Subject: x\n\nhi\n", 100),
        );
        p.run(Arc::new(input), Instant::now() + Duration::from_secs(5))
            .await;
        let ran = seen.lock().unwrap().take().expect("the stage ran");
        assert_ne!(ran, std::thread::current().id());
    }

    #[tokio::test]
    async fn small_messages_are_scanned_in_place_large_ones_on_a_blocking_thread() {
        let seen = Arc::new(std::sync::Mutex::new(None));
        let p = Arc::new(Pipeline::of(
            Arc::new(Config::default()),
            vec![Stage::Compute(Box::new(Where(seen.clone())))],
        ));
        let here = std::thread::current().id();
        for (body, inline) in [(INLINE_BYTES - 100, true), (INLINE_BYTES + 1, false)] {
            let input = ScanInput::new(
                Envelope::default(),
                Message::from_raw(
                    format!("Subject: x\n\n{}", "a".repeat(body)).as_bytes(),
                    1 << 20,
                ),
            );
            p.run(Arc::new(input), Instant::now() + Duration::from_secs(5))
                .await;
            let ran = seen.lock().unwrap().take().expect("the stage ran");
            assert_eq!(ran == here, inline, "body of {body} bytes");
        }
    }
}
