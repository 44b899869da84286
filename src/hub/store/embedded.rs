//! The store in one redb file: no setup.
//!
//! **Log, then checkpoint.** A commit rewrites every B-tree page it touches, and an ingest
//! batch touches keys all over the key table: applied straight to the tables, each batch
//! would rewrite most of the table, a cost that grows with the store. So a batch goes to the
//! file as one appended log entry (the records it changed, whole, and its new event ids),
//! durable before the gateway hears its answer, and into an in-memory overlay that reads
//! consult first. A checkpoint writes the overlay into the tables in key order and empties
//! the log in one transaction, every [`CHECKPOINT_EVENTS`] events, [`CHECKPOINT_RECORDS`]
//! records, after [`IDLE`] without requests, and on close; opening the file replays what the
//! log holds. The log holds results, not updates, so replaying needs no model and repeats
//! nothing.
//!
//! **Group commit.** Writes go through one writer thread that puts the requests waiting for
//! it into one transaction: redb has one writer at a time, and requests that share a commit
//! share its sync. Reads run on the callers' threads, beside it.
//!
//! Records are stored as a version byte and the record in postcard (compact binary): half the
//! size of JSON.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::time::Duration;

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use super::{Counts, Ingest, LearnedCounts, Pruned, Store, StoreError, UpdatesFn, err};
use crate::hub::model::{GatewayName, KeyRecord, Model, Update};

const EVENTS: TableDefinition<&str, u64> = TableDefinition::new("events");
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
const ALLOW: TableDefinition<&str, u64> = TableDefinition::new("allow");
/// Batches applied since the last checkpoint, by sequence number.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Learned counts: (gateway, feature) -> (spam, ham), and per gateway its message totals
/// and the features it has counts of.
const LEARN: TableDefinition<(&str, u64), (f64, f64)> = TableDefinition::new("learn");
const LEARN_TOTALS: TableDefinition<&str, (f64, f64, u64)> = TableDefinition::new("learn_totals");
/// Where pruning stopped (`PruneCursor`), under [`CURSOR`].
const PRUNE_AT: TableDefinition<&str, &[u8]> = TableDefinition::new("prune_at");
const CURSOR: &str = "cursor";
/// Counters: [`EVENTS_APPLIED`].
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Events applied up to the last checkpoint (pruned ids included).
const EVENTS_APPLIED: &str = "events_applied";

/// Events one commit takes at most (requests waiting beyond it go in the next).
const GROUP_MAX_EVENTS: usize = 20_000;
/// A checkpoint follows once the overlay holds this many events or records...
const CHECKPOINT_EVENTS: usize = 200_000;
const CHECKPOINT_RECORDS: usize = 400_000;
/// ...or when no request came for this long.
const IDLE: Duration = Duration::from_secs(2);
/// Event ids, and records, one pruning step looks at (each).
const PRUNE_STEP: usize = 20_000;

/// The encoding's version, the first byte of each stored record and log entry.
const RECORD_V1: u8 = 1;

/// What the writer thread does.
enum Work {
    Ingest(Job),
    Prune {
        now: u64,
        half_life: u64,
        event_retention: u64,
        learn_floor: f64,
        done: mpsc::SyncSender<Result<Pruned, StoreError>>,
    },
}

/// Where pruning stopped, in the events table and in the key table (None: at the start),
/// and which of the two reached its end in this pass. Kept in the file, so that a pass goes
/// on across restarts.
#[derive(Debug, Default, Serialize, Deserialize)]
struct PruneCursor {
    events: Option<String>,
    keys: Option<String>,
    events_ended: bool,
    keys_ended: bool,
    /// In the learned counts, the last (gateway, feature) looked at.
    #[serde(default)]
    learn: Option<(String, u64)>,
    #[serde(default)]
    learn_ended: bool,
}

/// One request's events, waiting for the writer.
struct Job {
    gateway: GatewayName,
    events: Vec<Ingest>,
    updates: UpdatesFn,
    now: u64,
    model: Model,
    done: mpsc::SyncSender<Result<Vec<bool>, StoreError>>,
}

/// One log entry: what one commit changed.
#[derive(Debug, Default, Serialize, Deserialize)]
struct LogEntry {
    /// New event ids, with the time they arrived.
    events: Vec<(String, u64)>,
    /// Changed records, whole.
    records: Vec<(String, KeyRecord)>,
}

/// A log entry as the writer makes it, its keys borrowed from the requests (encoded as
/// [`LogEntry`] is).
#[derive(Serialize)]
struct NewLogEntry<'a> {
    events: &'a [(String, u64)],
    records: &'a [(&'a str, KeyRecord)],
}

/// What the log holds that the tables do not yet.
#[derive(Default)]
struct Overlay {
    events: FxHashMap<String, u64>,
    records: FxHashMap<String, KeyRecord>,
    /// Records in `records` that the key table does not have.
    new_keys: u64,
    next_seq: u64,
}

impl Overlay {
    /// Takes in a committed log entry's events and records, which include `new_keys` keys
    /// that neither the overlay nor the key table had.
    fn install<K: AsRef<str> + Into<String>>(
        &mut self,
        events: Vec<(String, u64)>,
        records: Vec<(K, KeyRecord)>,
        new_keys: u64,
    ) {
        self.events.extend(events);
        for (k, rec) in records {
            // Replacing a record keeps the key the map holds: no copy of it.
            match self.records.get_mut(k.as_ref()) {
                Some(r) => *r = rec,
                None => {
                    self.records.insert(k.into(), rec);
                }
            }
        }
        self.new_keys += new_keys;
        self.next_seq += 1;
    }

    fn is_full(&self, checkpoint_events: usize) -> bool {
        self.events.len() >= checkpoint_events || self.records.len() >= CHECKPOINT_RECORDS
    }
}

/// The store in one redb file.
pub struct Embedded {
    db: Arc<Database>,
    overlay: Arc<RwLock<Overlay>>,
    /// To the writer thread; taken on drop, which ends it.
    jobs: Mutex<Option<mpsc::Sender<Work>>>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Whether the writer checkpoints when it ends (tests turn it off to leave a log behind).
    #[cfg_attr(not(test), allow(dead_code))]
    checkpoint_on_close: Arc<AtomicBool>,
}

impl Embedded {
    pub fn open(path: &Path) -> Result<Embedded, StoreError> {
        Embedded::open_checkpointing(path, CHECKPOINT_EVENTS)
    }

    /// Opens the store, checkpointing every `checkpoint_events` events (tests: often).
    fn open_checkpointing(path: &Path, checkpoint_events: usize) -> Result<Embedded, StoreError> {
        let db = Arc::new(Database::create(path).map_err(err)?);
        // Create the tables, so that reads of an empty store find them.
        let tx = db.begin_write().map_err(err)?;
        tx.open_table(EVENTS).map_err(err)?;
        tx.open_table(KEYS).map_err(err)?;
        tx.open_table(ALLOW).map_err(err)?;
        tx.open_table(LOG).map_err(err)?;
        tx.open_table(LEARN).map_err(err)?;
        tx.open_table(LEARN_TOTALS).map_err(err)?;
        tx.open_table(PRUNE_AT).map_err(err)?;
        {
            // Files from before the counter: every event applied then is still in the table.
            let mut meta = tx.open_table(META).map_err(err)?;
            if meta.get(EVENTS_APPLIED).map_err(err)?.is_none() {
                let n = tx.open_table(EVENTS).map_err(err)?.len().map_err(err)?;
                meta.insert(EVENTS_APPLIED, n).map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        let overlay = Arc::new(RwLock::new(replay(&db)?));
        checkpoint(&db, &overlay)?;
        let (tx, rx) = mpsc::channel::<Work>();
        let checkpoint_on_close = Arc::new(AtomicBool::new(true));
        let writer = {
            let (db, overlay, on_close) =
                (db.clone(), overlay.clone(), checkpoint_on_close.clone());
            std::thread::Builder::new()
                .name("hub-store-writer".into())
                .spawn(move || write_loop(&db, &overlay, &rx, &on_close, checkpoint_events))
                .map_err(err)?
        };
        Ok(Embedded {
            db,
            overlay,
            jobs: Mutex::new(Some(tx)),
            writer: Some(writer),
            checkpoint_on_close,
        })
    }

    /// Closes the store as a crash would: the log is left for the next open to replay.
    #[cfg(test)]
    fn close_without_checkpoint(self) {
        self.checkpoint_on_close.store(false, Ordering::SeqCst);
    }

    fn send(&self, work: Work) -> Result<(), StoreError> {
        let sent = match &*self.jobs.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(tx) => tx.send(work).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            Err(StoreError("the store's writer has stopped".into()))
        }
    }

    /// The overlay's state and a read transaction that agrees with it: a checkpoint commits and
    /// empties the overlay under its write lock.
    fn read<T>(
        &self,
        from_overlay: impl FnOnce(&Overlay) -> T,
    ) -> Result<(T, ReadTransaction), StoreError> {
        let ov = self.overlay.read().unwrap_or_else(|p| p.into_inner());
        let t = from_overlay(&ov);
        let tx = self.db.begin_read().map_err(err)?;
        Ok((t, tx))
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

/// The overlay the log describes, from a file just opened.
fn replay(db: &Database) -> Result<Overlay, StoreError> {
    let tx = db.begin_read().map_err(err)?;
    let log = tx.open_table(LOG).map_err(err)?;
    let keys = tx.open_table(KEYS).map_err(err)?;
    let mut ov = Overlay::default();
    for row in log.iter().map_err(err)? {
        let (seq, bytes) = row.map_err(err)?;
        let entry: LogEntry = decode(bytes.value())
            .map_err(|e| StoreError(format!("log entry {} of the store: {}", seq.value(), e.0)))?;
        let mut new_keys = 0;
        for (k, _) in &entry.records {
            if !ov.records.contains_key(k) && keys.get(k.as_str()).map_err(err)?.is_none() {
                new_keys += 1;
            }
        }
        ov.install(entry.events, entry.records, new_keys);
        ov.next_seq = seq.value() + 1;
    }
    Ok(ov)
}

/// Writes the overlay into the tables and empties the log, in one transaction; then empties
/// the overlay.
fn checkpoint(db: &Database, overlay: &RwLock<Overlay>) -> Result<(), StoreError> {
    {
        let ov = overlay.read().unwrap_or_else(|p| p.into_inner());
        if ov.events.is_empty() && ov.records.is_empty() {
            return Ok(());
        }
        let tx = db.begin_write().map_err(err)?;
        {
            let mut meta = tx.open_table(META).map_err(err)?;
            let applied = meta
                .get(EVENTS_APPLIED)
                .map_err(err)?
                .map_or(0, |v| v.value());
            meta.insert(EVENTS_APPLIED, applied + ov.events.len() as u64)
                .map_err(err)?;
            let mut events = tx.open_table(EVENTS).map_err(err)?;
            let mut ids: Vec<(&String, &u64)> = ov.events.iter().collect();
            ids.sort_unstable();
            for (id, at) in ids {
                events.insert(id.as_str(), *at).map_err(err)?;
            }
            let mut keys = tx.open_table(KEYS).map_err(err)?;
            let mut recs: Vec<(&String, &KeyRecord)> = ov.records.iter().collect();
            recs.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (key, rec) in recs {
                keys.insert(key.as_str(), encode(rec).as_slice())
                    .map_err(err)?;
            }
        }
        tx.delete_table(LOG).map_err(err)?;
        tx.open_table(LOG).map_err(err)?;
        drop(ov);
        // Readers wait out the commit: one that saw the committed tables beside the full
        // overlay would count its events twice.
        let mut ov = overlay.write().unwrap_or_else(|p| p.into_inner());
        tx.commit().map_err(err)?;
        let next_seq = ov.next_seq;
        *ov = Overlay {
            next_seq,
            ..Overlay::default()
        };
    }
    Ok(())
}

fn checkpoint_or_log(db: &Database, overlay: &RwLock<Overlay>) {
    if let Err(e) = checkpoint(db, overlay) {
        // The log still holds everything; the next checkpoint or open tries again.
        tracing::error!("hub store checkpoint failed: {e}");
    }
}

/// Takes the next request and every one waiting behind it (up to [`GROUP_MAX_EVENTS`]),
/// applies them in one transaction and answers each; checkpoints when the overlay is full,
/// the store idle, or the store closing.
fn write_loop(
    db: &Database,
    overlay: &RwLock<Overlay>,
    rx: &mpsc::Receiver<Work>,
    checkpoint_on_close: &AtomicBool,
    checkpoint_events: usize,
) {
    let mut cursor = prune_cursor(db).unwrap_or_else(|e| {
        tracing::warn!("hub store: pruning starts a new pass: {e}");
        PruneCursor::default()
    });
    // A prune request met while grouping ingest requests, run after their group.
    let mut pending: Option<Work> = None;
    loop {
        let first = match pending.take().map_or_else(|| rx.recv_timeout(IDLE), Ok) {
            Ok(Work::Ingest(job)) => job,
            Ok(Work::Prune {
                now,
                half_life,
                event_retention,
                learn_floor,
                done,
            }) => {
                let pruned = prune_step(db, overlay, &mut cursor, now, half_life, event_retention)
                    .and_then(|mut p| {
                        p.features = prune_learned(db, &mut cursor, learn_floor)?;
                        p.pass_done &= cursor.learn_ended;
                        if p.pass_done {
                            cursor.learn_ended = false;
                        }
                        Ok(p)
                    });
                let _ = done.send(pruned);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                checkpoint_or_log(db, overlay);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut n = first.events.len();
        let mut jobs = vec![first];
        while n < GROUP_MAX_EVENTS {
            match rx.try_recv() {
                Ok(Work::Ingest(j)) => {
                    n += j.events.len();
                    jobs.push(j);
                }
                Ok(prune) => {
                    pending = Some(prune);
                    break;
                }
                Err(_) => break,
            }
        }
        match apply(db, overlay, &jobs) {
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
        if overlay
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_full(checkpoint_events)
        {
            checkpoint_or_log(db, overlay);
        }
    }
    if checkpoint_on_close.load(Ordering::SeqCst) {
        checkpoint_or_log(db, overlay);
    }
}

/// What pruning does to a row: drop it (None), or rewrite it with these bytes.
type Change = Option<Vec<u8>>;

/// Looks at up to [`PRUNE_STEP`] rows of `table` after `cursor`, in key order; answers the
/// keys of those `change` says to change, with the change, and moves the cursor (to None
/// when the table's end was reached).
fn scan<V: redb::Value + 'static>(
    table: &redb::Table<'_, &'static str, V>,
    cursor: &mut Option<String>,
    mut change: impl FnMut(&str, V::SelfType<'_>) -> Result<Option<Change>, StoreError>,
) -> Result<Vec<(String, Change)>, StoreError> {
    use std::ops::Bound;
    let rows = match cursor.as_deref() {
        Some(c) => table.range::<&str>((Bound::Excluded(c), Bound::Unbounded)),
        None => table.range::<&str>(..),
    }
    .map_err(err)?;
    let mut out = Vec::new();
    let mut seen = 0;
    let mut last = None;
    for row in rows.take(PRUNE_STEP) {
        let (k, v) = row.map_err(err)?;
        seen += 1;
        if let Some(c) = change(k.value(), v.value())? {
            out.push((k.value().to_string(), c));
        }
        last = Some(k);
    }
    *cursor = if seen < PRUNE_STEP {
        None
    } else {
        last.map(|k| k.value().to_string())
    };
    Ok(out)
}

/// Where pruning stopped, as the file holds it.
fn prune_cursor(db: &Database) -> Result<PruneCursor, StoreError> {
    let tx = db.begin_read().map_err(err)?;
    let t = tx.open_table(PRUNE_AT).map_err(err)?;
    match t.get(CURSOR).map_err(err)? {
        Some(v) => decode(v.value()),
        None => Ok(PruneCursor::default()),
    }
}

/// One step of pruning the tables: event ids older than the retention, evidence decayed
/// below `FORGET_BELOW`, records left with none. A pass starts with a checkpoint, so that it
/// sees every record in the tables; records the overlay holds later in the pass were
/// changed since, and are left alone.
fn prune_step(
    db: &Database,
    overlay: &RwLock<Overlay>,
    cursor: &mut PruneCursor,
    now: u64,
    half_life: u64,
    event_retention: u64,
) -> Result<Pruned, StoreError> {
    if cursor.events.is_none() && cursor.keys.is_none() {
        checkpoint(db, overlay)?;
    }
    // Only this thread changes the overlay: it stays as read here.
    let ov = overlay.read().unwrap_or_else(|p| p.into_inner());
    let tx = db.begin_write().map_err(err)?;
    let mut out = Pruned::default();
    {
        let mut events = tx.open_table(EVENTS).map_err(err)?;
        let old = scan(&events, &mut cursor.events, |_, at: u64| {
            Ok((at.saturating_add(event_retention) < now).then_some(None))
        })?;
        for (id, _) in &old {
            events.remove(id.as_str()).map_err(err)?;
        }
        out.events = old.len() as u64;
        cursor.events_ended |= cursor.events.is_none();
        let mut keys = tx.open_table(KEYS).map_err(err)?;
        let changed = scan(&keys, &mut cursor.keys, |key, bytes: &[u8]| {
            if ov.records.contains_key(key) {
                return Ok(None);
            }
            let mut rec: KeyRecord = decode(bytes)?;
            Ok(rec
                .forget(now, half_life)
                .then(|| (!rec.is_empty()).then(|| encode(&rec))))
        })?;
        cursor.keys_ended |= cursor.keys.is_none();
        for (key, change) in changed {
            match change {
                Some(bytes) => {
                    keys.insert(key.as_str(), bytes.as_slice()).map_err(err)?;
                }
                None => {
                    keys.remove(key.as_str()).map_err(err)?;
                    out.keys += 1;
                }
            }
        }
        out.pass_done = cursor.events_ended && cursor.keys_ended;
        if out.pass_done {
            (cursor.events_ended, cursor.keys_ended) = (false, false);
        }
        tx.open_table(PRUNE_AT)
            .map_err(err)?
            .insert(CURSOR, encode(&*cursor).as_slice())
            .map_err(err)?;
    }
    tx.commit().map_err(err)?;
    Ok(out)
}

/// One step of pruning the learned counts: up to [`PRUNE_STEP`] of them from the cursor;
/// those under `floor` on both sides go (and out of their gateway's feature count).
fn prune_learned(db: &Database, cursor: &mut PruneCursor, floor: f64) -> Result<u64, StoreError> {
    use std::ops::Bound;
    let tx = db.begin_write().map_err(err)?;
    let mut gone: Vec<(String, u64)> = Vec::new();
    {
        let mut t = tx.open_table(LEARN).map_err(err)?;
        {
            let rows = match &cursor.learn {
                Some((g, f)) => {
                    t.range::<(&str, u64)>((Bound::Excluded((g.as_str(), *f)), Bound::Unbounded))
                }
                None => t.range::<(&str, u64)>(..),
            }
            .map_err(err)?;
            let mut seen = 0;
            let mut last = None;
            for row in rows.take(PRUNE_STEP) {
                let (k, v) = row.map_err(err)?;
                let (g, f) = k.value();
                let (s, h) = v.value();
                if s < floor && h < floor {
                    gone.push((g.to_string(), f));
                }
                last = Some((g.to_string(), f));
                seen += 1;
            }
            cursor.learn = if seen < PRUNE_STEP { None } else { last };
            cursor.learn_ended |= cursor.learn.is_none();
        }
        for (g, f) in &gone {
            t.remove((g.as_str(), *f)).map_err(err)?;
        }
        let mut totals = tx.open_table(LEARN_TOTALS).map_err(err)?;
        let mut per: std::collections::BTreeMap<&str, u64> = Default::default();
        for (g, _) in &gone {
            *per.entry(g.as_str()).or_default() += 1;
        }
        for (g, n) in per {
            let old = totals.get(g).map_err(err)?.map(|v| v.value());
            if let Some((s, h, rows)) = old {
                totals
                    .insert(g, (s, h, rows.saturating_sub(n)))
                    .map_err(err)?;
            }
        }
        tx.open_table(PRUNE_AT)
            .map_err(err)?
            .insert(CURSOR, encode(&*cursor).as_slice())
            .map_err(err)?;
    }
    tx.commit().map_err(err)?;
    Ok(gone.len() as u64)
}

/// Applies the jobs' events: one log entry, committed, then installed in the overlay. All or
/// none.
fn apply(
    db: &Database,
    overlay: &RwLock<Overlay>,
    jobs: &[Job],
) -> Result<Vec<Vec<bool>>, StoreError> {
    let tx = db.begin_write().map_err(err)?;
    let mut new: Vec<Vec<bool>> = jobs.iter().map(|j| vec![false; j.events.len()]).collect();
    let mut events: Vec<(String, u64)> = Vec::new();
    let mut records: Vec<(&str, KeyRecord)> = Vec::new();
    let mut new_keys = 0;
    // Only this thread changes the overlay: it stays as read here until installed below.
    let ov = overlay.read().unwrap_or_else(|p| p.into_inner());
    let seq = ov.next_seq;
    {
        let seen = tx.open_table(EVENTS).map_err(err)?;
        let table = tx.open_table(KEYS).map_err(err)?;
        let mut here: FxHashSet<&str> = FxHashSet::default();
        for (j, job) in jobs.iter().enumerate() {
            for (i, e) in job.events.iter().enumerate() {
                let id = e.event_id.as_str();
                if !ov.events.contains_key(id)
                    && here.insert(id)
                    && seen.get(id).map_err(err)?.is_none()
                {
                    new[j][i] = true;
                    events.push((e.event_id.clone(), job.now));
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
        // Every key the new events touch, once: its record as it is, and what each request
        // adds to it.
        struct Slot<'a> {
            key: &'a str,
            record: Option<KeyRecord>,
            adds: Vec<(usize, Update)>,
        }
        let mut index: FxHashMap<&str, usize> = FxHashMap::default();
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
        for slot in &mut slots {
            slot.record = match ov.records.get(slot.key) {
                Some(r) => Some(r.clone()),
                None => match table.get(slot.key).map_err(err)? {
                    Some(v) => Some(decode(v.value())?),
                    None => None,
                },
            };
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
            new_keys += u64::from(slot.record.is_none());
            let mut rec = slot.record.unwrap_or_default();
            for (j, u) in slot.adds {
                rec.apply(&jobs[j].gateway, u, jobs[j].now, &jobs[j].model);
            }
            records.push((slot.key, rec));
        }
    }
    drop(ov);
    if events.is_empty() {
        // Nothing new: nothing to write.
        return Ok(new);
    }
    {
        let entry = NewLogEntry {
            events: &events,
            records: &records,
        };
        let mut log = tx.open_table(LOG).map_err(err)?;
        log.insert(seq, encode(&entry).as_slice()).map_err(err)?;
    }
    tx.commit().map_err(err)?;
    overlay
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .install(events, records, new_keys);
    Ok(new)
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&RECORD_V1, rest)) => postcard::from_bytes(rest).map_err(err),
        _ => Err(StoreError("a stored record has an unknown format".into())),
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let out = vec![RECORD_V1];
    postcard::to_extend(value, out).expect("a record serializes")
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
            gateway: GatewayName::new(gateway),
            events,
            updates,
            now,
            model: model.clone(),
            done,
        };
        self.send(Work::Ingest(job))?;
        result
            .recv()
            .map_err(|_| StoreError("the store's writer has stopped".into()))?
    }

    fn train(
        &self,
        gateway: &str,
        lessons: &[super::Lesson],
        weight: f64,
        max_features: usize,
    ) -> Result<(), StoreError> {
        // Reports are few beside verdicts: a transaction of their own, beside the writer's.
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut t = tx.open_table(LEARN).map_err(err)?;
            let mut totals = tx.open_table(LEARN_TOTALS).map_err(err)?;
            let (mut spam, mut ham, mut rows) = totals
                .get(gateway)
                .map_err(err)?
                .map_or((0.0, 0.0, 0), |v| v.value());
            for (is_spam, features) in lessons {
                let full = rows as usize >= max_features;
                for f in features {
                    let old = t.get((gateway, *f)).map_err(err)?.map(|v| v.value());
                    let (s, h) = match old {
                        Some(c) => c,
                        None if full => continue,
                        None => {
                            rows += 1;
                            (0.0, 0.0)
                        }
                    };
                    let new = if *is_spam {
                        (s + weight, h)
                    } else {
                        (s, h + weight)
                    };
                    t.insert((gateway, *f), new).map_err(err)?;
                }
                if *is_spam {
                    spam += weight;
                } else {
                    ham += weight;
                }
            }
            totals.insert(gateway, (spam, ham, rows)).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    fn learned(&self) -> Result<Vec<LearnedCounts>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let mut out: Vec<LearnedCounts> = Vec::new();
        for row in tx
            .open_table(LEARN_TOTALS)
            .map_err(err)?
            .iter()
            .map_err(err)?
        {
            let (g, v) = row.map_err(err)?;
            let (spam, ham, _) = v.value();
            out.push(LearnedCounts {
                gateway: g.value().to_string(),
                spam,
                ham,
                features: Vec::new(),
            });
        }
        // In key order: gateway by gateway, as `out` is.
        let mut at = 0;
        for row in tx.open_table(LEARN).map_err(err)?.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            let (g, f) = k.value();
            while at < out.len() && out[at].gateway.as_str() < g {
                at += 1;
            }
            if at < out.len() && out[at].gateway == g {
                let (s, h) = v.value();
                out[at].features.push((f, s, h));
            }
        }
        Ok(out)
    }

    fn prune(
        &self,
        now: u64,
        half_life: u64,
        event_retention: u64,
        learn_floor: f64,
    ) -> Result<Pruned, StoreError> {
        let (done, result) = mpsc::sync_channel(1);
        self.send(Work::Prune {
            now,
            half_life,
            event_retention,
            learn_floor,
            done,
        })?;
        result
            .recv()
            .map_err(|_| StoreError("the store's writer has stopped".into()))?
    }

    fn records(&self, keys: &[String]) -> Result<Vec<Option<KeyRecord>>, StoreError> {
        let (found, tx) = self.read(|ov| {
            keys.iter()
                .map(|k| ov.records.get(k).cloned())
                .collect::<Vec<_>>()
        })?;
        let table = tx.open_table(KEYS).map_err(err)?;
        keys.iter()
            .zip(found)
            .map(|(k, f)| match f {
                Some(r) => Ok(Some(r)),
                None => match table.get(k.as_str()).map_err(err)? {
                    Some(v) => decode(v.value()).map(Some),
                    None => Ok(None),
                },
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

    fn each_with_prefix(
        &self,
        prefix: &str,
        visit: &mut dyn FnMut(&str, &KeyRecord),
    ) -> Result<(), StoreError> {
        // The overlay's records (at most a checkpoint's worth) are newer than the table's.
        let (newer, tx) = self.read(|ov| {
            ov.records
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, r)| (k.clone(), r.clone()))
                .collect::<FxHashMap<String, KeyRecord>>()
        })?;
        let t = tx.open_table(KEYS).map_err(err)?;
        for entry in t.range(prefix..).map_err(err)? {
            let (k, v) = entry.map_err(err)?;
            let k = k.value();
            if !k.starts_with(prefix) {
                break;
            }
            if !newer.contains_key(k) {
                visit(k, &decode(v.value())?);
            }
        }
        for (k, r) in &newer {
            visit(k, r);
        }
        Ok(())
    }

    fn counts(&self) -> Result<Counts, StoreError> {
        let ((events, keys), tx) = self.read(|ov| (ov.events.len() as u64, ov.new_keys))?;
        let meta = tx.open_table(META).map_err(err)?;
        let applied = meta
            .get(EVENTS_APPLIED)
            .map_err(err)?
            .map_or(0, |v| v.value());
        Ok(Counts {
            events: events + applied,
            keys: keys + tx.open_table(KEYS).map_err(err)?.len().map_err(err)?,
            allowlisted: tx.open_table(ALLOW).map_err(err)?.len().map_err(err)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::store::conformance;

    fn log_entries(path: &Path) -> u64 {
        let db = Database::open(path).unwrap();
        let tx = db.begin_read().unwrap();
        tx.open_table(LOG).unwrap().len().unwrap()
    }

    #[test]
    fn behaves_alike_when_every_batch_is_checkpointed_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Embedded::open_checkpointing(&dir.path().join("hub.redb"), 1).unwrap();
        conformance::check_store(&store);
        conformance::check_concurrent_ingest(Arc::new(store));
        let store = Embedded::open_checkpointing(&dir.path().join("forget.redb"), 1).unwrap();
        conformance::check_forgetting(&store, false);
    }

    #[test]
    fn a_pruning_pass_goes_on_where_it_stopped_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.redb");
        let model = Model::default();
        let store = Embedded::open(&path).unwrap();
        let events: Vec<(String, Vec<(String, Update)>)> = (0..PRUNE_STEP + 500)
            .map(|i| (format!("e{i:06}"), vec![]))
            .collect();
        conformance::ingest_fixed(&store, "gw", &events, 10, &model);
        let step = store.prune(1_000_000, 3600, 3600, 0.0).unwrap();
        assert_eq!((step.events, step.pass_done), (PRUNE_STEP as u64, false));
        drop(store);
        {
            let db = Database::open(&path).unwrap();
            let at = prune_cursor(&db).unwrap();
            assert_eq!(
                at.events.as_deref(),
                Some(format!("e{:06}", PRUNE_STEP - 1).as_str())
            );
        }
        // Reopened, the pass goes on from there and ends.
        let store = Embedded::open(&path).unwrap();
        let step = store.prune(1_000_000, 3600, 3600, 0.0).unwrap();
        assert_eq!((step.events, step.pass_done), (500, true));
        assert_eq!(store.counts().unwrap().events, (PRUNE_STEP + 500) as u64);
    }

    #[test]
    fn a_crash_leaves_a_log_that_the_next_open_replays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.redb");
        let model = Model::default();
        let spam = Update {
            spam: 1.0,
            ham: 0.0,
        };
        let keys = [
            "ip:192.0.2.1".to_string(),
            "domain:evil.example".to_string(),
        ];
        let store = Embedded::open(&path).unwrap();
        // Checkpointed by a clean close.
        conformance::ingest_fixed(
            &store,
            "gw1",
            &[("a".into(), vec![(keys[0].clone(), spam)])],
            10,
            &model,
        );
        drop(store);
        assert_eq!(log_entries(&path), 0);
        // Left in the log by a crash.
        let store = Embedded::open(&path).unwrap();
        conformance::ingest_fixed(
            &store,
            "gw2",
            &[
                (
                    "b".into(),
                    vec![(keys[0].clone(), spam), (keys[1].clone(), spam)],
                ),
                ("c".into(), vec![(keys[1].clone(), spam)]),
            ],
            20,
            &model,
        );
        let before = (store.records(&keys).unwrap(), store.counts().unwrap());
        assert_eq!(before.1.events, 3);
        assert_eq!(before.1.keys, 2);
        store.close_without_checkpoint();
        assert_eq!(log_entries(&path), 1);
        let store = Embedded::open(&path).unwrap();
        assert_eq!(
            (store.records(&keys).unwrap(), store.counts().unwrap()),
            before
        );
        let again = conformance::ingest_fixed(
            &store,
            "gw2",
            &[("c".into(), vec![(keys[1].clone(), spam)])],
            30,
            &model,
        );
        assert_eq!(again, [false]);
        assert_eq!(store.records(&keys).unwrap(), before.0);
        drop(store);
        assert_eq!(log_entries(&path), 0);
    }
}
