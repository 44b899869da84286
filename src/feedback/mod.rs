//! The feedback loop: what a gateway tells the hub (verdicts, and the spam and ham samples
//! users report), kept in a durable spool until the hub has it.
//!
//! - [`Event`]: one verdict or report, with the message's keys (see `reputation::keys`);
//!   content only when the gateway shares samples.
//! - [`spool`]: append-only, checksummed segments on disk; a segment leaves only when the hub
//!   has acknowledged every event in it.

pub mod spool;

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
        };
        let json = serde_json::to_string(&e).unwrap();
        assert!(
            json.contains("\"kind\":\"spam\"") && !json.contains("sample"),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
        assert_eq!(e.id.len(), 32);
        assert_ne!(new_id(), new_id());
    }
}
