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
//! `H = Σ min(1, h_g)·w_g`. A side's evidence counts only when at least `min_reporters` (2)
//! gateways hold at least half a report's worth of it (otherwise that side's sum is 0): a
//! thousand spam reports from one gateway count as none until a second gateway agrees, and
//! one gateway's ham reports cannot pull down what others listed.
//!
//! **Score.** With `p = (S + 1) / (S + H + 2)` (a Laplace-smoothed spam share) and confidence
//! `c = 1 - e^-(S+H)`, the key's score contribution is `max_score · (2p - 1) · c`: positive
//! for spam, negative for keys that ham reports vouch for, 0 while no side counts. Keys on the
//! admin allowlist score `allow_score` (-5) whatever the evidence.
//!
//! **One hop.** When an event that is spam evidence arrives (a spam report, a counted
//! verdict), the best reputation among its keys (as a share of `max_score`) is added, times
//! `spread` (0.5), to the reporting gateway's own spam evidence on its other keys: a verdict
//! on a message that carries a listed URL domain or fingerprint weighs more than one that
//! does not, so the fresh IP that sent it is listed once a second gateway sees the campaign
//! from it. Spread is the reporter's own evidence, under its cap: it never makes one gateway
//! two voices. A message merely seen (accepted) spreads nothing.
//!
//! **Forgetting.** A gateway's evidence that decayed below [`FORGET_BELOW`] on both sides is
//! dropped, and a key with none left has no record: the store holds what still counts.

use std::sync::{Arc, LazyLock, Mutex};

use rustc_hash::FxHashSet;

use serde::{Deserialize, Serialize};

pub use crate::config::hub::Model;

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

/// A gateway's evidence on a key that decayed below this on both sides (a hundredth of one
/// report: 6.6 half-lives after the last report) is forgotten, so the store holds what still
/// counts and not every key ever reported.
pub const FORGET_BELOW: f64 = 0.01;

/// A gateway's name as records hold it: one shared copy per name, so that copying a record
/// (the embedded store's writer copies every record it changes) copies no text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GatewayName(Arc<str>);

impl GatewayName {
    /// The shared copy of `name`. Names come from the hub's config and its stored records,
    /// so the set of them stays small.
    pub fn new(name: &str) -> GatewayName {
        static NAMES: LazyLock<Mutex<FxHashSet<Arc<str>>>> = LazyLock::new(Default::default);
        let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = names.get(name) {
            return GatewayName(n.clone());
        }
        let n: Arc<str> = name.into();
        names.insert(n.clone());
        GatewayName(n)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for GatewayName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for GatewayName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = GatewayName;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a gateway name")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<GatewayName, E> {
                Ok(GatewayName::new(v))
            }
        }
        d.deserialize_str(Name)
    }
}

/// Everything known about one key: each gateway's evidence.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// In name order, each gateway once (a few per key: a sorted vector is one allocation
    /// where a map is several). Encoded as a map of name to evidence is.
    #[serde(deserialize_with = "in_name_order")]
    by_gateway: Vec<(GatewayName, Evidence)>,
}

/// Reads a record's gateways into the order the record relies on, whatever the stored order.
fn in_name_order<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<(GatewayName, Evidence)>, D::Error> {
    let mut v: Vec<(GatewayName, Evidence)> = Deserialize::deserialize(d)?;
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v.dedup_by(|a, b| a.0 == b.0);
    Ok(v)
}

/// What one event adds to one key.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Update {
    pub spam: f64,
    pub ham: f64,
}

impl Update {
    /// Whether it adds anything.
    pub fn is_some(&self) -> bool {
        self.spam > 0.0 || self.ham > 0.0
    }

    /// Adds another update made at the same time (applying the sum equals applying both).
    pub fn add(&mut self, other: Update) {
        self.spam += other.spam;
        self.ham += other.ham;
    }
}

impl KeyRecord {
    fn find(&self, gateway: &str) -> Result<usize, usize> {
        self.by_gateway
            .binary_search_by(|(g, _)| g.as_str().cmp(gateway))
    }

    /// Adds a gateway's evidence, decaying what was there.
    pub fn apply(&mut self, gateway: &GatewayName, u: Update, now: u64, model: &Model) {
        if !u.is_some() {
            return;
        }
        let i = self.find(gateway.as_str()).unwrap_or_else(|i| {
            self.by_gateway
                .insert(i, (gateway.clone(), Evidence::default()));
            i
        });
        self.by_gateway[i]
            .1
            .add(u.spam, u.ham, now, model.half_life);
    }

    /// A gateway's evidence as it was last changed.
    pub fn evidence_of(&self, gateway: &str) -> Option<Evidence> {
        self.find(gateway).ok().map(|i| self.by_gateway[i].1)
    }

    /// Sets a gateway's evidence (stores that keep it apart read it back with this).
    pub fn set(&mut self, gateway: &str, e: Evidence) {
        match self.find(gateway) {
            Ok(i) => self.by_gateway[i].1 = e,
            Err(i) => self.by_gateway.insert(i, (GatewayName::new(gateway), e)),
        }
    }

    /// Drops the gateways whose evidence, as of `now`, decayed below [`FORGET_BELOW`] on
    /// both sides; answers whether any was.
    pub fn forget(&mut self, now: u64, half_life: u64) -> bool {
        let before = self.by_gateway.len();
        self.by_gateway.retain(|(_, e)| {
            let (s, h) = e.decayed(now, half_life);
            s >= FORGET_BELOW || h >= FORGET_BELOW
        });
        self.by_gateway.len() != before
    }

    /// Whether no gateway holds evidence (a store keeps no such record).
    pub fn is_empty(&self) -> bool {
        self.by_gateway.is_empty()
    }

    /// Each gateway's evidence, in name order.
    pub fn gateways(&self) -> impl Iterator<Item = (&str, Evidence)> {
        self.by_gateway.iter().map(|(g, e)| (g.as_str(), *e))
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

/// Scores a record.
fn assess(record: &KeyRecord, now: u64, model: &Model) -> Assessment {
    let mut a = Assessment::default();
    let (mut spam_reporters, mut ham_reporters) = (0, 0);
    for (g, e) in record.gateways() {
        let w = model.weights.get(g).copied().unwrap_or(1.0);
        let (s, h) = e.decayed(now, model.half_life);
        a.spam += s.min(1.0) * w;
        a.ham += h.min(1.0) * w;
        spam_reporters += usize::from(s >= 0.5);
        ham_reporters += usize::from(h >= 0.5);
    }
    // A side that too few gateways hold does not count.
    if spam_reporters < model.min_reporters {
        a.spam = 0.0;
    }
    if ham_reporters < model.min_reporters {
        a.ham = 0.0;
    }
    a.spam_side = spam_reporters >= ham_reporters;
    a.reporters = spam_reporters.max(ham_reporters);
    a.judged = a.spam > 0.0 || a.ham > 0.0;
    if a.judged {
        let p = (a.spam + 1.0) / (a.spam + a.ham + 2.0);
        let confidence = 1.0 - (-(a.spam + a.ham)).exp();
        a.score = model.max_score * (2.0 * p - 1.0) * confidence;
    }
    a
}

/// A record's score contribution as of `now` (the allowlist aside).
pub fn score(record: &KeyRecord, now: u64, model: &Model) -> f64 {
    assess(record, now, model).score
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
    let a = assess(record, now, model);
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
        return vec![Update { spam, ham }; records.len()];
    }
    // The best reputation among the event's keys.
    let own: Vec<f64> = records
        .iter()
        .map(|rec| {
            rec.map_or(0.0, |r| {
                (assess(r, now, model).score / model.max_score).max(0.0)
            })
        })
        .collect();
    let best = own.iter().copied().fold(0.0, f64::max);
    own.iter()
        .map(|&mine| Update {
            spam: spam
                + if best > mine {
                    model.spread * best
                } else {
                    0.0
                },
            ham,
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
        rec.apply(&GatewayName::new(gateway), u, now, m);
    }

    #[test]
    fn one_gateway_alone_cannot_list_a_key() {
        let m = Model::default();
        let mut rec = KeyRecord::default();
        for _ in 0..1000 {
            report(&mut rec, "gw1", EventKind::Spam, 1000, &m);
        }
        let r = reputation("k", Some(&rec), false, 1000, &m);
        assert_eq!((r.score, r.spam, r.reporters), (0.0, 0.0, 1), "{r:?}");
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
        // One half-life later each gateway's evidence counts half.
        let old = reputation("k", Some(&rec), false, 3 * DAY, &m);
        assert!((old.ham - 1.5).abs() < 1e-9, "{old:?}");
        // Two more, and no gateway holds half a report's worth: the key is forgotten.
        let older = reputation("k", Some(&rec), false, 9 * DAY, &m);
        assert_eq!((older.score, older.reporters), (0.0, 0), "{older:?}");
        // The admin allowlist wins.
        assert_eq!(
            reputation("k", Some(&rec), true, 0, &m).score,
            m.allow_score
        );
    }

    #[test]
    fn evidence_spreads_one_hop_as_the_reporter_s_own() {
        let m = Model::default();
        let mut domain = KeyRecord::default();
        for g in ["a", "b", "c"] {
            report(&mut domain, g, EventKind::Spam, 0, &m);
        }
        let recs = vec![None, Some(&domain)];
        // A gateway's reject verdict on a message from a fresh IP with the listed domain
        // weighs more than a verdict alone: enough to count the gateway as a reporter.
        let reject = evidence(EventKind::Verdict, "reject", &[], &m);
        let u = updates(reject, &recs, 0, &m);
        assert!(u[0].spam > 0.5 && u[1].spam == m.verdict_weight, "{u:?}");
        let mut ip = KeyRecord::default();
        ip.apply(&GatewayName::new("d"), u[0], 0, &m);
        // One gateway is one voice, spread or not.
        assert_eq!(reputation("ip", Some(&ip), false, 0, &m).score, 0.0);
        // Sending it again and again changes nothing.
        for _ in 0..100 {
            ip.apply(
                &GatewayName::new("d"),
                updates(reject, &recs, 0, &m)[0],
                0,
                &m,
            );
        }
        assert_eq!(reputation("ip", Some(&ip), false, 0, &m).score, 0.0);
        // A second gateway seeing the campaign from that IP lists it.
        ip.apply(
            &GatewayName::new("e"),
            updates(reject, &recs, 0, &m)[0],
            0,
            &m,
        );
        let r = reputation("ip", Some(&ip), false, 0, &m);
        assert!(r.score > 0.0 && r.reporters == 2, "{r:?}");
        // Without the listed domain, two verdicts are too little evidence.
        let mut plain = KeyRecord::default();
        for g in ["d", "e"] {
            plain.apply(
                &GatewayName::new(g),
                updates(reject, &[None], 0, &m)[0],
                0,
                &m,
            );
        }
        assert_eq!(reputation("ip", Some(&plain), false, 0, &m).score, 0.0);
        // A message merely seen (accepted) with the listed domain adds nothing.
        let seen = updates(
            evidence(EventKind::Verdict, "accept", &[], &m),
            &recs,
            0,
            &m,
        );
        assert!(seen.iter().all(|u| !u.is_some()), "{seen:?}");
    }

    #[test]
    fn one_gateway_s_ham_reports_do_not_pull_down_a_listing() {
        let m = Model::default();
        let mut rec = KeyRecord::default();
        for g in ["a", "b"] {
            report(&mut rec, g, EventKind::Spam, 0, &m);
        }
        let listed = reputation("k", Some(&rec), false, 0, &m).score;
        for _ in 0..100 {
            report(&mut rec, "c", EventKind::Ham, 0, &m);
        }
        assert_eq!(reputation("k", Some(&rec), false, 0, &m).score, listed);
        report(&mut rec, "d", EventKind::Ham, 0, &m);
        assert!(reputation("k", Some(&rec), false, 0, &m).score < listed);
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
