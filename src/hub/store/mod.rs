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
    /// Events applied since the store began (pruning their ids does not take them back).
    pub events: u64,
    /// Keys with a record now.
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

    /// Shows `visit` every key starting with `prefix` (a kind, as `ip:`) that has a record,
    /// with its record, in no set order; for exports (IP keys for the DNSBL zone). Holds
    /// little beyond what `visit` keeps, however many keys there are.
    fn each_with_prefix(
        &self,
        prefix: &str,
        visit: &mut dyn FnMut(&str, &KeyRecord),
    ) -> Result<(), StoreError>;

    fn counts(&self) -> Result<Counts, StoreError>;

    /// Adds reported messages' features to `gateway`'s learned counts (spam or ham), each
    /// count and the message totals by `weight`. A gateway holds counts of at most
    /// `max_features` features (about: a store may pass it by one message's): past it, only
    /// features it has are counted.
    fn train(
        &self,
        gateway: &str,
        lessons: &[Lesson],
        weight: f64,
        max_features: usize,
    ) -> Result<(), StoreError>;

    /// Every gateway's learned counts.
    fn learned(&self) -> Result<Vec<LearnedCounts>, StoreError>;

    /// One step of forgetting, of bounded work, resuming where the last step stopped: event
    /// ids applied more than `event_retention` seconds before `now` (a store whose ids
    /// expire by themselves leaves them to that), and evidence that decayed below
    /// [`FORGET_BELOW`](super::model::FORGET_BELOW), with the records left with none; and
    /// learned counts under `learn_floor` (as stored: weighted) on both sides.
    fn prune(
        &self,
        now: u64,
        half_life: u64,
        event_retention: u64,
        learn_floor: f64,
    ) -> Result<Pruned, StoreError>;
}

/// One reported message to learn from: spam or ham, and its features (sorted, each once).
pub type Lesson = (bool, Vec<u64>);

/// One gateway's learned counts, as the store holds them: scaled by
/// [`learning::weight`](crate::hub::learning::weight) at the time each was added (so that
/// they decay without being rewritten).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LearnedCounts {
    pub gateway: String,
    /// Messages trained: spam, ham.
    pub spam: f64,
    pub ham: f64,
    /// Per feature: spam and ham messages that had it.
    pub features: Vec<(u64, f64, f64)>,
}

/// What one step of pruning removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub events: u64,
    pub keys: u64,
    /// Learned feature counts.
    pub features: u64,
    /// The step reached the end of the store: the next one starts a new pass.
    pub pass_done: bool,
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
        conformance::check_learning(&Embedded::open(&dir.path().join("learn.redb")).unwrap());
        let forgetting = dir.path().join("forget.redb");
        conformance::check_forgetting(&Embedded::open(&forgetting).unwrap(), false);
        // What pruning removed stays removed; the count of events applied stays.
        let store = Embedded::open(&forgetting).unwrap();
        let counts = store.counts().unwrap();
        assert_eq!((counts.events, counts.keys), (4, 0));
    }
}
