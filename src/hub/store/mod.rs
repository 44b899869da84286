//! Where the hub keeps what it knows: event ids seen (so that ingest is idempotent), each key's
//! evidence, and the admin allowlist. One trait; [`Embedded`] keeps it in one redb file, so a
//! hub runs with no setup.

mod embedded;
mod redis;

pub mod conformance;

pub use embedded::Embedded;
pub use redis::Redis;

use super::model::{KeyRecord, Model, Update};

/// Why the store failed. The request that met it gets a 503; nothing is half-applied.
#[derive(Debug, Clone, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

pub(crate) fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// Counts for `/v1/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub events: u64,
    pub keys: u64,
    pub allowlisted: u64,
}

/// One event, as the store applies it: its id and its keys.
#[derive(Debug, Clone)]
pub struct Ingest {
    pub event_id: String,
    pub keys: Vec<String>,
}

/// What the event at an index adds to each of its keys, given their records as they are
/// (in key order): `model::updates` in the hub, fixed updates in tests. Owned, so that the
/// embedded store's writer can run it in the transaction it shares with other requests.
pub type UpdatesFn = Box<dyn Fn(usize, &[Option<&KeyRecord>]) -> Vec<Update> + Send>;

pub trait Store: Send + Sync {
    /// Applies each event's updates, unless its id was applied before (then nothing of it
    /// changes); answers, per event, whether it was new. An event is applied whole or not at
    /// all, even when the hub dies midway and the gateway sends it again. Updates that add
    /// nothing make no record: the store holds evidence, not every key ever seen.
    fn ingest(
        &self,
        gateway: &str,
        events: Vec<Ingest>,
        updates: UpdatesFn,
        now: u64,
        model: &Model,
    ) -> Result<Vec<bool>, StoreError>;

    /// The records of keys, in order (None: never reported).
    fn records(&self, keys: &[String]) -> Result<Vec<Option<KeyRecord>>, StoreError>;

    /// Puts a key on the admin allowlist, or takes it off.
    fn set_allowed(&self, key: &str, allowed: bool) -> Result<(), StoreError>;

    /// Whether each key is on the admin allowlist.
    fn allowed(&self, keys: &[String]) -> Result<Vec<bool>, StoreError>;

    /// Every key with a record, for exports (IP keys for the DNSBL zone).
    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<(String, KeyRecord)>, StoreError>;

    fn counts(&self) -> Result<Counts, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_store_behaves_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.redb");
        conformance::check_store(&Embedded::open(&path).unwrap());
        // Reopened, it still knows its events and keys.
        let store = Embedded::open(&path).unwrap();
        assert_eq!(store.counts().unwrap().events, 6);
        let again = conformance::ingest_fixed(
            &store,
            "gw2",
            &[("e2".into(), vec![])],
            20,
            &Model::default(),
        );
        assert_eq!(again, [false]);
        conformance::check_concurrent_ingest(std::sync::Arc::new(store));
    }
}
