//! The texts rules read, built from a message and its MIME view: `body` (the Subject, then
//! each text part rendered), `rawbody` (text parts before HTML rendering), `full` (the message
//! as received) and header selections.

use std::borrow::Cow;

use super::Message;
use super::mime::{Header, MimeView, PartHeader, TextPart, decode_header_value};
use super::received::RelayHeaders;

/// Which part of a header a rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HeaderPart {
    /// RFC 2047 decoded and unfolded.
    Decoded,
    /// As sent.
    Raw,
    /// Only the addresses (`From:addr`).
    Addr,
    /// Only the display names (`From:name`).
    Name,
}

/// What a header rule reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HeaderSel {
    /// One header by name (all its occurrences, one per line).
    Named(String, HeaderPart),
    /// Every header as `Name: value` lines.
    All,
    /// To and Cc.
    ToCc(HeaderPart),
    /// SpamAssassin's `MESSAGEID`: every Message-Id, Resent-Message-Id and X-Message-Id
    /// (list software moves the real one).
    MessageId(HeaderPart),
}

/// The headers a SpamAssassin pseudo-header stands for (`ToCc`, `MESSAGEID`), for rules
/// that test it as one header.
pub fn pseudo_header(name: &str) -> Option<&'static [&'static str]> {
    match name {
        "ToCc" => Some(&["To", "Cc"]),
        "MESSAGEID" => Some(&["Message-Id", "Resent-Message-Id", "X-Message-Id"]),
        _ => None,
    }
}

/// Whether a header (or SpamAssassin pseudo-header: `ALL`, `ToCc`, `MESSAGEID`) is present.
pub fn header_exists(message: &Message, name: &str) -> bool {
    match (name, pseudo_header(name)) {
        ("ALL", _) => !message.headers.is_empty(),
        (_, Some(names)) => names.iter().any(|n| message.header(n).is_some()),
        _ => message.header(name).is_some(),
    }
}

/// Longest body line SpamAssassin's body rules see (`MAX_BODY_LINE_LENGTH`).
pub const MAX_BODY_LINE: usize = 2048;

/// The text body rules read, as SpamAssassin builds it: the Subject on a line of its own,
/// then the text parts (HTML rendered) joined by line ends, where a blank line ends a
/// paragraph and every other run of white space is one space. So each paragraph is one line,
/// and SpamAssassin matches body rules line by line: `^` and `$` are a paragraph's ends, a
/// match never spans two, `/^\s*\S/` with `tflags multiple` counts paragraphs. Lines longer
/// than [`MAX_BODY_LINE`] are cut at a space, as there.
pub fn body(view: &MimeView) -> String {
    // One text part (most mail) is read where it is; several are joined first, as a run of
    // white space may span the line end between two.
    let text = match view.texts.as_slice() {
        [one] => Cow::Borrowed(part_scanned(&one.text)),
        texts => {
            let mut text = String::with_capacity(texts.iter().map(|t| t.text.len() + 1).sum());
            for t in texts {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(part_scanned(&t.text));
            }
            Cow::Owned(text)
        }
    };
    let mut body = String::with_capacity(text.len() + 256);
    match &view.subject {
        Some(subject) => {
            body.push_str(subject);
            body.push('\n');
        }
        None => body.push('\n'),
    }
    let start = body.len();
    paragraphs(&text, &mut body);
    cut_long_lines(&mut body, start);
    body
}

/// SpamAssassin's `body_part_scan_size` (50,000 by default): body rules see a text part cut
/// after about that many bytes.
pub const BODY_PART_SCAN_SIZE: usize = 50_000;

/// How far SpamAssassin cuts a rendered part: at the first line end, else the first space,
/// within 1 KB past [`BODY_PART_SCAN_SIZE`] (kept), else right there.
fn part_scanned(text: &str) -> &str {
    let size = BODY_PART_SCAN_SIZE;
    if text.len() <= size {
        return text;
    }
    let size = text.floor_char_boundary(size);
    let after = &text.as_bytes()[size..];
    let within = |b: u8| {
        memchr::memchr(b, after)
            .filter(|&i| i <= 1024)
            .map(|i| size + i + 1)
    };
    let end = within(b'\n').or_else(|| within(b' ')).unwrap_or(size);
    &text[..end]
}

/// SpamAssassin's `s/\n+\s*\n+/\x00/g; s/\s+/ /g; tr/\x00/\n/`: in a run of white space
/// holding two line ends or more, what lies from the first to the last line end becomes one
/// line end, and what is before and after it one space each; any other run is one space.
fn paragraphs(text: &str, out: &mut String) {
    let bytes = text.as_bytes();
    // The length of the white space character at `i` (a char boundary), 0 if it is none:
    // Unicode white space, as `char::is_whitespace`.
    let wide_space_at = |i: usize| -> usize {
        text[i..]
            .chars()
            .next()
            .filter(|c| c.is_whitespace())
            .map_or(0, char::len_utf8)
    };
    let ascii_space = |b: u8| matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ');
    let (mut copied, mut i) = (0, 0);
    while i < bytes.len() {
        i = super::skip_printable(bytes, i);
        let Some(&b) = bytes.get(i) else {
            break;
        };
        // A single space before a printable character stays as it is.
        if b == b' ' && bytes.get(i + 1).is_some_and(|&c| c > b' ' && c < 0x7f) {
            i += 2;
            continue;
        }
        // Most bytes: ASCII, decided from the byte alone.
        let n = if b < 0x80 {
            if !ascii_space(b) {
                i += 1;
                continue;
            }
            1
        } else {
            match wide_space_at(i) {
                0 => {
                    // The next char boundary: a leading byte tells its sequence's length.
                    i += match b {
                        0xc0..0xe0 => 2,
                        0xe0..0xf0 => 3,
                        _ => 4,
                    };
                    continue;
                }
                n => n,
            }
        };
        let start = i;
        i += n;
        while i < bytes.len() {
            let n = match bytes[i] {
                b if b < 0x80 => usize::from(ascii_space(b)),
                _ => wide_space_at(i),
            };
            if n == 0 {
                break;
            }
            i += n;
        }
        // The usual run, one space, stays as it is: copied later with the words around it.
        if i - start == 1 && b == b' ' {
            continue;
        }
        out.push_str(&text[copied..start]);
        copied = i;
        // Any other run of one character (a lone line end) is one space.
        if i - start == 1 {
            out.push(' ');
            continue;
        }
        let run = &text[start..i];
        match (run.find('\n'), run.rfind('\n')) {
            // SpamAssassin reads line ends as `\n` (a CR before one is not there for it).
            (Some(first), Some(last)) if first != last => {
                if !run[..first].trim_matches('\r').is_empty() {
                    out.push(' ');
                }
                out.push('\n');
                if !run[last + 1..].trim_matches('\r').is_empty() {
                    out.push(' ');
                }
            }
            _ => out.push(' '),
        }
    }
    out.push_str(&text[copied..]);
}

/// SpamAssassin's `split_into_array_of_short_lines`: a line longer than [`MAX_BODY_LINE`]
/// is cut after its last space up to that position (or at the length), here by a line end.
fn cut_long_lines(body: &mut String, from: usize) {
    if body.len() - from <= MAX_BODY_LINE
        || !body[from..].split('\n').any(|l| l.len() > MAX_BODY_LINE)
    {
        return;
    }
    let text = body.split_off(from);
    for (i, mut line) in text.split('\n').enumerate() {
        if i > 0 {
            body.push('\n');
        }
        while line.len() > MAX_BODY_LINE {
            let limit = line.floor_char_boundary(MAX_BODY_LINE);
            // Perl's `rindex($line, ' ', MAX)` looks at position MAX too.
            let window = line.floor_char_boundary(MAX_BODY_LINE + 1);
            let cut = line[..window].rfind(' ').map_or(limit, |i| i + 1);
            let cut = if cut == 0 { limit.max(1) } else { cut };
            let cut = line.ceil_char_boundary(cut);
            body.push_str(&line[..cut]);
            body.push('\n');
            line = &line[cut..];
        }
        body.push_str(line);
    }
}

/// Every text part decoded, HTML before rendering.
pub fn rawbody(view: &MimeView) -> String {
    let source = |t: &TextPart| t.source.as_deref().unwrap_or(&t.text).len() + 1;
    let mut raw = String::with_capacity(view.texts.iter().map(source).sum());
    for t in &view.texts {
        raw.push_str(t.source.as_deref().unwrap_or(&t.text));
        raw.push('\n');
    }
    raw
}

/// The message as received (invalid UTF-8 replaced).
pub fn full<'a>(message: &Message, view: &'a MimeView) -> Cow<'a, str> {
    // Valid UTF-8 (most mail) is taken as it is, without a second copy: the view's own copy
    // of the message when it kept one whole, else a new one.
    match view.raw_message() {
        Some(raw) => super::lossy(raw),
        None => Cow::Owned(
            String::from_utf8(message.to_raw())
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        ),
    }
}

/// The text a header rule reads, or None when the message has no such header. `relays` holds
/// SpamAssassin's relay pseudo-headers when a rule reads them: they stand in for headers of
/// those names (as in SpamAssassin, which removes any that arrive with the message).
/// `headers` gives every header decoded (decoding them once, when first asked), for the
/// rules that read them all (`ALL`).
pub fn header_text<'h>(
    message: &Message,
    headers: &dyn Fn() -> &'h [Header],
    relays: Option<&RelayHeaders>,
    sel: &HeaderSel,
) -> Option<String> {
    let join = |vals: Vec<String>| {
        if vals.is_empty() {
            None
        } else {
            Some(vals.join("\n"))
        }
    };
    match sel {
        HeaderSel::All => join(
            headers()
                .iter()
                .map(|h| format!("{}: {}", h.name, h.value))
                .collect(),
        ),
        HeaderSel::ToCc(part) | HeaderSel::MessageId(part) => {
            let names = match sel {
                HeaderSel::ToCc(_) => pseudo_header("ToCc"),
                _ => pseudo_header("MESSAGEID"),
            }
            .expect("a pseudo-header");
            let mut v = Vec::new();
            for name in names {
                v.extend(values(message, name, *part));
            }
            join(v)
        }
        // A pseudo-header is never read from the message, where a sender could write it.
        HeaderSel::Named(name, _) if super::received::is_pseudo_header(name) => {
            relays.and_then(|r| r.get(name)).map(str::to_string)
        }
        HeaderSel::Named(name, part) => join(values(message, name, *part)),
    }
}

/// The text a `mimeheader` rule reads in one MIME part, or None when the part has no such
/// header.
pub fn part_header_text(part: &[PartHeader], sel: &HeaderSel) -> Option<String> {
    let lines: Vec<String> = match sel {
        HeaderSel::All => part
            .iter()
            .map(|h| format!("{}: {}", h.name, h.raw))
            .collect(),
        HeaderSel::Named(name, how) => part
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| match how {
                HeaderPart::Raw => h.raw.clone(),
                _ => h.value.clone(),
            })
            .collect(),
        HeaderSel::ToCc(_) | HeaderSel::MessageId(_) => Vec::new(),
    };
    (!lines.is_empty()).then(|| lines.join("\n"))
}

fn values(message: &Message, name: &str, part: HeaderPart) -> Vec<String> {
    match part {
        HeaderPart::Raw => message
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| super::lossy(v).into_owned())
            .collect(),
        // The named headers only: decoding them all is for the rules that read them all.
        HeaderPart::Decoded => message
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| decode_header_value(v))
            .collect(),
        HeaderPart::Addr | HeaderPart::Name => {
            let mut out = Vec::new();
            for (n, raw) in &message.headers {
                if !n.eq_ignore_ascii_case(name) {
                    continue;
                }
                for (display, addr) in super::mime::addresses(raw) {
                    match part {
                        HeaderPart::Addr => out.extend(addr),
                        _ => out.extend(display),
                    }
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::mime::Limits;

    fn body_of(raw: &str) -> String {
        body(&MimeView::build(&Message::from_raw(
            raw.as_bytes(),
            1 << 20,
        )))
    }

    /// The `full` text is the message as `Message::to_raw` gives it, whether the view kept
    /// its copy (borrowed) or not (cut at the part limit, nested messages renamed, bytes
    /// that are not UTF-8).
    #[test]
    fn full_is_the_raw_message_whether_borrowed_or_not() {
        let many: String = (0..20)
            .map(|i| format!("--b\r\n\r\npart {i}\r\n"))
            .collect();
        let cases: Vec<(Vec<u8>, Limits, bool)> = vec![
            (
                b"Subject: hi\r\nX-A: a\r\n b\r\n\r\nhello\r\n".to_vec(),
                Limits::DEFAULT,
                true,
            ),
            (
                format!("Content-Type: multipart/mixed; boundary=b\r\n\r\n{many}--b--\r\n")
                    .into_bytes(),
                Limits {
                    parts: 5,
                    ..Limits::DEFAULT
                },
                false,
            ),
            (
                b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
                  Content-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\nx\r\n--b--\r\n"
                    .to_vec(),
                Limits::DEFAULT,
                true,
            ),
            (
                b"Subject: \xff\xfe\r\n\r\nbody \xe9t\xe9\r\n".to_vec(),
                Limits::DEFAULT,
                true,
            ),
            (b"no headers at all".to_vec(), Limits::DEFAULT, true),
        ];
        for (raw, limits, borrowed) in cases {
            let message = Message::from_raw(&raw, 1 << 20);
            let view = MimeView::build_with(&message, &limits);
            let expected = String::from_utf8_lossy(&message.to_raw()).into_owned();
            let text = full(&message, &view);
            assert_eq!(text, expected, "{}", String::from_utf8_lossy(&raw));
            let valid = std::str::from_utf8(&message.to_raw()).is_ok();
            assert_eq!(
                matches!(text, Cow::Borrowed(_)),
                borrowed && valid,
                "{}",
                String::from_utf8_lossy(&raw)
            );
        }
    }

    #[test]
    fn each_part_is_cut_past_spamassassins_body_part_scan_size() {
        assert_eq!(part_scanned("short"), "short");
        let word = "word ".repeat(BODY_PART_SCAN_SIZE / 5);
        // A line end within 1 KB past the size: kept, and nothing after it.
        let text = format!("{word}tail\nNEXT LINE");
        assert_eq!(part_scanned(&text), format!("{word}tail\n"));
        // Else the first space within 1 KB.
        let text = format!("{word}x{}", "y ".repeat(2000));
        assert_eq!(part_scanned(&text), format!("{word}xy "));
        // Else right at the size.
        let text = "z".repeat(BODY_PART_SCAN_SIZE + 5000);
        assert_eq!(part_scanned(&text).len(), BODY_PART_SCAN_SIZE);
        // Not inside a character.
        let text = "\u{e9}".repeat(BODY_PART_SCAN_SIZE);
        assert_eq!(part_scanned(&text).len(), BODY_PART_SCAN_SIZE);
        // Through the whole body: a word past the cut is not there for body rules.
        let b = body_of(&format!(
            "Subject: s\r\n\r\n{word}\r\n\r\n{}NEEDLE\r\n",
            "x".repeat(2000)
        ));
        assert!(!b.contains("NEEDLE"));
        assert!(b.contains("word word"));
    }

    #[test]
    fn the_body_is_spamassassins_one_paragraph_per_line() {
        let b = body_of(
            "Subject: Hello there\r\n\r\nDear  friend,\r\nthis is\tone paragraph.\r\n \r\n\r\n  Second \r\n\r\nthird\r\n",
        );
        // As SpamAssassin 4.0.1 sees this message: its body rules /^Hello there$/,
        // /^Dear friend, this is one paragraph\.$/, /^ Second $/ and /^third $/ hit, and
        // /^\s*\S/ with `tflags multiple` hits 4 times. White space after a paragraph break
        // stays one space; a CR before a line end is not there for it.
        assert_eq!(
            b,
            "Hello there\nDear friend, this is one paragraph.\n Second \nthird "
        );
        assert_eq!(body_of("From: x\r\n\r\nno subject\r\n"), "\nno subject ");
    }

    /// The definition `paragraphs` follows, written the short way (char by char).
    fn paragraphs_by_chars(text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(ws) = rest.find(char::is_whitespace) {
            out.push_str(&rest[..ws]);
            let run_len = rest[ws..]
                .find(|c: char| !c.is_whitespace())
                .unwrap_or(rest.len() - ws);
            let run = &rest[ws..ws + run_len];
            match (run.find('\n'), run.rfind('\n')) {
                (Some(first), Some(last)) if first != last => {
                    if !run[..first].trim_matches('\r').is_empty() {
                        out.push(' ');
                    }
                    out.push('\n');
                    if !run[last + 1..].trim_matches('\r').is_empty() {
                        out.push(' ');
                    }
                }
                _ => out.push(' '),
            }
            rest = &rest[ws + run_len..];
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn paragraphs_read_unicode_white_space_as_the_definition_does() {
        let pieces = [
            "a", "é", "日本", "😀", " ", "\t", "\n", "\r\n", "\u{0b}", "\u{0c}", "\u{85}",
            "\u{a0}", "\u{2003}", "\u{3000}", "\u{2028}", "\u{200b}", "x y",
        ];
        // Every sequence of up to four pieces, and a few long mixes.
        let mut texts = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = texts
                .iter()
                .flat_map(|t| pieces.iter().map(move |p| format!("{t}{p}")))
                .collect();
            texts.extend(longer);
            texts.dedup();
        }
        assert!(texts.len() > 80_000, "{} texts", texts.len());
        texts.push(pieces.concat().repeat(50));
        // Long mixes with runs of printable ASCII, which are skipped a word at a time, and
        // the bytes around the edges of that test (controls, `!`, DEL).
        let pieces = [
            pieces.as_slice(),
            &[
                "abcdefgh",
                "0123456789abc",
                "\u{1}",
                "\u{1f}",
                "!",
                "\u{7f}",
                "  ",
                "~",
            ],
        ]
        .concat();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..3000 {
            let mut t = String::new();
            for _ in 0..seed % 40 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                t.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            }
            texts.push(t);
        }
        for t in &texts {
            let mut out = String::new();
            paragraphs(t, &mut out);
            assert_eq!(out, paragraphs_by_chars(t), "{t:?}");
        }
    }

    #[test]
    fn long_lines_are_cut_at_a_space() {
        let para = "word ".repeat(1000);
        let b = body_of(&format!("Subject: s\r\n\r\n{para}\r\n"));
        let lines: Vec<&str> = b.split('\n').collect();
        assert_eq!(lines[0], "s");
        assert!(
            lines[1..].iter().all(|l| l.len() <= MAX_BODY_LINE),
            "{lines:?}"
        );
        assert_eq!(lines.len(), 1 + 3);
        // "word " puts the last space up to 2048 at 2044.
        assert_eq!(lines[1].len(), 2045);
        assert!(lines[1].ends_with(' '));
        assert_eq!(lines[1..].concat().trim_end(), para.trim_end());
    }
}
