//! Where the hub keeps what it knows: event ids seen (so that ingest is idempotent), each key's
//! evidence, and the admin allowlist. One trait; [`Embedded`] keeps it in one redb file, so a
//! hub runs with no setup.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::model::{KeyRecord, Model, Update};

/// Why the store failed. The request that met it gets a 503; nothing is half-applied.
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// Counts for `/v1/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub events: u64,
    pub keys: u64,
    pub allowlisted: u64,
}

pub trait Store: Send + Sync {
    /// Applies one event's updates, all or nothing, unless its id was applied before: then
    /// nothing changes and the answer is false.
    fn ingest(
        &self,
        event_id: &str,
        gateway: &str,
        updates: &[(String, Update)],
        now: u64,
        model: &Model,
    ) -> Result<bool, StoreError>;

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

const EVENTS: TableDefinition<&str, u64> = TableDefinition::new("events");
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
const ALLOW: TableDefinition<&str, u64> = TableDefinition::new("allow");

/// The store in one redb file.
pub struct Embedded {
    db: Database,
}

impl Embedded {
    pub fn open(path: &Path) -> Result<Embedded, StoreError> {
        let db = Database::create(path).map_err(err)?;
        // Create the tables, so that reads of an empty store find them.
        let tx = db.begin_write().map_err(err)?;
        tx.open_table(EVENTS).map_err(err)?;
        tx.open_table(KEYS).map_err(err)?;
        tx.open_table(ALLOW).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Embedded { db })
    }
}

fn decode(bytes: &[u8]) -> Result<KeyRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(err)
}

impl Store for Embedded {
    fn ingest(
        &self,
        event_id: &str,
        gateway: &str,
        updates: &[(String, Update)],
        now: u64,
        model: &Model,
    ) -> Result<bool, StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut events = tx.open_table(EVENTS).map_err(err)?;
            if events.get(event_id).map_err(err)?.is_some() {
                return Ok(false);
            }
            events.insert(event_id, now).map_err(err)?;
            let mut keys = tx.open_table(KEYS).map_err(err)?;
            for (key, u) in updates {
                let mut rec = match keys.get(key.as_str()).map_err(err)? {
                    Some(v) => decode(v.value())?,
                    None => KeyRecord::default(),
                };
                rec.apply(gateway, *u, now, model);
                let bytes = serde_json::to_vec(&rec).map_err(err)?;
                keys.insert(key.as_str(), bytes.as_slice()).map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(true)
    }

    fn records(&self, keys: &[String]) -> Result<Vec<Option<KeyRecord>>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(KEYS).map_err(err)?;
        keys.iter()
            .map(|k| match table.get(k.as_str()).map_err(err)? {
                Some(v) => decode(v.value()).map(Some),
                None => Ok(None),
            })
            .collect()
    }

    fn set_allowed(&self, key: &str, allowed: bool) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut t = tx.open_table(ALLOW).map_err(err)?;
            if allowed {
                t.insert(key, 1).map_err(err)?;
            } else {
                t.remove(key).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    fn allowed(&self, keys: &[String]) -> Result<Vec<bool>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let t = tx.open_table(ALLOW).map_err(err)?;
        keys.iter()
            .map(|k| Ok(t.get(k.as_str()).map_err(err)?.is_some()))
            .collect()
    }

    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<(String, KeyRecord)>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let t = tx.open_table(KEYS).map_err(err)?;
        let mut out = Vec::new();
        for entry in t.range(prefix..).map_err(err)? {
            let (k, v) = entry.map_err(err)?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_string(), decode(v.value())?));
        }
        Ok(out)
    }

    fn counts(&self) -> Result<Counts, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        Ok(Counts {
            events: tx.open_table(EVENTS).map_err(err)?.len().map_err(err)?,
            keys: tx.open_table(KEYS).map_err(err)?.len().map_err(err)?,
            allowlisted: tx.open_table(ALLOW).map_err(err)?.len().map_err(err)?,
        })
    }
}

/// The behaviour every store must have; run against each implementation.
#[cfg(test)]
pub(crate) fn check_store(store: &dyn Store) {
    let m = Model::default();
    let spam = Update {
        spam: 1.0,
        ham: 0.0,
        spread: 0.0,
    };
    let keys = |ks: &[&str]| -> Vec<(String, Update)> {
        ks.iter().map(|k| (k.to_string(), spam)).collect()
    };
    assert!(
        store
            .ingest(
                "e1",
                "gw1",
                &keys(&["ip:192.0.2.1", "domain:evil.example"]),
                10,
                &m
            )
            .unwrap()
    );
    // The same event again changes nothing.
    assert!(
        !store
            .ingest("e1", "gw1", &keys(&["ip:192.0.2.1"]), 11, &m)
            .unwrap()
    );
    assert!(
        store
            .ingest("e2", "gw2", &keys(&["ip:192.0.2.1"]), 12, &m)
            .unwrap()
    );
    let recs = store
        .records(&[
            "ip:192.0.2.1".into(),
            "domain:evil.example".into(),
            "ip:x".into(),
        ])
        .unwrap();
    let ip = recs[0].as_ref().unwrap();
    assert_eq!(ip.by_gateway.len(), 2);
    assert!((ip.by_gateway["gw1"].spam - 1.0).abs() < 1e-9, "{ip:?}");
    assert_eq!(recs[1].as_ref().unwrap().by_gateway.len(), 1);
    assert!(recs[2].is_none());
    store.set_allowed("domain:good.example", true).unwrap();
    assert_eq!(
        store
            .allowed(&["domain:good.example".into(), "ip:192.0.2.1".into()])
            .unwrap(),
        [true, false]
    );
    let ips = store.keys_with_prefix("ip:").unwrap();
    assert_eq!(ips.len(), 1);
    assert_eq!(ips[0].0, "ip:192.0.2.1");
    assert_eq!(
        store.counts().unwrap(),
        Counts {
            events: 2,
            keys: 2,
            allowlisted: 1
        }
    );
    store.set_allowed("domain:good.example", false).unwrap();
    assert_eq!(store.counts().unwrap().allowlisted, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_store_behaves_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.redb");
        check_store(&Embedded::open(&path).unwrap());
        // Reopened, it still knows its events and keys.
        let store = Embedded::open(&path).unwrap();
        assert_eq!(store.counts().unwrap().events, 2);
        assert!(
            !store
                .ingest("e2", "gw2", &[], 20, &Model::default())
                .unwrap()
        );
    }
}
