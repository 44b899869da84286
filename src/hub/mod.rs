//! The hub: the central service that gateways report to and ask about keys.
//!
//! - [`model`]: the correlation model: evidence from many gateways, decayed, into a key's
//!   reputation (formulas in its docs).
//! - [`store`]: the store trait, the embedded (redb) store and the Redis store.
//! - [`service`]: lookups, ingest and reports, apart from HTTP.
//! - [`api`]: the HTTP API under `/v1`, with tokens, roles, rate limits and JSON errors.
//! - [`zone`]: the listed addresses as an rbldnsd zone.

pub mod api;
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
    api::serve(hub, listener, stop)
        .await
        .map_err(HubError::Serve)?;
    tracing::info!("hub stopped");
    Ok(())
}
