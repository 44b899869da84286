//! Learning from reported spam and ham: a content model every gateway applies locally.
//!
//! - [`features`]: what the model sees of a message (hashed tokens of text, headers, links,
//!   attachments, and the rules that fired).
//! - [`model`]: naive Bayes with Robinson's estimate and Fisher's combining; training,
//!   scoring, the model file.
//! - [`fetch`]: with a hub, the network's model fetched into the model file.
//!
//! The model file (`[learn] model`) is trained by `repmilter feedback report` when no hub is
//! configured; the daemon and `check` read it, and read it again when it changes. A model
//! trained on fewer than `min_spam` spam or `min_ham` ham messages scores nothing.

pub mod features;
pub mod fetch;
pub mod model;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::config::Learn;
use crate::scan::{Compute, ScanInput, Symbol};
use model::{Model, ModelError};

/// Largest model file read.
pub const MAX_MODEL_FILE: u64 = 512 * 1024 * 1024;

/// How often the daemon looks whether the model file changed.
const RECHECK: Duration = Duration::from_secs(1);

/// Probability bands and their symbols, with default scores (tuned like any symbol in
/// `[scores]`): from the most certain spam down to the most certain ham.
pub const BANDS: [(f64, &str, f64); 9] = [
    (0.99, "LEARN_SPAM_99", 3.5),
    (0.95, "LEARN_SPAM_95", 3.0),
    (0.80, "LEARN_SPAM_80", 2.0),
    (0.60, "LEARN_SPAM_60", 1.0),
    (0.40, "LEARN_SPAM_50", 0.0),
    (0.20, "LEARN_HAM_60", -0.5),
    (0.05, "LEARN_HAM_80", -1.0),
    (0.01, "LEARN_HAM_95", -1.5),
    (0.0, "LEARN_HAM_99", -2.0),
];

/// The symbol of a spam probability.
pub fn symbol_for(probability: f64, used: usize) -> Symbol {
    let (_, name, score) = BANDS
        .iter()
        .find(|(low, _, _)| probability >= *low)
        .copied()
        .unwrap_or(BANDS[BANDS.len() - 1]);
    Symbol::new(
        name,
        score,
        format!("learned spam probability {probability:.3} from {used} features"),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error("{}: cannot read the model", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: crate::files::ReadError,
    },
    #[error("{}", path.display())]
    Model {
        path: PathBuf,
        #[source]
        source: ModelError,
    },
    #[error("{}: cannot write the model", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Reads a model file (None: there is none).
pub fn read(path: &Path) -> Result<Option<Model>, LearnError> {
    let bytes = match crate::files::read_prefix(path, MAX_MODEL_FILE) {
        Ok(b) => b,
        Err(crate::files::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None);
        }
        Err(source) => {
            return Err(LearnError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    Model::from_bytes(&bytes)
        .map(Some)
        .map_err(|source| LearnError::Model {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes a model file whole or not at all (a reader never sees half of one).
pub fn write(path: &Path, model: &Model) -> Result<(), LearnError> {
    let err = |source| LearnError::Write {
        path: path.to_path_buf(),
        source,
    };
    // Each writer its own temporary file: two processes writing at once must not rename
    // each other's half-written file.
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, model.to_bytes()).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Holds the model file's lock: training reads, changes and writes the file under it, so
/// that two `feedback report` runs at once both count.
pub struct TrainingLock(#[allow(dead_code)] std::fs::File);

/// Waits for the model file's lock (a `.lock` file beside it).
pub fn lock_for_training(path: &Path) -> Result<TrainingLock, LearnError> {
    let lock = path.with_extension("lock");
    let err = |source| LearnError::Write {
        path: lock.clone(),
        source,
    };
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(err)?;
    f.lock().map_err(err)?;
    Ok(TrainingLock(f))
}

/// The model in use, read again when its file changes.
pub struct Learner {
    pub config: Learn,
    state: Mutex<Loaded>,
}

#[derive(Default)]
struct Loaded {
    model: Option<Arc<Model>>,
    /// The file's modification time and length when read.
    stamp: Option<(SystemTime, u64)>,
    checked: Option<Instant>,
    /// A scan is reading a changed file.
    loading: bool,
}

impl Learner {
    pub fn new(config: &Learn) -> Learner {
        Learner {
            config: config.clone(),
            state: Mutex::new(Loaded::default()),
        }
    }

    /// The model, if there is one old enough to use (trained on `min_spam` spam and
    /// `min_ham` ham). A changed file is read by the one scan that notices it, outside the
    /// lock: the others go on with the model they have meanwhile.
    pub fn model(&self) -> Option<Arc<Model>> {
        let (load, mut current) = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let mut load = None;
            if !st.loading && st.checked.is_none_or(|t| t.elapsed() >= RECHECK) {
                st.checked = Some(Instant::now());
                let stamp = std::fs::metadata(&self.config.model)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())));
                if stamp != st.stamp {
                    st.loading = true;
                    load = Some(stamp);
                }
            }
            (load, st.model.clone())
        };
        if let Some(stamp) = load {
            let read = read(&self.config.model);
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.loading = false;
            st.stamp = stamp;
            match read {
                Ok(m) => {
                    if let Some(m) = &m {
                        tracing::info!(
                            spam = m.spam,
                            ham = m.ham,
                            features = m.features.len(),
                            "learned model read from {}",
                            self.config.model.display()
                        );
                    }
                    st.model = m.map(Arc::new);
                }
                // The model in use stays; the next change of the file is read again.
                Err(e) => tracing::warn!("{}", crate::ErrorChain(&e)),
            }
            current = st.model.clone();
        }
        let m = current?;
        (m.spam >= self.config.min_spam as f64 && m.ham >= self.config.min_ham as f64).then_some(m)
    }

    /// The learner's symbol for a message, given the symbols of the stages before it.
    pub fn judge(&self, input: &ScanInput, earlier: &[Symbol]) -> Option<(Symbol, model::Score)> {
        let model = self.model()?;
        let features = features::with_symbols(features::of(input), earlier);
        let score = model.score(&features);
        Some((symbol_for(score.probability, score.used.len()), score))
    }
}

/// The learner as a pipeline stage: after the content rules, whose names are features.
pub struct LearnStage {
    pub learner: Arc<Learner>,
}

impl Compute for LearnStage {
    fn name(&self) -> &'static str {
        "learn"
    }

    fn scan(&self, input: &ScanInput, deadline: Instant) -> Vec<Symbol> {
        self.scan_after(input, deadline, &[])
    }

    fn scan_after(&self, input: &ScanInput, deadline: Instant, earlier: &[Symbol]) -> Vec<Symbol> {
        if Instant::now() >= deadline {
            return vec![Symbol::timed_out(self.name())];
        }
        self.learner
            .judge(input, earlier)
            .map(|(s, _)| s)
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_map_to_bands() {
        let name = |p| symbol_for(p, 1).name;
        assert_eq!(name(1.0), "LEARN_SPAM_99");
        assert_eq!(name(0.99), "LEARN_SPAM_99");
        assert_eq!(name(0.97), "LEARN_SPAM_95");
        assert_eq!(name(0.5), "LEARN_SPAM_50");
        assert_eq!(name(0.3), "LEARN_HAM_60");
        assert_eq!(name(0.001), "LEARN_HAM_99");
        assert_eq!(name(0.0), "LEARN_HAM_99");
        assert_eq!(symbol_for(0.5, 1).score, 0.0);
    }

    #[test]
    fn a_model_too_young_or_absent_scores_nothing_and_a_new_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let config = Learn {
            model: dir.path().join("learn.model"),
            min_spam: 2,
            min_ham: 1,
            ..Learn::default()
        };
        let learner = Learner::new(&config);
        assert!(learner.model().is_none());
        let mut m = Model::default();
        m.train(&[1], true);
        m.train(&[2], false);
        write(&config.model, &m).unwrap();
        // Read at the next check; one spam is too few.
        std::thread::sleep(RECHECK);
        assert!(learner.model().is_none());
        m.train(&[1], true);
        write(&config.model, &m).unwrap();
        std::thread::sleep(RECHECK);
        assert_eq!(*learner.model().unwrap(), m);
        // A damaged file leaves the model in use.
        std::fs::write(&config.model, b"RMLEARN\x01garbage-garbage").unwrap();
        std::thread::sleep(RECHECK);
        assert_eq!(*learner.model().unwrap(), m);
    }
}
