//! Messages inside a message, made opaque before mail-parser reads them.
//!
//! mail-parser parses a `message/rfc822` or `message/global` part as a message of its own (as
//! it does a part without a type in a `multipart/digest`), and when the part is base64 or
//! quoted-printable it decodes it and parses the result, up to three levels deep, past
//! `structure_cut`, which bounds only the text it was given: 4 MB of base64 holding 600,000
//! empty parts built 225 MB. RFC 2046 forbids those encodings on a message part; mail is
//! sent with them anyway.
//!
//! Finding those parts as the parser does (where each part's headers start, which of several
//! Content-Types counts, how a name is read) was tried and a review found five ways past it.
//! So this does not look for parts at all: every Content-Type value that could name a nested
//! message, wherever it stands, gets its subtype renamed to `opaque` (the same length, so no
//! offset moves) in the copy the parser reads. The parser then keeps each such part as an
//! attachment, decoded, and the MIME view parses it itself, one level down, under the part
//! limit of the whole message. A `multipart/digest` becomes `multipart/opaque`, whose parts
//! default to text like any other multipart's.
//!
//! What the parser takes for a type is read from its Content-Type parser (mail-parser 0.11):
//! the type is the token before the `/`, from the value's start, a blank or a comment (blanks,
//! line folds, `"` and `\` around it are skipped, comments in parentheses end a token and
//! cannot cross a line end); the subtype is the last token after the `/` and before the
//! parameters, a comment ending the one before it. So the search is for a `/` with the token
//! `message` or `multipart` before it (past comments; one too long to look past could hide
//! any type) and `rfc822`, `global` or `digest` after it or after a later `)` on its line.
//! Text that is not a header and happens to read so is renamed as well; only the parser's
//! copy changes. `--message/rfc822` is not a type token, so a delimiter line whose boundary
//! reads so keeps matching its boundary.

use std::sync::LazyLock;

use aho_corasick::{Span, packed};

/// What a nested message's or a digest's subtype becomes.
pub const OPAQUE_SUBTYPE: &str = "opaque";

/// Renames, in `raw`, the subtype of every Content-Type that could make the parser read a
/// part as a message of its own; returns how many it renamed.
///
/// Each `/` is judged, in ordinary text, which has few of them. Base64 has one every 64
/// bytes or so (a 300 KB attachment cost 4M instructions), so past [`WALKED_SLASHES`] the
/// rest of the text is searched for lines that hold one of the subtypes instead: a renamed
/// subtype stands on its slash's line (nothing skipped between them crosses a line end).
pub fn make_nested_messages_opaque(raw: &mut [u8]) -> usize {
    rename(raw, WALKED_SLASHES, PREFIXES.as_ref())
}

/// Slashes judged one by one before the rest of a text is searched for [`SUBTYPES`]: that
/// search costs about an instruction a byte, more than walking the slashes of ordinary
/// mail (12K instructions a held-out message against 5.5K).
const WALKED_SLASHES: usize = 256;

/// Every case spelling of the first three bytes of each of [`SUBTYPES`], for
/// [`next_subtype`]; None where aho-corasick has no SIMD searcher.
static PREFIXES: LazyLock<Option<packed::Searcher>> = LazyLock::new(|| {
    let mut builder = packed::Config::new().builder();
    for word in SUBTYPES {
        for mask in 0..8u8 {
            let spelling: Vec<u8> = (0..3)
                .map(|i| match mask & (1 << i) {
                    0 => word[i],
                    _ => word[i].to_ascii_uppercase(),
                })
                .collect();
            builder.add(spelling);
        }
    }
    builder.build()
});

/// [`make_nested_messages_opaque`], walking `walked` slashes before searching the rest of
/// the text with `prefixes` (if any), from the first line start after that.
///
/// Each byte is looked at a bounded number of times: a `/` looks back over the blanks
/// before it and forward over those after it, and a line's `)` are looked at once, from
/// the first `/` on that line that could stand in a type.
fn rename(raw: &mut [u8], walked: usize, prefixes: Option<&packed::Searcher>) -> usize {
    let mut renamed = 0;
    let mut from = 0;
    // The line end up to which `)` have been looked at.
    let mut parens_to = 0;
    let mut slashes = 0;
    while let Some(at) = memchr::memchr(b'/', &raw[from..]) {
        let slash = from + at;
        // Every line before the last line start before this slash is done.
        if slashes >= walked
            && let Some(searcher) = prefixes
            && let Some(n) = memchr::memrchr(b'\n', &raw[from..slash])
        {
            return renamed + rename_in_lines(raw, from + n + 1, searcher);
        }
        slashes += 1;
        from = slash + 1;
        let Some(n) = rename_at_slash(raw, slash) else {
            continue;
        };
        renamed += n;
        if slash < parens_to {
            continue;
        }
        let line_end = memchr::memchr(b'\n', &raw[slash..]).map_or(raw.len(), |n| slash + n);
        renamed += rename_after_parens(raw, slash + 1, line_end);
        parens_to = line_end;
    }
    renamed
}

/// Renames on each line, from `from` on, that holds one of [`SUBTYPES`].
fn rename_in_lines(raw: &mut [u8], mut from: usize, searcher: &packed::Searcher) -> usize {
    let mut renamed = 0;
    while let Some(at) = next_subtype(raw, from, searcher) {
        let start = memchr::memrchr(b'\n', &raw[from..at]).map_or(from, |n| from + n + 1);
        let end = memchr::memchr(b'\n', &raw[at..]).map_or(raw.len(), |n| at + n);
        let mut parens_seen = false;
        let mut q = start;
        while let Some(n) = memchr::memchr(b'/', &raw[q..end]) {
            let slash = q + n;
            q = slash + 1;
            let Some(n) = rename_at_slash(raw, slash) else {
                continue;
            };
            renamed += n;
            if !parens_seen {
                parens_seen = true;
                renamed += rename_after_parens(raw, slash + 1, end);
            }
        }
        if end >= raw.len() {
            break;
        }
        from = end + 1;
    }
    renamed
}

/// Renames the subtype after the `/` at `slash` if one nests a message there; None if no
/// type that could nest one stands before the slash.
fn rename_at_slash(raw: &mut [u8], slash: usize) -> Option<usize> {
    let before = type_before(raw, slash);
    if before == Before::Other {
        return None;
    }
    Some(usize::from(rename_subtype(
        raw,
        past_skipped(raw, slash + 1),
        before,
    )))
}

/// The parser's subtype is the last token before the parameters: a comment ends the one
/// before it, and the token after its `)` replaces it. The subtype never runs past its line
/// (a fold there starts the parameters), so this renames after each `)` in `from..line_end`.
fn rename_after_parens(raw: &mut [u8], mut from: usize, line_end: usize) -> usize {
    let mut renamed = 0;
    while let Some(n) = memchr::memchr(b')', &raw[from..line_end]) {
        if rename_subtype(raw, past_skipped(raw, from + n + 1), Before::Comment) {
            renamed += 1;
        }
        from += n + 1;
    }
    renamed
}

/// The subtypes that nest a message.
const SUBTYPES: [&[u8]; 3] = [b"rfc822", b"global", b"digest"];

/// Where the next of [`SUBTYPES`] starts (any case), from `from` on: `searcher` finds the
/// case spellings of their first three bytes (24 short literals, with SIMD), and each start
/// is compared whole. (aho-corasick's automaton, with these literals or the words' own 136
/// spellings, looked at every byte: 48K instructions a message.)
fn next_subtype(raw: &[u8], mut from: usize, searcher: &packed::Searcher) -> Option<usize> {
    loop {
        let at = searcher.find_in(raw, Span::from(from..raw.len()))?.start();
        let word = raw.get(at..at + 6);
        if SUBTYPES
            .iter()
            .any(|s| word.is_some_and(|w| w.eq_ignore_ascii_case(s)))
        {
            return Some(at);
        }
        from = at + 1;
    }
}

/// Renames the subtype at `start` if it is one that nests a message after `before`.
fn rename_subtype(raw: &mut [u8], start: usize, before: Before) -> bool {
    let Some(word) = raw.get(start..start + 6) else {
        return false;
    };
    let message = before != Before::Multipart
        && (word.eq_ignore_ascii_case(b"rfc822") || word.eq_ignore_ascii_case(b"global"));
    let digest = before != Before::Message && word.eq_ignore_ascii_case(b"digest");
    if message || digest {
        raw[start..start + 6].copy_from_slice(OPAQUE_SUBTYPE.as_bytes());
    }
    message || digest
}

/// Past what the parser skips inside a type or subtype token's place: blanks, carriage
/// returns, quotes and backslashes.
fn past_skipped(raw: &[u8], mut i: usize) -> usize {
    while matches!(raw.get(i), Some(b' ' | b'\t' | b'\r' | b'"' | b'\\')) {
        i += 1;
    }
    i
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Before {
    Message,
    Multipart,
    /// A comment: any type may stand before it.
    Comment,
    Other,
}

/// How far back from a `)` its `(` is looked for; past that, any type may stand before it.
const COMMENT_LOOKBACK: usize = 64;

/// What stands before the `/` at `slash`, past what the parser skips there (and comments).
/// A word counts only as a token of its own: the parser's type token runs from the value's
/// start, a blank or a comment to the slash, so `--message/rfc822` (a delimiter line whose
/// boundary reads so) is not a type; renaming it would part the delimiter lines from their
/// boundary, which the parser may have pieced together (RFC 2231).
fn type_before(raw: &[u8], slash: usize) -> Before {
    let skipped = |c: &u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'"' | b'\\');
    let mut end = raw[..slash]
        .iter()
        .rposition(|c| !skipped(c))
        .map_or(0, |i| i + 1);
    // Comments before the slash, each back to its `(` (a backslash escapes nothing in the
    // parser's comments), so that the token before them is the one judged.
    while end > 0 && raw[end - 1] == b')' {
        let floor = end.saturating_sub(COMMENT_LOOKBACK);
        let mut depth = 0;
        let mut open = None;
        for i in (floor..end).rev() {
            match raw[i] {
                b')' => depth += 1,
                b'(' => {
                    depth -= 1;
                    if depth == 0 {
                        open = Some(i);
                        break;
                    }
                }
                b'\n' => break,
                _ => {}
            }
        }
        let Some(open) = open else {
            return Before::Comment;
        };
        end = raw[..open]
            .iter()
            .rposition(|c| !skipped(c))
            .map_or(0, |i| i + 1);
    }
    let head = &raw[..end];
    let token = |word: &[u8]| {
        head.len() >= word.len()
            && head[head.len() - word.len()..].eq_ignore_ascii_case(word)
            && (head.len() == word.len()
                || matches!(
                    head[head.len() - word.len() - 1],
                    b' ' | b'\t' | b'\r' | b'\n' | b'"' | b'\\' | b')' | b':'
                ))
    };
    if token(b"message") {
        Before::Message
    } else if token(b"multipart") {
        Before::Multipart
    } else {
        Before::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opaque(text: &str) -> (String, usize) {
        let mut raw = text.as_bytes().to_vec();
        let n = make_nested_messages_opaque(&mut raw);
        (String::from_utf8(raw).unwrap(), n)
    }

    #[test]
    fn every_type_that_nests_a_message_is_renamed() {
        for (text, want) in [
            (
                "Content-Type: message/rfc822\n",
                "Content-Type: message/opaque\n",
            ),
            (
                "Content-Type: Message/RFC822; x=1\n",
                "Content-Type: Message/opaque; x=1\n",
            ),
            (
                "Content-Type: message/global\n",
                "Content-Type: message/opaque\n",
            ),
            (
                "Content-Type: multipart/digest; boundary=d\n",
                "Content-Type: multipart/opaque; boundary=d\n",
            ),
            // What the parser skips: blanks, folds, quotes, backslashes, comments.
            (
                "C ontent-Type: \"message\"\n /\\ (a (b) c)rfc822\n",
                "C ontent-Type: \"message\"\n /\\ (a (b) c)opaque\n",
            ),
            // Comments before the slash are looked past; one too long to look past could
            // hide any type.
            (
                "Content-Type: message (y) (z)/global\n",
                "Content-Type: message (y) (z)/opaque\n",
            ),
            (
                &format!("Content-Type: x({})/global\n", "y".repeat(100)),
                &format!("Content-Type: x({})/opaque\n", "y".repeat(100)),
            ),
            // The subtype is the token after the last comment.
            (
                "Content-Type: message/x(y)rfc822\n",
                "Content-Type: message/x(y)opaque\n",
            ),
            (
                "Content-Type: multipart/x (y) digest; boundary=z\n",
                "Content-Type: multipart/x (y) opaque; boundary=z\n",
            ),
            // The middle of a line, a boundary line's tail: wherever it stands.
            (
                "--bContent-Type: message/rfc822\n",
                "--bContent-Type: message/opaque\n",
            ),
        ] {
            assert_eq!(opaque(text), (want.to_string(), 1), "{text:?}");
        }
    }

    #[test]
    fn other_types_and_text_are_left_alone() {
        for text in [
            "Content-Type: message/delivery-status\n",
            "Content-Type: message/feedback-report\n",
            "Content-Type: text/rfc822-headers\n",
            "Content-Type: multipart/mixed; boundary=\"b\"\n",
            "Content-Type: application/vnd.ms-outlook; name=\"Your message.msg\"\n",
            "See http://global.example/digest and a/rfc822.\n",
            // The parser reads no subtype past a line end or a comment cut by one.
            "Content-Type: message/\n rfc822\n",
            "Content-Type: message/(x\n y)rfc822\n",
            // Another type before the slash.
            "Content-Type: message(x)foo/rfc822\n",
            "Content-Type: x(y)/global\n",
            // A delimiter line whose boundary reads like a type.
            "--message/rfc822\n",
            "--(c)/rfc822\n",
            "x--multipart/digest--\n",
        ] {
            assert_eq!(opaque(text), (text.to_string(), 0), "{text:?}");
        }
    }

    /// Whether the parser, given the renamed text, still reads a part as a message.
    fn parser_nests(text: &str) -> bool {
        let mut raw = text.as_bytes().to_vec();
        make_nested_messages_opaque(&mut raw);
        let Some(parsed) = mail_parser::MessageParser::new().parse(&raw) else {
            return false;
        };
        parsed
            .parts
            .iter()
            .any(|p| matches!(p.body, mail_parser::PartType::Message(_)))
    }

    const B64: &str = "U3ViamVjdDogeQoKaGkK"; // "Subject: y\n\nhi\n"

    #[test]
    fn a_review_s_ways_past_a_header_scanner_are_closed() {
        let mixed = "Subject: x\nContent-Type: multipart/mixed; boundary=zz\n\n";
        let digest = "Subject: x\nContent-Type: multipart/digest; boundary=zz\n\n";
        let enc = "Content-Transfer-Encoding: base64\n\n";
        for text in [
            // A colon before the name, at the top and in a part.
            format!("Subject: x\n:Content-Type: message/rfc822\n{enc}{B64}\n"),
            format!("{mixed}--zz\n:Content-Type: message/rfc822\n{enc}{B64}\n--zz--\n"),
            // Headers on the boundary's own line, or after one in the middle of a line.
            format!("{mixed}--zzContent-Type: message/rfc822\n{enc}{B64}\n--zz--\n"),
            format!(
                "{mixed}--zz\n\nbody text--zzContent-Type: message/rfc822\n{enc}{B64}\n--zz--\n"
            ),
            // A digest part whose last Content-Type is empty.
            format!(
                "{digest}--zz\nContent-Type: text/plain\nContent-Type: ;\n{enc}{B64}\n--zz--\n"
            ),
            // A boundary inside what looks like a folded header.
            format!(
                "{mixed}--zz\nContent-Type: text/plain\n\nhello --\nFoo: --zz\n Content-Type: message/rfc822\n{enc}{B64}\n--zz--\n"
            ),
            // A second review: a comment inside the subtype; the same for a digest.
            format!("Subject: x\nContent-Type: message/x(y)rfc822\n{enc}{B64}\n"),
            format!(
                "Subject: x\nContent-Type: multipart/x (y) digest; boundary=zz\n\n--zz\n{enc}{B64}\n--zz--\n"
            ),
            // An unencoded digest part whose own headers declare an encoded message.
            format!(
                "{digest}--zz\nContent-Transfer-Encoding: x-foo\n\nContent-Type: message/rfc822\n{enc}{B64}\n--zz--\n"
            ),
        ] {
            // Without the renaming the parser nests each of them.
            let parsed = mail_parser::MessageParser::new()
                .parse(text.as_bytes())
                .unwrap();
            assert!(
                parsed
                    .parts
                    .iter()
                    .any(|p| matches!(p.body, mail_parser::PartType::Message(_))),
                "not an attack: {text:?}"
            );
            assert!(!parser_nests(&text), "{text:?}");
        }
    }

    /// A repeatable stream of pseudo-random numbers for the generated tests.
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    #[test]
    fn generated_structures_never_leave_the_parser_a_message_to_nest() {
        // Messages put together from pieces of headers, types, encodings and boundaries, in
        // every order: after the renaming, the parser never reads a part as a message.
        let pieces = [
            "Content-Type: message/rfc822\n",
            "Content-Type: Message/Global\n",
            "Content-Type: message (c) / (d) rfc822\n",
            "Content-Type: message/x (y) global\n",
            "Content-Type: multipart/(c)x(d)digest; boundary=zz\n",
            "--message/rfc822\n",
            "(c)",
            "Content-Type: \"message\"/\"rfc822\"\n",
            "Content-Type:\n message/rfc822\n",
            "Content-Type: multipart/digest; boundary=zz\n",
            "Content-Type: multipart/mixed; boundary=zz\n",
            "Content-Type: text/plain\n",
            "Content-Type: ;\n",
            "C o n t e n t - T y p e : message/rfc822\n",
            ":Content-Type: message/rfc822\n",
            "Content-Transfer-Encoding: base64\n",
            "Content-Transfer-Encoding: quoted-printable\n",
            "Content-Transfer-Encoding: 7bit\n",
            "X-Junk: --zz\n",
            "no colon here\n",
            " folded\n",
            "\n",
            "--zz\n",
            "--zz",
            "--zz--\n",
            "x--zz\n",
            "U3ViamVjdDogeQoKaGkK\n",
            "Subject: y=0A=0Ahi\n",
        ];
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let n = 2 + (next() % 14) as usize;
            let text: String = (0..n)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            assert!(!parser_nests(&text), "{text:?}");
        }
    }

    #[test]
    fn the_lines_searched_for_a_subtype_are_renamed_as_the_lines_walked() {
        // Searching for the subtypes' lines after any number of slashes renames as judging
        // every slash does, on text put together from types,
        // subtypes, comments, blanks and line ends.
        let pieces = [
            "message",
            "Multipart",
            "/",
            "rfc822",
            "RFC822",
            "Global",
            "digest",
            "opaque",
            "(",
            ")",
            " ",
            "\t",
            "\"",
            "\\",
            "\r\n",
            "\n",
            "x",
            ":",
            "--",
            "Content-Type: ",
        ];
        // The packed searcher needs SSSE3 or AVX2, which every x86-64 machine this runs on
        // has: there, it is compared.
        let prefixes = PREFIXES.as_ref();
        assert!(prefixes.is_some() || !cfg!(target_arch = "x86_64"));
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        let mut renamed = 0;
        for _ in 0..50_000 {
            let n = 1 + (next() % 24) as usize;
            let text: String = (0..n)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            let mut all = text.clone().into_bytes();
            let want = rename(&mut all, usize::MAX, None);
            for walked in [0, 1, 2, 3, WALKED_SLASHES] {
                let mut searched = text.clone().into_bytes();
                let got = rename(&mut searched, walked, prefixes);
                assert_eq!((got, &searched), (want, &all), "{walked} {text:?}");
            }
            renamed += want;
        }
        // The generator reaches renaming often enough for the comparison to mean something.
        assert!(renamed > 500, "{renamed}");
    }

    #[test]
    fn hostile_comments_and_slashes_are_read_once() {
        // Every slash followed by a comment that runs to the line's end, every comment after
        // a type: each read from every slash before it would be quadratic.
        let mut raw = " message/(".repeat(200_000).into_bytes();
        assert_eq!(make_nested_messages_opaque(&mut raw), 0);
        let mut raw = " message/x(y)rfc822".repeat(200_000).into_bytes();
        assert_eq!(make_nested_messages_opaque(&mut raw), 200_000);
        let mut raw = format!("{}/rfc822", "(".repeat(100_000) + &")".repeat(100_000)).into_bytes();
        assert_eq!(make_nested_messages_opaque(&mut raw), 1);
        // Past the walked slashes, where lines are searched for: a million starts of a
        // subtype that are not one, on one line; a hundred thousand lines to rename; lines of
        // slashes that hold a subtype's name but no type before it.
        let walked = "/x\n".repeat(WALKED_SLASHES + 1);
        let mut raw = format!("{walked}{}", "dig".repeat(1_000_000)).into_bytes();
        assert_eq!(make_nested_messages_opaque(&mut raw), 0);
        let mut raw = format!("{walked}{}", "message/rfc822\n".repeat(100_000)).into_bytes();
        assert_eq!(make_nested_messages_opaque(&mut raw), 100_000);
        let mut raw = format!("{walked}{}", "a/b/c/d/e/f/g digest\n".repeat(100_000)).into_bytes();
        assert_eq!(make_nested_messages_opaque(&mut raw), 0);
        // Real mail's comments are short.
        let mut raw = "Content-Type: message/(forwarded) rfc822\n"
            .repeat(10_000)
            .into_bytes();
        assert_eq!(make_nested_messages_opaque(&mut raw), 10_000);
    }
}
