//! Serving an HTTP router on a TCP listener with the bounds every listener of ours needs:
//! a cap on open connections (a flood of idle ones must not take the file descriptors the
//! MTA's connections need), a deadline for request headers, and a graceful stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

/// How long requests in flight get to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(10);

/// Bounds of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Past this many open connections a new one is closed at once.
    pub max_connections: usize,
    /// A connection that has not sent its request headers by then is closed.
    pub header_timeout: Duration,
}

/// Serves `app` on `listener` until `stop` resolves, then lets requests in flight finish
/// (up to [`DRAIN`]). `name` prefixes its warnings.
pub async fn serve(
    name: &str,
    app: axum::Router,
    listener: tokio::net::TcpListener,
    limits: Limits,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    let mut last_warning: Option<Instant> = None;
    let mut warn = |what: &str| {
        // At most one line a minute: a flood must not flood the log too.
        if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
            last_warning = Some(Instant::now());
            tracing::warn!("{name}: {what}");
        }
    };
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, say: wait for connections to close.
                    warn(&format!("cannot accept connections: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            warn(&format!(
                "{} connections open; closing new ones until some end",
                limits.max_connections
            ));
            continue;
        };
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("{name}: requests still in flight after {DRAIN:?}; stopping anyway");
    }
}
