//! What the hub does, apart from HTTP: answer lookups from the store and the model, and turn
//! events and reported samples into evidence. Store calls block (redb): the API runs these on
//! blocking threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::learning;
use super::model::{self, Reputation};
use super::store::{Counts, Embedded, Ingest, Pruned, Redis, Store, StoreError};
use crate::config::hub::{HubConfig, StoreConfig};
use crate::feedback::{Event, EventKind};
use crate::reputation::keys::{Key, MAX_KEYS};

/// Longest symbol name or action in an event, and most symbols.
use crate::feedback::{MAX_SYMBOL_NAME as MAX_NAME, MAX_SYMBOLS};

/// Why an event is refused; the API answers 400 with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadEvent {
    #[error("event {index}: id must be 32 hexadecimal digits")]
    Id { index: usize },
    #[error("event {index}: key {key}: {reason}")]
    Key {
        index: usize,
        key: usize,
        reason: String,
    },
    #[error("event {index}: more than {MAX_KEYS} keys")]
    TooManyKeys { index: usize },
    #[error("event {index}: {what}")]
    Field { index: usize, what: &'static str },
}

pub use crate::feedback::Ingested;

pub struct Hub {
    pub config: HubConfig,
    store: Arc<dyn Store>,
    /// What pruning removed since the hub started, and its passes over the store.
    pruned: [AtomicU64; 3],
    /// The network's model as last compiled.
    model: std::sync::RwLock<Option<Arc<ModelSnapshot>>>,
}

/// The network's model, compiled: the file gateways fetch, and what it holds.
#[derive(Debug)]
pub struct ModelSnapshot {
    /// Names this version (`ETag`).
    pub etag: String,
    pub bytes: axum::body::Bytes,
    /// Messages it was trained on (decayed, after each gateway's share): spam, ham.
    pub spam: f64,
    pub ham: f64,
    pub features: usize,
}

/// What pruning removed since the hub started (in `/v1/stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneTotals {
    pub events: u64,
    pub keys: u64,
    pub passes: u64,
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Hub {
    pub fn open(config: HubConfig) -> Result<Hub, StoreError> {
        let store: Arc<dyn Store> = match &config.store {
            StoreConfig::Embedded(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| StoreError(e.to_string()))?;
                }
                Arc::new(Embedded::open(path)?)
            }
            StoreConfig::Redis { urls, cluster } => Arc::new(
                Redis::open(urls, *cluster)?.with_event_retention(config.event_retention.as_secs()),
            ),
        };
        Ok(Hub {
            config,
            store,
            pruned: Default::default(),
            model: Default::default(),
        })
    }

    /// The reputation of each key, in order. Keys were checked by the caller.
    pub fn lookup(&self, keys: &[String], now: u64) -> Result<Vec<Reputation>, StoreError> {
        let records = self.store.records(keys)?;
        let allowed = self.store.allowed(keys)?;
        Ok(keys
            .iter()
            .zip(records.iter().zip(allowed))
            .map(|(k, (rec, allow))| {
                model::reputation(k, rec.as_ref(), allow, now, &self.config.model)
            })
            .collect())
    }

    /// Checks events from outside before any is applied, and writes their keys in the
    /// canonical form (`Key`'s) the store is keyed by.
    pub fn check(events: &mut [Event]) -> Result<(), BadEvent> {
        use std::fmt::Write;
        let mut canonical = String::new();
        for (index, e) in events.iter_mut().enumerate() {
            if e.id.len() != 32 || !e.id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(BadEvent::Id { index });
            }
            e.id.make_ascii_lowercase();
            if e.keys.len() > MAX_KEYS {
                return Err(BadEvent::TooManyKeys { index });
            }
            for (key, k) in e.keys.iter_mut().enumerate() {
                match k.parse::<Key>() {
                    Ok(parsed) => {
                        // Gateways send canonical keys: rewritten only when one is not.
                        canonical.clear();
                        write!(canonical, "{parsed}").expect("writing to a String");
                        if *k != canonical {
                            k.clone_from(&canonical);
                        }
                    }
                    Err(err) => {
                        return Err(BadEvent::Key {
                            index,
                            key,
                            reason: err.to_string(),
                        });
                    }
                }
            }
            // A key said twice is one key: repeating it must not add its evidence twice.
            let repeated: Vec<bool> = {
                let mut seen = rustc_hash::FxHashSet::default();
                e.keys.iter().map(|k| !seen.insert(k.as_str())).collect()
            };
            if repeated.contains(&true) {
                let mut i = 0;
                e.keys.retain(|_| {
                    i += 1;
                    !repeated[i - 1]
                });
            }
            if !e.score.is_finite() {
                return Err(BadEvent::Field {
                    index,
                    what: "score is not a finite number",
                });
            }
            if e.features.len() > crate::feedback::MAX_FEATURES {
                return Err(BadEvent::Field {
                    index,
                    what: "more than 5000 features",
                });
            }
            if e.action.len() > MAX_NAME
                || e.symbols.len() > MAX_SYMBOLS
                || e.symbols.iter().any(|s| s.len() > MAX_NAME)
            {
                return Err(BadEvent::Field {
                    index,
                    what: "action or symbols too long",
                });
            }
        }
        Ok(())
    }

    /// Applies events reported by `gateway` (the token's identity, not what the event says,
    /// so that one gateway cannot pose as several), as [`Hub::check`] left them. Each is
    /// applied once however often it arrives.
    pub fn ingest(
        &self,
        gateway: &str,
        events: Vec<Event>,
        now: u64,
    ) -> Result<Ingested, StoreError> {
        let model = self.config.model.clone();
        let evidence: Vec<(f64, f64)> = events
            .iter()
            .map(|e| model::evidence(e.kind, &e.action, &e.symbols, &model))
            .collect();
        // Reported samples with features teach the model, once each (when new).
        let mut lessons: Vec<(usize, bool, Vec<u64>)> = Vec::new();
        let mut events = events;
        for (i, e) in events.iter_mut().enumerate() {
            if matches!(e.kind, EventKind::Spam | EventKind::Ham) && !e.features.is_empty() {
                let mut f = std::mem::take(&mut e.features);
                f.sort_unstable();
                f.dedup();
                lessons.push((i, e.kind == EventKind::Spam, f));
            }
        }
        let batch: Vec<Ingest> = events
            .into_iter()
            .map(|e| Ingest {
                // Ids are the gateway's: another gateway's event with the same id is another
                // event (and cannot shadow this one).
                event_id: format!("{gateway}/{}", e.id),
                keys: e.keys,
            })
            .collect();
        let m = model.clone();
        let updates = move |i: usize, records: &[Option<&model::KeyRecord>]| {
            model::updates(evidence[i], records, now, &m)
        };
        let new = self
            .store
            .ingest(gateway, batch, Box::new(updates), now, &model)?;
        let w = learning::weight(now, self.config.learn.half_life);
        let lessons: Vec<(bool, Vec<u64>)> = lessons
            .into_iter()
            .filter(|(i, _, _)| new[*i])
            .map(|(_, spam, f)| (spam, f))
            .collect();
        if !lessons.is_empty() {
            // The events are in; a failure here loses what they would have taught, not them.
            if let Err(e) = self
                .store
                .train(gateway, &lessons, w, self.config.learn.max_features)
            {
                tracing::error!("hub: learning from reported samples failed: {e}");
            }
        }
        let accepted = new.iter().filter(|n| **n).count();
        Ok(Ingested {
            accepted,
            duplicates: new.len() - accepted,
        })
    }

    /// Turns a reported message into an event of `kind` from `gateway` (the message's sender
    /// is `client` when the report names it), and applies it if it has keys.
    pub fn report(
        &self,
        gateway: &str,
        raw: &[u8],
        kind: EventKind,
        client: Option<std::net::IpAddr>,
        now: u64,
    ) -> Result<Event, StoreError> {
        let mut event = crate::feedback::report::event_of(raw, kind, client);
        // The hub has no rules: the sample's content features only (at most as many as an
        // event may carry).
        event.features = crate::learn::features::of(&crate::scan::ScanInput::new(
            crate::message::Envelope {
                client_ip: client,
                ..Default::default()
            },
            crate::message::Message::from_raw(raw, crate::feedback::report::MAX_REPORTED),
        ));
        event.features.truncate(crate::feedback::MAX_FEATURES);
        event.gateway = gateway.to_string();
        event.time = now;
        // A message with no keys teaches nothing; the caller says so.
        if !event.keys.is_empty() {
            self.ingest(gateway, vec![event.clone()], now)?;
        }
        Ok(event)
    }

    /// Shows `visit`, in no set order, the reputation of each key starting with `prefix`
    /// whose score is at least `min_score` and above 0 (allowlisted keys never are).
    pub fn each_listed(
        &self,
        prefix: &str,
        min_score: f64,
        now: u64,
        visit: &mut dyn FnMut(Reputation),
    ) -> Result<(), StoreError> {
        let model = &self.config.model;
        // Listed by their records, then checked against the allowlist a chunk at a time.
        let mut flush = |pending: &mut Vec<Reputation>| -> Result<(), StoreError> {
            let keys: Vec<String> = pending.iter().map(|r| r.key.clone()).collect();
            let allowed = self.store.allowed(&keys)?;
            for (r, a) in pending.drain(..).zip(allowed) {
                if !a {
                    visit(r);
                }
            }
            Ok(())
        };
        let mut pending = Vec::new();
        let mut failed = None;
        self.store.each_with_prefix(prefix, &mut |k, rec| {
            let score = model::score(rec, now, model);
            if failed.is_some() || score <= 0.0 || score < min_score {
                return;
            }
            pending.push(model::reputation(k, Some(rec), false, now, model));
            if pending.len() >= 1000
                && let Err(e) = flush(&mut pending)
            {
                failed = Some(e);
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        flush(&mut pending)
    }

    pub fn set_allowed(&self, key: &str, allowed: bool) -> Result<(), StoreError> {
        self.store.set_allowed(key, allowed)
    }

    pub fn counts(&self) -> Result<Counts, StoreError> {
        self.store.counts()
    }

    /// Compiles the network's model from the stores' learned counts, for `GET /v1/model`.
    pub fn compile_model(&self, now: u64) -> Result<Arc<ModelSnapshot>, StoreError> {
        let l = &self.config.learn;
        if !learning::weight(now, l.half_life).is_finite() {
            return Err(StoreError(
                "learned counts are out of range for learn.half_life this late".into(),
            ));
        }
        // Decayed as of the day's start: the same counts give the same file (and version)
        // all day, so gateways are not sent a model that changed only by a few seconds of
        // decay.
        let as_of = now - now % 86_400;
        let model = learning::combine(
            &self.store.learned()?,
            as_of,
            l.half_life,
            l.max_share,
            l.min_reporters,
        );
        let bytes = model.to_bytes();
        let etag = crate::learn::model::version(&bytes);
        let snap = Arc::new(ModelSnapshot {
            etag,
            spam: model.spam,
            ham: model.ham,
            features: model.features.len(),
            bytes: bytes.into(),
        });
        *self.model.write().unwrap_or_else(|p| p.into_inner()) = Some(snap.clone());
        Ok(snap)
    }

    /// The model last compiled.
    pub fn model(&self) -> Option<Arc<ModelSnapshot>> {
        self.model.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// One step of pruning the store (see [`Store::prune`]), added to the totals.
    pub fn prune(&self, now: u64) -> Result<Pruned, StoreError> {
        let l = &self.config.learn;
        let p = self.store.prune(
            now,
            self.config.model.half_life,
            self.config.event_retention.as_secs(),
            learning::weight(now, l.half_life) * crate::learn::model::FORGET_BELOW as f64,
        )?;
        let [events, keys, passes] = &self.pruned;
        events.fetch_add(p.events, Ordering::Relaxed);
        keys.fetch_add(p.keys, Ordering::Relaxed);
        passes.fetch_add(u64::from(p.pass_done), Ordering::Relaxed);
        Ok(p)
    }

    pub fn pruned(&self) -> PruneTotals {
        let [events, keys, passes] = &self.pruned;
        PruneTotals {
            events: events.load(Ordering::Relaxed),
            keys: keys.load(Ordering::Relaxed),
            passes: passes.load(Ordering::Relaxed),
        }
    }
}
