//! The network's content model: the learned counts of every gateway, combined so that no
//! gateway alone shapes it, compiled into the model file gateways fetch (`GET /v1/model`).
//!
//! **Decay without rewriting.** A report at time `t` adds `2^((t - EPOCH) / half_life)` to
//! its counts instead of 1; at time `now` every count is divided by `2^((now - EPOCH) /
//! half_life)`. The result is each report weighing `2^(-(now - t) / half_life)`, as if every
//! count had been decayed, while the stores only ever add (Redis: `HINCRBYFLOAT`).
//!
//! **No gateway alone.** Gateway `g` trained `N_g` messages (decayed). Its counts are scaled
//! by `a_g = min(1, r · Σ_{h≠g} N_h / N_g)`, `r = max_share / (1 - max_share)`: its share of
//! the model's messages is at most `max_share` (0.5 by default), so a gateway reporting
//! thousands of ham as spam counts no more than the others together, and a gateway alone
//! (the others' sum 0) teaches nothing. The model is then `s(w) = Σ a_g s_g(w)`,
//! `h(w) = Σ a_g h_g(w)`, `Ns = Σ a_g Ns_g`, `Nh = Σ a_g Nh_g`, scored as `learn::model` says.
//!
//! **Counted by distinct reporters.** A feature's spam side counts only when at least
//! `min_reporters` (2) gateways hold half a message's worth of it (`a_g s_g(w) ≥ 0.5`), and
//! so its ham side; otherwise that side is 0. When it counts, each gateway's part is capped
//! at `r` times the other gateways' together on that feature and side: a gateway reporting
//! a newsletter as spam a thousand times moves it nowhere while no other gateway agrees, and
//! once one other gateway reports it once, counts as that one report, not a thousand.

use crate::learn::model::{FORGET_BELOW, Model};

use super::store::LearnedCounts;

/// The time learned weights are reckoned from: 2026-01-01 00:00 UTC.
pub const EPOCH: u64 = 1_767_225_600;

/// What a report at `now` adds to its counts.
pub fn weight(now: u64, half_life: u64) -> f64 {
    (now.saturating_sub(EPOCH) as f64 / half_life.max(1) as f64).exp2()
}

/// Each gateway's scale `a_g` (see the module docs), given the decayed message totals.
pub fn shares(totals: &[f64], max_share: f64) -> Vec<f64> {
    let sum: f64 = totals.iter().sum();
    let r = max_share / (1.0 - max_share);
    totals
        .iter()
        .map(|&n| {
            if n <= 0.0 {
                return 0.0;
            }
            (r * (sum - n) / n).min(1.0)
        })
        .collect()
}

/// One side of one feature, from the gateways' counts of it: 0 unless `min_reporters`
/// gateways hold half a message's worth; each gateway's count capped at `r` times the
/// others' together (on this feature, as its messages are on the model), so that a gateway
/// reporting one message a thousand times counts as much as the others' reports of it, no
/// more.
fn side_count(counts: &[f64], r: f64, min_reporters: usize) -> f64 {
    if counts.iter().filter(|&&n| n >= 0.5).count() < min_reporters {
        return 0.0;
    }
    let total: f64 = counts.iter().sum();
    counts
        .iter()
        // A gateway alone on it (with `min_reporters` 1) has no others to be capped by.
        .map(|&n| if total > n { n.min(r * (total - n)) } else { n })
        .sum()
}

/// The model of the gateways' counts as of `now`.
pub fn combine(
    counts: &[LearnedCounts],
    now: u64,
    half_life: u64,
    max_share: f64,
    min_reporters: usize,
) -> Model {
    let scale = 1.0 / weight(now, half_life);
    let totals: Vec<f64> = counts.iter().map(|c| (c.spam + c.ham) * scale).collect();
    let a = shares(&totals, max_share);
    let mut model = Model {
        at: now,
        ..Model::default()
    };
    // Per feature and side, each gateway's count (after its share).
    let mut per: rustc_hash::FxHashMap<u64, [Vec<f64>; 2]> = Default::default();
    for (c, &a) in counts.iter().zip(&a) {
        if a <= 0.0 {
            continue;
        }
        let k = a * scale;
        model.spam += c.spam * k;
        model.ham += c.ham * k;
        for &(f, s, h) in &c.features {
            let e = per.entry(f).or_default();
            for (side, n) in [s * k, h * k].into_iter().enumerate() {
                if n > 0.0 {
                    e[side].push(n);
                }
            }
        }
    }
    let r = max_share / (1.0 - max_share);
    for (f, sides) in per {
        let c = sides.map(|counts| side_count(&counts, r, min_reporters) as f32);
        if c[0] >= FORGET_BELOW || c[1] >= FORGET_BELOW {
            model.features.insert(f, c);
        }
    }
    model
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_decay_what_was_added_earlier() {
        let hl = 3600;
        // Added at EPOCH + hl, read at EPOCH + 3 hl: two half-lives old, a quarter.
        let c = LearnedCounts {
            gateway: "a".into(),
            spam: weight(EPOCH + hl, hl),
            ham: weight(EPOCH + hl, hl),
            // Feature 7 in four spam messages, feature 8 in one.
            features: vec![
                (7, 4.0 * weight(EPOCH + hl, hl), 0.0),
                (8, weight(EPOCH + hl, hl), 0.0),
            ],
        };
        let other = LearnedCounts {
            gateway: "b".into(),
            ..c.clone()
        };
        let m = combine(&[c, other], EPOCH + 3 * hl, hl, 0.5, 2);
        assert!((m.spam - 0.5).abs() < 1e-9, "{m:?}");
        assert!((f64::from(m.features[&7][0]) - 2.0).abs() < 1e-6);
        // A quarter of a message at each gateway: no gateway holds half a message's worth.
        assert!(!m.features.contains_key(&8));
    }

    /// A gateway's counts after training `messages` (features, spam?) at the epoch.
    fn gateway(name: &str, messages: &[(Vec<u64>, bool)]) -> LearnedCounts {
        let mut m = Model::default();
        for (f, spam) in messages {
            m.train(f, *spam);
        }
        let mut features: Vec<(u64, f64, f64)> = m
            .features
            .iter()
            .map(|(f, c)| (*f, f64::from(c[0]), f64::from(c[1])))
            .collect();
        features.sort_by_key(|f| f.0);
        LearnedCounts {
            gateway: name.into(),
            spam: m.spam,
            ham: m.ham,
            features,
        }
    }

    /// `n` messages of 15 features drawn from `base..base + 40` by `seed`.
    fn draw(base: u64, n: usize, seed: u64) -> Vec<Vec<u64>> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                let mut f: Vec<u64> = (0..15)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        base + x % 40
                    })
                    .collect();
                f.sort_unstable();
                f.dedup();
                f
            })
            .collect()
    }

    #[test]
    fn one_gateway_reporting_thousands_of_ham_as_spam_moves_the_model_within_a_bound() {
        let newsletter: Vec<u64> = (500..520).collect();
        let honest = |name: &str, seed: u64| {
            let mut msgs: Vec<(Vec<u64>, bool)> = Vec::new();
            msgs.extend(draw(100, 50, seed).into_iter().map(|f| (f, true)));
            msgs.extend(draw(200, 40, seed + 1).into_iter().map(|f| (f, false)));
            // The newsletter is ham to the honest gateways' users.
            msgs.extend((0..10).map(|_| (newsletter.clone(), false)));
            gateway(name, &msgs)
        };
        let (a, mut b) = (honest("a", 11), honest("b", 23));
        let poison: Vec<(Vec<u64>, bool)> = (0..5000).map(|_| (newsletter.clone(), true)).collect();
        let c = gateway("c", &poison);
        let fresh_spam = &draw(100, 1, 99)[0];
        let fresh_ham = &draw(200, 1, 98)[0];
        let p = |m: &Model, f: &[u64]| m.score(f).probability;

        let before = combine(&[a.clone(), b.clone()], EPOCH, 3600, 0.5, 2);
        assert!(
            p(&before, &newsletter) < 0.01,
            "{}",
            p(&before, &newsletter)
        );
        assert!(p(&before, fresh_spam) > 0.99 && p(&before, fresh_ham) < 0.01);

        // The bound: the newsletter stays ham, spam stays spam, ham stays ham.
        let after = combine(&[a.clone(), b.clone(), c.clone()], EPOCH, 3600, 0.5, 2);
        assert!(p(&after, &newsletter) < 0.2, "{}", p(&after, &newsletter));
        assert!(p(&after, fresh_spam) > 0.95, "{}", p(&after, fresh_spam));
        assert!(p(&after, fresh_ham) < 0.2, "{}", p(&after, fresh_ham));
        // What holds it: counted as one model of everyone's counts, the poisoner wins.
        let naive = combine(&[a.clone(), b.clone(), c.clone()], EPOCH, 3600, 0.999, 1);
        assert!(p(&naive, &newsletter) > 0.8, "{}", p(&naive, &newsletter));
        // One user of an honest gateway reports the newsletter as spam once: the poisoner
        // now has a second reporter, and still counts as that one report, not 5,000.
        let once = gateway("b", &[(newsletter.clone(), true)]);
        b.spam += once.spam;
        for (f, s, _) in once.features {
            match b.features.binary_search_by_key(&f, |x| x.0) {
                Ok(i) => b.features[i].1 += s,
                Err(i) => b.features.insert(i, (f, s, 0.0)),
            }
        }
        let after = combine(&[a, b, c], EPOCH, 3600, 0.5, 2);
        assert!(p(&after, &newsletter) < 0.2, "{}", p(&after, &newsletter));
        assert!(p(&after, fresh_spam) > 0.95, "{}", p(&after, fresh_spam));
    }

    #[test]
    fn no_gateway_makes_more_than_its_share() {
        assert_eq!(shares(&[100.0], 0.5), [0.0]);
        assert_eq!(shares(&[100.0, 100.0], 0.5), [1.0, 1.0]);
        // A flood from one gateway is scaled down to the others' sum.
        let a = shares(&[100.0, 100.0, 2000.0], 0.5);
        assert_eq!(a[..2], [1.0, 1.0]);
        assert!((a[2] * 2000.0 - 200.0).abs() < 1e-9);
        // A third at most.
        let a = shares(&[100.0, 100.0, 2000.0], 1.0 / 3.0);
        let total = 200.0 + a[2] * 2000.0;
        assert!((a[2] * 2000.0 / total - 1.0 / 3.0).abs() < 1e-9);
    }
}
