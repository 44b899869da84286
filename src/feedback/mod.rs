//! The feedback loop: what a gateway tells the hub (verdicts, and the spam and ham samples
//! users report), kept in a durable spool until the hub has it.
//!
//! - [`Event`]: one verdict or report, with the message's keys (see `reputation::keys`);
//!   content only when the gateway shares samples.
//! - [`spool`]: append-only, checksummed segments on disk; a segment leaves only when the hub
//!   has acknowledged every event in it.
//! - [`reporter`]: puts each verdict in the spool and ships the spool to the hub.
//! - [`report`] and [`arf`]: messages users report, and ARF reports, as events;
//!   [`submit`] sends them to the hub for `repmilter feedback report`.

pub mod arf;
pub mod report;
pub mod reporter;
pub mod spool;
pub mod submit;

use serde::{Deserialize, Serialize};

/// What an event says about its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The gateway's own verdict on a message it filtered.
    Verdict,
    /// Someone reported the message as spam.
    Spam,
    /// Someone reported the message as wrongly filtered (a false positive).
    Ham,
}

/// One event, as the spool keeps it and the hub receives it (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Random, 32 hex digits: the hub counts an event once however often it arrives.
    pub id: String,
    pub gateway: String,
    /// Seconds since the Unix epoch.
    pub time: u64,
    pub kind: EventKind,
    /// The message's keys, as written by `reputation::keys::Key`.
    pub keys: Vec<String>,
    pub score: f64,
    pub action: String,
    pub symbols: Vec<String>,
    /// The message itself, base64, only when the gateway shares samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<String>,
    /// The learned model's features of the message (hashes, see `learn::features`): on
    /// reported samples, which the hub learns from; never on verdicts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<u64>,
}

/// Most features an event carries (the hub refuses more; a gateway sends a message's first
/// ones in hash order, an arbitrary sample of a message with more).
pub const MAX_FEATURES: usize = 5_000;

/// The hub's answer to a batch of events: how many were new, how many it had already.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ingested {
    pub accepted: usize,
    pub duplicates: usize,
}

/// Most symbols an event carries (the hub refuses more), and the longest name or action.
pub const MAX_SYMBOLS: usize = 256;
pub const MAX_SYMBOL_NAME: usize = 64;

impl Event {
    /// The event for a verdict the gateway reached: its keys, score, action and symbols
    /// (names only; never the message).
    pub fn verdict(keys: Vec<String>, verdict: &crate::scan::Verdict, action: String) -> Event {
        Event {
            id: new_id(),
            gateway: String::new(),
            time: now(),
            kind: EventKind::Verdict,
            keys,
            score: verdict.score,
            action,
            symbols: symbol_names(verdict),
            sample: None,
            features: Vec::new(),
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The verdict's symbol names within the hub's limits: the weightiest first when there are
/// too many, long names cut (at a character boundary).
fn symbol_names(verdict: &crate::scan::Verdict) -> Vec<String> {
    let mut symbols: Vec<&crate::scan::Symbol> = verdict.symbols.iter().collect();
    if symbols.len() > MAX_SYMBOLS {
        symbols.sort_by(|a, b| b.score.abs().total_cmp(&a.score.abs()));
        symbols.truncate(MAX_SYMBOLS);
    }
    symbols
        .iter()
        .map(|s| {
            let mut end = s.name.len().min(MAX_SYMBOL_NAME);
            while !s.name.is_char_boundary(end) {
                end -= 1;
            }
            s.name[..end].to_string()
        })
        .collect()
}

/// A fresh event id: 128 random bits in hex.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_travel_as_json_and_ids_differ() {
        let e = Event {
            id: new_id(),
            gateway: "mx1".into(),
            time: 1_800_000_000,
            kind: EventKind::Spam,
            keys: vec!["ip:192.0.2.1".into(), "domain:evil.example".into()],
            score: 12.5,
            action: "reject".into(),
            symbols: vec!["GTUBE".into()],
            sample: None,
            features: Vec::new(),
        };
        let json = serde_json::to_string(&e).unwrap();
        assert!(
            json.contains("\"kind\":\"spam\"")
                && !json.contains("sample")
                && !json.contains("features"),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
        let with = Event {
            features: vec![1, u64::MAX],
            ..e.clone()
        };
        let json = serde_json::to_string(&with).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), with);
        assert_eq!(e.id.len(), 32);
        assert_ne!(new_id(), new_id());
    }

    #[test]
    fn a_verdict_event_keeps_within_the_hub_s_limits() {
        use crate::scan::{Symbol, Verdict};
        let mut v = Verdict::default();
        for i in 0..300 {
            v.add(Symbol::new(format!("R{i}"), f64::from(i % 7), ""));
        }
        v.add(Symbol::new("Ä".repeat(40), 100.0, ""));
        let e = Event::verdict(vec!["ip:192.0.2.1".into()], &v, "reject".into());
        assert_eq!(e.symbols.len(), MAX_SYMBOLS);
        assert_eq!(
            e.symbols[0],
            "Ä".repeat(32),
            "weightiest first, cut at 64 bytes"
        );
        assert!(
            !e.symbols.contains(&"R0".to_string()),
            "the zero scores are left out"
        );
        assert_eq!(e.kind, EventKind::Verdict);
        assert_eq!(e.score, v.score);
    }
}
