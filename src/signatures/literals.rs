//! Required literals of a regex: a set of strings one of which occurs in every match, so the
//! regex need run only on texts where the Aho-Corasick pass found one of them.

use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{Hir, HirKind};

/// Shortest literal worth prefiltering on: shorter ones occur in nearly every message.
pub const MIN_LITERAL_LEN: usize = 3;

/// Most alternatives kept for one regex; more would bloat the automaton for little gain.
const MAX_ALTERNATIVES: usize = 1024;

/// Children of a concatenation whose joint prefixes are tried (see `necessary`).
const WINDOW: usize = 3;

/// Literals one of which every match holds; `times` of them (not overlapping) where every
/// match repeats a part that holds one: `(?:<field><blank>){5}` has five field names in any
/// match, a condition that the Aho-Corasick pass checks for free and that few texts meet,
/// where one field name ("name", "age", "phone") is in most mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Required {
    pub literals: Vec<Vec<u8>>,
    pub times: u32,
}

/// Returns lower-case literals (for an ASCII case-insensitive search) one of which must occur
/// in any match of `hir`, or None when no useful set exists. `hir` must be parsed without the
/// case-insensitive flag; `ci` says whether the real regex has it. The automaton folds ASCII
/// case only: that is all a regex with byte semantics folds too (`ascii_fold`, Perl's on
/// octets), but where the regex folds Unicode, only ASCII literals are usable.
pub fn required(hir: &Hir, ci: bool, ascii_fold: bool) -> Option<Required> {
    let ascii_only = ci && !ascii_fold;
    let once = necessary(hir, ascii_only).and_then(lowered);
    let repeated = repeated(hir, ascii_only).and_then(|(set, n)| Some((lowered(set)?, n)));
    match (once, repeated) {
        // Counted occurrences of somewhat shorter literals beat single occurrences.
        (once, Some((literals, times)))
            if once
                .as_ref()
                .is_none_or(|o| min_len(o) <= min_len(&literals) + 2) =>
        {
            Some(Required { literals, times })
        }
        (once, _) => once.map(|literals| Required { literals, times: 1 }),
    }
}

/// The set lower-cased and deduplicated, if its literals are long enough to be worth it.
fn lowered(mut set: Vec<Vec<u8>>) -> Option<Vec<Vec<u8>>> {
    for l in &mut set {
        l.make_ascii_lowercase();
    }
    let set = minimal(set);
    (min_len(&set) >= MIN_LITERAL_LEN).then_some(set)
}

/// The set without the literals that hold another one: where "amount won" occurs, "amount"
/// does, so the longer one adds nothing but a second count of the same place.
fn minimal(mut set: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    set.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    set.dedup();
    let mut kept: Vec<Vec<u8>> = Vec::with_capacity(set.len());
    for l in set {
        if !kept.iter().any(|k| memchr::memmem::find(&l, k).is_some()) {
            kept.push(l);
        }
    }
    kept.sort();
    kept
}

/// The literals of a part that every match repeats at least twice, and how many times: a
/// repetition at the top of the pattern or in its top-level sequence.
fn repeated(h: &Hir, ascii_only: bool) -> Option<(Vec<Vec<u8>>, u32)> {
    match h.kind() {
        HirKind::Capture(c) => repeated(&c.sub, ascii_only),
        HirKind::Repetition(r) if r.min >= 2 => {
            necessary(&r.sub, ascii_only).map(|set| (set, r.min))
        }
        HirKind::Concat(subs) => subs
            .iter()
            .filter_map(|s| repeated(s, ascii_only))
            .max_by_key(|(set, n)| (min_len(set), *n)),
        _ => None,
    }
}

/// The extractor's prefixes or suffixes of `hir`, if a usable set; `ascii_only` refuses
/// sets with a literal past ASCII (which a Unicode case fold could match otherwise).
fn extract(hir: &Hir, kind: ExtractKind, ascii_only: bool) -> Option<Vec<Vec<u8>>> {
    let mut ex = Extractor::new();
    ex.kind(kind);
    let seq = ex.extract(hir);
    let lits = seq.literals()?;
    if lits.is_empty() || lits.len() > MAX_ALTERNATIVES {
        return None;
    }
    let v: Vec<Vec<u8>> = lits.iter().map(|l| l.as_bytes().to_vec()).collect();
    usable(v, ascii_only)
}

fn usable(set: Vec<Vec<u8>>, ascii_only: bool) -> Option<Vec<Vec<u8>>> {
    (min_len(&set) > 0 && !(ascii_only && set.iter().any(|l| !l.is_ascii()))).then_some(set)
}

fn min_len(set: &[Vec<u8>]) -> usize {
    set.iter().map(Vec::len).min().unwrap_or(0)
}

/// What makes a literal set better than another.
#[derive(Clone, Copy)]
struct Want {
    /// Literals past ASCII are refused (see `usable`).
    ascii_only: bool,
    /// Fewest literals first (each long enough), not the longest shortest one: for the
    /// branches of an alternation whose best sets would together be too many.
    compact: bool,
}

/// `a` or `b`, whichever is better: normally the set whose shortest literal is longest
/// (fewer alternatives on a tie).
fn better(a: Option<Vec<Vec<u8>>>, b: Option<Vec<Vec<u8>>>, want: Want) -> Option<Vec<Vec<u8>>> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let key = |s: &[Vec<u8>]| {
                let (shortest, fewer) = (min_len(s), usize::MAX - s.len());
                if want.compact {
                    (usize::from(shortest >= MIN_LITERAL_LEN), fewer, shortest)
                } else {
                    (shortest, fewer, 0)
                }
            };
            Some(if key(&b) > key(&a) { b } else { a })
        }
        (a, None) => a,
        (None, b) => b,
    }
}

/// A set of literals one of which every match of `h` contains.
///
/// Each node's own prefixes and suffixes compete with what its children give: the
/// extractors see a whole alternation of words (`(?:deceased|late|defunto)`) where taking
/// the best child of a concatenation would keep only the shortest word of one branch, and
/// the recursion reaches into a sub-pattern that the extractors, crossing every branch of
/// the pattern before it, give up on.
fn necessary(h: &Hir, ascii_only: bool) -> Option<Vec<Vec<u8>>> {
    let want = Want {
        ascii_only,
        compact: false,
    };
    necessary_as(h, want)
}

fn necessary_as(h: &Hir, want: Want) -> Option<Vec<Vec<u8>>> {
    let better = |a, b| better(a, b, want);
    let extract = |h: &Hir, kind| extract(h, kind, want.ascii_only);
    let own = match h.kind() {
        HirKind::Literal(l) => return usable(vec![l.0.to_vec()], want.ascii_only),
        HirKind::Capture(c) => necessary_as(&c.sub, want),
        HirKind::Repetition(r) if r.min >= 1 => necessary_as(&r.sub, want),
        HirKind::Concat(subs) => {
            let mut best = subs
                .iter()
                .map(|s| necessary_as(s, want))
                .fold(None, better);
            // A literal may span children: the "res" of `ad+res+` starts in one and ends in
            // the repetition after it, where no child alone holds three characters.
            for i in 0..subs.len().saturating_sub(1) {
                let window = Hir::concat(subs[i..(i + WINDOW).min(subs.len())].to_vec());
                best = better(best, extract(&window, ExtractKind::Prefix));
            }
            best
        }
        HirKind::Alternation(subs) => {
            // Every branch's best set, or failing that (too many in all: `\s` in a byte
            // regex is six characters, and `male\sor\sfemale` thirty-six literals) the
            // smallest sets of literals long enough.
            let union = |want: Want| {
                let mut all = Vec::new();
                for s in subs {
                    match necessary_as(s, want) {
                        Some(set) if all.len() + set.len() <= MAX_ALTERNATIVES => all.extend(set),
                        _ => return None,
                    }
                }
                usable(all, want.ascii_only)
            };
            union(want).or_else(|| {
                (!want.compact)
                    .then(|| {
                        union(Want {
                            compact: true,
                            ..want
                        })
                    })
                    .flatten()
            })
        }
        _ => None,
    };
    let own = better(own, extract(h, ExtractKind::Prefix));
    better(own, extract(h, ExtractKind::Suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lits(re: &str, ci: bool) -> Option<Vec<String>> {
        let hir = regex_syntax::ParserBuilder::new()
            .build()
            .parse(re)
            .unwrap();
        required(&hir, ci, false).map(|r| {
            r.literals
                .into_iter()
                .map(|l| String::from_utf8(l).unwrap())
                .collect()
        })
    }

    #[test]
    fn extraction_table() {
        let cases: &[(&str, bool, Option<&[&str]>)] = &[
            (r"viagra", false, Some(&["viagra"])),
            (r"\bV[i1]agra\b", true, Some(&["v1agra", "viagra"])),
            (
                r"click (here|now) to",
                false,
                Some(&["click here to", "click now to"]),
            ),
            (r".*lottery winner", false, Some(&["lottery winner"])),
            (r"(?:foo|ba)r+", false, Some(&["bar", "foor"])),
            (r"a+b", false, None),
            (r"[0-9]{4,}", false, None),
            (
                r"(million|billion) dollars",
                false,
                Some(&["billion dollars", "million dollars"]),
            ),
            (r"caf\x{e9}", true, None),
            (r"caf\x{e9}", false, Some(&["caf\u{e9}"])),
            (r"x?yz", false, None),
            // Literals that span children: "res" starts in a literal, ends in `s+`.
            (r"ad+res+", false, Some(&["res"])),
            (
                r"\b(?:my|le)\s(?:deceased|late|defunto)\b",
                false,
                Some(&["deceased", "defunto", "late"]),
            ),
            // A literal holding another is dropped: it occurs only where the other does.
            (r"amount(?: won)?|prize", false, Some(&["amount", "prize"])),
        ];
        for (re, ci, want) in cases {
            let got = lits(re, *ci);
            let want: Option<Vec<String>> = want.map(|w| w.iter().map(|s| s.to_string()).collect());
            assert_eq!(got, want, "{re}");
        }
    }

    fn times(re: &str) -> Option<(u32, Vec<String>)> {
        let hir = regex_syntax::ParserBuilder::new()
            .utf8(false)
            .build()
            .parse(re)
            .unwrap();
        required(&hir, true, true).map(|r| {
            let lits = r
                .literals
                .into_iter()
                .map(|l| String::from_utf8(l).unwrap());
            (r.times, lits.collect())
        })
    }

    #[test]
    fn a_repeated_part_needs_its_literals_as_many_times() {
        assert_eq!(
            times(r"(?:(?:name|phone|age):\s*_+\s*){5}"),
            Some((5, vec!["age:".into(), "name:".into(), "phone:".into()]))
        );
        assert_eq!(
            times(r"^\s*(?:(?:name|phone)[:\s]+){2,4}$"),
            Some((2, vec!["name".into(), "phone".into()]))
        );
        // A longer literal met once beats short ones met twice.
        assert_eq!(
            times(r"lottery winner\s(?:is|are)(?:\s\d+){2}"),
            Some((1, vec!["lottery winner".into()]))
        );
    }

    #[test]
    fn an_alternation_with_too_many_long_literals_takes_fewer_shorter_ones() {
        // In byte mode `\s` is six characters: each branch's longest literals are its six
        // spellings of "ab c001", 1,200 in all, too many; each branch then gives its fewest
        // literals of three characters or more.
        let branches: Vec<String> = (0..200).map(|i| format!("ab\\sc{i:03}")).collect();
        let (n, lits) = times(&format!("(?-u)(?:{})", branches.join("|"))).unwrap();
        assert_eq!(n, 1);
        assert_eq!(lits.len(), 200);
        assert!(
            lits.iter().all(|l| l.len() == 4 && l.starts_with('c')),
            "{lits:?}"
        );
    }

    #[test]
    fn byte_semantics_keep_non_ascii_literals_of_case_insensitive_rules() {
        // Perl on octets folds ASCII only: "b\xE9nin" matches "B\xE9NIN", never "B\xC9NIN".
        let hir = regex_syntax::ParserBuilder::new()
            .utf8(false)
            .build()
            .parse(r"(?-u)\bb(?:\xE9|\xC3\xA9)nin\b")
            .unwrap();
        assert_eq!(
            required(&hir, true, true).map(|r| r.literals),
            Some(vec![b"b\xc3\xa9nin".to_vec(), b"b\xe9nin".to_vec()])
        );
        // Where the regex folds Unicode, only the ASCII part of the word is usable.
        assert_eq!(
            required(&hir, true, false).map(|r| r.literals),
            Some(vec![b"nin".to_vec()])
        );
    }
}
