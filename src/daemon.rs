//! `repmilter serve`: bind, serve sessions, reload on SIGHUP, drain on SIGTERM.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::ErrorChain;
use crate::config::Config;
use crate::engine::Engine;
use crate::engine::pipeline::scan_slots;
use crate::feedback::reporter::Reporter;
use crate::milter::server::{self, BindError, Listener, SocketAccess};
use crate::session;
use crate::warn::WarnLimiter;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot start")]
    Bind(#[from] BindError),
    #[error("cannot start the session threads")]
    Threads(#[source] std::io::Error),
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    #[error("cannot open the feedback spool ([hub] spool)")]
    Spool(#[source] crate::feedback::spool::SpoolError),
    #[error("refusing to serve: {0}")]
    NoRules(String),
    #[error("cannot become user {user} ({step})")]
    User {
        user: String,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr} ([metrics] listen)")]
    Monitor {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Blocking threads at most. Compute stages hold [`scan_slots`] of them, reloads and the
/// rule-file poll one each; network waits hold none (they are awaited on the runtime), so a
/// slow DNS server cannot use them up.
pub const MAX_BLOCKING_THREADS: usize = 32;

/// Stack of each runtime thread (the default is 2 MiB).
const THREAD_STACK: usize = 8 * 1024 * 1024;

/// The runtime the daemon and `check` run on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS.max(scan_slots() + 4))
        // The MIME parser and meta evaluation recurse a bounded number of levels (the MIME
        // structure is cut at 1,000 parts, metas at 2,000 tokens); debug builds use several
        // times the stack of release builds per level. Only touched pages cost memory.
        .thread_stack_size(THREAD_STACK)
        .build()
        .expect("tokio runtime starts")
}

/// The runtimes of the session threads (see [`server::Threads`]): one per CPU the process
/// may use. Single-threaded: a session's tasks never move between threads, and no thread
/// wakes another to steal them (DESIGN.md "Load generator" has the figures).
fn session_threads() -> server::Threads {
    server::Threads {
        count: std::thread::available_parallelism().map_or(1, |n| n.get()),
        stack_size: THREAD_STACK,
        runtime: || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .max_blocking_threads(MAX_BLOCKING_THREADS.max(scan_slots() + 4))
                .thread_stack_size(THREAD_STACK)
                .build()
        },
    }
}

/// Runs the daemon until SIGTERM or SIGINT, then drains within `milter.shutdown_timeout`.
pub async fn run(config: Config) -> Result<(), DaemonError> {
    let path = config.path.clone();
    let listen = config.milter.listen.clone();
    let access = SocketAccess {
        mode: config.milter.socket_mode,
        owner: config.milter.socket_owner.as_ref().map(|u| u.uid),
        group: config.milter.socket_group.as_ref().map(|g| g.gid),
    };
    let become_user = config.milter.user.clone();
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let max_connections = config.milter.max_connections;
    raise_file_limit(max_connections);
    let drain = config.milter.shutdown_timeout;
    // The files are fingerprinted before they are read, so that an edit made while they are
    // compiled is seen by the first poll; phrase lists are known once the rules are read.
    let mut rules_seen = fingerprint(&watched(&config, &[]));
    // The spool is opened before mail is taken: events of a daemon that cannot keep them
    // would be lost, and a second daemon on the same spool is refused here.
    let reporter = match &config.hub {
        Some(h) => Some(Reporter::start(h).map_err(DaemonError::Spool)?),
        None => None,
    };
    let mut first = Engine::new(config);
    if let Some(why) = first.unusable() {
        return Err(DaemonError::NoRules(why));
    }
    if let Some(r) = reporter {
        first = first.with_reporter(r);
    }
    let first = Arc::new(first);
    rules_seen.extend(fingerprint(&first.rules.list_files));
    rules_seen.sort();
    if let Some(dns) = &first.dns {
        dns.spawn_probes();
    }
    tracing::info!(rules = first.rules.len(), "engine in use");
    crate::metrics::get().rules.set(first.rules.len() as i64);
    // Listening only now, with the rules compiled: an MTA connecting earlier would wait in
    // the backlog for as long as the compile takes; refused, it applies its milter default
    // action at once.
    let monitor = match first.config.metrics_listen {
        Some(addr) => Some(
            crate::monitor::bind(addr)
                .await
                .map_err(|source| DaemonError::Monitor { addr, source })?,
        ),
        None => None,
    };
    let listener = Listener::bind(&listen, access).await?;
    // Bound (a privileged port or a socket in a root-owned directory): root is needed no more.
    if let Some(user) = &become_user {
        drop_privileges(user)?;
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %path.display(),
        "listening on {}",
        listener.local()
    );
    notify_systemd(&[sd_notify::NotifyState::Ready]);
    let (engine_tx, engine_rx) = watch::channel(first);
    let last_engine = engine_tx.subscribe();
    // With a hub, the network's learned model is fetched into the model file in the
    // background (the config of the engine in use, reloads included).
    let engines = engine_tx.subscribe();
    tokio::spawn(crate::learn::fetch::fetch_forever(move || {
        let e = engines.borrow();
        let c = &e.config;
        c.hub.clone().map(|h| (h, c.learn.model.clone()))
    }));
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Some(monitor) = monitor {
        if let Ok(addr) = monitor.local_addr() {
            tracing::info!("monitor listening on http://{addr}");
        }
        let mut stop = stop_rx.clone();
        tokio::spawn(crate::monitor::serve(monitor, async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
    }

    // Rule, phrase list and allowlist files: an edit to any rebuilds the engine.
    let rule_paths = |tx: &watch::Sender<Arc<Engine>>| {
        let e = tx.borrow();
        watched(&e.config, &e.rules.list_files)
    };
    let mut poll = tokio::time::interval(RULES_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::spawn(async move {
        // Reloads compile rules and walk the rule tree: blocking work, kept off the runtime's
        // workers so that sessions never wait for it.
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    // systemd (Type=notify-reload or ExecReload with notify) waits for READY.
                    if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
                        notify_systemd(&[sd_notify::NotifyState::Reloading, now]);
                    }
                    let (tx, p) = (engine_tx.clone(), path.clone());
                    let _ = tokio::task::spawn_blocking(move || reload(&p, &tx)).await;
                    notify_systemd(&[sd_notify::NotifyState::Ready]);
                    let paths = rule_paths(&engine_tx);
                    rules_seen = tokio::task::spawn_blocking(move || fingerprint(&paths))
                        .await
                        .unwrap_or_default();
                }
                _ = poll.tick() => {
                    let paths = rule_paths(&engine_tx);
                    let now = tokio::task::spawn_blocking(move || fingerprint(&paths))
                        .await
                        .unwrap_or_default();
                    if now != rules_seen {
                        rules_seen = now;
                        tracing::info!("rule or list files changed; rebuilding");
                        let tx = engine_tx.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            let running = tx.borrow().clone();
                            let next = Engine::reload((*running.config).clone(), &running);
                            swap(&tx, next);
                        })
                        .await;
                    }
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        tracing::info!("shutting down");
        notify_systemd(&[sd_notify::NotifyState::Stopping]);
        let _ = stop_tx.send(true);
    });

    let limiter = Arc::new(WarnLimiter::default());
    let mut serving = server::serve(
        listener,
        session_threads(),
        max_connections,
        stop_rx,
        drain,
        move |stream, peer, shutdown| {
            let engines = engine_rx.clone();
            let limiter = limiter.clone();
            async move {
                let metrics = crate::metrics::get();
                metrics.connections.inc();
                metrics.sessions_open.inc();
                let ended = session::run(stream, engines, shutdown, peer.clone()).await;
                metrics.sessions_open.dec();
                if let Err(e) = ended {
                    metrics.error(e.kind());
                    if let Some(suppressed) = limiter.allow() {
                        tracing::warn!(%peer, suppressed, "closing milter connection: {}", ErrorChain(&e));
                    }
                }
            }
        },
    )
    .map_err(DaemonError::Threads)?;
    serving.finished().await;
    // Mail is done; what is spooled is made durable, and sent if the hub answers at once
    // (the rest goes at the next start).
    let reporter = last_engine.borrow().reporter.clone();
    if let Some(r) = reporter {
        r.sync();
        let _ = tokio::time::timeout(FINAL_SHIP, r.ship()).await;
        let (segments, bytes) = r.status();
        tracing::info!(segments, bytes, "feedback spool left for the next start");
    }
    tracing::info!("stopped");
    drop(serving);
    Ok(())
}

/// Tells systemd (when it started us with `Type=notify`: `NOTIFY_SOCKET` is set) how the
/// daemon is doing; a no-op otherwise.
fn notify_systemd(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

/// Becomes `user` (its uid, its primary group and its supplementary groups) when running as
/// root; as anyone else, says that the setting has no effect.
fn drop_privileges(user: &crate::config::UserAccount) -> Result<(), DaemonError> {
    use nix::unistd::{Gid, Uid, geteuid, initgroups, setgid, setuid};
    if !geteuid().is_root() {
        if geteuid().as_raw() != user.uid {
            tracing::warn!(user = %user.name, "milter.user is set but the daemon was not started as root; running as uid {}", geteuid());
        }
        return Ok(());
    }
    let fail = |step: &'static str| {
        move |e: nix::Error| DaemonError::User {
            user: user.name.clone(),
            step,
            source: std::io::Error::from(e),
        }
    };
    let name = std::ffi::CString::new(user.name.as_str()).map_err(|_| DaemonError::User {
        user: user.name.clone(),
        step: "initgroups",
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })?;
    initgroups(&name, Gid::from_raw(user.gid)).map_err(fail("initgroups"))?;
    setgid(Gid::from_raw(user.gid)).map_err(fail("setgid"))?;
    setuid(Uid::from_raw(user.uid)).map_err(fail("setuid"))?;
    tracing::info!(user = %user.name, uid = user.uid, gid = user.gid, "dropped root");
    Ok(())
}

/// How long a stopping daemon tries to ship the spool.
const FINAL_SHIP: Duration = Duration::from_secs(2);

/// Descriptors the daemon needs besides one per connection: listener, resolver sockets, rule
/// and list files being read, standard streams.
const FD_HEADROOM: u64 = 256;

/// Raises the soft open-file limit so that `max_connections` can be served: Debian's default
/// soft limit (1024) is about the default `max_connections`, and a daemon out of descriptors
/// cannot even accept a connection to refuse it.
fn raise_file_limit(max_connections: usize) {
    let want = max_connections as u64 + FD_HEADROOM;
    match rlimit::increase_nofile_limit(want) {
        Ok(got) if got < want => tracing::warn!(
            limit = got,
            max_connections,
            "the open-file limit is too low for milter.max_connections; raise the hard limit (LimitNOFILE=) or lower max_connections"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

/// Installs a new engine; if it brought new DNS lists (their config changed), starts their
/// probes. The old lists' probe task ends when the last session using them lets go.
/// Puts `next` in use, unless it must not judge mail; false when refused.
fn swap(engines: &watch::Sender<Arc<Engine>>, next: Engine) -> bool {
    if let Some(why) = next.unusable() {
        tracing::error!("reload refused, keeping the running engine: {why}");
        crate::metrics::get().reload(false);
        return false;
    }
    crate::metrics::get().reload(true);
    crate::metrics::get().rules.set(next.rules.len() as i64);
    let next = Arc::new(next);
    let old = engines.send_replace(next.clone());
    // From here on new messages use it (a message in progress keeps the one it started with).
    tracing::info!(rules = next.rules.len(), "engine in use");
    let same = match (&old.dns, &next.dns) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    };
    if !same && let Some(dns) = &next.dns {
        dns.spawn_probes();
    }
    true
}

/// How often rule files are checked for changes (modification time and size).
const RULES_POLL: Duration = Duration::from_secs(2);

/// The files whose edits rebuild the engine: the rule paths themselves (a directory's time
/// changes when a file is added or removed), the rule files they hold, the phrase lists the
/// rules name, and the allowlist files. Exactly what is read, never a walk of a tree (a
/// `.git` beside the rules would bury them).
fn watched(config: &Config, list_files: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = config.rules.paths.clone();
    let mut ignored = crate::signatures::parse::Parsed::default();
    out.extend(crate::signatures::parse::rule_files(
        &config.rules.paths,
        &mut ignored,
    ));
    out.extend(list_files.iter().cloned());
    out.extend(config.allow.files.iter().cloned());
    out
}

type Fingerprint = Vec<(PathBuf, Option<std::time::SystemTime>, u64)>;

/// Modification times and sizes of files, to notice an edit.
fn fingerprint(paths: &[PathBuf]) -> Fingerprint {
    let mut out: Fingerprint = paths
        .iter()
        .map(|p| match std::fs::metadata(p) {
            Ok(m) => (p.clone(), m.modified().ok(), m.len()),
            Err(_) => (p.clone(), None, 0),
        })
        .collect();
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
            crate::metrics::get().reload(false);
            return;
        }
    };
    let running = engines.borrow().config.clone();
    let refused = new.keep_restart_only(&running);
    if !refused.is_empty() {
        tracing::warn!(keys = %refused.join(", "), "these settings change only on restart; keeping their running values");
    }
    let running_engine = engines.borrow().clone();
    if swap(engines, Engine::reload(new, &running_engine)) {
        tracing::info!(config = %path.display(), "config reloaded");
    }
}
