//! Backtracking rules (look-around, back-references) evaluated at a bounded cost that
//! padding cannot switch off.
//!
//! They run on PCRE2 (JIT-compiled, without UTF: Perl's own syntax and byte semantics, which
//! SpamAssassin's rules are written in). fancy-regex ran them before: its VM costs 7 ms per
//! message on SpamAssassin's 194 such rules (three quarters of the whole scan), PCRE2's JIT a
//! fraction of that, and it reads every Perl construct the rules use.
//!
//! A backtracking engine counts its steps per search, and one search tries every start
//! position of the text: 100 KB of padding before a match would use the whole step budget,
//! so the rule would stop matching. So a rule is searched zone by zone: each search may start only within one [`ZONE`] of the
//! text and sees [`LOOKAHEAD`] bytes past it (the text before it stays visible, so `^`, `\b`
//! and look-behind see what they should), with a fresh step budget. Only zones where the
//! rule's relaxed pattern (see [`super::relax`], a linear regex that matches wherever the rule
//! does) has a match are searched, so padding without the rule's words costs one linear pass.
//! Each rule has a time budget per text ([`TIME_LIMIT`]) and the whole scan a deadline,
//! checked between zones. What is cut off counts as no match and is reported.
//!
//! The price: a match of a backtracking rule, with what its look-ahead reads, must end within
//! [`LOOKAHEAD`] bytes past the zone it starts in.

use std::time::{Duration, Instant};

/// Bytes of text in which one search may start a match.
pub const ZONE: usize = 4096;

/// Bytes past the zone a search sees, for the rest of a match and its look-ahead.
pub const LOOKAHEAD: usize = 1024;

/// Backtracking steps per zone before the zone counts as not matching (`RULE_STEP_LIMIT`):
/// PCRE2's match limit, set in the pattern (`(*LIMIT_MATCH=...)`).
pub const STEP_LIMIT: usize = 100_000;

/// Compiles a pattern for PCRE2 (written by `perl::regex_source` with `Mode::Pcre`), with the
/// step limit, JIT-compiled where the platform allows.
pub fn compile(src: &str) -> Result<pcre2::bytes::Regex, String> {
    pcre2::bytes::RegexBuilder::new()
        .jit_if_available(true)
        .build(&format!("(*LIMIT_MATCH={STEP_LIMIT}){src}"))
        .map_err(|e| e.to_string())
}

/// Time one rule may spend on one text (`RULE_TIME_LIMIT`). Far above what any sane rule
/// needs on the largest message (a zone takes microseconds), far below `message_timeout`.
pub const TIME_LIMIT: Duration = Duration::from_millis(100);

/// Why a search stopped before the end of the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// A zone used up its step budget; the other zones were searched.
    Steps,
    /// The rule used up [`TIME_LIMIT`].
    Time,
    /// The scan's deadline passed.
    Deadline,
}

/// What a search found: match spans (non-overlapping, in order) and whether it was cut short.
#[derive(Debug, Default)]
pub struct Found {
    pub spans: Vec<(usize, usize)>,
    pub cut: Option<Cut>,
    /// Zones the backtracking engine searched (where the relaxed pattern matched).
    pub zones: usize,
}

/// A backtracking rule and the linear pattern that says where it can match.
pub struct Backtracking {
    re: pcre2::bytes::Regex,
    /// The relaxed pattern; without one (it would not compile) every zone is searched.
    /// The relaxed pattern, with byte semantics as the rule's own (`(?-u)`): Unicode classes
    /// under bounded repeats (`[^\n]{0,200}`) made lazy DFAs that outgrew their cache and
    /// were rebuilt on every search, half the scan's time on SpamAssassin's rules.
    anchor: Option<regex::bytes::Regex>,
}

impl Backtracking {
    pub fn new(re: pcre2::bytes::Regex, anchor: Option<regex::bytes::Regex>) -> Backtracking {
        Backtracking { re, anchor }
    }

    pub fn anchor(&self) -> Option<&regex::bytes::Regex> {
        self.anchor.as_ref()
    }

    /// Up to `max` non-overlapping matches, leftmost first.
    pub fn find(&self, text: &str, max: usize, deadline: Option<Instant>) -> Found {
        let n = text.len();
        let mut out = Found::default();
        // Position `n` (the end of the text) is a position too (`$`, an empty match): it is
        // in the last zone, one of its own when `n` is a multiple of the zone size.
        let zones = n / ZONE + 1;
        // One zone (most texts) has nothing to stop between: the caller checked the
        // deadline, and the time budget is for the zones of a long text.
        let started = (zones > 1).then(Instant::now);
        let mut from = 0;
        for z in 0..zones {
            if zones > 1 && deadline.is_some_and(|d| Instant::now() >= d) {
                out.cut = Some(Cut::Deadline);
                return out;
            }
            if started.is_some_and(|s| s.elapsed() >= TIME_LIMIT) {
                out.cut = Some(Cut::Time);
                return out;
            }
            let zone_end = text.floor_char_boundary(((z + 1) * ZONE).min(n));
            let starts_here = |pos: usize| pos < zone_end || (zone_end == n && pos == n);
            let mut at = from.max(text.ceil_char_boundary(z * ZONE));
            if !starts_here(at) {
                continue;
            }
            let hay = &text[..text.ceil_char_boundary((zone_end + LOOKAHEAD).min(n))];
            // Every match the search below could find is a match of the relaxed pattern in
            // the same text: where that has none starting in this zone, neither has the rule.
            // Its search is bounded by the same text, so the zones together cost one pass.
            // In a text of one zone every match starts in it: whether there is one will do.
            if let Some(anchor) = &self.anchor
                && !(if zones == 1 {
                    anchor.is_match_at(hay.as_bytes(), at)
                } else {
                    anchor
                        .find_at(hay.as_bytes(), at)
                        .is_some_and(|m| starts_here(m.start()))
                })
            {
                continue;
            }
            out.zones += 1;
            while starts_here(at) {
                match self.re.find_at(hay.as_bytes(), at) {
                    Ok(Some(m)) if starts_here(m.start()) => {
                        out.spans.push((m.start(), m.end()));
                        if out.spans.len() >= max {
                            return out;
                        }
                        // Non-overlapping, and past an empty match by one character.
                        at = if m.end() > m.start() {
                            m.end()
                        } else if m.start() == n {
                            // Nothing is left to search, in this zone or a later one.
                            n + 1
                        } else {
                            text.ceil_char_boundary(m.start() + 1)
                        };
                        from = at;
                    }
                    Ok(_) => break,
                    Err(_) => {
                        out.cut.get_or_insert(Cut::Steps);
                        break;
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(src: &str) -> Backtracking {
        let re = compile(src).unwrap();
        let anchor = super::super::relax::relaxed(src)
            .and_then(|r| regex::bytes::Regex::new(&format!("(?-u){r}")).ok());
        Backtracking::new(re, anchor)
    }

    #[test]
    fn padding_does_not_switch_a_rule_off() {
        let r = rule("a(?=b)");
        for pad in ["x", "a", "é"] {
            let text = format!("{}ab", pad.repeat(200_000));
            let f = r.find(&text, 10, None);
            assert_eq!(f.cut, None, "pad {pad:?}");
            assert_eq!(f.spans, [(text.len() - 2, text.len() - 1)], "pad {pad:?}");
        }
    }

    #[test]
    fn matches_across_zone_edges_and_context_before_them() {
        // A match that starts just before a zone edge and ends after it.
        let text = format!("{}foobar", "x".repeat(ZONE - 3));
        assert_eq!(
            rule("foo(?=bar)bar").find(&text, 10, None).spans,
            [(ZONE - 3, ZONE + 3)]
        );
        // Look-behind and \b see the text before the zone.
        let text = format!("{}ab", "c".repeat(ZONE));
        assert_eq!(
            rule("(?<=c)ab").find(&text, 10, None).spans,
            [(ZONE, ZONE + 2)]
        );
        assert!(rule(r"\bab").find(&text, 10, None).spans.is_empty());
        // ^ means the start of the text, not of a zone.
        assert!(rule("^ab(?!x)").find(&text, 10, None).spans.is_empty());
    }

    #[test]
    fn every_match_is_found_leftmost_first_without_overlap() {
        let text = format!("{}{}", "aab ".repeat(3000), "end");
        let r = rule("a(?=a|b)");
        let f = r.find(&text, usize::MAX, None);
        let naive = pcre2::bytes::Regex::new("a(?=a|b)").unwrap();
        let want: Vec<(usize, usize)> = naive
            .find_iter(text.as_bytes())
            .map(|m| m.unwrap())
            .map(|m| (m.start(), m.end()))
            .collect();
        assert_eq!(f.spans, want);
        assert_eq!(r.find(&text, 5, None).spans.len(), 5);
    }

    #[test]
    fn a_look_around_bomb_is_cut_by_time() {
        // PCRE2 sees that no `b` follows and gives up at once; a bomb it cannot see through
        // (`b` present far away) is cut by steps in every zone and then by time.
        let r = rule("(?=(a+)+b)a");
        let text = "a".repeat(1_000_000);
        let start = Instant::now();
        let f = r.find(&text, 10, None);
        assert!(f.spans.is_empty());
        assert!(start.elapsed() < TIME_LIMIT * 20, "{:?}", start.elapsed());
        let r = rule("(?=(a|aa)+b)a");
        let text = format!("{}xb", "a".repeat(60)).repeat(10_000);
        let start = Instant::now();
        let f = r.find(&text, 10, None);
        assert!(f.spans.is_empty());
        assert!(matches!(f.cut, Some(Cut::Time | Cut::Steps)), "{:?}", f.cut);
        // Stopped at the first check past the budget: one zone at most later. A bound, not a
        // speed target: unbounded, this search takes minutes.
        assert!(start.elapsed() < TIME_LIMIT * 20, "{:?}", start.elapsed());
    }

    #[test]
    fn empty_texts_and_the_end_of_the_text_are_searched() {
        assert_eq!(rule("^(?!x)").find("", 10, None).spans, [(0, 0)]);
        let text = "y".repeat(ZONE);
        assert_eq!(rule("(?<=y)$").find(&text, 10, None).spans, [(ZONE, ZONE)]);
    }

    #[test]
    fn the_deadline_stops_a_search() {
        let r = rule("(?=(a+)+b)a");
        let text = "a".repeat(100_000);
        let f = r.find(&text, 10, Some(Instant::now()));
        assert_eq!(f.cut, Some(Cut::Deadline));
    }

    #[test]
    fn only_zones_where_the_relaxed_pattern_matches_are_searched() {
        let r = rule("zorg(?!lub)");
        let text = format!(
            "{}zorglub{}zorgx",
            "x".repeat(3 * ZONE),
            "y".repeat(5 * ZONE)
        );
        let f = r.find(&text, 10, None);
        assert_eq!(f.zones, 2);
        assert_eq!(f.spans.len(), 1);
        assert_eq!(&text[f.spans[0].0..f.spans[0].1], "zorg");
        // Without a relaxed pattern, every zone, for the same answer.
        let bare = Backtracking::new(compile("zorg(?!lub)").unwrap(), None);
        let all = bare.find(&text, 10, None);
        assert_eq!(all.zones, text.len() / ZONE + 1);
        assert_eq!(all.spans, f.spans);
    }

    #[test]
    fn a_relaxed_pattern_that_scans_far_stays_within_the_time_limit() {
        // `a.*b` in the relaxed pattern ran to the end of the text from every zone (8 MB took
        // 30 s) before its search was bounded to the zone's text; the time limit is checked
        // between zones, so this one rule ends with a time cut, soon after its 100 ms.
        let r = rule("(?s)a.*b|a(?=c)");
        let text = "a".repeat(8_000_000);
        let start = Instant::now();
        let f = r.find(&text, 10, None);
        assert!(f.spans.is_empty());
        assert!(matches!(f.cut, None | Some(Cut::Time)), "{:?}", f.cut);
        assert!(start.elapsed() < TIME_LIMIT * 20, "{:?}", start.elapsed());
    }
}
