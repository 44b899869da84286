//! `repmilter serve`: bind, serve sessions, reload on SIGHUP, drain on SIGTERM.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::ErrorChain;
use crate::config::Config;
use crate::milter::server::{self, BindError, Listener};
use crate::session::{self, Engine};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot start")]
    Bind(#[from] BindError),
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
}

/// At most this many connection-error warnings per [`WARN_WINDOW`]; a port scanner or a
/// misconfigured client must not flood the log.
const WARN_BURST: u32 = 10;
const WARN_WINDOW: Duration = Duration::from_secs(60);

struct WarnLimiter {
    state: Mutex<(Instant, u32, u64)>,
}

impl WarnLimiter {
    /// Returns whether to log now, and how many warnings were suppressed before this one.
    fn allow(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if now.duration_since(s.0) >= WARN_WINDOW {
            let suppressed = s.2;
            *s = (now, 1, 0);
            return Some(suppressed);
        }
        if s.1 < WARN_BURST {
            s.1 += 1;
            Some(0)
        } else {
            s.2 += 1;
            None
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT, then drains within `milter.shutdown_timeout`.
pub async fn run(config: Config) -> Result<(), DaemonError> {
    let path = config.path.clone();
    let listener = Listener::bind(&config.milter.listen, config.milter.socket_mode).await?;
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %path.display(),
        "listening on {}",
        listener.local()
    );
    let max_connections = config.milter.max_connections;
    let drain = config.milter.shutdown_timeout;
    let (engine_tx, engine_rx) = watch::channel(Arc::new(Engine::new(config)));
    let (stop_tx, stop_rx) = watch::channel(false);

    let rule_paths = |tx: &watch::Sender<Arc<Engine>>| tx.borrow().config.rules.paths.clone();
    let mut rules_seen = rules_fingerprint(&rule_paths(&engine_tx));
    let mut poll = tokio::time::interval(RULES_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::spawn(async move {
        // Reloads compile rules and walk the rule tree: blocking work, kept off the runtime's
        // workers so that sessions never wait for it.
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    let (tx, p) = (engine_tx.clone(), path.clone());
                    let _ = tokio::task::spawn_blocking(move || reload(&p, &tx)).await;
                    let paths = rule_paths(&engine_tx);
                    rules_seen = tokio::task::spawn_blocking(move || rules_fingerprint(&paths))
                        .await
                        .unwrap_or_default();
                }
                _ = poll.tick() => {
                    let paths = rule_paths(&engine_tx);
                    let now = tokio::task::spawn_blocking(move || rules_fingerprint(&paths))
                        .await
                        .unwrap_or_default();
                    if now != rules_seen {
                        rules_seen = now;
                        tracing::info!("rule files changed; recompiling");
                        let tx = engine_tx.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            let running = tx.borrow().clone();
                            let next = Engine::reload((*running.config).clone(), &running);
                            tx.send_replace(Arc::new(next));
                        })
                        .await;
                    }
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });

    let limiter = Arc::new(WarnLimiter {
        state: Mutex::new((Instant::now(), 0, 0)),
    });
    server::serve(listener, max_connections, stop_rx, drain, move |stream, peer, shutdown| {
        let engines = engine_rx.clone();
        let limiter = limiter.clone();
        async move {
            if let Err(e) = session::run(stream, engines, shutdown, peer.clone()).await
                && let Some(suppressed) = limiter.allow()
            {
                tracing::warn!(%peer, suppressed, "closing milter connection: {}", ErrorChain(&e));
            }
        }
    })
    .await;
    tracing::info!("stopped");
    Ok(())
}

/// How often rule files are checked for changes (modification time and size).
const RULES_POLL: Duration = Duration::from_secs(2);

/// Modification times and sizes of every file under the rule paths, to notice an edit.
fn rules_fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, Option<std::time::SystemTime>, u64)> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = paths.to_vec();
    // Rule trees are small; the cap only guards against a path pointing at "/" by mistake.
    while let Some(p) = stack.pop() {
        if out.len() > 10_000 {
            break;
        }
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => {
                if let Ok(rd) = std::fs::read_dir(&p) {
                    stack.extend(rd.filter_map(|e| e.ok().map(|e| e.path())));
                }
            }
            Ok(m) => out.push((p, m.modified().ok(), m.len())),
            Err(_) => out.push((p, None, 0)),
        }
    }
    out.sort();
    out
}

/// Loads the config again and swaps the engine. A broken file keeps the running config;
/// keys that need a restart keep their running values, with a warning.
fn reload(path: &Path, engines: &watch::Sender<Arc<Engine>>) {
    let mut new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(
                "reload refused, keeping the running config: {}",
                ErrorChain(&e)
            );
            return;
        }
    };
    let running = engines.borrow().config.clone();
    let refused = running.restart_only_changes(&new);
    if !refused.is_empty() {
        tracing::warn!(keys = %refused.join(", "), "these settings change only on restart; keeping their running values");
        new.milter.listen = running.milter.listen.clone();
        new.milter.socket_mode = running.milter.socket_mode;
        new.milter.max_connections = running.milter.max_connections;
        new.log_level = running.log_level.clone();
        new.milter.shutdown_timeout = running.milter.shutdown_timeout;
    }
    let running_engine = engines.borrow().clone();
    engines.send_replace(Arc::new(Engine::reload(new, &running_engine)));
    tracing::info!(config = %path.display(), "config reloaded");
}
