//! The monitor listener (`[metrics] listen`): what the daemon has been doing, over HTTP.
//!
//! - `GET /metrics`: every metric in the Prometheus text format, for a scraper;
//! - `GET /api/summary`: the same figures summed up as JSON (actions, top symbols, stage
//!   times, DNS list health, recent verdicts, the last hour by 10-second interval), read by
//!   the dashboard and by `repmilter stats`;
//! - `GET /`: the dashboard, one self-contained page (no script or font from elsewhere, so
//!   it works on a gateway without Internet access) that draws the summary every 5 seconds.
//!
//! Read-only and unauthenticated, like rspamd's controller on localhost: bind it to a
//! loopback or management address. A peer can cost it no more than [`LIMITS`] allows.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

pub mod stats;

/// Bounds of the listener: a few scrapers and browsers, never a crowd.
pub const LIMITS: crate::http::Limits = crate::http::Limits {
    max_connections: 64,
    header_timeout: Duration::from_secs(10),
};

const DASHBOARD: &str = include_str!("dashboard.html");

/// The routes, over the process-wide metrics.
pub fn router() -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/metrics", get(metrics))
        .route("/api/summary", get(summary))
}

async fn dashboard() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page's own script and styles only.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
            ),
        ],
        DASHBOARD,
    )
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::get().encode(),
    )
}

async fn summary() -> impl IntoResponse {
    axum::Json(crate::metrics::get().summary())
}

/// Binds the listener; the daemon does this before it takes mail, so that a port in use
/// stops it at start rather than later.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serves the monitor until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    crate::http::serve("monitor", router(), listener, LIMITS, stop).await;
}
