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
//! the type is the contiguous run of bytes before the `/` (blanks, line folds, `"` and `\`
//! around it are skipped, and comments in parentheses, which do not nest past a line end);
//! so the search is for a `/` with `message` or `multipart` before it (or a comment, which
//! could hide any type: renamed too) and `rfc822`, `global` or `digest` after it. Text that
//! is not a header and happens to read so is renamed as well; only the parser's copy changes.

/// What a nested message's or a digest's subtype becomes.
pub const OPAQUE_SUBTYPE: &str = "opaque";

/// A message whose comments cost more than this many bytes of reading, over its length,
/// is not given to the parser (comment after comment on one long line, each read to the
/// line's end from every `/` before it).
const COMMENT_WORK_PER_BYTE: usize = 4;

/// The text holds more nested comments than can be read in linear time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooComplex;

/// Renames, in `raw`, the subtype of every Content-Type that could make the parser read a
/// part as a message of its own; returns how many it renamed.
pub fn make_nested_messages_opaque(raw: &mut [u8]) -> Result<usize, TooComplex> {
    let mut renamed = 0;
    let mut work = 0;
    let budget = COMMENT_WORK_PER_BYTE * raw.len() + 4096;
    let mut from = 0;
    while let Some(at) = memchr::memchr(b'/', &raw[from..]) {
        let slash = from + at;
        from = slash + 1;
        let before = type_before(raw, slash);
        if before == Before::Other {
            continue;
        }
        let Some(start) = subtype_start(raw, slash + 1, &mut work) else {
            if work > budget {
                return Err(TooComplex);
            }
            continue;
        };
        let word = raw.get(start..start + 6).unwrap_or_default();
        let message = (before != Before::Multipart)
            && (word.eq_ignore_ascii_case(b"rfc822") || word.eq_ignore_ascii_case(b"global"));
        let digest = (before != Before::Message) && word.eq_ignore_ascii_case(b"digest");
        if message || digest {
            raw[start..start + 6].copy_from_slice(OPAQUE_SUBTYPE.as_bytes());
            renamed += 1;
        }
    }
    Ok(renamed)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Before {
    Message,
    Multipart,
    /// A comment: any type may stand before it.
    Comment,
    Other,
}

/// What stands before the `/` at `slash`, past what the parser skips there.
fn type_before(raw: &[u8], slash: usize) -> Before {
    let end = raw[..slash]
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'"' | b'\\'))
        .map_or(0, |i| i + 1);
    let head = &raw[..end];
    let ends_with = |word: &[u8]| {
        head.len() >= word.len() && head[head.len() - word.len()..].eq_ignore_ascii_case(word)
    };
    if head.last() == Some(&b')') {
        Before::Comment
    } else if ends_with(b"message") {
        Before::Message
    } else if ends_with(b"multipart") {
        Before::Multipart
    } else {
        Before::Other
    }
}

/// Where the subtype after a `/` starts, past blanks, quotes, backslashes and comments, or
/// `None` at a line end first (the parser would read no subtype). `work` counts the bytes of
/// comment read.
fn subtype_start(raw: &[u8], mut i: usize, work: &mut usize) -> Option<usize> {
    loop {
        match raw.get(i)? {
            b' ' | b'\t' | b'\r' | b'"' | b'\\' => i += 1,
            b'(' => {
                // The parser's backslash inside a comment escapes nothing (its escape flag is
                // cleared by the byte itself), and a line end ends the header.
                let mut depth = 1;
                i += 1;
                while depth > 0 {
                    *work += 1;
                    match raw.get(i)? {
                        b'(' => depth += 1,
                        b')' => depth -= 1,
                        b'\n' => return None,
                        _ => {}
                    }
                    i += 1;
                }
            }
            _ => return Some(i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opaque(text: &str) -> (String, usize) {
        let mut raw = text.as_bytes().to_vec();
        let n = make_nested_messages_opaque(&mut raw).unwrap();
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
            // A comment before the slash could hide any type.
            ("Content-Type: x(y)/global\n", "Content-Type: x(y)/opaque\n"),
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
        ] {
            assert_eq!(opaque(text), (text.to_string(), 0), "{text:?}");
        }
    }

    /// Whether the parser, given the renamed text, still reads a part as a message.
    fn parser_nests(text: &str) -> bool {
        let mut raw = text.as_bytes().to_vec();
        make_nested_messages_opaque(&mut raw).unwrap();
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

    #[test]
    fn generated_structures_never_leave_the_parser_a_message_to_nest() {
        // Messages put together from pieces of headers, types, encodings and boundaries, in
        // every order: after the renaming, the parser never reads a part as a message.
        let pieces = [
            "Content-Type: message/rfc822\n",
            "Content-Type: Message/Global\n",
            "Content-Type: message (c) / (d) rfc822\n",
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
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let n = 2 + (next() % 14) as usize;
            let text: String = (0..n)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            assert!(!parser_nests(&text), "{text:?}");
        }
    }

    #[test]
    fn comments_on_one_long_line_are_read_in_bounded_time() {
        // Every slash opens a comment that runs to the line's end: read from each, that is
        // quadratic; past the budget the text is refused instead.
        let mut raw = "message/(".repeat(200_000).into_bytes();
        assert_eq!(make_nested_messages_opaque(&mut raw), Err(TooComplex));
        // Real mail's comments are short.
        let mut raw = "Content-Type: message/(forwarded) rfc822\n"
            .repeat(10_000)
            .into_bytes();
        assert_eq!(make_nested_messages_opaque(&mut raw), Ok(10_000));
    }
}
