//! The feedback reporter: each verdict becomes an event in the spool at once, and a background
//! task ships the spool to the hub in batches, with retry and backoff, deleting a segment only
//! once the hub has acknowledged every event in it.
//!
//! The mail path only appends a record (a `write` to the kernel under a short lock); making it
//! durable (`fsync`) and sending it happen in the background, on copies of the file handle, so
//! a slow disk or a hub that is down never delays mail. A full spool refuses events, counted
//! and logged at WARN. Events survive a restart and a `kill -9`; after one, the hub may receive
//! some again, and counts each once (by its id).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use super::Event;
use super::spool::{Spool, SpoolError, read_segment};
use crate::config::HubClient;
use crate::reputation::hub::HubFailure;
use crate::warn::WarnLimiter;

/// Longest wait between tries while the hub fails.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Events per request (the hub's default `max_events`).
pub const BATCH: usize = 1000;

/// Counters, for `feedback status` and the logs.
#[derive(Debug, Default)]
pub struct Counters {
    pub spooled: AtomicU64,
    pub dropped: AtomicU64,
    pub shipped: AtomicU64,
    pub failures: AtomicU64,
    /// Events the hub refused as invalid (400 or 413 for the event alone): logged at ERROR
    /// and not retried, so that one bad event cannot hold back the spool.
    pub refused: AtomicU64,
}

/// How a request went wrong.
enum SendError {
    /// Worth retrying later (network, 5xx, 401/403 until the token is fixed, 429).
    Retry(HubFailure),
    /// The hub will never take this request (400, 413): split it, and drop a lone event.
    Refused(String),
}

/// What the shipping task last wrote to `status.json` in the spool, for `feedback status`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Status {
    /// When this was written (seconds since the epoch).
    pub updated: u64,
    /// Counts since the daemon started.
    pub spooled: u64,
    pub dropped: u64,
    pub shipped: u64,
    pub refused: u64,
    pub failures: u64,
    /// When the hub last took events, and the last failure to reach it.
    pub last_shipped: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<u64>,
}

/// The status file's name in the spool directory.
pub const STATUS_FILE: &str = "status.json";

pub struct Reporter {
    spool: Mutex<Spool>,
    dir: std::path::PathBuf,
    client: reqwest::Client,
    /// Where events go: the `/v1/events` URL and the token; a reload may change them (the
    /// spool itself is fixed until a restart).
    target: RwLock<(String, String)>,
    /// How often the spool is synced and shipped when the hub is well (`hub.sync_interval`).
    interval: Duration,
    pub counters: Counters,
    warn: WarnLimiter,
}

impl Reporter {
    /// Opens the spool named by `[hub]` (recovering what a crash left) and the client.
    pub fn open(config: &HubClient) -> Result<Arc<Reporter>, SpoolError> {
        let spool = Spool::open(&config.spool, config.spool_max)?;
        if spool.recovered_torn > 0 {
            tracing::warn!(
                torn = spool.recovered_torn,
                "spool: records cut short by a crash were dropped"
            );
        }
        Ok(Arc::new(Reporter {
            spool: Mutex::new(spool),
            dir: config.spool.clone(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                // Below the hub's 30 s idle limit, so a pooled connection is not reused as the hub
                // closes it.
                .pool_idle_timeout(Duration::from_secs(20))
                .build()
                .expect("an HTTP client builds with rustls"),
            target: RwLock::new(target_of(config)),
            interval: config.sync_interval,
            counters: Counters::default(),
            warn: WarnLimiter::default(),
        }))
    }

    /// Opens the reporter and starts its shipping task (on the current runtime).
    pub fn start(config: &HubClient) -> Result<Arc<Reporter>, SpoolError> {
        let r = Reporter::open(config)?;
        r.spawn();
        Ok(r)
    }

    /// Sends what is spooled, and what comes, to the hub a reloaded config names.
    pub fn retarget(&self, config: &HubClient) {
        *self.target.write().unwrap_or_else(|p| p.into_inner()) = target_of(config);
    }

    fn spool(&self) -> std::sync::MutexGuard<'_, Spool> {
        self.spool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts an event in the spool. Never fails the caller: an event that cannot be kept is
    /// counted and logged.
    pub fn report(&self, event: &Event) {
        let record = match serde_json::to_vec(event) {
            Ok(r) => r,
            Err(e) => return self.drop_event(&e.to_string()),
        };
        match self.spool().append(&record) {
            Ok(()) => {
                self.counters.spooled.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.drop_event(&e.to_string()),
        }
    }

    fn drop_event(&self, why: &str) {
        let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(suppressed) = self.warn.allow() {
            tracing::warn!(dropped, suppressed, "feedback event dropped: {why}");
        }
    }

    /// Segments and bytes waiting.
    pub fn status(&self) -> (usize, u64) {
        self.spool().status()
    }

    /// Makes what was appended durable, without holding the spool during the `fsync`.
    pub fn sync(&self) {
        let file = self.spool().active_file();
        if let Some(f) = file
            && let Err(e) = f.sync_data()
        {
            tracing::warn!("spool: sync failed: {e}");
        }
    }

    /// Starts the task that syncs and ships the spool; it ends when the reporter is dropped.
    pub fn spawn(self: &Arc<Self>) {
        let me: Weak<Reporter> = Arc::downgrade(self);
        let interval = self.interval;
        tokio::spawn(async move {
            let mut wait = interval;
            let mut status = Status::default();
            loop {
                tokio::time::sleep(wait).await;
                let Some(r) = me.upgrade() else {
                    return;
                };
                let shipped = r.counters.shipped.load(Ordering::Relaxed);
                wait = match r.ship().await {
                    Ok(()) => {
                        if r.counters.shipped.load(Ordering::Relaxed) > shipped {
                            status.last_shipped = Some(super::now());
                        }
                        interval
                    }
                    Err(HubFailure::RateLimited(d)) => d.min(MAX_BACKOFF),
                    Err(HubFailure::Unavailable(why)) => {
                        r.counters.failures.fetch_add(1, Ordering::Relaxed);
                        if let Some(suppressed) = r.warn.allow() {
                            tracing::warn!(
                                suppressed,
                                "shipping feedback to the hub failed: {why}"
                            );
                        }
                        status.last_error = Some(why);
                        status.last_error_at = Some(super::now());
                        (wait * 2).clamp(Duration::from_secs(1), MAX_BACKOFF)
                    }
                };
                r.write_status(&mut status);
            }
        });
    }

    /// Writes `status.json` when the counts changed (whole or not at all: a rename).
    fn write_status(&self, status: &mut Status) {
        let c = &self.counters;
        let counts = [
            c.spooled.load(Ordering::Relaxed),
            c.dropped.load(Ordering::Relaxed),
            c.shipped.load(Ordering::Relaxed),
            c.refused.load(Ordering::Relaxed),
            c.failures.load(Ordering::Relaxed),
        ];
        let old = [
            status.spooled,
            status.dropped,
            status.shipped,
            status.refused,
            status.failures,
        ];
        if counts == old && status.updated != 0 {
            return;
        }
        [
            status.spooled,
            status.dropped,
            status.shipped,
            status.refused,
            status.failures,
        ] = counts;
        status.updated = super::now();
        let tmp = self.dir.join(".status.json.tmp");
        let written = serde_json::to_vec_pretty(status)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(&tmp, json))
            .and_then(|()| std::fs::rename(&tmp, self.dir.join(STATUS_FILE)));
        if let Err(e) = written {
            tracing::debug!("spool: cannot write {STATUS_FILE}: {e}");
        }
    }

    /// Seals what was written and ships every sealed segment, oldest first, until the spool
    /// is empty or the hub fails.
    pub async fn ship(&self) -> Result<(), HubFailure> {
        // The costly fsync happens outside the lock; sealing then finds little left to sync.
        self.sync();
        {
            let mut spool = self.spool();
            if spool.has_active()
                && let Err(e) = spool.seal()
            {
                tracing::warn!("spool: {e}");
            }
        }
        loop {
            let Some((id, path)) = self.spool().oldest_path() else {
                return Ok(());
            };
            let records = match read_segment(&path) {
                Ok((records, _)) => records,
                Err(e) => {
                    tracing::error!(
                        "spool: cannot read {}: {e}; it stays for the next try",
                        path.display()
                    );
                    return Err(HubFailure::Unavailable(e.to_string()));
                }
            };
            let mut events: Vec<serde_json::Value> = Vec::with_capacity(records.len());
            for r in &records {
                match serde_json::from_slice(r) {
                    Ok(v) => events.push(v),
                    Err(e) => self.refuse(&format!("unreadable spool record: {e}")),
                }
            }
            for chunk in events.chunks(BATCH) {
                self.deliver(chunk).await?;
            }
            if let Err(e) = self.spool().remove(id) {
                tracing::error!("spool: {e}");
            }
        }
    }

    /// Sends `events` in order; a request the hub refuses is halved until the events it
    /// takes are through and each one it refuses alone is dropped.
    async fn deliver(&self, events: &[serde_json::Value]) -> Result<(), HubFailure> {
        let mut todo = vec![events];
        while let Some(part) = todo.pop() {
            match self.send(part).await {
                Ok(()) => {
                    self.counters
                        .shipped
                        .fetch_add(part.len() as u64, Ordering::Relaxed);
                }
                Err(SendError::Refused(_)) if part.len() > 1 => {
                    let (a, b) = part.split_at(part.len() / 2);
                    todo.push(b);
                    todo.push(a);
                }
                Err(SendError::Refused(why)) => {
                    let id = part[0]["id"].as_str().unwrap_or("?");
                    self.refuse(&format!("event {id}: {why}"));
                }
                Err(SendError::Retry(f)) => return Err(f),
            }
        }
        Ok(())
    }

    fn refuse(&self, why: &str) {
        self.counters.refused.fetch_add(1, Ordering::Relaxed);
        tracing::error!("the hub refused a feedback event, which is dropped: {why}");
    }

    async fn send(&self, events: &[serde_json::Value]) -> Result<(), SendError> {
        let (url, token) = self
            .target
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let resp = self
            .client
            .post(url)
            .bearer_auth(token)
            .json(&serde_json::json!({ "events": events }))
            .send()
            .await
            .map_err(|e| SendError::Retry(HubFailure::Unavailable(e.without_url().to_string())))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let secs = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(1);
            return Err(SendError::Retry(HubFailure::RateLimited(
                Duration::from_secs(secs),
            )));
        }
        let body = resp.text().await.unwrap_or_default();
        let why = format!(
            "hub answered {status}: {}",
            body.chars().take(200).collect::<String>()
        );
        if matches!(
            status,
            reqwest::StatusCode::BAD_REQUEST | reqwest::StatusCode::PAYLOAD_TOO_LARGE
        ) {
            return Err(SendError::Refused(why));
        }
        Err(SendError::Retry(HubFailure::Unavailable(why)))
    }
}

fn target_of(config: &HubClient) -> (String, String) {
    (format!("{}/v1/events", config.url), config.token.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feedback::{EventKind, new_id};

    fn config(dir: &std::path::Path, spool_max: u64) -> HubClient {
        HubClient {
            url: "http://127.0.0.1:9".into(),
            token: "t".into(),
            timeout: Duration::from_secs(1),
            cache_size: 10,
            spool: dir.to_path_buf(),
            spool_max,
            share_samples: false,
            sync_interval: Duration::from_millis(500),
            cool_down: Duration::from_secs(30),
            model_interval: Duration::from_secs(300),
        }
    }

    fn event() -> Event {
        Event {
            id: new_id(),
            gateway: String::new(),
            time: 1,
            kind: EventKind::Verdict,
            keys: vec!["ip:192.0.2.1".into()],
            score: 1.0,
            action: "accept".into(),
            symbols: vec![],
            sample: None,
            features: Vec::new(),
        }
    }

    #[test]
    fn a_full_spool_drops_events_counted_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let r = Reporter::open(&config(dir.path(), 2000)).unwrap();
        for _ in 0..100 {
            r.report(&event());
        }
        let spooled = r.counters.spooled.load(Ordering::Relaxed);
        let dropped = r.counters.dropped.load(Ordering::Relaxed);
        assert_eq!(spooled + dropped, 100);
        assert!(spooled > 0 && dropped > 0, "{spooled} {dropped}");
        r.sync();
        drop(r);
        // What was kept is there for the next start.
        let r = Reporter::open(&config(dir.path(), 2000)).unwrap();
        assert!(r.status().1 > 0);
    }

    #[tokio::test]
    async fn an_unreachable_hub_leaves_the_spool_whole() {
        let dir = tempfile::tempdir().unwrap();
        let r = Reporter::open(&config(dir.path(), 1 << 20)).unwrap();
        for _ in 0..10 {
            r.report(&event());
        }
        let before = r.status().1;
        assert!(matches!(r.ship().await, Err(HubFailure::Unavailable(_))));
        assert_eq!(r.status(), (1, before));
        assert_eq!(r.counters.shipped.load(Ordering::Relaxed), 0);
    }
}
