//! The hub's HTTP API, versioned under `/v1`. Every request but `/v1/health` carries a
//! gateway's bearer token; the token names the gateway (whose evidence counts as one reporter)
//! and its roles. Bodies are read only after the token and the rate check pass, and never past
//! `hub.max_body`. Every error is JSON, `{"error": "..."}`, with its status: 400 for a body
//! or key that does not parse, 401 without a known token, 403 without the role, 404, 413 for
//! a body over the cap, 429 with `Retry-After` past the gateway's rate, 503 when the store
//! fails.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::{Deserialize, Serialize};

use super::model::Reputation;
use super::service::{Hub, Ingested, now};
use super::store::StoreError;
use crate::config::hub::{Gateway, Role};
use crate::feedback::{Event, EventKind};
use crate::reputation::keys::Key;

/// An API error: its status and reason, sent as JSON.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    reason: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, reason: impl Into<String>) -> ApiError {
        ApiError {
            status,
            reason: reason.into(),
            retry_after: None,
        }
    }

    fn bad(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, reason)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        tracing::error!("{e}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the hub's store is unavailable",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.reason });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

struct Api {
    hub: Arc<Hub>,
    /// SHA-256 of each gateway's token, by the gateway's index: a presented token is compared
    /// by its digest, so how long a comparison takes says nothing about the tokens.
    tokens: Vec<[u8; 32]>,
    limiter: DefaultKeyedRateLimiter<String>,
    /// Requests with no or an unknown token, across all clients: past it, 429 (a guesser
    /// gets few tries).
    failures: governor::DefaultDirectRateLimiter,
    /// Request body bytes held, in KiB (see [`BODIES_IN_FLIGHT`]).
    bodies: Arc<tokio::sync::Semaphore>,
    /// One zone export at a time: each walks the store and holds a zone's worth of text. The
    /// export holds it to its end, even when its client has gone.
    zones: Arc<tokio::sync::Mutex<()>>,
}

type Shared = Arc<Api>;

/// The routes, with their state.
pub fn router(hub: Arc<Hub>) -> Router {
    let c = &hub.config;
    let quota = Quota::per_second(std::num::NonZeroU32::new(c.rate).expect("rate >= 1"))
        .allow_burst(std::num::NonZeroU32::new(c.burst).expect("burst >= 1"));
    let api = Arc::new(Api {
        tokens: c.gateways.iter().map(|g| digest(&g.token)).collect(),
        limiter: DefaultKeyedRateLimiter::keyed(quota),
        failures: governor::RateLimiter::direct(
            Quota::per_second(std::num::NonZeroU32::new(FAILURES_PER_SECOND).expect("> 0"))
                .allow_burst(std::num::NonZeroU32::new(FAILURES_BURST).expect("> 0")),
        ),
        bodies: Arc::new(tokio::sync::Semaphore::new(BODIES_IN_FLIGHT / 1024)),
        zones: Arc::new(tokio::sync::Mutex::new(())),
        hub,
    });
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/lookup", post(lookup))
        .route("/v1/events", post(events))
        .route("/v1/report/{kind}", post(report))
        .route("/v1/keys/{key}", get(key_detail))
        .route("/v1/allow/{key}", put(allow).delete(disallow))
        .route("/v1/stats", get(stats))
        .route("/v1/zone", get(zone))
        .route("/v1/model", get(model))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
        })
        // Bodies are read by the handlers, after authorisation, against hub.max_body.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(api)
}

/// Requests without a valid token the hub answers with 401 per second, and in a burst; past
/// them it answers 429.
const FAILURES_PER_SECOND: u32 = 20;
const FAILURES_BURST: u32 = 100;

fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// The gateway of the request's bearer token, if it has `role` and is within its rate.
fn authorize<'a>(api: &'a Api, headers: &HeaderMap, role: Role) -> Result<&'a Gateway, ApiError> {
    let refuse = |reason: &str| {
        if api.failures.check().is_err() {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests without a valid token; retry later",
            );
            e.retry_after = Some(1);
            return e;
        }
        ApiError::new(StatusCode::UNAUTHORIZED, reason)
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // The scheme is case-insensitive (RFC 7235).
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .ok_or_else(|| refuse("a bearer token is needed"))?;
    let presented = digest(token.trim());
    let gateway = api
        .tokens
        .iter()
        .position(|t| *t == presented)
        .map(|i| &api.hub.config.gateways[i])
        .ok_or_else(|| refuse("unknown token"))?;
    if !gateway.roles.contains(&role) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this token does not have the {} role", role.name()),
        ));
    }
    if let Err(not_until) = api.limiter.check_key(&gateway.name) {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate limit reached; retry later",
        );
        e.retry_after = Some(wait.as_secs().max(1));
        return Err(e);
    }
    Ok(gateway)
}

/// Bytes of request bodies held at once, across all requests: past it a request is told to
/// come back (503, Retry-After) rather than the hub holding ever more memory.
const BODIES_IN_FLIGHT: usize = 64 * 1024 * 1024;

/// The body, up to `max` bytes (and `hub.max_body`), within `hub.body_timeout`, holding its
/// share of [`BODIES_IN_FLIGHT`] while the request runs.
async fn body_of(
    api: &Api,
    headers: &HeaderMap,
    body: Body,
    max: usize,
) -> Result<(Bytes, tokio::sync::OwnedSemaphorePermit), ApiError> {
    use http_body_util::BodyExt;
    let max = max.min(api.hub.config.max_body);
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than the limit of {max} bytes for this endpoint"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let busy = || {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the hub is receiving too much at once; retry shortly",
        );
        e.retry_after = Some(1);
        e
    };
    // Units of 1 KiB, so that the semaphore's count fits.
    let kib = |n: usize| n.div_ceil(1024) as u32;
    let mut held = api
        .bodies
        .clone()
        .try_acquire_many_owned(kib(declared.unwrap_or(0) as usize).max(1))
        .map_err(|_| busy())?;
    let mut out = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let mut body = body;
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ApiError::bad(format!("the body could not be read: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if out.len() + data.len() > max {
                return Err(too_large());
            }
            out.extend_from_slice(&data);
            let need = kib(out.len());
            if need > held.num_permits() as u32 {
                let more = api
                    .bodies
                    .clone()
                    .try_acquire_many_owned(need - held.num_permits() as u32)
                    .map_err(|_| busy())?;
                held.merge(more);
            }
        }
        Ok(())
    };
    let within = api.hub.config.body_timeout;
    match tokio::time::timeout(within, read).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {within:?}"),
            ));
        }
    }
    Ok((Bytes::from(out), held))
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad(format!("the body is not valid JSON for this endpoint: {e}")))
}

/// Runs blocking store work off the runtime's workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::from(StoreError(e.to_string())))?
        .map_err(ApiError::from)
}

/// The longest key's text (a `mailfrom:` key of a 253-character name), with room to spare.
const MAX_KEY_TEXT: usize = 300;

/// A path segment, or why it is not one (as JSON, like every error).
fn segment(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(s)| s)
        .map_err(|e| ApiError::bad(format!("the path is not valid: {}", e.body_text())))
}

fn check_key(k: &str) -> Result<String, ApiError> {
    k.parse::<Key>()
        .map(|k| k.to_string())
        .map_err(|e| ApiError::bad(e.to_string()))
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupRequest {
    keys: Vec<String>,
}

#[derive(Serialize)]
struct LookupReply {
    results: Vec<Reputation>,
}

async fn lookup(
    State(api): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::Json<LookupReply>, ApiError> {
    authorize(&api, &headers, Role::Lookup)?;
    let max = api.hub.config.max_keys;
    // Room for `max` of the longest keys: a lookup body is never more.
    let (bytes, _held) = body_of(&api, &headers, body, 64 + max * (MAX_KEY_TEXT + 4)).await?;
    let req: LookupRequest = parse_json(&bytes)?;
    if req.keys.len() > max {
        return Err(ApiError::bad(format!("more than {max} keys in one lookup")));
    }
    let keys = req
        .keys
        .iter()
        .map(|k| check_key(k))
        .collect::<Result<Vec<_>, _>>()?;
    let hub = api.hub.clone();
    let results = blocking(move || hub.lookup(&keys, now())).await?;
    Ok(axum::Json(LookupReply { results }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsRequest {
    events: Vec<Event>,
}

async fn events(
    State(api): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::Json<Ingested>, ApiError> {
    let gateway = authorize(&api, &headers, Role::Report)?.name.clone();
    let (bytes, _held) = body_of(&api, &headers, body, usize::MAX).await?;
    let req: EventsRequest = parse_json(&bytes)?;
    drop(bytes);
    let max = api.hub.config.max_events;
    if req.events.len() > max {
        return Err(ApiError::bad(format!(
            "more than {max} events in one request"
        )));
    }
    let mut events = req.events;
    Hub::check(&mut events).map_err(|e| ApiError::bad(e.to_string()))?;
    let hub = api.hub.clone();
    let done = blocking(move || hub.ingest(&gateway, events, now())).await?;
    Ok(axum::Json(done))
}

async fn report(
    State(api): State<Shared>,
    kind: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let gateway = authorize(&api, &headers, Role::Report)?.name.clone();
    let kind = segment(kind)?;
    if !matches!(kind.as_str(), "spam" | "ham" | "arf") {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "report kinds are spam, ham and arf",
        ));
    }
    let (raw, _held) = body_of(&api, &headers, body, usize::MAX).await?;
    if raw.is_empty() {
        return Err(ApiError::bad("the body must be the reported message"));
    }
    let hub = api.hub.clone();
    let (event, feedback_type) = blocking(move || {
        let (message, kind, client, feedback_type) = match kind.as_str() {
            "spam" => (raw.to_vec(), EventKind::Spam, None, None),
            "ham" => (raw.to_vec(), EventKind::Ham, None, None),
            _ => match crate::feedback::arf::parse(&raw) {
                Ok(arf) => (
                    arf.original,
                    arf.kind,
                    arf.source_ip,
                    Some(arf.feedback_type),
                ),
                Err(e) => return Ok(Err(e)),
            },
        };
        let event = hub.report(&gateway, &message, kind, client, now())?;
        Ok(Ok((event, feedback_type)))
    })
    .await?
    .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("ARF report: {e}")))?;
    if event.keys.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the reported message yields no keys (no client address, domain, link, \
             attachment or text): nothing to learn from it",
        ));
    }
    let mut reply = serde_json::json!({
        "event": event.id, "kind": event.kind, "keys": event.keys,
    });
    if let Some(t) = feedback_type {
        reply["feedback_type"] = t.into();
    }
    Ok(axum::Json(reply))
}

async fn key_detail(
    State(api): State<Shared>,
    key: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<axum::Json<Reputation>, ApiError> {
    authorize(&api, &headers, Role::Lookup)?;
    let key = check_key(&segment(key)?)?;
    let hub = api.hub.clone();
    let mut r = blocking(move || hub.lookup(&[key], now())).await?;
    Ok(axum::Json(r.remove(0)))
}

async fn allow(
    State(api): State<Shared>,
    key: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    set_allowed(api, key, headers, true).await
}

async fn disallow(
    State(api): State<Shared>,
    key: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    set_allowed(api, key, headers, false).await
}

async fn set_allowed(
    api: Shared,
    key: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    allowed: bool,
) -> Result<StatusCode, ApiError> {
    authorize(&api, &headers, Role::Admin)?;
    let key = check_key(&segment(key)?)?;
    let hub = api.hub.clone();
    blocking(move || hub.set_allowed(&key, allowed)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn stats(
    State(api): State<Shared>,
    headers: HeaderMap,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    authorize(&api, &headers, Role::Admin)?;
    let hub = api.hub.clone();
    let counts = blocking(move || hub.counts()).await?;
    let model = api.hub.model().map(|m| {
        serde_json::json!({ "version": m.etag, "spam": m.spam, "ham": m.ham, "features": m.features })
    });
    Ok(axum::Json(
        serde_json::json!({ "store": counts, "pruned": api.hub.pruned(), "model": model }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ZoneQuery {
    #[serde(default)]
    family: Option<u8>,
    #[serde(default)]
    min_score: Option<f64>,
}

/// The listed addresses as rbldnsd zone data (text), for `repmilter hub export-zone`.
async fn zone(
    State(api): State<Shared>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<ZoneQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&api, &headers, Role::Admin)?;
    let axum::extract::Query(q) = query.map_err(|e| ApiError::bad(e.body_text()))?;
    let family = match q.family.unwrap_or(4) {
        4 => super::zone::Family::V4,
        6 => super::zone::Family::V6,
        f => return Err(ApiError::bad(format!("family {f}: use 4 or 6"))),
    };
    let min_score = q.min_score.unwrap_or(super::zone::DEFAULT_MIN_SCORE);
    if !min_score.is_finite() {
        return Err(ApiError::bad("min_score must be a number"));
    }
    let one = api.zones.clone().lock_owned().await;
    let hub = api.hub.clone();
    let text = blocking(move || {
        let _one = one;
        super::zone::render(&hub, family, min_score, now())
    })
    .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}

/// The network's learned model, as a model file; `If-None-Match` with the last `ETag`
/// answers 304 when it has not changed.
async fn model(State(api): State<Shared>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&api, &headers, Role::Lookup)?;
    let Some(m) = api.hub.model() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "the hub has not compiled a model yet",
        ));
    };
    let etag = format!("\"{}\"", m.etag);
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let etag = HeaderValue::from_str(&etag).expect("hex in quotes");
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::ETAG, etag),
        ],
        m.bytes.clone(),
    )
        .into_response())
}

/// Serves the API on `listener` until `stop` resolves, then lets requests in flight finish.
pub async fn serve(
    hub: Arc<Hub>,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = crate::http::Limits {
        max_connections: hub.config.max_connections,
        header_timeout: hub.config.header_timeout,
    };
    crate::http::serve("hub", router(hub), listener, limits, stop).await;
    Ok(())
}
