//! Command line: parse arguments, load config, start logging, call the library, exit codes.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use repmilter::ErrorChain;
use repmilter::config::Config;
use repmilter::message::{Envelope, Message};
use repmilter::scoring::ScanInput;
use repmilter::scoring::policy::Action;
use repmilter::session::Engine;

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
    /// The message (RFC 5322), or - for standard input.
    message: PathBuf,
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("repmilter: {}", ErrorChain(&e));
        ExitCode::from(exit::CONFIG)
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Serve(a) => serve(a),
        Cmd::Config(ConfigCmd::Check(a)) => load(&a.config).map(|c| {
            println!("{}: ok (listen {})", c.path.display(), c.milter.listen);
            ExitCode::from(exit::OK)
        }),
        Cmd::Check(a) => check(a),
    };
    result.unwrap_or_else(|code| code)
}

fn serve(a: ConfigArg) -> Result<ExitCode, ExitCode> {
    let config = load(&a.config)?;
    init_logging(&config.log_level);
    runtime()
        .block_on(repmilter::daemon::run(config))
        .map_err(|e| {
            tracing::error!("{}", ErrorChain(&e));
            ExitCode::from(exit::RUNTIME)
        })?;
    Ok(ExitCode::from(exit::OK))
}

fn check(a: CheckArgs) -> Result<ExitCode, ExitCode> {
    let config = load(&a.config.config)?;
    init_logging("warn");
    let raw = if a.message.as_os_str() == "-" {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut v).map(|_| v)
    } else {
        std::fs::read(&a.message)
    }
    .map_err(|e| {
        eprintln!(
            "repmilter: cannot read message {}: {e}",
            a.message.display()
        );
        ExitCode::from(exit::INPUT)
    })?;
    let input = ScanInput::new(
        Envelope {
            client_ip: a.ip,
            helo: a.helo,
            from: a.from,
            rcpts: a.rcpt,
            auth_user: a.auth,
            ..Envelope::default()
        },
        Message::from_raw(&raw, config.milter.max_message_size),
    );
    let engine = Engine::new(config);
    let (verdict, decision) = runtime().block_on(engine.judge(&input));
    if a.json {
        let out = serde_json::json!({
            "score": verdict.score,
            "action": decision.action,
            "is_spam": decision.is_spam,
            "symbols": verdict.symbols,
            "smtp_reply": decision.smtp_reply.as_ref().map(|(c, e, t)| format!("{c} {e} {t}")),
            "add_headers": decision.add_headers,
            "urls": input.view().urls,
            "attachments": input.view().attachments,
        });
        println!("{out:#}");
    } else {
        println!("action: {}", decision.action);
        println!("score: {:.1}", verdict.score);
        if let Some((c, e, t)) = &decision.smtp_reply {
            println!("reply: {c} {e} {t}");
        }
        println!("symbols:");
        for s in &verdict.symbols {
            println!("  {:>7.1} {} {}", s.score, s.name, s.detail);
        }
        if !decision.add_headers.is_empty() {
            println!("headers:");
            for (n, v) in &decision.add_headers {
                println!("  {n}: {v}");
            }
        }
    }
    Ok(ExitCode::from(if decision.action == Action::Accept {
        exit::OK
    } else {
        exit::SPAM
    }))
}
