//! Command line: parse arguments, load config, start logging, call the library, exit codes.

/// jemalloc, not glibc's malloc: the runtime moves a session between its threads, and glibc
/// frees and grows a buffer under the lock of the arena of the thread that allocated it, so
/// two threads contended on every message (futex waits and wake-ups). jemalloc's thread
/// caches take the cross-thread free without a lock: 15% less daemon CPU per message (see
/// DESIGN.md, "Performance").
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use repmilter::ErrorChain;
use repmilter::config::Config;
use repmilter::engine::Engine;
use repmilter::message::{Envelope, Message};
use repmilter::policy::Action;
use repmilter::scan::ScanInput;
use repmilter::signatures::ruleset::RuleSet;

/// `print!` that ends the program quietly when standard output's reader went away (`| head`)
/// instead of panicking; see [`write_or_exit`].
macro_rules! out {
    ($($arg:tt)*) => {
        write_or_exit(&mut std::io::stdout(), format_args!($($arg)*))
    };
}

/// `println!`, as [`out!`].
macro_rules! outln {
    ($($arg:tt)*) => {{
        out!($($arg)*);
        out!("\n");
    }};
}

/// Exit codes, documented in the README.
mod exit {
    pub const OK: u8 = 0;
    /// `check`: the message would get an action other than accept.
    pub const SPAM: u8 = 1;
    // 2 is clap's usage error.
    pub const CONFIG: u8 = 3;
    pub const INPUT: u8 = 4;
    pub const RUNTIME: u8 = 5;
}

#[derive(Parser)]
#[command(
    name = "repmilter",
    version,
    about = "Email reputation filter for Postfix and Sendmail (milter)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args)]
struct ConfigArg {
    /// Config file (TOML).
    #[arg(long, short = 'c', default_value = "/etc/repmilter/repmilter.toml")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the milter daemon.
    Serve(ConfigArg),
    /// Work with the config file.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Score a message file through the same pipeline and print the verdict.
    Check(CheckArgs),
    /// Tools for rule authors.
    #[command(subcommand)]
    Rules(RulesCmd),
    /// Run the reputation hub that gateways report to and ask.
    Hub(HubArgs),
    /// Report spam and wrongly filtered mail to the hub; see the feedback spool.
    #[command(subcommand)]
    Feedback(FeedbackCmd),
    /// Load a milter (this one or another) with a directory of messages, as an MTA would,
    /// and report messages/s, latency from end-of-body to verdict, and actions.
    Bench(BenchArgs),
    /// Ask the running daemon what it has been doing (its `[metrics] listen`): actions, top
    /// symbols, stage times, DNS list health, as terminal tables.
    Stats(StatsArgs),
    /// Write the man pages (repmilter.8, one per subcommand, repmilter.toml.5) into DIR:
    /// generated from these definitions and the sample config, for packaging.
    #[command(hide = true)]
    Man {
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Args)]
struct StatsArgs {
    /// The daemon's config: its `[metrics] listen` is asked.
    #[arg(long, short = 'c', default_value = "/etc/repmilter/repmilter.toml")]
    config: PathBuf,
    /// Ask this monitor instead (http://HOST:PORT), without reading a config.
    #[arg(long)]
    url: Option<String>,
    /// Print the summary as JSON (what the dashboard reads).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// The milter: inet:HOST:PORT, inet6:[ADDR]:PORT or unix:PATH.
    #[arg(long, required_unless_present = "ceiling")]
    target: Option<String>,
    /// Instead of a target, run against a milter in this process that accepts everything:
    /// the load generator's own ceiling on this machine.
    #[arg(long, conflicts_with_all = ["target", "target_pid"])]
    ceiling: bool,
    /// A directory of messages (searched recursively; *.json skipped) or one message file.
    #[arg(long)]
    corpus: PathBuf,
    /// Sessions at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Stop after this many messages (default: 1,000 unless --duration is given).
    #[arg(long)]
    messages: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Messages per connection.
    #[arg(long, default_value_t = 1)]
    per_connection: usize,
    /// Open loop: start this many messages per second, whatever the answers.
    #[arg(long)]
    rate: Option<f64>,
    /// The milter's process id: report the CPU time and peak memory it used.
    #[arg(long)]
    target_pid: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Seconds to wait for the milter at one step (connecting, or one message) before the
    /// session counts as an error.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
}

#[derive(Subcommand)]
enum FeedbackCmd {
    /// Report messages as spam or as ham (wrongly filtered), or send ARF reports, to the hub
    /// named by the config's [hub]. Only keys and hashes leave unless share_samples is on.
    Report(FeedbackReportArgs),
    /// Show what waits in the feedback spool and how shipping to the hub goes.
    Status(ConfigArg),
}

#[derive(Args)]
#[group(id = "kind", required = true, multiple = false)]
struct FeedbackReportArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The messages are spam that got through.
    #[arg(long, group = "kind")]
    spam: bool,
    /// The messages are ham that was filtered (false positives).
    #[arg(long, group = "kind")]
    ham: bool,
    /// The files are ARF reports (RFC 5965); each says spam or ham itself.
    #[arg(long, group = "kind")]
    arf: bool,
    /// Message files (RFC 5322, as saved from a mail client; an mbox From line is skipped).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct HubArgs {
    #[command(subcommand)]
    command: Option<HubCmd>,
    /// Hub config file (TOML; see config/hub.toml).
    #[arg(long, short = 'c', default_value = "/etc/repmilter/hub.toml")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum HubCmd {
    /// Write the hub's listed addresses as an rbldnsd zone (ip4set, or ip6trie with
    /// --family 6), for postscreen or any MTA to query as a DNS list. Asks the running hub
    /// (with the config's first admin token), or reads its store when it is not running.
    ExportZone(ExportZoneArgs),
}

#[derive(Args)]
struct ExportZoneArgs {
    /// Hub config file (TOML; see config/hub.toml).
    #[arg(long, short = 'c', default_value = "/etc/repmilter/hub.toml")]
    config: PathBuf,
    /// 4 for an ip4set zone, 6 for an ip6trie zone.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(4..=6))]
    family: u8,
    /// Lowest hub score listed.
    #[arg(long, default_value_t = repmilter::hub::zone::DEFAULT_MIN_SCORE)]
    min_score: f64,
    /// Write the zone to this file (replaced whole, so rbldnsd never reads half of it)
    /// instead of standard output.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
}

#[derive(Subcommand)]
enum RulesCmd {
    /// Report every problem in rule files as file:line:col: error|warning: message, sorted
    /// by file and line, then a summary; exit 1 on errors.
    Lint(LintArgs),
    /// Run the examples kept next to the rules (NAME.spam.eml must hit NAME, NAME.ham.eml
    /// must not) and print a pass/fail table; exit 1 on any failure.
    Test(RulesTestArgs),
}

#[derive(Args)]
struct RulesArgs {
    /// Config file whose [rules] paths are used when no PATHS are given.
    #[arg(long, short = 'c', default_value = "/etc/repmilter/repmilter.toml")]
    config: PathBuf,
    /// Rule files or directories (default: the config's [rules] paths).
    paths: Vec<PathBuf>,
}

#[derive(Args)]
struct LintArgs {
    #[command(flatten)]
    rules: RulesArgs,
    /// Also list notes: advice SpamAssassin's own lint does not give (a rule without a score,
    /// a score without a rule, a meta naming an unknown rule, a rule defined twice).
    #[arg(long)]
    pedantic: bool,
}

#[derive(Args)]
struct RulesTestArgs {
    #[command(flatten)]
    rules: RulesArgs,
    /// Directory of examples named RULE.spam.eml, RULE.ham.eml, RULE.spam.2.eml, ...
    #[arg(long, default_value = "testdata/rules")]
    examples: PathBuf,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Validate a config file and report every problem with file, line and key.
    Check(ConfigArg),
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Print the verdict as JSON.
    #[arg(long)]
    json: bool,
    /// Client IP address, as at SMTP CONNECT.
    #[arg(long)]
    ip: Option<IpAddr>,
    /// HELO name.
    #[arg(long, default_value = "")]
    helo: String,
    /// Envelope sender.
    #[arg(long, default_value = "")]
    from: String,
    /// Envelope recipient (repeat for several).
    #[arg(long)]
    rcpt: Vec<String>,
    /// SASL login name, as if the client authenticated.
    #[arg(long)]
    auth: Option<String>,
    /// For each rule that hit: its file:line, target and the matched text with context.
    #[arg(long)]
    explain: bool,
    /// The message (RFC 5322), or - for standard input. Several files or a directory
    /// (searched recursively; *.json skipped): one line per message, then a summary table.
    #[arg(required = true)]
    messages: Vec<PathBuf>,
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("repmilter: {}", ErrorChain(&e));
        ExitCode::from(exit::CONFIG)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Serve(a) => serve(a),
        Cmd::Config(ConfigCmd::Check(a)) => config_check(&a.config),
        Cmd::Check(a) => check(a),
        Cmd::Rules(RulesCmd::Lint(a)) => rules_lint(a),
        Cmd::Rules(RulesCmd::Test(a)) => rules_test(a),
        Cmd::Hub(a) => hub(a),
        Cmd::Feedback(FeedbackCmd::Report(a)) => feedback_report(a),
        Cmd::Feedback(FeedbackCmd::Status(a)) => feedback_status(a),
        Cmd::Bench(a) => bench(a),
        Cmd::Stats(a) => stats(a),
        Cmd::Man { dir } => man(&dir),
    };
    result.unwrap_or_else(|code| code)
}

fn man(dir: &std::path::Path) -> Result<ExitCode, ExitCode> {
    use clap::CommandFactory;
    let fail = |what: &str, e: std::io::Error| {
        eprintln!(
            "repmilter man: cannot write {what} in {}: {e}",
            dir.display()
        );
        ExitCode::from(exit::RUNTIME)
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("the directory", e))?;
    let version = env!("CARGO_PKG_VERSION");
    let cmd = Cli::command();
    let mut pages: Vec<(String, clap::Command)> = vec![("repmilter.8".into(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // clap names are static strings; this command runs once and exits.
        let name: &'static str = format!("repmilter-{}", sub.get_name()).leak();
        pages.push((format!("{name}.8"), sub.clone().name(name)));
    }
    for (file, page) in pages {
        let mut out = Vec::new();
        clap_mangen::Man::new(page)
            .section("8")
            .source(format!("repmilter {version}"))
            .manual("System Administration")
            .render(&mut out)
            .map_err(|e| fail(&file, e))?;
        std::fs::write(dir.join(&file), out).map_err(|e| fail(&file, e))?;
    }
    let config = repmilter::manpage::config_page(repmilter::manpage::SAMPLE_CONFIG, version);
    std::fs::write(dir.join("repmilter.toml.5"), config)
        .map_err(|e| fail("repmilter.toml.5", e))?;
    Ok(ExitCode::from(exit::OK))
}

fn stats(a: StatsArgs) -> Result<ExitCode, ExitCode> {
    let url = match a.url {
        Some(u) => u,
        None => {
            let c = load(&a.config)?;
            let Some(addr) = c.metrics_listen else {
                eprintln!(
                    "repmilter stats: {} has no [metrics] listen; the daemon serves no figures (or give --url)",
                    c.path.display()
                );
                return Err(ExitCode::from(exit::CONFIG));
            };
            format!("http://{addr}")
        }
    };
    let summary = repmilter::daemon::runtime()
        .block_on(repmilter::monitor::stats::fetch(&url))
        .map_err(|e| {
            eprintln!("repmilter stats: {}", ErrorChain(&e));
            ExitCode::from(exit::RUNTIME)
        })?;
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
    } else {
        out!("{}", repmilter::monitor::stats::render(&summary));
    }
    Ok(ExitCode::from(exit::OK))
}

/// The config, and the rule set it names compiled as `serve` would: what `serve` refuses,
/// this refuses.
fn config_check(path: &std::path::Path) -> Result<ExitCode, ExitCode> {
    let c = load(path)?;
    let rules = RuleSet::load(&c.rules.paths);
    if let Some(why) = repmilter::engine::unusable_rules(&c, &rules) {
        eprintln!("{}: {why}", c.path.display());
        return Err(ExitCode::from(exit::CONFIG));
    }
    outln!(
        "{}: ok (listen {}, {} rules, {} rule problem(s))",
        c.path.display(),
        c.milter.listen,
        rules.len(),
        rules.errors()
    );
    Ok(ExitCode::from(exit::OK))
}

fn bench(a: BenchArgs) -> Result<ExitCode, ExitCode> {
    use repmilter::loadgen;
    use std::io::IsTerminal;
    let usage = |msg: String| {
        eprintln!("repmilter bench: {msg}");
        ExitCode::from(exit::INPUT)
    };
    let target = match &a.target {
        Some(t) => Some(
            t.parse::<repmilter::milter::Listen>()
                .map_err(|e| usage(format!("--target {t}: {e}")))?,
        ),
        None => None,
    };
    if a.concurrency == 0 || a.per_connection == 0 {
        return Err(usage(
            "--concurrency and --per-connection must be at least 1".into(),
        ));
    }
    if a.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(usage("--rate must be a positive number".into()));
    }
    let duration = match a.duration {
        Some(d) if d.is_finite() && d > 0.0 => Some(std::time::Duration::from_secs_f64(d)),
        Some(_) => return Err(usage("--duration must be a positive number".into())),
        None => None,
    };
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        return Err(usage("--timeout must be a positive number".into()));
    }
    let messages = loadgen::read_corpus(&a.corpus).map_err(|e| usage(e.to_string()))?;
    let runtime = repmilter::daemon::runtime();
    let target = match target {
        Some(t) => t,
        None => runtime.block_on(loadgen::accept_all()).map_err(|e| {
            eprintln!("repmilter bench: cannot start the accept-all milter: {e}");
            ExitCode::from(exit::RUNTIME)
        })?,
    };
    let opts = loadgen::Options {
        target,
        messages: Arc::new(messages),
        concurrency: a.concurrency,
        count: a.messages.or(duration.is_none().then_some(1000)),
        duration,
        per_connection: a.per_connection,
        rate: a.rate,
        target_pid: a.target_pid,
        progress: !a.json && std::io::stderr().is_terminal(),
        timeout: std::time::Duration::from_secs_f64(a.timeout),
    };
    let report = runtime.block_on(loadgen::run(opts));
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        out!("{}", report.table());
    }
    Ok(ExitCode::from(if report.errors.is_empty() {
        exit::OK
    } else {
        exit::RUNTIME
    }))
}

fn serve(a: ConfigArg) -> Result<ExitCode, ExitCode> {
    let config = load(&a.config)?;
    repmilter::logging::init(&config.log_level, config.log_format, config.log_syslog);
    repmilter::daemon::runtime()
        .block_on(repmilter::daemon::run(config))
        .map_err(|e| {
            tracing::error!("{}", ErrorChain(&e));
            ExitCode::from(exit::RUNTIME)
        })?;
    Ok(ExitCode::from(exit::OK))
}

fn hub(a: HubArgs) -> Result<ExitCode, ExitCode> {
    if let Some(HubCmd::ExportZone(z)) = a.command {
        return export_zone(z);
    }
    let config = repmilter::config::hub::HubConfig::load(&a.config).map_err(|e| {
        eprintln!("repmilter: {}", ErrorChain(&e));
        ExitCode::from(exit::CONFIG)
    })?;
    repmilter::logging::init("info", repmilter::logging::LogFormat::Text, false);
    repmilter::daemon::runtime()
        .block_on(repmilter::hub::run(config))
        .map_err(|e| {
            tracing::error!("{}", ErrorChain(&e));
            ExitCode::from(exit::RUNTIME)
        })?;
    Ok(ExitCode::from(exit::OK))
}

fn export_zone(a: ExportZoneArgs) -> Result<ExitCode, ExitCode> {
    use repmilter::hub::zone::{Family, export};
    let config = repmilter::config::hub::HubConfig::load(&a.config).map_err(|e| {
        eprintln!("repmilter: {}", ErrorChain(&e));
        ExitCode::from(exit::CONFIG)
    })?;
    let family = match a.family {
        4 => Family::V4,
        6 => Family::V6,
        f => {
            eprintln!("repmilter: --family {f}: use 4 or 6");
            return Err(ExitCode::from(2));
        }
    };
    let zone = repmilter::daemon::runtime()
        .block_on(export(&config, family, a.min_score))
        .map_err(|e| {
            eprintln!("repmilter: {}", ErrorChain(&e));
            ExitCode::from(exit::RUNTIME)
        })?;
    match a.output {
        None => out!("{zone}"),
        Some(path) => {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, &zone)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|e| {
                    eprintln!("repmilter: cannot write {}: {e}", path.display());
                    ExitCode::from(exit::INPUT)
                })?;
        }
    }
    Ok(ExitCode::from(exit::OK))
}

/// The config's [hub], or the exit for a config without one.
fn hub_client(config: &Config) -> Result<&repmilter::config::HubClient, ExitCode> {
    config.hub.as_ref().ok_or_else(|| {
        eprintln!(
            "repmilter: {} has no [hub] table: there is no hub to report to",
            config.path.display()
        );
        ExitCode::from(exit::CONFIG)
    })
}

/// A progress bar for `n` files: drawn only on a terminal, and only when there is more than
/// one file to wait for.
fn files_bar(n: usize) -> indicatif::ProgressBar {
    let bar = if n > 1 {
        indicatif::ProgressBar::new(n as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} files, {eta} left")
            .expect("a valid template"),
    );
    bar
}

fn feedback_report(a: FeedbackReportArgs) -> Result<ExitCode, ExitCode> {
    use repmilter::feedback::submit::{ReportAs, report_files};
    let config = load(&a.config.config)?;
    let how = match (a.spam, a.ham) {
        (true, _) => ReportAs::Spam,
        (_, true) => ReportAs::Ham,
        _ => ReportAs::Arf,
    };
    let Some(hub) = config.hub.as_ref() else {
        return learn_locally(&config, how, &a.files);
    };
    // Reported samples carry the learned model's features, for the hub to learn from. The
    // engine (its DNS resolver) is built inside the runtime it would run on.
    let rt = repmilter::daemon::runtime();
    let _in_runtime = rt.enter();
    let rules = Arc::new(load_rules(&config.rules.paths)?);
    let engine = Engine::with_rules(config.clone(), rules);
    let learn =
        |message: &[u8], client: Option<IpAddr>| reported_features(&engine, message, client);
    let bar = files_bar(a.files.len());
    let result = rt.block_on(report_files(hub, how, &a.files, &learn, || bar.inc(1)));
    bar.finish_and_clear();
    let (summary, failed) = match result {
        Ok(s) => (s, None),
        Err((e, s)) => (s, Some(e)),
    };
    for skipped in &summary.skipped {
        eprintln!("repmilter: skipped {skipped}");
    }
    let what = match (summary.spam, summary.ham) {
        (s, 0) => format!("{s} as spam"),
        (0, h) => format!("{h} as ham"),
        (s, h) => format!("{s} as spam and {h} as ham"),
    };
    outln!(
        "reported {} of {} files to {}: {what}; {} new to the hub, {} it had already{}",
        summary.sent,
        a.files.len(),
        hub.url,
        summary.hub.accepted,
        summary.hub.duplicates,
        if hub.share_samples {
            " (with the messages: share_samples is on)"
        } else {
            " (keys and hashes only)"
        }
    );
    if let Some(e) = failed {
        eprintln!("repmilter: {e}");
        return Err(ExitCode::from(exit::RUNTIME));
    }
    Ok(ExitCode::from(if summary.skipped.is_empty() {
        exit::OK
    } else {
        exit::INPUT
    }))
}

/// A reported message's learned-model features, as the daemon computes them when it judges
/// the message (`client`: the sender an ARF report names).
fn reported_features(engine: &Engine, message: &[u8], client: Option<IpAddr>) -> Vec<u64> {
    engine.learn_features(&ScanInput::new(
        Envelope {
            client_ip: client,
            ..Envelope::default()
        },
        Message::from_raw(message, engine.config.milter.max_message_size),
    ))
}

/// `feedback report` without a hub: the reported messages train the local model file.
fn learn_locally(
    config: &Config,
    how: repmilter::feedback::submit::ReportAs,
    files: &[PathBuf],
) -> Result<ExitCode, ExitCode> {
    use repmilter::feedback::EventKind;
    use repmilter::feedback::submit::read_reported;
    use repmilter::learn;
    let path = &config.learn.model;
    let _lock = learn::lock_for_training(path).map_err(|e| {
        eprintln!("repmilter: {}", ErrorChain(&e));
        ExitCode::from(exit::RUNTIME)
    })?;
    let mut model = learn::read(path)
        .map_err(|e| {
            eprintln!("repmilter: {}", ErrorChain(&e));
            ExitCode::from(exit::INPUT)
        })?
        .unwrap_or_default();
    let rt = repmilter::daemon::runtime();
    let _in_runtime = rt.enter();
    let rules = Arc::new(load_rules(&config.rules.paths)?);
    let engine = Engine::with_rules(config.clone(), rules);
    model.decay_to(
        repmilter::hub::service::now(),
        config.learn.half_life.as_secs(),
    );
    let bar = files_bar(files.len());
    let (mut spam, mut ham, mut skipped) = (0, 0, 0);
    for f in files {
        match read_reported(f, how) {
            Ok((message, kind, client)) => {
                let is_spam = kind == EventKind::Spam;
                model.train(&reported_features(&engine, &message, client), is_spam);
                if is_spam {
                    spam += 1;
                } else {
                    ham += 1;
                }
            }
            Err(e) => {
                bar.suspend(|| eprintln!("repmilter: skipped {e}"));
                skipped += 1;
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    learn::write(path, &model).map_err(|e| {
        eprintln!("repmilter: {}", ErrorChain(&e));
        ExitCode::from(exit::RUNTIME)
    })?;
    let young =
        model.spam < config.learn.min_spam as f64 || model.ham < config.learn.min_ham as f64;
    outln!(
        "trained {} of {} files into {} (no [hub]: the model is this gateway's): {spam} as spam, \
         {ham} as ham; it holds {:.0} spam and {:.0} ham messages, {} features{}",
        spam + ham,
        files.len(),
        path.display(),
        model.spam,
        model.ham,
        model.features.len(),
        if young {
            format!(
                " (it scores once it holds {} spam and {} ham: learn.min_spam, learn.min_ham)",
                config.learn.min_spam, config.learn.min_ham
            )
        } else {
            String::new()
        }
    );
    Ok(ExitCode::from(if skipped == 0 {
        exit::OK
    } else {
        exit::INPUT
    }))
}

fn feedback_status(a: ConfigArg) -> Result<ExitCode, ExitCode> {
    use repmilter::feedback::reporter::{STATUS_FILE, Status};
    let config = load(&a.config)?;
    let hub = hub_client(&config)?;
    let seen = repmilter::feedback::spool::inspect(&hub.spool).map_err(|e| {
        eprintln!("repmilter: {}", ErrorChain(&e));
        ExitCode::from(exit::INPUT)
    })?;
    let now = std::time::SystemTime::now();
    let ago = |t: std::time::SystemTime| {
        now.duration_since(t)
            .map_or("just now".to_string(), |d| format!("{}s ago", d.as_secs()))
    };
    let ago_secs = |t: u64| ago(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t));
    outln!("spool:    {}", hub.spool.display());
    outln!("hub:      {}", hub.url);
    outln!(
        "daemon:   {}",
        if seen.held {
            "running (holds the spool)"
        } else {
            "not running on this spool"
        }
    );
    outln!(
        "waiting:  {} events in {} segments, {} bytes of {} allowed",
        seen.events,
        seen.segments,
        seen.bytes,
        hub.spool_max
    );
    if let Some(t) = seen.oldest {
        outln!("oldest:   written {}", ago(t));
    }
    let status: Option<Status> = std::fs::read(hub.spool.join(STATUS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    match status {
        Some(s) => {
            outln!(
                "since the daemon started (as of {}): {} spooled, {} shipped, {} dropped (spool full), {} refused by the hub, {} failed tries",
                ago_secs(s.updated),
                s.spooled,
                s.shipped,
                s.dropped,
                s.refused,
                s.failures
            );
            if let Some(t) = s.last_shipped {
                outln!("last shipped: {}", ago_secs(t));
            }
            if let (Some(e), Some(t)) = (s.last_error, s.last_error_at) {
                outln!("last error:   {} ({e})", ago_secs(t));
            }
        }
        None => {
            outln!("no shipping status yet (the daemon writes it once it has shipped or tried)")
        }
    }
    Ok(ExitCode::from(exit::OK))
}

fn check(a: CheckArgs) -> Result<ExitCode, ExitCode> {
    let config = load(&a.config.config)?;
    repmilter::logging::init("warn", repmilter::logging::LogFormat::Text, false);
    let one = &a.messages[0];
    if a.messages.len() > 1 || one.is_dir() {
        return check_many(a, config);
    }
    let raw = read_message(one, &config).map_err(|e| {
        eprintln!("repmilter: cannot read message {}: {e}", one.display());
        ExitCode::from(exit::INPUT)
    })?;
    let input = repmilter::batch::saved_message(&config, check_envelope(&a), &raw);
    let input = Arc::new(input);
    let rules = Arc::new(load_rules(&config.rules.paths)?);
    let rt = repmilter::daemon::runtime();
    // The DNS resolver is built inside the runtime it will run on.
    let _in_runtime = rt.enter();
    let engine = Engine::with_rules(config.clone(), rules);
    let (verdict, decision) = rt.block_on(engine.judge(input.clone()));
    if a.json {
        let mut out = serde_json::json!({
            "score": verdict.score,
            "action": decision.action,
            "is_spam": decision.is_spam,
            "symbols": verdict.symbols,
            "smtp_reply": decision.smtp_reply.as_ref().map(|(c, e, t)| format!("{c} {e} {t}")),
            "add_headers": decision.add_headers,
            "urls": input.view().urls,
            "attachments": input.view().attachments,
        });
        if a.explain {
            out["explain"] = serde_json::json!({
                "rules": explained_rules(&engine, &input),
                "learned": explained_learned(&engine, &input),
            });
        }
        outln!("{out:#}");
    } else {
        outln!("action: {}", decision.action);
        outln!("score: {:.1}", verdict.score);
        if let Some((c, e, t)) = &decision.smtp_reply {
            outln!("reply: {c} {e} {t}");
        }
        outln!("symbols:");
        for s in &verdict.symbols {
            outln!("  {:>7.1} {} {}", s.score, s.name, s.detail);
        }
        if a.explain {
            explain(&engine, &input);
        }
        if !decision.add_headers.is_empty() {
            outln!("headers:");
            for (n, v) in &decision.add_headers {
                outln!("  {n}: {v}");
            }
        }
    }
    Ok(ExitCode::from(if decision.action == Action::Accept {
        exit::OK
    } else {
        exit::SPAM
    }))
}

/// Reads a message file (or standard input for `-`) up to what the daemon would keep: past
/// `max_message_size` plus room for the headers the rest is not read (`Message::from_raw`
/// flags the cut with `MESSAGE_TRUNCATED`).
fn read_message(path: &std::path::Path, config: &Config) -> Result<Vec<u8>, String> {
    // Headers count against the limit in the daemon; here they are read on top of it.
    let cap = config.milter.max_message_size as u64 + MESSAGE_HEADROOM;
    if path.as_os_str() == "-" {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(std::io::stdin(), cap), &mut v)
            .map_err(|e| e.to_string())?;
        return Ok(v);
    }
    repmilter::files::read_prefix(path, cap).map_err(|e| e.to_string())
}

/// Bytes read past `max_message_size` by `check`, so that a message just over the limit is
/// still seen as over it.
const MESSAGE_HEADROOM: u64 = 1024 * 1024;

/// Loads rules for a command-line tool: problems go to stderr, the good rules are used.
fn load_rules(paths: &[PathBuf]) -> Result<RuleSet, ExitCode> {
    let rules = RuleSet::load(paths);
    for p in &rules.problems {
        eprintln!("{p}");
    }
    Ok(rules)
}

fn rule_paths(a: &RulesArgs) -> Result<Vec<PathBuf>, ExitCode> {
    if a.paths.is_empty() {
        Ok(load(&a.config)?.rules.paths)
    } else {
        Ok(a.paths.clone())
    }
}

fn rules_lint(a: LintArgs) -> Result<ExitCode, ExitCode> {
    use repmilter::problem::{Labelled, Severity};
    let paths = rule_paths(&a.rules)?;
    let rules = RuleSet::load(&paths);
    let mut problems: Vec<_> = rules.problems.iter().collect();
    problems.sort_by(|x, y| {
        (&x.file, x.line, x.column, std::cmp::Reverse(x.severity)).cmp(&(
            &y.file,
            y.line,
            y.column,
            std::cmp::Reverse(y.severity),
        ))
    });
    let count = |s: Severity| problems.iter().filter(|p| p.severity == s).count();
    let (errors, warnings, notes) = (
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Note),
    );
    let mut out = std::io::stdout().lock();
    for p in &problems {
        if p.severity != Severity::Note || a.pedantic {
            write_or_exit(&mut out, format_args!("{}\n", Labelled(p)));
        }
    }
    let notes = if a.pedantic {
        format!("{notes} note(s)")
    } else {
        format!("{notes} note(s) not shown (--pedantic shows them)")
    };
    let kinds: Vec<String> = rules
        .stats
        .by_kind
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    eprintln!(
        "{} rules loaded ({}), {} prefiltered by literals, {} on the backtracking engine, regexes {:.1} MiB of {} MiB; {errors} error(s), {warnings} warning(s), {notes}",
        rules.len(),
        kinds.join(", "),
        rules.stats.prefiltered,
        rules.stats.fancy,
        rules.stats.regex_bytes as f64 / (1 << 20) as f64,
        repmilter::signatures::ruleset::REGEX_BUDGET >> 20,
    );
    Ok(ExitCode::from(if errors > 0 {
        exit::SPAM
    } else {
        exit::OK
    }))
}

/// Writes to standard output; a reader that went away (`| head`) ends the program quietly,
/// as it would a shell tool, instead of a panic.
fn write_or_exit(out: &mut impl std::io::Write, text: std::fmt::Arguments<'_>) {
    if let Err(e) = out.write_fmt(text) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("repmilter: cannot write to standard output: {e}");
        std::process::exit(i32::from(exit::RUNTIME));
    }
}

fn rules_test(a: RulesTestArgs) -> Result<ExitCode, ExitCode> {
    use repmilter::signatures::examples::{self, Outcome};
    let paths = rule_paths(&a.rules)?;
    let rules = load_rules(&paths)?;
    let found = examples::run(&rules, &a.examples).map_err(|e| {
        eprintln!(
            "repmilter: cannot read examples directory {}: {e}",
            a.examples.display()
        );
        ExitCode::from(exit::INPUT)
    })?;
    let (mut passed, mut failed) = (0, 0);
    for ex in &found {
        let kind = if ex.spam { "spam" } else { "ham" };
        let (name, path) = (&ex.rule, ex.path.display());
        match &ex.outcome {
            Outcome::Pass => {
                passed += 1;
                outln!("PASS  {name:<32} {kind:<4}  {path}");
            }
            Outcome::Fail(why) => {
                failed += 1;
                outln!("FAIL  {name:<32} {kind:<4}  {path}: {why}");
            }
            Outcome::Skip => outln!("SKIP  {name}: name it RULE.spam.eml or RULE.ham.eml"),
        }
    }
    outln!("rules: {passed} passed, {failed} failed");
    if passed + failed == 0 {
        eprintln!("repmilter: no examples in {}", a.examples.display());
        return Ok(ExitCode::from(exit::SPAM));
    }
    Ok(ExitCode::from(if failed > 0 {
        exit::SPAM
    } else {
        exit::OK
    }))
}

/// The envelope `check` gives each message: its command-line options.
fn check_envelope(a: &CheckArgs) -> Envelope {
    Envelope {
        client_ip: a.ip,
        helo: a.helo.clone(),
        from: a.from.clone(),
        rcpts: a.rcpt.clone(),
        auth_user: a.auth.clone(),
        ..Envelope::default()
    }
}

/// `check` on several files or a directory.
fn check_many(a: CheckArgs, config: Config) -> Result<ExitCode, ExitCode> {
    use std::io::IsTerminal;
    let mut files = Vec::new();
    for m in &a.messages {
        if m.as_os_str() == "-" {
            eprintln!("repmilter check: - (standard input) is one message: give it alone");
            return Err(ExitCode::from(exit::INPUT));
        }
        if !m.is_dir() {
            // A file that cannot be read is listed in the summary, not fatal.
            files.push(m.clone());
            continue;
        }
        let found = repmilter::loadgen::message_files(m).map_err(|e| {
            eprintln!("repmilter check: {}", ErrorChain(&e));
            ExitCode::from(exit::INPUT)
        })?;
        files.extend(found);
    }
    let rules = Arc::new(load_rules(&config.rules.paths)?);
    let rt = repmilter::daemon::runtime();
    let _in_runtime = rt.enter();
    let engine = Engine::with_rules(config.clone(), rules);
    let envelope = check_envelope(&a);
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(files.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let json = a.json;
    let sum = repmilter::batch::run(
        &engine,
        &rt,
        &files,
        &envelope,
        |p| read_message(p, &config),
        |scored| {
            let text = if json {
                serde_json::to_string(scored).unwrap_or_default()
            } else {
                repmilter::batch::line(scored)
            };
            bar.suspend(|| outln!("{text}"));
        },
        || bar.inc(1),
    );
    bar.finish_and_clear();
    if json {
        outln!("{}", serde_json::json!({ "summary": &sum }).to_string());
    } else {
        out!("\n{}", repmilter::batch::table(&sum));
    }
    Ok(ExitCode::from(if !sum.unreadable.is_empty() {
        exit::INPUT
    } else if sum.flagged() > 0 {
        exit::SPAM
    } else {
        exit::OK
    }))
}

fn explain(engine: &Engine, input: &ScanInput) {
    explain_rules(engine, input);
    explain_learned(engine, input);
}

/// `--explain` for `--json`: each rule that hit, where it is defined and what it matched.
fn explained_rules(engine: &Engine, input: &ScanInput) -> serde_json::Value {
    let hits = engine.rules.scan(input).hits;
    hits.iter()
        .map(|h| {
            let r = engine.rules.rule(h.rule);
            serde_json::json!({
                "rule": r.name,
                "score": r.score,
                "at": r.at.to_string(),
                "target": r.target.to_string(),
                "hits": h.count,
                "matched": h.evidence.as_ref().map(|e| &e.matched),
                "context": h.evidence.as_ref().map(|e| &e.context),
            })
        })
        .collect()
}

/// `--explain` for `--json`: the learned model's probability and its most telling features.
fn explained_learned(engine: &Engine, input: &ScanInput) -> serde_json::Value {
    let Some(model) = engine.learner.model() else {
        return serde_json::Value::Null;
    };
    let features = engine.learn_features(input);
    let score = model.score(&features);
    let texts = repmilter::learn::features::texts(input, &engine.content_symbols(input));
    let telling: Vec<serde_json::Value> = score
        .used
        .iter()
        .take(15)
        .map(|(f, estimate)| {
            let c = model.features.get(f).copied().unwrap_or_default();
            serde_json::json!({
                "feature": texts.get(f).map_or("?", String::as_str),
                "estimate": estimate,
                "spam": c[0],
                "ham": c[1],
            })
        })
        .collect();
    serde_json::json!({
        "probability": score.probability,
        "features": features.len(),
        "telling": telling,
    })
}

/// The features of the learned model that weighed most in the message's score.
fn explain_learned(engine: &Engine, input: &ScanInput) {
    let Some(model) = engine.learner.model() else {
        outln!(
            "learned: no model in use ({} is absent, unreadable (a warning says why), or holds fewer than learn.min_spam spam or learn.min_ham ham)",
            engine.config.learn.model.display()
        );
        return;
    };
    let features = engine.learn_features(input);
    let score = model.score(&features);
    let texts = repmilter::learn::features::texts(input, &engine.content_symbols(input));
    outln!(
        "learned: spam probability {:.3} from {} of the message's {} features; most telling:",
        score.probability,
        score.used.len(),
        features.len()
    );
    for (f, estimate) in score.used.iter().take(15) {
        let text = texts.get(f).map_or("?", String::as_str);
        let c = model.features.get(f).copied().unwrap_or_default();
        outln!(
            "  {:>5.3} {} (in {:.0} spam, {:.0} ham)",
            estimate,
            text,
            c[0],
            c[1]
        );
    }
}

fn explain_rules(engine: &Engine, input: &ScanInput) {
    let hits = engine.rules.scan(input).hits;
    if hits.is_empty() {
        outln!("explain: no signature rule hit");
        return;
    }
    outln!("explain:");
    for h in hits {
        let r = engine.rules.rule(h.rule);
        outln!(
            "  {} ({:.1}) at {} [{}] hits={}",
            r.name,
            r.score,
            r.at,
            r.target,
            h.count
        );
        if let Some(e) = &h.evidence {
            outln!("      matched {:?} in {:?}", e.matched, e.context);
        }
    }
}
