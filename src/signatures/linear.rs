//! Linear-time regexes (the `regex` crate) on long texts, in pieces that a deadline can stop.
//!
//! Linear is not fast: a rule such as `\b(?:\w+\s+){5,60}\d\b` leaves the lazy DFA for the
//! PikeVM on non-ASCII text and runs at about a megabyte a second; on a 10 MB body one search
//! is 10 s that nothing can interrupt. So on a text longer than [`ZONE`] a regex searches
//! one zone of starting positions at a time, seeing [`LOOKAHEAD`]
//! bytes past it, with the scan's deadline and the rule's time budget checked between zones.
//! Texts up to [`ZONE`] (nearly all mail) are searched whole, exactly as before.
//!
//! The price, on long texts only: a match must end within [`LOOKAHEAD`] bytes past the zone it
//! starts in. A match that reaches the end of its window is searched again on a window a zone
//! wider, so that `$`, `\b` or a greedy repetition cut short there do not make or shorten one.

use std::time::Instant;

use std::sync::Arc;

use regex_automata::dfa::{Automaton, dense};
use regex_automata::meta;
use regex_automata::nfa::thompson;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind};

use super::backtrack::{Cut, TIME_LIMIT};

/// A regex on octets, built as `regex::bytes::Regex` builds it (leftmost-first, empty
/// matches anywhere, the same syntax), with or without its own literal prefilter. A rule
/// that runs only on the lines where the rule set's Aho-Corasick pass found one of its
/// literals does without: there the regex's prefilter found the same places again, and one
/// whose literals are short and common (`i` of `i\s+am`) made the lazy DFA stop and
/// restart at nearly every byte.
///
/// A gated rule may also carry a dense DFA, built whole when the rules are compiled, for
/// `is_match` (nearly all of a gated rule's searches): the lazy DFA builds its states as
/// texts reach them, once per session thread, and on unseen mail that building cost about
/// a quarter of the rules' instructions. Rules whose DFA would pass a size limit (or that
/// use a Unicode word boundary, which a dense DFA cannot) keep the lazy one alone.
#[derive(Clone, Debug)]
pub struct Regex(meta::Regex, Option<Arc<dense::DFA<Vec<u32>>>>);

/// The smallest size limit a dense DFA is tried with.
const DENSE_MIN: usize = 64 << 10;

/// What a rule set's dense DFAs may take in all, and one of them.
pub struct DenseBudget {
    pub left: usize,
    pub each: usize,
}

impl Regex {
    /// `size_limit` bounds the compiled program, `cache` the lazy DFA's cache per thread.
    pub fn build(
        pattern: &str,
        size_limit: usize,
        cache: usize,
        prefilter: bool,
    ) -> Result<Regex, regex::Error> {
        let config = meta::Config::new()
            .match_kind(MatchKind::LeftmostFirst)
            .utf8_empty(false)
            .nfa_size_limit(Some(size_limit))
            .hybrid_cache_capacity(cache)
            .auto_prefilter(prefilter);
        meta::Builder::new()
            .configure(config)
            .syntax(syntax::Config::new().utf8(false))
            .build(pattern)
            .map(|re| Regex(re, None))
            .map_err(|e| match (e.size_limit(), e.syntax_error()) {
                // The errors `regex::bytes::RegexBuilder` reports, worded as it words them.
                (Some(limit), _) => regex::Error::CompiledTooBig(limit),
                (None, Some(syntax)) => regex::Error::Syntax(syntax.to_string()),
                (None, None) => regex::Error::Syntax(e.to_string()),
            })
    }

    #[cfg(test)]
    pub fn new(pattern: &str) -> Regex {
        Regex::build(pattern, 8 << 20, 2 << 20, true).expect("a test pattern compiles")
    }

    /// Adds a dense DFA for `is_match`, built with the same syntax and semantics, if one
    /// fits `budget` (which it then draws on).
    pub fn with_dense(
        mut self,
        pattern: &str,
        size_limit: usize,
        budget: &mut DenseBudget,
    ) -> Regex {
        // Nearly spent, the budget would let each rule left start a build that fails.
        let limit = budget.each.min(budget.left);
        if limit < DENSE_MIN {
            return self;
        }
        let built = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .match_kind(MatchKind::LeftmostFirst)
                    .minimize(false)
                    .dfa_size_limit(Some(limit))
                    .determinize_size_limit(Some(limit)),
            )
            .syntax(syntax::Config::new().utf8(false))
            .thompson(
                thompson::Config::new()
                    .utf8(false)
                    .nfa_size_limit(Some(size_limit)),
            )
            .build(pattern);
        if let Ok(dfa) = built {
            budget.left = budget.left.saturating_sub(dfa.memory_usage());
            self.1 = Some(Arc::new(dfa));
        }
        self
    }

    pub fn is_match(&self, haystack: &[u8]) -> bool {
        if let Some(dfa) = &self.1
            && let Ok(found) = dfa.try_search_fwd(&Input::new(haystack).earliest(true))
        {
            return found.is_some();
        }
        self.0.is_match(haystack)
    }

    #[cfg(test)]
    pub fn has_dense(&self) -> bool {
        self.1.is_some()
    }

    /// Leftmost-first matches, as (start, end).
    pub fn find_iter<'h>(
        &'h self,
        haystack: &'h [u8],
    ) -> impl Iterator<Item = (usize, usize)> + 'h {
        self.0.find_iter(haystack).map(|m| (m.start(), m.end()))
    }

    /// The first match starting at `at` or later, with the text before `at` seen by
    /// look-behind (`\b`, `^`), as `regex::bytes::Regex::find_at`.
    pub fn find_at(&self, haystack: &[u8], at: usize) -> Option<(usize, usize)> {
        self.0
            .find(Input::new(haystack).range(at..))
            .map(|m| (m.start(), m.end()))
    }
}

/// Starting positions searched at a time on a long text.
pub const ZONE: usize = 64 * 1024;

/// Bytes past a zone its search sees.
pub const LOOKAHEAD: usize = 16 * 1024;

/// A zone's search that takes longer than this makes the next zones smaller (down to
/// [`MIN_ZONE`]), so that the deadline is checked often even where a regex crawls: the
/// deadline is checked between two searches, and one cannot be interrupted.
const STEP: std::time::Duration = std::time::Duration::from_millis(20);
const MIN_ZONE: usize = 1024;

/// The size of the next zone, given how long the last search took.
fn next_zone(zone: usize, took: std::time::Duration) -> usize {
    if took > STEP {
        (zone / 4).max(MIN_ZONE)
    } else {
        zone
    }
}

/// Up to `max` non-overlapping matches of `re`, leftmost first, and why the search stopped
/// early, if it did.
pub fn find(
    re: &Regex,
    text: &str,
    max: usize,
    deadline: Option<Instant>,
) -> (Vec<(usize, usize)>, Option<Cut>) {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    if text.len() <= ZONE {
        out.extend(re.find_iter(bytes).take(max));
        return (out, None);
    }
    let started = Instant::now();
    let n = text.len();
    let mut at = 0;
    let mut zone = ZONE;
    let mut step = started;
    while at <= n && out.len() < max {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return (out, Some(Cut::Deadline));
        }
        if now - started >= TIME_LIMIT {
            return (out, Some(Cut::Time));
        }
        zone = next_zone(zone, now - step);
        step = now;
        let zone_end = text.floor_char_boundary((at + zone).min(n));
        let hay_end = text.ceil_char_boundary((zone_end + LOOKAHEAD).min(n));
        let m = match re.find_at(&bytes[..hay_end], at) {
            None if zone_end == n => break,
            None => {
                at = zone_end;
                continue;
            }
            Some((start, _)) if start >= zone_end && zone_end < n => {
                at = zone_end;
                continue;
            }
            Some(m) => m,
        };
        let (start, mut end) = m;
        if end == hay_end && hay_end < n {
            // Touching the window's end: a zone further on says what the match really is
            // (`$`, `\b` and greedy repetitions see more text there).
            let wider = text.ceil_char_boundary((hay_end + ZONE).min(n));
            match re.find_at(&bytes[..wider], start) {
                Some((s, e)) if s == start => end = e,
                _ => {
                    at = text.ceil_char_boundary(start + 1);
                    continue;
                }
            }
        }
        out.push((start, end));
        at = if end > start {
            end
        } else if start == n {
            break;
        } else {
            text.ceil_char_boundary(start + 1)
        };
    }
    (out, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dense_dfa_answers_as_the_lazy_one() {
        let patterns = [
            r"(?-u)(?i)\bfree\s+money\b",
            r"(?-u)(?m)^\s*unsubscribe\s*$",
            r"(?-u)[13][a-km-zA-HJ-NP-Z1-9]{5,9}\b",
            r"(?-u)(?i)v[\W_]{0,2}[i1!|l][\W_]{0,2}agra",
            r"(?-u)\xE9t\xE9|caf\xC3\xA9",
            r"(?-u)(?m)\A$",
        ];
        let texts: [&[u8]; 10] = [
            b"",
            b"get FREE  money now",
            b"freemoney",
            b"line\n  unsubscribe \nmore",
            b"xunsubscribe",
            b"pay 1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
            b"v-1-agra and V!agra",
            b"\xE9t\xE9 caf\xC3\xA9",
            b"\n",
            b"\xFF\xFE free money \x80",
        ];
        let mut budget = DenseBudget {
            left: 1 << 20,
            each: 1 << 20,
        };
        for p in patterns {
            let lazy = Regex::build(p, 8 << 20, 2 << 20, false).unwrap();
            let dense = lazy.clone().with_dense(p, 8 << 20, &mut budget);
            assert!(dense.has_dense(), "{p}");
            for t in texts {
                assert_eq!(dense.is_match(t), lazy.is_match(t), "{p} on {t:?}");
            }
        }
        assert!(budget.left < 1 << 20);
        // A Unicode word boundary: no dense DFA can, the lazy one answers.
        let unicode = Regex::build(r"(?u)\bcaf\xE9\b", 8 << 20, 2 << 20, false).unwrap();
        let kept = unicode
            .clone()
            .with_dense(r"(?u)\bcaf\xE9\b", 8 << 20, &mut budget);
        assert!(!kept.has_dense());
        // Past the budget: none.
        let mut spent = DenseBudget {
            left: 0,
            each: 1 << 20,
        };
        let none = Regex::build(patterns[0], 8 << 20, 2 << 20, false)
            .unwrap()
            .with_dense(patterns[0], 8 << 20, &mut spent);
        assert!(!none.has_dense());
    }

    fn whole(re: &Regex, text: &str) -> Vec<(usize, usize)> {
        re.find_iter(text.as_bytes()).collect()
    }

    /// With or without its prefilter, the regex finds what `regex::bytes::Regex` finds, at
    /// every start offset (look-behind before it included).
    #[test]
    fn matches_as_the_regex_crate_with_or_without_prefilter() {
        let texts = [
            "I am contacting you to send 2 BTC to my bitcoin wallet, dear friend.\n",
            "payment\npay  eth\nsomething together\n\nwith you\n",
            "caf\u{e9} na\u{ef}ve \u{fffd} x\u{0}y\r\n",
            "",
            "aaa bbb aaa",
        ];
        let patterns = [
            r"(?i)\bi\s+am\s+contacting\s+you\b",
            r"(?i)\b(?:send|pay)\b[^\n]{0,40}\b(?:btc|eth)\b",
            r"(?im)^\s*\S",
            r"(?i)dear\s+friend|wallet",
            r"(?-u:\xe9)",
            r"\b",
            r"x*",
            r"(?i)with\s+you$",
        ];
        for pat in patterns {
            let reference = regex::bytes::Regex::new(pat).unwrap();
            for prefilter in [true, false] {
                let re = Regex::build(pat, 8 << 20, 2 << 20, prefilter).unwrap();
                for text in texts {
                    let t = text.as_bytes();
                    let want: Vec<_> = reference
                        .find_iter(t)
                        .map(|m| (m.start(), m.end()))
                        .collect();
                    assert_eq!(re.find_iter(t).collect::<Vec<_>>(), want, "{pat} {text:?}");
                    assert_eq!(re.is_match(t), reference.is_match(t), "{pat} {text:?}");
                    for at in 0..=t.len() {
                        let want = reference.find_at(t, at).map(|m| (m.start(), m.end()));
                        assert_eq!(re.find_at(t, at), want, "{pat} {text:?} at {at}");
                    }
                }
            }
        }
        // Errors as the regex crate reports them.
        assert!(matches!(
            Regex::build("(", 8 << 20, 2 << 20, true),
            Err(regex::Error::Syntax(_))
        ));
        assert!(matches!(
            Regex::build(r"\w{500}", 1024, 2 << 20, false),
            Err(regex::Error::CompiledTooBig(1024))
        ));
    }

    #[test]
    fn a_long_text_gives_the_matches_of_one_search() {
        let text = format!(
            "{}viagra {}cheap viagra{}end",
            "lorem ipsum ".repeat(20_000),
            "dolor sit ".repeat(30_000),
            " amet".repeat(10)
        );
        for pat in [
            r"\bviagra\b",
            r"(?i)cheap\s+viagra",
            r"end$",
            r"^lorem",
            r"\d+",
        ] {
            let re = Regex::new(pat);
            let (got, cut) = find(&re, &text, usize::MAX, None);
            assert_eq!(cut, None);
            assert_eq!(got, whole(&re, &text), "{pat}");
        }
    }

    #[test]
    fn a_match_cut_at_a_window_end_is_confirmed_on_the_whole_text() {
        // `x$` would match at the end of a window; the text goes on, so it is no match.
        let text = format!("{}x{}", "a".repeat(ZONE + LOOKAHEAD - 1), "b".repeat(100));
        let re = Regex::new("x$");
        assert_eq!(find(&re, &text, 10, None).0, []);
        // A greedy repetition reaching past the window still gets its whole match.
        let text = format!("{}{}", "a".repeat(ZONE - 10), "b".repeat(2 * LOOKAHEAD));
        let re = Regex::new("ab+");
        assert_eq!(find(&re, &text, 10, None).0, whole(&re, &text));
    }

    #[test]
    fn the_deadline_stops_a_long_search() {
        let text = "word ".repeat(100_000);
        let re = Regex::new(r"\bword\b");
        let (_, cut) = find(&re, &text, usize::MAX, Some(Instant::now()));
        assert_eq!(cut, Some(Cut::Deadline));
    }
}
