//! The store in one redb file: no setup, one write transaction per batch of events.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{Counts, Ingest, Store, StoreError, err};
use crate::hub::model::{KeyRecord, Model};

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
        gateway: &str,
        events: &[Ingest],
        now: u64,
        model: &Model,
    ) -> Result<Vec<bool>, StoreError> {
        // One transaction (one fsync) for the whole batch: all of it or none.
        let tx = self.db.begin_write().map_err(err)?;
        let mut out = Vec::with_capacity(events.len());
        {
            let mut seen = tx.open_table(EVENTS).map_err(err)?;
            let mut keys = tx.open_table(KEYS).map_err(err)?;
            for e in events {
                if seen.get(e.event_id.as_str()).map_err(err)?.is_some() {
                    out.push(false);
                    continue;
                }
                seen.insert(e.event_id.as_str(), now).map_err(err)?;
                for (key, u) in &e.updates {
                    // A key the event says nothing about (an accepted message's) gets no
                    // record: the store holds evidence, not every key ever seen.
                    if u.spam <= 0.0 && u.ham <= 0.0 && u.spread <= 0.0 {
                        continue;
                    }
                    let mut rec = match keys.get(key.as_str()).map_err(err)? {
                        Some(v) => decode(v.value())?,
                        None => KeyRecord::default(),
                    };
                    rec.apply(gateway, *u, now, model);
                    let bytes = serde_json::to_vec(&rec).map_err(err)?;
                    keys.insert(key.as_str(), bytes.as_slice()).map_err(err)?;
                }
                out.push(true);
            }
        }
        tx.commit().map_err(err)?;
        Ok(out)
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
