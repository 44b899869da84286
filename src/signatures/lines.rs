//! Whether a regex's matches lie within one line: then, on a long text, it need run only on
//! the lines where one of its required literals occurs (a literal is part of every match),
//! each line searched as a text of its own, and it finds exactly what a search of the whole
//! text finds. The attachment rules of the shipped set (`full` rules anchored with `^` under
//! `/m`, a literal such as "name=" in the middle) ran over every byte of every message that
//! had "name" anywhere; a message's base64 dwarfs its MIME headers.

use regex_syntax::hir::{Class, Hir, HirKind, Look};

/// True when no match of `hir` can hold a line end (`\n`) anywhere but as its last byte, and
/// nothing in the match tests what follows such a last line end, and the pattern has no
/// start- or end-of-text anchor (`\A`, `\z`, `^` and `$` without `/m`): a line searched
/// alone then yields the same matches as the whole text there. Line-start and word-boundary
/// tests at the start of a line see a `\n` (or the text's start) before it either way.
pub fn within_one_line(hir: &Hir) -> bool {
    let s = shape(hir);
    !s.anchored && !s.inner
}

/// What the analysis knows of a sub-pattern's matches.
#[derive(Clone, Copy)]
struct Shape {
    /// A match may hold a `\n`.
    nl: bool,
    /// A match may hold a `\n` that something in the same match follows (a byte or an
    /// assertion).
    inner: bool,
    /// Whether the sub-pattern is more than the empty pattern: it matches a byte or tests
    /// an assertion.
    something: bool,
    /// It holds a start- or end-of-text assertion.
    anchored: bool,
}

fn shape(hir: &Hir) -> Shape {
    let none = Shape {
        nl: false,
        inner: false,
        something: false,
        anchored: false,
    };
    match hir.kind() {
        HirKind::Empty => none,
        HirKind::Literal(lit) => {
            let bytes = &lit.0;
            let last = bytes.len().saturating_sub(1);
            Shape {
                nl: bytes.contains(&b'\n'),
                inner: bytes[..last].contains(&b'\n'),
                something: true,
                anchored: false,
            }
        }
        HirKind::Class(class) => Shape {
            nl: class_has_newline(class),
            something: true,
            ..none
        },
        HirKind::Look(look) => Shape {
            something: true,
            anchored: matches!(look, Look::Start | Look::End),
            ..none
        },
        HirKind::Capture(c) => shape(&c.sub),
        HirKind::Repetition(rep) => {
            if rep.max == Some(0) {
                return none;
            }
            let sub = shape(&rep.sub);
            let repeats = rep.max.is_none_or(|m| m > 1);
            Shape {
                inner: sub.inner || (repeats && sub.nl && sub.something),
                ..sub
            }
        }
        HirKind::Concat(parts) => {
            let shapes: Vec<Shape> = parts.iter().map(shape).collect();
            let mut out = none;
            // Whether some later part is more than empty, for each position.
            let mut later = false;
            for s in shapes.iter().rev() {
                out.inner |= s.inner || (s.nl && later);
                out.nl |= s.nl;
                out.something |= s.something;
                out.anchored |= s.anchored;
                later |= s.something;
            }
            out
        }
        HirKind::Alternation(alts) => alts.iter().map(shape).fold(none, |a, s| Shape {
            nl: a.nl || s.nl,
            inner: a.inner || s.inner,
            something: a.something || s.something,
            anchored: a.anchored || s.anchored,
        }),
    }
}

fn class_has_newline(class: &Class) -> bool {
    match class {
        Class::Unicode(c) => c
            .ranges()
            .iter()
            .any(|r| r.start() <= '\n' && '\n' <= r.end()),
        Class::Bytes(c) => c
            .ranges()
            .iter()
            .any(|r| r.start() <= b'\n' && b'\n' <= r.end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_line(re: &str) -> bool {
        let hir = regex_syntax::ParserBuilder::new()
            .utf8(false)
            .build()
            .parse(re)
            .unwrap();
        within_one_line(&hir)
    }

    #[test]
    fn patterns_that_cannot_cross_a_line_end_are_line_local() {
        assert!(one_line(r"foo"));
        assert!(one_line(
            r"(?mi)^(?:Content-Type:|[ \t])[^\n]*\bname=[^\n;]*\.exe(?:[;\s]|$)"
        ));
        assert!(one_line(r"(?m)^Subject: .*viagra$"));
        assert!(
            one_line(r"foo\s"),
            "a line end as the last byte is within the line"
        );
        assert!(one_line(r"(?:a|b\n)"));
        assert!(one_line(r"\bprize\b[^\n]{0,60}\$\d+"));
    }

    #[test]
    fn patterns_that_can_cross_a_line_end_are_not() {
        assert!(!one_line(r"foo\s+bar"));
        assert!(!one_line(r"(?s)foo.*bar"));
        assert!(!one_line(r"a\nb"));
        assert!(!one_line(r"[^x]+y"), "a negated class holds the line end");
        assert!(!one_line(r"(?:a\n)+"), "a repeated line end");
        assert!(
            !one_line(r"a\n$"),
            "an assertion after the line end sees the next line"
        );
        assert!(!one_line(r"a\s\b"), "as does a word boundary");
    }

    #[test]
    fn text_anchors_are_not_line_local() {
        assert!(
            !one_line(r"^From "),
            "^ without /m is the start of the text"
        );
        assert!(!one_line(r"foo$"), "$ without /m is the end of the text");
        assert!(!one_line(r"\Afoo"));
        assert!(one_line(r"(?m)^From "));
    }

    fn re_matches_empty(p: &str) -> bool {
        regex::bytes::Regex::new(p).unwrap().is_match(b"")
    }

    /// The claim itself: on texts built from pieces that make the patterns cross lines, a
    /// line-local pattern finds the same matches line by line as over the whole text.
    #[test]
    fn line_local_patterns_match_the_same_line_by_line() {
        let patterns = [
            r"(?mi)^(?:Content-Type:|[ \t])[^\n]*\bname=[^\n;]*\.exe(?:[;\s]|$)",
            r"(?m)^ab$",
            r"\bab\b",
            r"b\s",
            r"(?m)a$",
            r"[^\n]+b",
        ];
        let pieces = [
            "a",
            "b",
            "ab",
            "\n",
            " ",
            "name=x.exe",
            "Content-Type: ",
            "\t",
            ";",
        ];
        let mut texts = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for t in &texts {
                for p in pieces {
                    next.push(format!("{t}{p}"));
                }
            }
            texts.extend(next);
            texts.dedup();
        }
        for p in patterns {
            assert!(one_line(p), "{p}");
            assert!(!re_matches_empty(p), "{p}");
            let re = regex::bytes::Regex::new(p).unwrap();
            for t in &texts {
                let whole: Vec<(usize, usize)> = re
                    .find_iter(t.as_bytes())
                    .map(|m| (m.start(), m.end()))
                    .collect();
                let mut by_line = Vec::new();
                let mut at = 0;
                for line in t.split_inclusive('\n') {
                    by_line.extend(
                        re.find_iter(line.as_bytes())
                            .map(|m| (at + m.start(), at + m.end())),
                    );
                    at += line.len();
                }
                assert_eq!(whole, by_line, "{p:?} on {t:?}");
            }
        }
    }
}
