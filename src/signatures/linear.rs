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

use super::backtrack::{Cut, TIME_LIMIT};

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
    re: &regex::bytes::Regex,
    text: &str,
    max: usize,
    deadline: Option<Instant>,
) -> (Vec<(usize, usize)>, Option<Cut>) {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    if text.len() <= ZONE {
        out.extend(re.find_iter(bytes).take(max).map(|m| (m.start(), m.end())));
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
            Some(m) if m.start() >= zone_end && zone_end < n => {
                at = zone_end;
                continue;
            }
            Some(m) => m,
        };
        let (start, mut end) = (m.start(), m.end());
        if end == hay_end && hay_end < n {
            // Touching the window's end: a zone further on says what the match really is
            // (`$`, `\b` and greedy repetitions see more text there).
            let wider = text.ceil_char_boundary((hay_end + ZONE).min(n));
            match re.find_at(&bytes[..wider], start) {
                Some(w) if w.start() == start => end = w.end(),
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

    fn whole(re: &regex::bytes::Regex, text: &str) -> Vec<(usize, usize)> {
        re.find_iter(text.as_bytes())
            .map(|m| (m.start(), m.end()))
            .collect()
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
            let re = regex::bytes::Regex::new(pat).unwrap();
            let (got, cut) = find(&re, &text, usize::MAX, None);
            assert_eq!(cut, None);
            assert_eq!(got, whole(&re, &text), "{pat}");
        }
    }

    #[test]
    fn a_match_cut_at_a_window_end_is_confirmed_on_the_whole_text() {
        // `x$` would match at the end of a window; the text goes on, so it is no match.
        let text = format!("{}x{}", "a".repeat(ZONE + LOOKAHEAD - 1), "b".repeat(100));
        let re = regex::bytes::Regex::new("x$").unwrap();
        assert_eq!(find(&re, &text, 10, None).0, []);
        // A greedy repetition reaching past the window still gets its whole match.
        let text = format!("{}{}", "a".repeat(ZONE - 10), "b".repeat(2 * LOOKAHEAD));
        let re = regex::bytes::Regex::new("ab+").unwrap();
        assert_eq!(find(&re, &text, 10, None).0, whole(&re, &text));
    }

    #[test]
    fn the_deadline_stops_a_long_search() {
        let text = "word ".repeat(100_000);
        let re = regex::bytes::Regex::new(r"\bword\b").unwrap();
        let (_, cut) = find(&re, &text, usize::MAX, Some(Instant::now()));
        assert_eq!(cut, Some(Cut::Deadline));
    }
}
