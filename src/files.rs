//! Reading operator files (config, rules, lists, messages) with a cap, never trusting what
//! the file system says about their size.
//!
//! `/dev/zero` reports a length of 0 and never ends; a FIFO blocks the reader until someone
//! writes to it; `/proc` files report 0 and have content. So a file must be a regular file
//! (checked on the opened descriptor, not only the path), is opened without blocking, and is
//! read through a cap one byte past the limit so that "too large" is told apart from "exactly
//! the limit".

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Why a file could not be read. The caller names the file ("cannot read rule file X: ...").
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("it is {kind}, not a regular file")]
    NotRegular { kind: &'static str },
    #[error("it is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
}

fn kind(ft: std::fs::FileType) -> Option<&'static str> {
    if ft.is_file() {
        None
    } else if ft.is_dir() {
        Some("a directory")
    } else if ft.is_fifo() {
        Some("a FIFO")
    } else if ft.is_char_device() {
        Some("a character device")
    } else if ft.is_block_device() {
        Some("a block device")
    } else if ft.is_socket() {
        Some("a socket")
    } else {
        Some("not a file")
    }
}

/// Opens a regular file for reading; anything else is refused without blocking.
pub fn open_regular(path: &Path) -> Result<std::fs::File, ReadError> {
    // The path first, so that a FIFO is refused without opening it at all.
    if let Some(kind) = kind(std::fs::metadata(path)?.file_type()) {
        return Err(ReadError::NotRegular { kind });
    }
    // Non-blocking, in case the path was replaced by a FIFO since; no effect on a regular file.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if let Some(kind) = kind(file.metadata()?.file_type()) {
        return Err(ReadError::NotRegular { kind });
    }
    Ok(file)
}

/// Reads a regular file of at most `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    read_capped(open_regular(path)?, limit).map_err(|e| match e {
        Capped::Io(e) => ReadError::Io(e),
        Capped::TooLarge => ReadError::TooLarge { limit },
    })
}

/// Reads the first `limit` bytes of a regular file (all of it if shorter).
pub fn read_prefix(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    open_regular(path)?.take(limit).read_to_end(&mut out)?;
    Ok(out)
}

/// Reads a regular file of at most `limit` bytes as text (invalid UTF-8 replaced).
pub fn read_text(path: &Path, limit: u64) -> Result<String, ReadError> {
    read_bounded(path, limit).map(|b| match String::from_utf8(b) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Why [`read_capped`] stopped.
#[derive(Debug)]
pub enum Capped {
    Io(std::io::Error),
    TooLarge,
}

/// Reads a stream to its end, or fails once it gives more than `limit` bytes.
pub fn read_capped(r: impl Read, limit: u64) -> Result<Vec<u8>, Capped> {
    let mut out = Vec::new();
    r.take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(Capped::Io)?;
    if out.len() as u64 > limit {
        return Err(Capped::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_within_the_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"12345").unwrap();
        assert_eq!(read_bounded(&p, 5).unwrap(), b"12345");
        assert!(matches!(
            read_bounded(&p, 4),
            Err(ReadError::TooLarge { limit: 4, .. })
        ));
    }

    #[test]
    fn devices_fifos_and_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        for (p, what) in [
            (Path::new("/dev/zero"), "a character device"),
            (fifo.as_path(), "a FIFO"),
            (dir.path(), "a directory"),
        ] {
            match read_bounded(p, 1 << 20) {
                Err(ReadError::NotRegular { kind, .. }) => assert_eq!(kind, what),
                other => panic!("{}: {other:?}", p.display()),
            }
        }
    }

    #[test]
    fn an_endless_stream_stops_at_the_cap() {
        let zeros = std::io::repeat(0);
        assert!(matches!(read_capped(zeros, 1000), Err(Capped::TooLarge)));
        assert_eq!(read_capped(&b"abc"[..], 3).unwrap(), b"abc");
    }
}
