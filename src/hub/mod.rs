//! The hub: the central service that gateways report to and ask about keys.
//!
//! - [`learning`]: the network's content model, combined from every gateway's learned counts.
//! - [`model`]: the correlation model: evidence from many gateways, decayed, into a key's
//!   reputation (formulas in its docs).
//! - [`store`]: the store trait, the embedded (redb) store and the Redis store.
//! - [`service`]: lookups, ingest and reports, apart from HTTP.
//! - [`api`]: the HTTP API under `/v1`, with tokens, roles, rate limits and JSON errors.
//! - [`zone`]: the listed addresses as an rbldnsd zone.

pub mod api;
pub mod learning;
pub mod model;
pub mod service;
pub mod store;
pub mod zone;

use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};

use crate::config::hub::HubConfig;

/// Why the hub could not run.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("cannot open the store")]
    Store(#[from] store::StoreError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
}

/// `repmilter hub`: serves the API until SIGTERM or SIGINT.
pub async fn run(config: HubConfig) -> Result<(), HubError> {
    let addr = config.listen;
    let path = config.path.clone();
    let hub = Arc::new(service::Hub::open(config)?);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HubError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(HubError::Serve)?;
    tracing::info!(config = %path.display(), version = env!("CARGO_PKG_VERSION"), "hub listening on {local}");
    let stop = async {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("hub shutting down");
    };
    let pruner = tokio::spawn(prune(hub.clone()));
    let compiler = tokio::spawn(compile_models(hub.clone()));
    let served = api::serve(hub, listener, stop).await;
    pruner.abort();
    compiler.abort();
    served.map_err(HubError::Serve)?;
    tracing::info!("hub stopped");
    Ok(())
}

/// Pruning runs every `PRUNE_EVERY`, for up to `PRUNE_BUDGET` of steps back to back (each
/// looks at a bounded part of the store, and requests are served between them): a fifth of
/// the time, so that pruning keeps up with ingest however fast it is, and a pass over a
/// store at rest ends soon.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
const PRUNE_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

/// Prunes the store step by step, for as long as the hub runs; says what each pass removed.
async fn prune(hub: Arc<service::Hub>) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut events, mut keys) = (0, 0);
    loop {
        tick.tick().await;
        let started = std::time::Instant::now();
        while started.elapsed() < PRUNE_BUDGET {
            let h = hub.clone();
            match tokio::task::spawn_blocking(move || h.prune(service::now())).await {
                Ok(Ok(p)) => {
                    (events, keys) = (events + p.events, keys + p.keys);
                    if p.pass_done {
                        if events + keys > 0 {
                            tracing::info!(
                                "hub pruned {events} event id(s) past hub.event_retention and \
                                 {keys} key(s) whose evidence decayed"
                            );
                        }
                        (events, keys) = (0, 0);
                        // Until the next tick: a pass at rest has nothing more to find.
                        break;
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!("hub: pruning failed: {e}");
                    break;
                }
                Err(e) => {
                    tracing::warn!("hub: pruning failed: {e}");
                    break;
                }
            }
        }
    }
}

/// Compiles the network's model every `[learn] interval` (and at start), for gateways to
/// fetch.
async fn compile_models(hub: Arc<service::Hub>) {
    let mut tick = tokio::time::interval(hub.config.learn.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = String::new();
    loop {
        tick.tick().await;
        let h = hub.clone();
        match tokio::task::spawn_blocking(move || h.compile_model(service::now())).await {
            Ok(Ok(m)) => {
                if m.etag != last {
                    tracing::info!(
                        version = %m.etag,
                        spam = format_args!("{:.1}", m.spam),
                        ham = format_args!("{:.1}", m.ham),
                        features = m.features,
                        "hub model compiled"
                    );
                    last = m.etag.clone();
                }
            }
            Ok(Err(e)) => tracing::warn!("hub: compiling the model failed: {e}"),
            Err(e) => tracing::warn!("hub: compiling the model failed: {e}"),
        }
    }
}
