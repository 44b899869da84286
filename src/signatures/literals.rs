//! Required literals of a regex: a set of strings one of which occurs in every match, so the
//! regex need run only on texts where the Aho-Corasick pass found one of them.

use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{Hir, HirKind};

/// Shortest literal worth prefiltering on: shorter ones occur in nearly every message.
pub const MIN_LITERAL_LEN: usize = 3;

/// Most alternatives kept for one regex; more would bloat the automaton for little gain.
const MAX_ALTERNATIVES: usize = 64;

/// Returns lower-case literals (for an ASCII case-insensitive search) one of which must occur
/// in any match of `hir`, or None when no useful set exists. `hir` must be parsed without the
/// case-insensitive flag; `ci` says whether the real regex has it. The automaton folds ASCII
/// case only: that is all a regex with byte semantics folds too (`ascii_fold`, Perl's on
/// octets), but where the regex folds Unicode, only ASCII literals are usable.
pub fn required(hir: &Hir, ci: bool, ascii_fold: bool) -> Option<Vec<Vec<u8>>> {
    let mut best = necessary(hir);
    if let Some(prefixes) = extract(hir, ExtractKind::Prefix) {
        best = better(best, Some(prefixes));
    }
    if let Some(suffixes) = extract(hir, ExtractKind::Suffix) {
        best = better(best, Some(suffixes));
    }
    let mut set = best?;
    if ci && !ascii_fold && set.iter().any(|l| !l.is_ascii()) {
        return None;
    }
    for l in &mut set {
        l.make_ascii_lowercase();
    }
    set.sort();
    set.dedup();
    (min_len(&set) >= MIN_LITERAL_LEN).then_some(set)
}

fn extract(hir: &Hir, kind: ExtractKind) -> Option<Vec<Vec<u8>>> {
    let mut ex = Extractor::new();
    ex.kind(kind);
    let seq = ex.extract(hir);
    let lits = seq.literals()?;
    if lits.is_empty() || lits.len() > MAX_ALTERNATIVES {
        return None;
    }
    let v: Vec<Vec<u8>> = lits.iter().map(|l| l.as_bytes().to_vec()).collect();
    (min_len(&v) > 0).then_some(v)
}

fn min_len(set: &[Vec<u8>]) -> usize {
    set.iter().map(Vec::len).min().unwrap_or(0)
}

/// The set whose shortest literal is longest (fewer alternatives on a tie).
fn better(a: Option<Vec<Vec<u8>>>, b: Option<Vec<Vec<u8>>>) -> Option<Vec<Vec<u8>>> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let (ka, kb) = (
                (min_len(&a), usize::MAX - a.len()),
                (min_len(&b), usize::MAX - b.len()),
            );
            Some(if kb > ka { b } else { a })
        }
        (a, None) => a,
        (None, b) => b,
    }
}

/// A set of literals one of which every match of `h` contains.
fn necessary(h: &Hir) -> Option<Vec<Vec<u8>>> {
    match h.kind() {
        HirKind::Literal(l) => Some(vec![l.0.to_vec()]),
        HirKind::Capture(c) => necessary(&c.sub),
        HirKind::Repetition(r) if r.min >= 1 => necessary(&r.sub),
        HirKind::Concat(subs) => subs.iter().map(necessary).fold(None, better),
        HirKind::Alternation(subs) => {
            let mut all = Vec::new();
            for s in subs {
                all.extend(necessary(s)?);
                if all.len() > MAX_ALTERNATIVES {
                    return None;
                }
            }
            (min_len(&all) > 0).then_some(all)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lits(re: &str, ci: bool) -> Option<Vec<String>> {
        let hir = regex_syntax::ParserBuilder::new()
            .build()
            .parse(re)
            .unwrap();
        required(&hir, ci, false).map(|v| {
            v.into_iter()
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
        ];
        for (re, ci, want) in cases {
            let got = lits(re, *ci);
            let want: Option<Vec<String>> = want.map(|w| w.iter().map(|s| s.to_string()).collect());
            assert_eq!(got, want, "{re}");
        }
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
            required(&hir, true, true),
            Some(vec![b"b\xc3\xa9nin".to_vec(), b"b\xe9nin".to_vec()])
        );
        assert_eq!(required(&hir, true, false), None);
    }
}
