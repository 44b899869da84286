//! The correlation model: how reports from many gateways become a key's reputation. Pure: the
//! store keeps [`KeyRecord`]s, this module updates and reads them.
//!
//! **Evidence.** Each gateway `g` holds spam evidence `s_g` and ham evidence `h_g` on a key.
//! A spam report adds 1 to `s_g`, a ham report (a false positive) 1 to `h_g`; the gateway's
//! own verdict of reject or discard adds `verdict_weight` (0.25) to `s_g`, unless the hub's
//! spam opinion was part of it (`HUB_SPAM_*`, `HUB_FUZZY`: the hub must not reinforce
//! itself; `HUB_UNAVAILABLE` and the like carry no opinion and do not count). Evidence decays with time: at age
//! `t` it weighs `2^(-t / half_life)` (half-life 3 days).
//!
//! **One gateway cannot list or clear a key.** A gateway's contribution is capped at 1 and
//! multiplied by its weight `w_g` (1 unless configured): `S = Σ min(1, s_g)·w_g`,
//! `H = Σ min(1, h_g)·w_g`. A key is judged only when at least `min_reporters` (2) gateways
//! hold at least half a report's worth of evidence for the winning side; a thousand reports
//! from one gateway count as one.
//!
//! **Score.** With `p = (S + 1) / (S + H + 2)` (a Laplace-smoothed spam share) and confidence
//! `c = 1 - e^-(S+H)`, the key's score contribution is `max_score · (2p - 1) · c`: positive
//! for spam, negative for keys that ham reports vouch for, near 0 for little or mixed
//! evidence. Keys on the admin allowlist score `allow_score` (-5) whatever the evidence.
//!
//! **One hop.** When an event arrives, the best spam reputation among its keys (by their own
//! evidence, as a share of `max_score`) is spread to its other keys as "spread" evidence,
//! times `spread` (0.5), which counts as one reporter: a new IP sending a campaign whose URL
//! domain or fingerprint the network knows is listed on that first sight. Spread evidence is
//! never spread further.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::config::hub::Model;

/// Spread evidence below this has decayed away and no longer counts as a reporter.
const MIN_SPREAD: f64 = 0.01;

/// Evidence on one side pair, as of `at` (seconds since the epoch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub spam: f64,
    pub ham: f64,
    pub at: u64,
}

impl Evidence {
    /// The evidence as of `now`.
    pub fn decayed(&self, now: u64, half_life: u64) -> (f64, f64) {
        let age = now.saturating_sub(self.at) as f64;
        let f = (-age / half_life.max(1) as f64).exp2();
        (self.spam * f, self.ham * f)
    }

    fn add(&mut self, spam: f64, ham: f64, now: u64, half_life: u64) {
        let (s, h) = self.decayed(now, half_life);
        *self = Evidence {
            spam: s + spam,
            ham: h + ham,
            at: now.max(self.at),
        };
    }
}

/// Everything known about one key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub by_gateway: BTreeMap<String, Evidence>,
    /// Evidence spread from co-occurring keys.
    #[serde(default)]
    pub spread: Evidence,
}

/// What one event adds to one key.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Update {
    pub spam: f64,
    pub ham: f64,
    pub spread: f64,
}

impl Update {
    /// Whether it adds anything.
    pub fn is_some(&self) -> bool {
        self.spam > 0.0 || self.ham > 0.0 || self.spread > 0.0
    }

    /// Adds another update made at the same time (applying the sum equals applying both).
    pub fn add(&mut self, other: Update) {
        self.spam += other.spam;
        self.ham += other.ham;
        self.spread += other.spread;
    }
}

impl KeyRecord {
    /// Adds a gateway's evidence and spread evidence, decaying what was there.
    pub fn apply(&mut self, gateway: &str, u: Update, now: u64, model: &Model) {
        if u.spam > 0.0 || u.ham > 0.0 {
            self.by_gateway.entry(gateway.to_string()).or_default().add(
                u.spam,
                u.ham,
                now,
                model.half_life,
            );
        }
        if u.spread > 0.0 {
            self.spread.add(u.spread, 0.0, now, model.half_life);
        }
    }
}

/// A key's reputation, as the hub answers a lookup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reputation {
    pub key: String,
    /// Score contribution: positive for spam, negative for known-good.
    pub score: f64,
    /// Decayed, capped evidence (S and H above).
    pub spam: f64,
    pub ham: f64,
    /// Gateways with evidence on the winning side (spread counts as one).
    pub reporters: usize,
    pub why: String,
    /// Seconds the gateway may cache this answer.
    pub ttl: u64,
}

/// The numbers behind a reputation (no text: the ingest path computes many).
#[derive(Debug, Clone, Copy, Default)]
struct Assessment {
    score: f64,
    spam: f64,
    ham: f64,
    reporters: usize,
    spam_side: bool,
    /// Enough reporters to be judged.
    judged: bool,
}

/// Scores a record; `with_spread` false leaves spread evidence out (so that spread never
/// travels a second hop).
fn assess(record: &KeyRecord, with_spread: bool, now: u64, model: &Model) -> Assessment {
    let mut a = Assessment::default();
    let (mut spam_reporters, mut ham_reporters) = (0, 0);
    for (g, e) in &record.by_gateway {
        let w = model.weights.get(g).copied().unwrap_or(1.0);
        let (s, h) = e.decayed(now, model.half_life);
        a.spam += s.min(1.0) * w;
        a.ham += h.min(1.0) * w;
        spam_reporters += usize::from(s >= 0.5);
        ham_reporters += usize::from(h >= 0.5);
    }
    if with_spread {
        // Spread comes only from a co-occurring key that the network lists: any of it left
        // counts as that one more voice.
        let (spread, _) = record.spread.decayed(now, model.half_life);
        a.spam += spread.min(1.0);
        spam_reporters += usize::from(spread >= MIN_SPREAD);
    }
    let p = (a.spam + 1.0) / (a.spam + a.ham + 2.0);
    let confidence = 1.0 - (-(a.spam + a.ham)).exp();
    a.spam_side = a.spam >= a.ham;
    a.reporters = if a.spam_side {
        spam_reporters
    } else {
        ham_reporters
    };
    a.judged = a.reporters >= model.min_reporters;
    if a.judged {
        a.score = model.max_score * (2.0 * p - 1.0) * confidence;
    }
    a
}

/// A key's reputation from its record (None: never reported) as of `now`.
pub fn reputation(
    key: &str,
    record: Option<&KeyRecord>,
    allowlisted: bool,
    now: u64,
    model: &Model,
) -> Reputation {
    let mut r = Reputation {
        key: key.to_string(),
        score: 0.0,
        spam: 0.0,
        ham: 0.0,
        reporters: 0,
        why: String::new(),
        ttl: model.ttl,
    };
    if allowlisted {
        r.score = model.allow_score;
        r.why = "on the hub's allowlist".into();
        return r;
    }
    let Some(record) = record else {
        r.why = "never reported".into();
        return r;
    };
    let a = assess(record, true, now, model);
    (r.score, r.spam, r.ham, r.reporters) = (a.score, a.spam, a.ham, a.reporters);
    r.why = if a.judged {
        format!(
            "spam evidence {:.2}, ham evidence {:.2} from {} reporter(s)",
            r.spam, r.ham, r.reporters
        )
    } else {
        format!(
            "{} {} reporter(s), fewer than the {} needed",
            r.reporters,
            if a.spam_side { "spam" } else { "ham" },
            model.min_reporters
        )
    };
    r
}

/// A symbol by which the hub's own spam opinion entered a verdict.
fn is_hub_opinion(symbol: &str) -> bool {
    symbol.starts_with("HUB_SPAM_") || symbol == "HUB_FUZZY"
}

/// The spam and ham evidence an event of `kind` is (see the module docs).
pub fn evidence(
    kind: crate::feedback::EventKind,
    action: &str,
    symbols: &[String],
    model: &Model,
) -> (f64, f64) {
    use crate::feedback::EventKind;
    match kind {
        EventKind::Spam => (1.0, 0.0),
        EventKind::Ham => (0.0, 1.0),
        EventKind::Verdict
            if matches!(action, "reject" | "discard")
                && !symbols.iter().any(|s| is_hub_opinion(s)) =>
        {
            (model.verdict_weight, 0.0)
        }
        EventKind::Verdict => (0.0, 0.0),
    }
}

/// What an event of `evidence` (see [`evidence`]) adds to each of its keys, given their
/// current records (for the spread), in key order. Spread goes out only from events that are
/// spam evidence themselves (reports, and counted verdicts): a message merely seen with a
/// listed key spreads nothing.
pub fn updates(
    (spam, ham): (f64, f64),
    records: &[Option<&KeyRecord>],
    now: u64,
    model: &Model,
) -> Vec<Update> {
    if spam <= 0.0 {
        return vec![
            Update {
                spam,
                ham,
                spread: 0.0
            };
            records.len()
        ];
    }
    // The best reputation among the event's keys by their own evidence.
    let own: Vec<f64> = records
        .iter()
        .map(|rec| {
            rec.map_or(0.0, |r| {
                (assess(r, false, now, model).score / model.max_score).max(0.0)
            })
        })
        .collect();
    let best = own.iter().copied().fold(0.0, f64::max);
    own.iter()
        .map(|&mine| Update {
            spam,
            ham,
            spread: if best > mine {
                model.spread * best
            } else {
                0.0
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feedback::EventKind;

    const DAY: u64 = 24 * 3600;

    fn report(rec: &mut KeyRecord, gateway: &str, kind: EventKind, now: u64, m: &Model) {
        let u = updates(evidence(kind, "", &[], m), &[Some(&*rec)], now, m)[0];
        rec.apply(gateway, u, now, m);
    }

    #[test]
    fn one_gateway_alone_cannot_list_a_key() {
        let m = Model::default();
        let mut rec = KeyRecord::default();
        for _ in 0..1000 {
            report(&mut rec, "gw1", EventKind::Spam, 1000, &m);
        }
        let r = reputation("k", Some(&rec), false, 1000, &m);
        assert_eq!(r.score, 0.0, "{r:?}");
        assert_eq!(r.spam, 1.0);
        // A second gateway agrees: listed.
        report(&mut rec, "gw2", EventKind::Spam, 1000, &m);
        let r = reputation("k", Some(&rec), false, 1000, &m);
        assert!(r.score > 4.0, "{r:?}");
        assert_eq!(r.reporters, 2);
    }

    #[test]
    fn ham_reports_pull_a_key_down_and_evidence_decays() {
        let m = Model::default();
        let mut rec = KeyRecord::default();
        for g in ["a", "b"] {
            report(&mut rec, g, EventKind::Spam, 0, &m);
        }
        let listed = reputation("k", Some(&rec), false, 0, &m).score;
        for g in ["c", "d", "e"] {
            report(&mut rec, g, EventKind::Ham, 0, &m);
        }
        let r = reputation("k", Some(&rec), false, 0, &m);
        assert!(r.score < 0.0 && r.score > -listed, "{r:?}");
        // Three half-lives later the spam evidence is an eighth of what it was.
        let old = reputation("k", Some(&rec), false, 9 * DAY, &m);
        assert!((old.ham - 3.0 / 8.0).abs() < 1e-9, "{old:?}");
        // The admin allowlist wins.
        assert_eq!(
            reputation("k", Some(&rec), true, 0, &m).score,
            m.allow_score
        );
    }

    #[test]
    fn evidence_spreads_one_hop_to_a_fresh_key() {
        let m = Model::default();
        let mut domain = KeyRecord::default();
        for g in ["a", "b", "c"] {
            report(&mut domain, g, EventKind::Spam, 0, &m);
        }
        // A spam report from gateway "d" with a fresh IP and the known domain.
        let keys = [
            "ip:192.0.2.1".to_string(),
            "domain:evil.example".to_string(),
        ];
        let recs = vec![None, Some(&domain)];
        let u = updates(evidence(EventKind::Spam, "", &[], &m), &recs, 0, &m);
        assert!(u[0].spread > 0.0 && u[1].spread == 0.0, "{u:?}");
        let mut ip = KeyRecord::default();
        ip.apply("d", u[0], 0, &m);
        // One reporter plus the spread: listed on first sight.
        let r = reputation(&keys[0], Some(&ip), false, 0, &m);
        assert!(r.score > 0.0 && r.reporters == 2, "{r:?}");
        // Spread does not travel on: its own-evidence reputation is zero.
        let next = updates(evidence(EventKind::Spam, "", &[], &m), &[Some(&ip)], 0, &m);
        assert_eq!(next[0].spread, 0.0);
        // A message merely seen (accepted) with the listed domain spreads nothing.
        let seen = updates(
            evidence(EventKind::Verdict, "accept", &[], &m),
            &recs,
            0,
            &m,
        );
        assert!(seen.iter().all(|u| u.spread == 0.0), "{seen:?}");
    }

    #[test]
    fn verdicts_count_a_little_and_never_the_hub_s_own() {
        let m = Model::default();
        let u = updates(
            evidence(EventKind::Verdict, "reject", &["GTUBE".into()], &m),
            &[None],
            0,
            &m,
        );
        assert_eq!(u[0].spam, m.verdict_weight);
        let u = updates(
            evidence(EventKind::Verdict, "reject", &["HUB_SPAM_IP".into()], &m),
            &[None],
            0,
            &m,
        );
        assert_eq!(u[0].spam, 0.0);
        // A hub that was down gave no opinion: the gateway's verdict is its own.
        let u = updates(
            evidence(
                EventKind::Verdict,
                "discard",
                &[
                    "GTUBE".into(),
                    "HUB_UNAVAILABLE".into(),
                    "HUB_TIMEOUT".into(),
                ],
                &m,
            ),
            &[None],
            0,
            &m,
        );
        assert_eq!(u[0].spam, m.verdict_weight);
        let u = updates(
            evidence(EventKind::Verdict, "accept", &[], &m),
            &[None],
            0,
            &m,
        );
        assert_eq!(u[0].spam, 0.0);
    }
}
