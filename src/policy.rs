//! From a verdict to an action and the headers that describe it.
//!
//! Headers follow SpamAssassin's so that existing sieve, procmail and maildrop filters keep
//! working: `X-Spam-Flag: YES` on spam only, `X-Spam-Status: Yes, score=.. required=.. tests=..`,
//! `X-Spam-Score`, `X-Spam-Level` (one star per point) and `X-Spam-Report`.

use crate::config::{Config, Thresholds};
use crate::decimal;
use crate::scan::Verdict;

/// What the MTA is told to do with a message, from mildest to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Accept,
    AddHeader,
    RewriteSubject,
    Quarantine,
    SoftReject,
    Discard,
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::AddHeader => "add_header",
            Action::RewriteSubject => "rewrite_subject",
            Action::Quarantine => "quarantine",
            Action::SoftReject => "soft_reject",
            Action::Discard => "discard",
            Action::Reject => "reject",
        }
    }

    /// Whether the message is delivered (possibly held), so headers are worth adding.
    pub fn delivers(self) -> bool {
        self <= Action::Quarantine
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn enabled(t: &Thresholds) -> [(Action, Option<f64>); 6] {
    [
        (Action::AddHeader, t.add_header),
        (Action::RewriteSubject, t.rewrite_subject),
        (Action::Quarantine, t.quarantine),
        (Action::SoftReject, t.soft_reject),
        (Action::Discard, t.discard),
        (Action::Reject, t.reject),
    ]
}

/// The action whose threshold is the highest one the score reaches; on equal thresholds,
/// the more severe action. So operators order actions by their numbers, not by a fixed rank.
pub fn action_for(t: &Thresholds, score: f64) -> Action {
    enabled(t)
        .into_iter()
        .filter_map(|(a, th)| th.filter(|&th| score >= th).map(|th| (th, a)))
        .max_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)))
        .map_or(Action::Accept, |(_, a)| a)
}

/// The score from which a message counts as spam (`required=` in X-Spam-Status): the
/// add_header threshold, else the lowest enabled one. None when every action is off.
pub fn required(t: &Thresholds) -> Option<f64> {
    t.add_header.or_else(|| {
        enabled(t)
            .into_iter()
            .filter_map(|(_, th)| th)
            .min_by(|a, b| a.total_cmp(b))
    })
}

/// Everything the session needs to tell the MTA.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Decision {
    pub action: Action,
    pub is_spam: bool,
    /// Headers to add, in order.
    pub add_headers: Vec<(String, String)>,
    /// Prefix to put before the Subject (rewrite_subject).
    pub subject_prefix: Option<String>,
    /// Reason for the hold queue (quarantine).
    pub quarantine_reason: Option<String>,
    /// The SMTP reply for reject and soft_reject: code, enhanced code, text.
    pub smtp_reply: Option<(u16, String, String)>,
}

/// Longest header line we produce before folding, as RFC 5322 recommends.
const FOLD_AT: usize = 78;

/// Most stars in X-Spam-Level; SpamAssassin stops at 50 too.
const MAX_STARS: usize = 50;

/// A rejection whatever the score, for a message that cannot be delivered safely.
pub fn refuse(text: &str) -> Decision {
    Decision {
        action: Action::Reject,
        is_spam: true,
        add_headers: Vec::new(),
        subject_prefix: None,
        quarantine_reason: None,
        smtp_reply: Some((550, "5.7.1".into(), text.into())),
    }
}

pub fn decide(config: &Config, verdict: &Verdict) -> Decision {
    let t = &config.actions;
    let action = action_for(t, verdict.score);
    let required = required(t);
    let is_spam = required.is_some_and(|r| verdict.score >= r);
    let mut d = Decision {
        action,
        is_spam,
        add_headers: Vec::new(),
        subject_prefix: None,
        quarantine_reason: None,
        smtp_reply: None,
    };
    match action {
        Action::Reject => {
            d.smtp_reply = Some((550, "5.7.1".into(), config.policy.reject_text.clone()));
        }
        Action::SoftReject => {
            d.smtp_reply = Some((451, "4.7.1".into(), config.policy.soft_reject_text.clone()));
        }
        Action::Quarantine => d.quarantine_reason = Some(config.policy.quarantine_reason.clone()),
        Action::RewriteSubject => d.subject_prefix = Some(config.policy.subject_prefix.clone()),
        _ => {}
    }
    if !action.delivers() {
        return d;
    }
    if is_spam {
        d.add_headers.push(("X-Spam-Flag".into(), "YES".into()));
    }
    if is_spam || config.headers.status {
        let mut score = String::with_capacity(8);
        decimal::tenths(verdict.score).push_to(&mut score);
        let stars = (verdict.score.max(0.0) as usize).min(MAX_STARS);
        let status = status_value(verdict, &score, required, is_spam);
        d.add_headers
            .reserve_exact(3 + usize::from(config.headers.report));
        d.add_headers.push(("X-Spam-Score".into(), score));
        d.add_headers
            .push(("X-Spam-Level".into(), "*".repeat(stars)));
        d.add_headers.push(("X-Spam-Status".into(), status));
    }
    if is_spam && config.headers.report {
        d.add_headers
            .push(("X-Spam-Report".into(), report_value(verdict, action)));
    }
    d
}

/// `score` is the verdict's score as the X-Spam-Score header writes it.
fn status_value(v: &Verdict, score: &str, required: Option<f64>, is_spam: bool) -> String {
    let mut names: Vec<&str> = v.symbols.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let verdict = if is_spam { "Yes," } else { "No," };
    let required = required.map(|r| decimal::tenths(r).to_string());
    let tests = if names.is_empty() {
        vec!["none"]
    } else {
        names
    };
    let mut out = Fold::new("X-Spam-Status: ".len());
    // "Yes," and " score=..." are two pieces, a fold possible between them (a score as long
    // as a line: `[scores]` takes any finite number).
    out.piece(true, &[verdict]);
    out.piece(false, &[" score=", score]);
    out.piece(true, &["required=", required.as_deref().unwrap_or("none")]);
    out.word_list("tests=", &tests);
    out.piece(true, &["version=repmilter-", env!("CARGO_PKG_VERSION")]);
    out.text
}

/// Words joined with spaces, folded with "\n\t" before a line would pass [`FOLD_AT`]; a
/// long tests= list is split after its commas.
struct Fold {
    text: String,
    col: usize,
}

impl Fold {
    fn new(first_line_used: usize) -> Fold {
        Fold {
            text: String::with_capacity(FOLD_AT * 2),
            col: first_line_used,
        }
    }

    /// One piece, made of `parts` written one after the other: a new word (after a space),
    /// or more of the word begun last. A line may break before either.
    fn piece(&mut self, new_word: bool, parts: &[&str]) {
        let len = parts.iter().map(|p| p.len()).sum();
        self.make_room(new_word, len);
        parts.iter().for_each(|p| self.text.push_str(p));
    }

    /// `prefix` and the items, separated by commas; a line may break after any comma.
    fn word_list(&mut self, prefix: &str, items: &[&str]) {
        for (i, item) in items.iter().enumerate() {
            let last = i + 1 == items.len();
            let head = if i == 0 { prefix } else { "" };
            self.piece(i == 0, &[head, item, if last { "" } else { "," }]);
        }
    }

    /// Makes room for a piece of `len` bytes: a space before a new word, or a fold.
    fn make_room(&mut self, new_word: bool, len: usize) {
        let sep = usize::from(new_word && !self.text.is_empty());
        if self.col + sep + len > FOLD_AT && self.col > 1 {
            self.text.push_str("\n\t");
            self.col = 8;
        } else if sep == 1 {
            self.text.push(' ');
            self.col += 1;
        }
        self.col += len;
    }
}

fn report_value(v: &Verdict, action: Action) -> String {
    let mut out = format!("action={action} score={:.1}", v.score);
    let mut symbols: Vec<_> = v.symbols.iter().collect();
    symbols.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.name.cmp(&b.name)));
    for s in symbols {
        out.push_str(&format!("\n\t* {:>6.1} {} {}", s.score, s.name, s.detail));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::Symbol;

    fn thresholds(pairs: &[(Action, f64)]) -> Thresholds {
        let mut t = Thresholds::default();
        for &(a, v) in pairs {
            let slot = match a {
                Action::AddHeader => &mut t.add_header,
                Action::RewriteSubject => &mut t.rewrite_subject,
                Action::Quarantine => &mut t.quarantine,
                Action::SoftReject => &mut t.soft_reject,
                Action::Discard => &mut t.discard,
                Action::Reject => &mut t.reject,
                Action::Accept => unreachable!(),
            };
            *slot = Some(v);
        }
        t
    }

    #[test]
    fn the_highest_reached_threshold_wins() {
        use Action::*;
        let t = thresholds(&[(AddHeader, 5.0), (RewriteSubject, 8.0), (Reject, 15.0)]);
        let cases = [
            (-3.0, Accept),
            (4.9, Accept),
            (5.0, AddHeader),
            (7.9, AddHeader),
            (8.0, RewriteSubject),
            (14.99, RewriteSubject),
            (15.0, Reject),
            (1000.0, Reject),
        ];
        for (score, want) in cases {
            assert_eq!(action_for(&t, score), want, "score {score}");
        }
        // Operators decide the order: here quarantine comes after reject's threshold.
        let t = thresholds(&[(Reject, 10.0), (Quarantine, 12.0)]);
        assert_eq!(action_for(&t, 11.0), Reject);
        assert_eq!(action_for(&t, 12.0), Quarantine);
        // Equal thresholds: the more severe action.
        let t = thresholds(&[(SoftReject, 6.0), (Discard, 6.0)]);
        assert_eq!(action_for(&t, 6.0), Discard);
        assert_eq!(action_for(&Thresholds::default(), 1e9), Accept);
    }

    #[test]
    fn required_is_add_header_or_the_lowest() {
        assert_eq!(
            required(&thresholds(&[
                (Action::AddHeader, 6.0),
                (Action::Reject, 2.0)
            ])),
            Some(6.0)
        );
        assert_eq!(
            required(&thresholds(&[
                (Action::Quarantine, 9.0),
                (Action::Reject, 20.0)
            ])),
            Some(9.0)
        );
        assert_eq!(required(&Thresholds::default()), None);
    }

    fn unfold(s: &str) -> String {
        s.replace("\n\t", " ")
    }

    fn verdict(symbols: &[(&str, f64)]) -> Verdict {
        let mut v = Verdict::default();
        for (n, s) in symbols {
            v.add(Symbol::new(*n, *s, "because"));
        }
        v
    }

    #[test]
    fn ham_gets_status_headers_without_the_flag() {
        let c = Config::default();
        let d = decide(&c, &verdict(&[("SOME_RULE", 1.25)]));
        assert_eq!(d.action, Action::Accept);
        assert!(!d.is_spam);
        let names: Vec<&str> = d.add_headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["X-Spam-Score", "X-Spam-Level", "X-Spam-Status"]);
        assert_eq!(d.add_headers[0].1, "1.2");
        assert_eq!(d.add_headers[1].1, "*");
        assert!(
            unfold(&d.add_headers[2].1)
                .starts_with("No, score=1.2 required=5.0 tests=SOME_RULE version=repmilter-")
        );
    }

    #[test]
    fn spam_gets_flag_status_and_report() {
        let c = Config::default();
        let d = decide(&c, &verdict(&[("B_RULE", 3.0), ("A_RULE", 3.5)]));
        assert_eq!(d.action, Action::AddHeader);
        let get = |n: &str| {
            d.add_headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("X-Spam-Flag"), Some("YES"));
        assert_eq!(get("X-Spam-Level"), Some("******"));
        assert!(
            unfold(get("X-Spam-Status").unwrap())
                .starts_with("Yes, score=6.5 required=5.0 tests=A_RULE,B_RULE ")
        );
        assert_eq!(
            get("X-Spam-Report"),
            Some(
                "action=add_header score=6.5\n\t*    3.5 A_RULE because\n\t*    3.0 B_RULE because"
            )
        );
    }

    #[test]
    fn rejections_carry_the_reply_and_no_headers() {
        let c = Config::default();
        let d = decide(&c, &verdict(&[("GTUBE", 1000.0)]));
        assert_eq!(d.action, Action::Reject);
        assert_eq!(
            d.smtp_reply,
            Some((550, "5.7.1".into(), "Message rejected as spam".into()))
        );
        assert!(d.add_headers.is_empty());
        let d = decide(&c, &verdict(&[("X", 9.0)]));
        assert_eq!(d.subject_prefix.as_deref(), Some("[SPAM] "));
    }

    /// The status as it was built before the folding wrote straight into one string: every
    /// word formatted on its own, split after its commas, each piece placed in turn.
    fn status_word_by_word(v: &Verdict, required: Option<f64>, is_spam: bool) -> String {
        let mut names: Vec<&str> = v.symbols.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let tests = if names.is_empty() {
            "none".to_string()
        } else {
            names.join(",")
        };
        let required = required.map_or("none".to_string(), |r| format!("{r:.1}"));
        let verdict = if is_spam { "Yes" } else { "No" };
        let words = [
            format!("{verdict}, score={:.1}", v.score),
            format!("required={required}"),
            format!("tests={tests}"),
            format!("version=repmilter-{}", env!("CARGO_PKG_VERSION")),
        ];
        let (mut out, mut col) = (String::new(), "X-Spam-Status: ".len());
        for (i, word) in words.iter().enumerate() {
            for (j, piece) in word.split_inclusive(',').enumerate() {
                let sep = if j == 0 && i > 0 { " " } else { "" };
                if col + sep.len() + piece.len() > FOLD_AT && col > 1 {
                    out.push_str("\n\t");
                    col = 8;
                } else {
                    out.push_str(sep);
                    col += sep.len();
                }
                out.push_str(piece);
                col += piece.len();
            }
        }
        out
    }

    #[test]
    fn the_status_folds_as_the_word_by_word_fold_did() {
        // Names of every length from 1 to 90 (one longer than a line), lists of 0 to 12 of
        // them, with and without a required score, spam and ham.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let (mut checked, mut folded_first) = (0, 0);
        for round in 0..3000 {
            let count = next(13) as usize;
            let names: Vec<String> = (0..count)
                .map(|i| format!("R{i}{}", "X".repeat(next(90) as usize)))
                .collect();
            let mut v = Verdict::default();
            for n in &names {
                v.add(Symbol::new(n, (next(200) as f64 - 50.0) / 8.0, ""));
            }
            // Now and then a score as long as a line, or longer (`[scores]` takes any
            // finite number): the status folds inside its first word.
            if round % 7 == 0 {
                let sign = if round % 2 == 0 { 1.0 } else { -1.0 };
                v.add(Symbol::new("HUGE", sign * 10f64.powi(next(80) as i32), ""));
            }
            let required = (round % 3 != 0).then(|| next(100) as f64 / 4.0);
            let is_spam = round % 2 == 0;
            let score = decimal::tenths(v.score).to_string();
            let status = status_value(&v, &score, required, is_spam);
            assert_eq!(
                status,
                status_word_by_word(&v, required, is_spam),
                "{names:?} {required:?} {}",
                v.score
            );
            checked += usize::from(count > 3);
            folded_first += usize::from(status.contains(",\n\t score="));
        }
        assert!(checked > 1000, "long lists were generated: {checked}");
        assert!(folded_first > 10, "first words folded: {folded_first}");
    }

    #[test]
    fn long_test_lists_fold_under_the_line_limit() {
        let names: Vec<String> = (0..30)
            .map(|i| format!("A_FAIRLY_LONG_RULE_NAME_{i}"))
            .collect();
        let syms: Vec<(&str, f64)> = names.iter().map(|n| (n.as_str(), 0.1)).collect();
        let d = decide(&Config::default(), &verdict(&syms));
        let status = &d
            .add_headers
            .iter()
            .find(|(k, _)| k == "X-Spam-Status")
            .unwrap()
            .1;
        let full = format!("X-Spam-Status: {status}");
        for line in full.split('\n') {
            assert!(line.len() <= FOLD_AT + 1, "{line:?} is {} long", line.len());
        }
        assert!(full.contains("A_FAIRLY_LONG_RULE_NAME_29"));
        // Unfolding gives back the plain list.
        assert!(
            status
                .replace("\n\t", "")
                .contains("A_FAIRLY_LONG_RULE_NAME_0,A_FAIRLY_LONG_RULE_NAME_1,")
        );
    }
}
