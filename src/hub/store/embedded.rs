//! The store in one redb file: no setup. Writes go through one writer thread that puts the
//! requests waiting for it into one transaction (group commit): redb has one writer at a
//! time, and a commit rewrites every B-tree page it touched and syncs the disk, so requests
//! that share a commit share that cost. Reads run on the callers' threads, beside it.
//!
//! Records are stored as a version byte and the record in postcard (compact binary): half the
//! size of JSON, so fewer pages to rewrite per commit.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{Counts, Ingest, Store, StoreError, UpdatesFn, err};
use crate::hub::model::{KeyRecord, Model, Update};

const EVENTS: TableDefinition<&str, u64> = TableDefinition::new("events");
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
const ALLOW: TableDefinition<&str, u64> = TableDefinition::new("allow");

/// Events one commit takes at most (requests waiting beyond it go in the next).
const GROUP_MAX_EVENTS: usize = 20_000;

/// The record encoding's version, the first byte of each stored record.
const RECORD_V1: u8 = 1;

/// One request's events, waiting for the writer.
struct Job {
    gateway: String,
    events: Vec<Ingest>,
    updates: UpdatesFn,
    now: u64,
    model: Model,
    done: mpsc::SyncSender<Result<Vec<bool>, StoreError>>,
}

/// The store in one redb file.
pub struct Embedded {
    db: Arc<Database>,
    /// To the writer thread; taken on drop, which ends it.
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Embedded {
    pub fn open(path: &Path) -> Result<Embedded, StoreError> {
        let db = Arc::new(Database::create(path).map_err(err)?);
        // Create the tables, so that reads of an empty store find them.
        let tx = db.begin_write().map_err(err)?;
        tx.open_table(EVENTS).map_err(err)?;
        tx.open_table(KEYS).map_err(err)?;
        tx.open_table(ALLOW).map_err(err)?;
        tx.commit().map_err(err)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let writer_db = db.clone();
        let writer = std::thread::Builder::new()
            .name("hub-store-writer".into())
            .spawn(move || write_loop(&writer_db, &rx))
            .map_err(err)?;
        Ok(Embedded {
            db,
            jobs: Mutex::new(Some(tx)),
            writer: Some(writer),
        })
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        // The writer finishes what it holds and ends; then the file is free to open again.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// Takes the next request and every one waiting behind it (up to [`GROUP_MAX_EVENTS`]),
/// applies them in one transaction and answers each.
fn write_loop(db: &Database, rx: &mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut n = first.events.len();
        let mut jobs = vec![first];
        while n < GROUP_MAX_EVENTS {
            match rx.try_recv() {
                Ok(j) => {
                    n += j.events.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        match apply(db, &jobs) {
            Ok(results) => {
                for (j, r) in jobs.iter().zip(results) {
                    let _ = j.done.send(Ok(r));
                }
            }
            Err(e) => {
                for j in &jobs {
                    let _ = j.done.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Applies the jobs' events in one transaction, all or none.
fn apply(db: &Database, jobs: &[Job]) -> Result<Vec<Vec<bool>>, StoreError> {
    let tx = db.begin_write().map_err(err)?;
    let mut new: Vec<Vec<bool>> = jobs.iter().map(|j| vec![false; j.events.len()]).collect();
    {
        let mut seen = tx.open_table(EVENTS).map_err(err)?;
        let mut table = tx.open_table(KEYS).map_err(err)?;
        for (j, job) in jobs.iter().enumerate() {
            for (i, e) in job.events.iter().enumerate() {
                if seen.get(e.event_id.as_str()).map_err(err)?.is_none() {
                    seen.insert(e.event_id.as_str(), job.now).map_err(err)?;
                    new[j][i] = true;
                }
            }
        }
        let fresh = &new;
        let new_events = || {
            jobs.iter().enumerate().flat_map(move |(j, job)| {
                job.events
                    .iter()
                    .enumerate()
                    .filter(move |(i, _)| fresh[j][*i])
                    .map(move |(i, e)| (j, i, e))
            })
        };
        // Every key the new events touch, once, in key order (the B-tree's): its record as
        // it is, and what each request adds to it.
        struct Slot<'a> {
            key: &'a str,
            record: Option<KeyRecord>,
            adds: Vec<(usize, Update)>,
        }
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut slots: Vec<Slot<'_>> = Vec::new();
        for (_, _, e) in new_events() {
            for k in &e.keys {
                index.entry(k.as_str()).or_insert_with(|| {
                    slots.push(Slot {
                        key: k.as_str(),
                        record: None,
                        adds: Vec::new(),
                    });
                    slots.len() - 1
                });
            }
        }
        slots.sort_unstable_by(|a, b| a.key.cmp(b.key));
        for (i, slot) in slots.iter_mut().enumerate() {
            *index.get_mut(slot.key).expect("indexed above") = i;
            if let Some(v) = table.get(slot.key).map_err(err)? {
                slot.record = Some(decode(v.value())?);
            }
        }
        // Updates made at one time add up, per request.
        let mut adds: Vec<(usize, usize, Update)> = Vec::new();
        for (j, i, e) in new_events() {
            let at: Vec<usize> = e.keys.iter().map(|k| index[k.as_str()]).collect();
            let before: Vec<Option<&KeyRecord>> =
                at.iter().map(|&s| slots[s].record.as_ref()).collect();
            for (&s, u) in at.iter().zip((jobs[j].updates)(i, &before)) {
                if u.is_some() {
                    adds.push((s, j, u));
                }
            }
        }
        for (s, j, u) in adds {
            let per_job = &mut slots[s].adds;
            match per_job.last_mut() {
                Some((last, sum)) if *last == j => sum.add(u),
                _ => per_job.push((j, u)),
            }
        }
        for slot in slots.into_iter().filter(|s| !s.adds.is_empty()) {
            let mut rec = slot.record.unwrap_or_default();
            for (j, u) in slot.adds {
                rec.apply(&jobs[j].gateway, u, jobs[j].now, &jobs[j].model);
            }
            table
                .insert(slot.key, encode(&rec).as_slice())
                .map_err(err)?;
        }
    }
    tx.commit().map_err(err)?;
    Ok(new)
}

fn decode(bytes: &[u8]) -> Result<KeyRecord, StoreError> {
    match bytes.split_first() {
        Some((&RECORD_V1, rest)) => postcard::from_bytes(rest).map_err(err),
        _ => Err(StoreError("a stored record has an unknown format".into())),
    }
}

fn encode(rec: &KeyRecord) -> Vec<u8> {
    let out = vec![RECORD_V1];
    postcard::to_extend(rec, out).expect("a record serializes")
}

impl Store for Embedded {
    fn ingest(
        &self,
        gateway: &str,
        events: Vec<Ingest>,
        updates: UpdatesFn,
        now: u64,
        model: &Model,
    ) -> Result<Vec<bool>, StoreError> {
        let (done, result) = mpsc::sync_channel(1);
        let job = Job {
            gateway: gateway.to_string(),
            events,
            updates,
            now,
            model: model.clone(),
            done,
        };
        let sent = match &*self.jobs.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(tx) => tx.send(job).is_ok(),
            None => false,
        };
        if !sent {
            return Err(StoreError("the store's writer has stopped".into()));
        }
        result
            .recv()
            .map_err(|_| StoreError("the store's writer has stopped".into()))?
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
