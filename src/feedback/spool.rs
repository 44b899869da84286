//! The on-disk spool of events waiting to reach the hub: append-only segments of checksummed
//! records, so that events survive a restart and a `kill -9`, and a torn write is found and
//! cut off instead of read as an event.
//!
//! A record is its payload's length (u32, little-endian), the payload's CRC-32, and the
//! payload. Appends go to the newest segment; a segment is sealed when it reaches
//! [`SEGMENT_BYTES`] (or when [`Spool::seal`] is asked, so the reporter can ship what is
//! there), and deleted only when the hub has acknowledged every event in it
//! ([`Spool::remove`]). Writes reach the kernel at once (a killed process loses nothing) and
//! the disk at each [`Spool::sync`], which the owner calls per batch or interval. When the
//! spool holds `max_bytes`, appends are refused ([`SpoolError::Full`]): the caller counts and
//! logs the event it drops, never silently.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// A segment is sealed past this size; shipping works a segment at a time.
pub const SEGMENT_BYTES: u64 = 1024 * 1024;

/// Largest record: an event with a shared sample of the largest message kept, and then some.
pub const MAX_RECORD: usize = 16 * 1024 * 1024;

/// Bytes before each payload: its length and its CRC-32.
const HEADER: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the spool is full ({max} bytes); event dropped")]
    Full { max: u64 },
    #[error("a record of {0} bytes is larger than the limit of {MAX_RECORD}")]
    TooLarge(usize),
    #[error("spool {}: in use by another process (its lock file is held)", dir.display())]
    Busy { dir: PathBuf },
}

/// A sealed segment's records, read back.
#[derive(Debug)]
pub struct Segment {
    pub id: u64,
    pub records: Vec<Vec<u8>>,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Sealed segments (oldest first) and their sizes.
    sealed: Vec<(u64, u64)>,
    /// The segment being written, its size and its writer.
    active: Option<(u64, u64, BufWriter<File>)>,
    next_id: u64,
    /// Records found torn or corrupt (cut off) when the spool was opened.
    pub recovered_torn: u64,
    /// Held (locked) while the spool is open: two writers would interleave segment ids.
    _lock: File,
}

impl Spool {
    /// Opens (or creates) the spool in `dir`. Every segment is checked; a segment that ends
    /// in a torn or corrupt record is cut before it (a crash mid-write) and sealed.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        let io = |source| SpoolError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(SpoolError::Busy {
                    dir: dir.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let mut ids: Vec<u64> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                u64::from_str_radix(name.strip_suffix(".seg")?, 16).ok()
            })
            .collect();
        ids.sort_unstable();
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            sealed: Vec::new(),
            active: None,
            next_id: ids.last().map_or(1, |l| l + 1),
            recovered_torn: 0,
            _lock: lock,
        };
        for id in ids {
            let path = spool.path(id);
            let (records, valid) = read_segment(&path).map_err(io)?;
            let len = std::fs::metadata(&path).map_err(io)?.len();
            if valid < len {
                spool.recovered_torn += 1;
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(valid))
                    .map_err(io)?;
            }
            if records.is_empty() {
                std::fs::remove_file(&path).map_err(io)?;
            } else {
                spool.sealed.push((id, valid));
            }
        }
        Ok(spool)
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:016x}.seg"))
    }

    fn io(&self) -> impl Fn(std::io::Error) -> SpoolError + '_ {
        |source| SpoolError::Io {
            dir: self.dir.clone(),
            source,
        }
    }

    /// Bytes held on disk (and in the write buffer).
    pub fn bytes(&self) -> u64 {
        self.sealed.iter().map(|(_, b)| b).sum::<u64>()
            + self.active.as_ref().map_or(0, |(_, b, _)| *b)
    }

    /// Records a payload, or refuses it when the spool is full.
    pub fn append(&mut self, payload: &[u8]) -> Result<(), SpoolError> {
        if payload.len() > MAX_RECORD {
            return Err(SpoolError::TooLarge(payload.len()));
        }
        let size = (HEADER + payload.len()) as u64;
        if self.bytes() + size > self.max_bytes {
            return Err(SpoolError::Full {
                max: self.max_bytes,
            });
        }
        if self
            .active
            .as_ref()
            .is_some_and(|(_, b, _)| *b >= SEGMENT_BYTES)
        {
            self.seal()?;
        }
        if self.active.is_none() {
            let id = self.next_id;
            self.next_id += 1;
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(self.path(id))
                .map_err(self.io())?;
            self.active = Some((id, 0, BufWriter::new(file)));
        }
        let (_, bytes, w) = self.active.as_mut().expect("opened above");
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        record.extend_from_slice(payload);
        // Straight to the kernel: a process killed from here on loses nothing.
        let written = w.write_all(&record).and_then(|()| w.flush());
        *bytes += size;
        if let Err(source) = written {
            // Part of the record may be on disk: the segment is sealed with the tear at its
            // end (where reading stops), so that later records go to a new one and stay
            // readable.
            let _ = self.seal();
            return Err(SpoolError::Io {
                dir: self.dir.clone(),
                source,
            });
        }
        Ok(())
    }

    /// Makes what was appended durable on disk (a power loss loses nothing before this).
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if let Some((_, _, w)) = &mut self.active {
            w.flush()
                .and_then(|()| w.get_ref().sync_data())
                .map_err(|source| SpoolError::Io {
                    dir: self.dir.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Seals the segment being written, so that it can be shipped.
    pub fn seal(&mut self) -> Result<(), SpoolError> {
        // Sealed even when the sync fails: the segment is shipped as far as it reads back.
        let synced = self.sync();
        if let Some((id, bytes, _)) = self.active.take() {
            self.sealed.push((id, bytes));
        }
        synced
    }

    /// The oldest sealed segment's records, if any.
    pub fn oldest(&self) -> Result<Option<Segment>, SpoolError> {
        let Some((id, path)) = self.oldest_path() else {
            return Ok(None);
        };
        let (records, _) = read_segment(&path).map_err(self.io())?;
        Ok(Some(Segment { id, records }))
    }

    /// The oldest sealed segment's id and file, to read without holding the spool (sealed
    /// segments never change).
    pub fn oldest_path(&self) -> Option<(u64, PathBuf)> {
        self.sealed.first().map(|&(id, _)| (id, self.path(id)))
    }

    /// A handle on the file being written, to make it durable without holding the spool
    /// (appends go on meanwhile).
    pub fn active_file(&self) -> Option<File> {
        self.active
            .as_ref()
            .and_then(|(_, _, w)| w.get_ref().try_clone().ok())
    }

    /// Whether a segment is being written.
    pub fn has_active(&self) -> bool {
        self.active.is_some()
    }

    /// Deletes a sealed segment, once the hub has acknowledged every record in it.
    pub fn remove(&mut self, id: u64) -> Result<(), SpoolError> {
        let Some(i) = self.sealed.iter().position(|(s, _)| *s == id) else {
            return Ok(());
        };
        std::fs::remove_file(self.path(id)).map_err(self.io())?;
        self.sealed.remove(i);
        Ok(())
    }

    /// Sealed segments and records waiting, and bytes held, for `feedback status`.
    pub fn status(&self) -> (usize, u64) {
        (
            self.sealed.len() + usize::from(self.active.is_some()),
            self.bytes(),
        )
    }
}

/// A spool as seen from outside, without taking it from the daemon that writes it.
#[derive(Debug, Default)]
pub struct Inspection {
    pub segments: usize,
    pub events: usize,
    pub bytes: u64,
    /// When the oldest waiting segment was last written.
    pub oldest: Option<std::time::SystemTime>,
    /// Whether a running daemon holds the spool.
    pub held: bool,
}

/// Counts what waits in the spool at `dir` (none if it does not exist yet).
pub fn inspect(dir: &Path) -> Result<Inspection, SpoolError> {
    let io = |source| SpoolError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    let mut out = Inspection::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(e)),
    };
    for entry in entries {
        let path = entry.map_err(io)?.path();
        if path.extension().is_none_or(|e| e != "seg") {
            continue;
        }
        // A segment deleted meanwhile (shipped) is simply not counted.
        let Ok((records, valid)) = read_segment(&path) else {
            continue;
        };
        out.segments += 1;
        out.events += records.len();
        out.bytes += valid;
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        out.oldest = match (out.oldest, modified) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    if let Ok(lock) = File::open(dir.join("lock")) {
        out.held = matches!(
            lock.try_lock_shared(),
            Err(std::fs::TryLockError::WouldBlock)
        );
    }
    Ok(out)
}

/// The records of a segment file, and the length of its valid prefix (where a torn or corrupt
/// record starts, if one does).
pub fn read_segment(path: &Path) -> std::io::Result<(Vec<Vec<u8>>, u64)> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut records = Vec::new();
    let mut at = 0usize;
    while let Some(head) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if len > MAX_RECORD || crc32fast::hash(payload) != crc {
            break;
        }
        records.push(payload.to_vec());
        at += HEADER + len;
    }
    Ok((records, at as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(s: &mut Spool) -> Vec<Vec<u8>> {
        s.seal().unwrap();
        let mut out = Vec::new();
        while let Some(seg) = s.oldest().unwrap() {
            out.extend(seg.records);
            s.remove(seg.id).unwrap();
        }
        out
    }

    fn segments(dir: &Path) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_second_writer_is_refused_while_the_first_holds_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let first = Spool::open(dir.path(), 1 << 30).unwrap();
        let err = Spool::open(dir.path(), 1 << 30).err().expect("busy");
        assert!(matches!(err, SpoolError::Busy { .. }), "{err}");
        assert!(
            err.to_string().contains("in use by another process"),
            "{err}"
        );
        drop(first);
        Spool::open(dir.path(), 1 << 30).expect("free again");
    }

    #[test]
    fn a_spool_is_inspected_without_taking_it() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(inspect(&dir.path().join("none")).unwrap().events, 0);
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        for i in 0..10 {
            s.append(format!("event {i}").as_bytes()).unwrap();
        }
        let seen = inspect(dir.path()).unwrap();
        assert_eq!((seen.segments, seen.events, seen.held), (1, 10, true));
        assert!(seen.oldest.is_some());
        s.append(b"still writable").unwrap();
        drop(s);
        let seen = inspect(dir.path()).unwrap();
        assert_eq!((seen.events, seen.held), (11, false));
    }

    #[test]
    fn records_survive_reopening_and_leave_only_when_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        for i in 0..1000 {
            s.append(format!("event {i}").as_bytes()).unwrap();
        }
        // No sync, no seal: the process "dies" here.
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        let got = all(&mut s);
        assert_eq!(got.len(), 1000);
        assert_eq!(got[999], b"event 999");
        assert_eq!(s.status(), (0, 0));
        assert!(segments(dir.path()).is_empty());
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        s.append(b"first").unwrap();
        s.append(b"second").unwrap();
        s.seal().unwrap();
        drop(s);
        let seg = segments(dir.path()).remove(0);
        // A record cut mid-write, as a crash would leave it.
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[20, 0, 0, 0, 1, 2, 3, 4, b'x']).unwrap();
        drop(f);
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(s.recovered_torn, 1);
        assert_eq!(all(&mut s), [b"first".to_vec(), b"second".to_vec()]);
        drop(s);

        // A flipped bit in a payload: that record and what follows are cut.
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        s.append(b"good").unwrap();
        s.append(b"flipped").unwrap();
        s.seal().unwrap();
        drop(s);
        let seg = segments(dir.path()).remove(0);
        let mut bytes = std::fs::read(&seg).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&seg, bytes).unwrap();
        let mut s = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(all(&mut s), [b"good".to_vec()]);
    }

    #[test]
    fn segments_rotate_and_a_full_spool_refuses_loudly() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 3 * SEGMENT_BYTES).unwrap();
        let big = vec![b'e'; 64 * 1024];
        let mut refused = 0;
        for _ in 0..60 {
            match s.append(&big) {
                Ok(()) => {}
                Err(SpoolError::Full { .. }) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(refused > 0);
        assert!(s.bytes() <= 3 * SEGMENT_BYTES);
        s.seal().unwrap();
        let (segments, _) = s.status();
        assert!(segments >= 3, "{segments}");
        // The oldest segment goes first; removing it makes room again.
        let oldest = s.oldest().unwrap().unwrap();
        s.remove(oldest.id).unwrap();
        s.append(&big).unwrap();
        assert!(matches!(
            s.append(&vec![0; MAX_RECORD + 1]),
            Err(SpoolError::TooLarge(_))
        ));
    }
}
