//! A linear-time over-approximation of a backtracking regex, used to skip it.
//!
//! Regexes with look-around or back-references run on a backtracking engine, which tries every
//! starting position of every text: on SpamAssassin's rules that was most of the scan time.
//! Dropping every look-around (and the assertions the `regex` crate reads otherwise) and
//! replacing each back-reference with "any text" gives a pattern the `regex` crate can run,
//! and that matches wherever the original does (it only ever accepts more). So its required
//! literals can prefilter the rule like any other, and where it has none the relaxed pattern
//! itself says, zone by zone, where the backtracking engine need run at all (`backtrack`).

use fancy_regex::{Assertion, Expr};

/// The relaxed pattern in the `regex` crate's syntax, or None when `src` does not parse.
pub fn relaxed(src: &str) -> Option<String> {
    let tree = Expr::parse_tree(src).ok()?;
    let mut out = String::with_capacity(src.len() + 16);
    render(&tree.expr, &mut out);
    Some(octets(&out))
}

/// The pattern with every character past ASCII written as an escape. A Perl rule's `\xD1`
/// is the octet D1, which the Unicode-mode source this is made from holds as the character
/// U+00D1 (see `perl::Mode`): as `\xD1` again, a byte-semantics (`(?-u)`) regex reads the
/// octet, where it refused the character ("Unicode not allowed here") and the rule went
/// without a gate, its backtracking engine run over every text. Characters past U+00FF
/// (not in a Perl byte pattern) are written as their UTF-8 octets.
fn octets(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        match u32::from(c) {
            0..=0x7F => out.push(c),
            n @ 0x80..=0xFF => out.push_str(&format!("\\x{n:02X}")),
            _ => {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02X}"));
                }
            }
        }
    }
    out
}

fn render(e: &Expr, out: &mut String) {
    match e {
        // Assertions that mean the same in the `regex` crate with byte semantics as in PCRE2
        // without UTF (ASCII word characters; `^` and `$` at line feeds) are kept: `^` alone
        // makes a pattern's gate look only at line starts, `\b` only at word starts, where
        // without them it matched somewhere in most texts and the rule ran anyway. (Where
        // they differ the `regex` crate accepts more: its `(?m:^)` also matches after a
        // final line feed, which PCRE2's does not.)
        Expr::Assertion(Assertion::StartLine { crlf: false }) => out.push_str("(?m:^)"),
        Expr::Assertion(Assertion::EndLine { crlf: false }) => out.push_str("(?m:$)"),
        Expr::Assertion(Assertion::StartText) => out.push_str(r"\A"),
        Expr::Assertion(Assertion::WordBoundary) => out.push_str(r"\b"),
        Expr::Assertion(Assertion::NotWordBoundary) => out.push_str(r"\B"),
        // The others only ever remove matches: without them the pattern accepts more.
        Expr::Empty
        | Expr::Assertion(_)
        | Expr::LookAround(..)
        | Expr::KeepOut
        | Expr::ContinueFromPreviousMatchEnd
        | Expr::BackrefExistsCondition(_) => {}
        Expr::Any { newline: true } => out.push_str("(?s:.)"),
        Expr::Any { newline: false } => out.push_str("(?-s:.)"),
        Expr::Literal { val, casei } => {
            out.push_str(if *casei { "(?i:" } else { "(?:" });
            out.push_str(&regex_syntax::escape(val));
            out.push(')');
        }
        Expr::Concat(children) => {
            out.push_str("(?:");
            for c in children {
                render(c, out);
            }
            out.push(')');
        }
        Expr::Alt(children) => {
            out.push_str("(?:");
            for (i, c) in children.iter().enumerate() {
                if i > 0 {
                    out.push('|');
                }
                render(c, out);
            }
            out.push(')');
        }
        Expr::Group(c) | Expr::AtomicGroup(c) => render(c, out),
        Expr::Repeat { child, lo, hi, .. } => {
            out.push_str("(?:");
            render(child, out);
            out.push(')');
            // An upper bound only removes matches, and counting to it is what makes a lazy
            // DFA big: `[^\n]{0,200} for ` needs a state per count, `[^\n]* for ` a few.
            match (*lo, *hi) {
                (lo, hi) if lo == hi => out.push_str(&format!("{{{lo}}}")),
                (lo, _) => out.push_str(&format!("{{{lo},}}")),
            }
        }
        Expr::Delegate { inner, casei, .. } => {
            out.push_str(if *casei { "(?i:" } else { "(?:" });
            out.push_str(inner);
            out.push(')');
        }
        // Whatever the group captured: some text.
        Expr::Backref(_) => out.push_str("(?s:.*)"),
        Expr::Conditional {
            condition,
            true_branch,
            false_branch,
        } => {
            out.push_str("(?:");
            render(condition, out);
            render(true_branch, out);
            out.push('|');
            render(false_branch, out);
            out.push(')');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every text the original matches, the relaxed pattern matches too; `extra` are texts
    /// only the relaxed one matches (what relaxing costs); `neither` match neither.
    fn check(src: &str, both: &[&str], extra: &[&str], neither: &[&str]) {
        let fancy = fancy_regex::Regex::new(src).unwrap();
        let relaxed_src = relaxed(src).unwrap();
        let relaxed = regex::Regex::new(&relaxed_src)
            .unwrap_or_else(|e| panic!("{src} relaxed to {relaxed_src}: {e}"));
        for t in both {
            assert!(fancy.is_match(t).unwrap(), "{src} should match {t:?}");
            assert!(relaxed.is_match(t), "{relaxed_src} should match {t:?}");
        }
        for t in extra {
            assert!(!fancy.is_match(t).unwrap(), "{src} should not match {t:?}");
            assert!(relaxed.is_match(t), "{relaxed_src} should match {t:?}");
        }
        for t in neither {
            assert!(!relaxed.is_match(t), "{relaxed_src} should not match {t:?}");
        }
    }

    #[test]
    fn relaxed_patterns_accept_at_least_what_the_original_does() {
        check(r"foo(?=bar)", &["foobar"], &["foobaz"], &["fobar"]);
        check(
            r"(?<!un)subscribe",
            &["subscribe"],
            &["unsubscribe"],
            &["sub scribe"],
        );
        check(r"(\w+) \1", &["the the"], &["the cat"], &["thecat"]);
        check(
            r"(?i)\bcheap(?! pills)\b",
            &["CHEAP deals"],
            &["cheap pills"],
            // Word boundaries are kept.
            &["chea p", "cheapest", "mischeap"],
        );
        // So are line starts and ends.
        check(r"(?m)^(?=x)xy$", &["a\nxy\nb"], &[], &["axy", "xyz"]);
        check(r"a(?>bc|b)c", &["abcc"], &["abc"], &["ac"]);
        check(r"^x{2,3}+y", &["xxy"], &["xxxxy"], &["xy"]);
        check(r"x{2}(?=y)", &["xxy"], &["xxz"], &["xy"]);
        check(r"(?s)(a).{0,3}b\1?", &["a12b"], &["a1234b"], &["ba"]);
        check(r"(a)?(?(1)b|c)d", &["abd", "cd"], &["bd"], &["d"]);
        check(
            r"^(?!.*free).*offer$",
            &["best offer"],
            &["free offer", "offers"],
            &["ofer"],
        );
        check(
            r"(?s)start.+?(?=end)",
            &["start\nx end"],
            &["start\nx"],
            &["star"],
        );
    }

    #[test]
    fn octets_past_ascii_are_escapes_a_byte_regex_reads() {
        let r = relaxed("[p\u{d1}](?=x)\u{fe}").unwrap();
        assert!(r.is_ascii(), "{r}");
        let gate = regex::bytes::Regex::new(&format!("(?-u){r}")).unwrap();
        assert!(gate.is_match(b"\xd1\xfe"));
        assert!(!gate.is_match("\u{d1}\u{fe}".as_bytes()));
    }

    #[test]
    fn bad_patterns_give_none() {
        assert_eq!(relaxed(r"(unclosed"), None);
    }
}
