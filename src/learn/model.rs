//! The content model: naive Bayes over hashed features, with Robinson's per-token estimate
//! and Fisher's chi-square combining, as SpamAssassin's Bayes and Bogofilter do.
//!
//! **Counts.** For each feature `w`: `s(w)` and `h(w)`, the spam and ham messages trained
//! that had it; `Ns`, `Nh`, the spam and ham messages trained. Counts decay with time
//! (`half_life`), so the model follows what mail is like now.
//!
//! **Per token.** `p(w) = (s/Ns) / (s/Ns + h/Nh)`, the share of spam among messages with `w`
//! if both classes were equally common; Robinson's estimate pulls it towards `x` (0.5) when
//! `w` was seen rarely: `f(w) = (S·x + n·p(w)) / (S + n)` with `n = s + h` and strength `S`.
//!
//! **Per message.** The up to [`MAX_TOKENS`] features whose `f(w)` lies furthest from 0.5
//! (at least [`MIN_DEVIATION`] away) are combined: `H = C⁻¹(-2 Σ ln f(w), 2k)` and
//! `S = C⁻¹(-2 Σ ln (1 - f(w)), 2k)`, `C⁻¹` the chi-square survival function with `2k`
//! degrees of freedom, and the spam probability is `(1 + H - S) / 2`: near 1 when the
//! features agree on spam, near 0 on ham, 0.5 when they disagree or say nothing.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// Robinson's strength of the prior, and the prior.
pub const STRENGTH: f64 = 0.45;
pub const PRIOR: f64 = 0.5;
/// Features combined per message at most, and how far from 0.5 a feature's estimate must be.
pub const MAX_TOKENS: usize = 150;
pub const MIN_DEVIATION: f64 = 0.1;
/// A feature whose decayed counts both fell under this is dropped from the model.
pub const FORGET_BELOW: f32 = 0.01;

/// What a model file starts with; the version of its encoding follows.
const MAGIC: &[u8; 7] = b"RMLEARN";
const VERSION: u8 = 1;

/// Spam and ham counts of one feature.
pub type Counts = [f32; 2];

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Model {
    /// Seconds since the epoch the counts are as of.
    pub at: u64,
    /// Messages trained, decayed: spam, ham.
    pub spam: f64,
    pub ham: f64,
    pub features: FxHashMap<u64, Counts>,
}

/// The model as a file holds it: features in order, so equal models are equal files.
#[derive(Serialize, Deserialize)]
struct Stored {
    at: u64,
    spam: f64,
    ham: f64,
    features: Vec<(u64, f32, f32)>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    #[error("not a repmilter model file")]
    NotAModel,
    #[error("model file version {0}: this repmilter reads version {VERSION}")]
    Version(u8),
    #[error("the model file is damaged: {0}")]
    Damaged(String),
}

/// The version of a model file's bytes: the hub's `ETag` of it, and what a gateway holding
/// the file asks `If-None-Match` with.
pub fn version(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A message's score.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// Spam probability, 0 to 1.
    pub probability: f64,
    /// The features combined, most telling first, with their estimate `f(w)`.
    pub used: Vec<(u64, f64)>,
}

/// The chi-square survival function `Q(x2 | v)` for even `v`: the probability that a
/// chi-square variable with `v` degrees of freedom exceeds `x2`.
pub fn chi2q(x2: f64, v: usize) -> f64 {
    let m = x2 / 2.0;
    let mut term = (-m).exp();
    let mut sum = term;
    for i in 1..v / 2 {
        term *= m / i as f64;
        sum += term;
    }
    sum.min(1.0)
}

impl Model {
    /// Decays the counts to `now` (nothing when `now` is not later).
    pub fn decay_to(&mut self, now: u64, half_life: u64) {
        if now <= self.at {
            return;
        }
        let f = (-((now - self.at) as f64) / half_life.max(1) as f64).exp2();
        self.spam *= f;
        self.ham *= f;
        let ff = f as f32;
        self.features.retain(|_, c| {
            c[0] *= ff;
            c[1] *= ff;
            c[0] >= FORGET_BELOW || c[1] >= FORGET_BELOW
        });
        self.at = now;
    }

    /// Trains one message's features (sorted, each once) as spam or ham, as of the model's
    /// time (decay it first).
    pub fn train(&mut self, features: &[u64], spam: bool) {
        let side = usize::from(!spam);
        if spam {
            self.spam += 1.0;
        } else {
            self.ham += 1.0;
        }
        for f in features {
            self.features.entry(*f).or_default()[side] += 1.0;
        }
    }

    /// Robinson's estimate for a feature with these counts.
    pub fn estimate(&self, c: Counts) -> Option<f64> {
        if self.spam <= 0.0 || self.ham <= 0.0 {
            return None;
        }
        let (s, h) = (f64::from(c[0]), f64::from(c[1]));
        let n = s + h;
        if n <= 0.0 {
            return None;
        }
        let (rs, rh) = ((s / self.spam).min(1.0), (h / self.ham).min(1.0));
        let p = rs / (rs + rh);
        Some((STRENGTH * PRIOR + n * p) / (STRENGTH + n))
    }

    /// Scores a message's features.
    pub fn score(&self, features: &[u64]) -> Score {
        let mut est: Vec<(u64, f64)> = features
            .iter()
            .filter_map(|f| {
                let e = self.estimate(*self.features.get(f)?)?;
                ((e - 0.5).abs() >= MIN_DEVIATION).then_some((*f, e))
            })
            .collect();
        est.sort_unstable_by(|a, b| {
            (b.1 - 0.5)
                .abs()
                .total_cmp(&(a.1 - 0.5).abs())
                .then(a.0.cmp(&b.0))
        });
        est.truncate(MAX_TOKENS);
        if est.is_empty() {
            return Score {
                probability: 0.5,
                used: est,
            };
        }
        // Estimates are kept off 0 and 1, so the logarithms stay finite.
        let clamp = |p: f64| p.clamp(1e-6, 1.0 - 1e-6);
        let ln_f: f64 = est.iter().map(|(_, e)| clamp(*e).ln()).sum();
        let ln_1f: f64 = est.iter().map(|(_, e)| (1.0 - clamp(*e)).ln()).sum();
        let k = est.len();
        let h = chi2q(-2.0 * ln_f, 2 * k);
        let s = chi2q(-2.0 * ln_1f, 2 * k);
        Score {
            probability: ((1.0 + h - s) / 2.0).clamp(0.0, 1.0),
            used: est,
        }
    }

    /// The model as file bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut features: Vec<(u64, f32, f32)> = self
            .features
            .iter()
            .map(|(f, c)| (*f, c[0], c[1]))
            .collect();
        features.sort_unstable_by_key(|f| f.0);
        let stored = Stored {
            at: self.at,
            spam: self.spam,
            ham: self.ham,
            features,
        };
        let mut out = MAGIC.to_vec();
        out.push(VERSION);
        postcard::to_extend(&stored, out).expect("a model serializes")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Model, ModelError> {
        let rest = bytes.strip_prefix(MAGIC).ok_or(ModelError::NotAModel)?;
        let (&version, rest) = rest.split_first().ok_or(ModelError::NotAModel)?;
        if version != VERSION {
            return Err(ModelError::Version(version));
        }
        let (s, left): (Stored, &[u8]) =
            postcard::take_from_bytes(rest).map_err(|e| ModelError::Damaged(e.to_string()))?;
        if !left.is_empty() {
            return Err(ModelError::Damaged(format!(
                "{} bytes after the model",
                left.len()
            )));
        }
        let finite = |x: f64| x.is_finite() && x >= 0.0;
        if !finite(s.spam)
            || !finite(s.ham)
            || s.features
                .iter()
                .any(|f| !finite(f64::from(f.1)) || !finite(f64::from(f.2)))
        {
            return Err(ModelError::Damaged(
                "a count is negative or not a number".into(),
            ));
        }
        Ok(Model {
            at: s.at,
            spam: s.spam,
            ham: s.ham,
            features: s
                .features
                .into_iter()
                .map(|(f, a, b)| (f, [a, b]))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi_square_survival_has_known_values() {
        // Q(0 | v) = 1; Q(2 | 2) = e^-1; Q(4 | 4) = e^-2 (1 + 2).
        assert_eq!(chi2q(0.0, 10), 1.0);
        assert!((chi2q(2.0, 2) - (-1f64).exp()).abs() < 1e-12);
        assert!((chi2q(4.0, 4) - 3.0 * (-2f64).exp()).abs() < 1e-12);
        assert!(chi2q(1e6, 300) < 1e-100);
    }

    #[test]
    fn known_counts_give_known_probabilities() {
        let mut m = Model {
            spam: 100.0,
            ham: 300.0,
            ..Model::default()
        };
        // In 50 of 100 spams and 15 of 300 hams: p = 0.5 / (0.5 + 0.05) = 10/11.
        let c = [50.0, 15.0];
        let p = 10.0 / 11.0;
        let want = (STRENGTH * PRIOR + 65.0 * p) / (STRENGTH + 65.0);
        assert!((m.estimate(c).unwrap() - want).abs() < 1e-9);
        // Seen once: pulled strongly towards 0.5.
        let once = m.estimate([1.0, 0.0]).unwrap();
        assert!((once - (STRENGTH * 0.5 + 1.0) / (STRENGTH + 1.0)).abs() < 1e-9);
        // Features agreeing on spam give a probability near 1; on ham near 0; one of each, 0.5.
        m.features.insert(1, [90.0, 3.0]);
        m.features.insert(2, [80.0, 6.0]);
        m.features.insert(3, [1.0, 280.0]);
        m.features.insert(4, [2.0, 250.0]);
        m.features.insert(5, [50.0, 150.0]);
        assert!(m.score(&[1, 2]).probability > 0.99);
        assert!(m.score(&[3, 4]).probability < 0.01);
        let mixed = m.score(&[1, 3]).probability;
        assert!((mixed - 0.5).abs() < 0.05, "{mixed}");
        // Feature 5 is as common in spam as in ham (p = 0.5): not used. Unknown ones neither.
        let s = m.score(&[5, 99]);
        assert_eq!((s.probability, s.used.len()), (0.5, 0));
        // The most telling feature comes first.
        assert_eq!(m.score(&[2, 3]).used[0].0, 3);
    }

    #[test]
    fn a_model_without_both_classes_says_nothing() {
        let mut m = Model::default();
        m.train(&[1, 2], true);
        assert_eq!(m.score(&[1, 2]).probability, 0.5);
    }

    #[test]
    fn training_counts_and_decays() {
        let mut m = Model::default();
        m.train(&[1, 2], true);
        m.train(&[2, 3], false);
        assert_eq!((m.spam, m.ham), (1.0, 1.0));
        assert_eq!(m.features[&2], [1.0, 1.0]);
        m.decay_to(100, 100);
        assert_eq!((m.spam, m.ham, m.features[&2]), (0.5, 0.5, [0.5, 0.5]));
        // Long after, everything is forgotten.
        m.decay_to(100 + 100 * 10, 100);
        assert!(m.features.is_empty());
    }

    #[test]
    fn a_model_survives_its_file_and_bad_files_are_errors() {
        let mut m = Model::default();
        m.train(&[5, 7, 9], true);
        m.train(&[7, 11], false);
        m.at = 1234;
        let bytes = m.to_bytes();
        assert_eq!(Model::from_bytes(&bytes).unwrap(), m);
        assert_eq!(bytes, Model::from_bytes(&bytes).unwrap().to_bytes());
        assert_eq!(Model::from_bytes(b"hello"), Err(ModelError::NotAModel));
        let mut v2 = bytes.clone();
        v2[7] = 2;
        assert_eq!(Model::from_bytes(&v2), Err(ModelError::Version(2)));
        assert!(matches!(
            Model::from_bytes(&bytes[..bytes.len() - 3]),
            Err(ModelError::Damaged(_))
        ));
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"garbage");
        assert_eq!(
            Model::from_bytes(&longer),
            Err(ModelError::Damaged("7 bytes after the model".into()))
        );
        for cut in 0..bytes.len() {
            let _ = Model::from_bytes(&bytes[..cut]);
        }
    }
}
