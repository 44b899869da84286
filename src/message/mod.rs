//! A message as the pipeline sees it: the envelope, the headers as the MTA passed them, the
//! body bytes kept (up to the configured size), and a decoded view of its text.
//!
//! [`mime::MimeView`] is the decoded view that content rules and domain lists look at;
//! [`targets`] builds the texts rules read from it.

pub mod date;
pub mod html;
pub mod mime;
pub mod opaque;
pub mod qp;
pub mod received;
pub mod targets;
pub mod urls;

use std::borrow::Cow;
use std::net::IpAddr;

/// Most X-Spam* header deletions sent for one message. Each is a frame the MTA must apply;
/// a message with more forged verdict headers than this is hostile and is rejected (with
/// `TOO_MANY_SPAM_HEADERS`) rather than delivered with forged verdicts left in it.
pub const MAX_HEADER_DELETIONS: u32 = 1000;

/// Longest header name kept: RFC 5322 limits a line to 998 bytes, so a longer name is not a
/// header any mail program wrote; and each kept name may be repeated in an edit to the MTA.
pub const MAX_HEADER_NAME: usize = 998;

/// Most headers kept for scanning. Real mail has tens, a long relay chain with ARC and DKIM
/// a couple of hundred; each kept header costs about 100 bytes of bookkeeping on top of its
/// text, so 500,000 one-line headers would cost 20 times the message's size. Past this, the
/// headers still reach the recipient but are not scanned (`TOO_MANY_HEADERS`).
pub const MAX_HEADERS: usize = 1000;

/// The first position from `i` of a byte below `!` or past ASCII (white space, a control
/// character, UTF-8), eight bytes at a time; or the position of a shorter tail, which the
/// caller reads byte by byte. Text is mostly printable ASCII, and looking at each byte for
/// white space was the body's biggest cost (and the HTML renderer's).
pub fn skip_printable(bytes: &[u8], mut i: usize) -> usize {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    while let Some(word) = bytes.get(i..i + 8) {
        let x = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        // High bits of the bytes past ASCII, and of the bytes below `!` (subtracting 0x21
        // borrows into the high bit only there; a borrow can mark bytes after a marked one,
        // never before it, so the lowest mark is exact).
        let marks = (x | (x.wrapping_sub(ONES * 0x21) & !x)) & HIGH;
        if marks != 0 {
            return i + (marks.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i
}

/// The bytes as text, invalid UTF-8 replaced: `String::from_utf8_lossy`, but validated by
/// `str::from_utf8`, which reads valid text (nearly all mail) a word at a time where the
/// lossy conversion reads it byte by byte: 0.77 against 9.5 µs for 10 KB of ASCII here.
/// Invalid text (Latin-1 mail) is taken valid run by valid run, each invalid sequence
/// replaced as the standard library replaces it (the error's length is its maximal subpart).
pub fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    let mut rest = match std::str::from_utf8(bytes) {
        Ok(text) => return Cow::Borrowed(text),
        Err(_) => bytes,
    };
    let mut out = String::with_capacity(bytes.len() + 16);
    loop {
        match std::str::from_utf8(rest) {
            Ok(text) => {
                out.push_str(text);
                return Cow::Owned(out);
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(valid).expect("valid up to here"));
                out.push(char::REPLACEMENT_CHARACTER);
                match e.error_len() {
                    Some(n) => rest = &after[n..],
                    None => return Cow::Owned(out),
                }
            }
        }
    }
}

/// Whether a header carries a spam verdict (`X-Spam` or `X-Spam-*`, any case): ours to write,
/// never to be trusted from outside.
pub fn is_spam_header(name: &str) -> bool {
    let b = name.as_bytes();
    b.eq_ignore_ascii_case(b"X-Spam") || (b.len() > 7 && b[..7].eq_ignore_ascii_case(b"X-Spam-"))
}

/// Calls `f` with each header of a message file (name, and value with folds as "\n" plus the
/// fold's whitespace, the single space after the colon removed), as an MTA would pass them;
/// returns where the body starts. A line that is neither a header nor a fold starts the body,
/// as MTAs treat a missing blank line.
pub fn each_header(raw: &[u8], mut f: impl FnMut(String, Vec<u8>)) -> usize {
    // The header being read; handed over when the next one starts (its folds come first).
    let mut current: Option<(String, Vec<u8>)> = None;
    let mut pos = 0;
    let mut body_start = raw.len();
    while pos < raw.len() {
        let end = memchr::memchr(b'\n', &raw[pos..]).map_or(raw.len(), |i| pos + i + 1);
        let line = &raw[pos..end];
        let content = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if content.is_empty() {
            body_start = end;
            break;
        }
        if content[0] == b' ' || content[0] == b'\t' {
            // A continuation line: Postfix passes folded values with "\n" before the fold.
            if let Some((_, v)) = &mut current {
                v.push(b'\n');
                v.extend_from_slice(content);
            }
        } else if let Some(colon) = memchr::memchr(b':', content) {
            let name = lossy(&content[..colon]).trim_end().to_string();
            let value = &content[colon + 1..];
            let value = value.strip_prefix(b" ").unwrap_or(value);
            if let Some((n, v)) = current.replace((name, value.to_vec())) {
                f(n, v);
            }
        } else {
            body_start = pos;
            break;
        }
        pos = end;
    }
    if let Some((n, v)) = current {
        f(n, v);
    }
    body_start
}

/// What the SMTP conversation said about a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The connecting client, when the MTA knows it (not for local submission).
    pub client_ip: Option<IpAddr>,
    pub client_name: String,
    pub helo: String,
    /// Envelope sender without angle brackets; empty for the null sender.
    pub from: String,
    pub rcpts: Vec<String>,
    /// Recipients past the session's bounds, counted and not kept.
    pub rcpts_dropped: usize,
    /// SASL login name (`{auth_authen}`), when the client authenticated.
    pub auth_user: Option<String>,
    /// The MTA's queue id (`i`), for log lines.
    pub queue_id: Option<String>,
}

/// Headers and body of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Names and raw values in arrival order, at most [`MAX_HEADERS`]. Folded values keep
    /// their line breaks.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// More than the size kept arrived; only the start is scanned.
    pub truncated: bool,
    /// Headers past [`MAX_HEADERS`], counted and not kept.
    pub headers_dropped: usize,
    /// X-Spam and X-Spam-* headers, kept or not (see [`is_spam_header`]).
    pub spam_headers: usize,
    /// Headers with a name longer than [`MAX_HEADER_NAME`], counted and not kept.
    pub long_names: usize,
}

impl Message {
    /// Bytes kept: each header as it stands in the message (name, ": ", value, line end) and
    /// the body.
    pub fn size(&self) -> usize {
        self.headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>()
            + self.body.len()
    }

    /// Adds a header if it fits: a name of at most [`MAX_HEADER_NAME`] bytes, at most
    /// [`MAX_HEADERS`] headers, and `room` bytes for its name and value. Returns the bytes it
    /// took (0 when not kept).
    pub fn push_header(&mut self, name: String, value: Vec<u8>, room: usize) -> usize {
        if name.len() > MAX_HEADER_NAME {
            self.long_names += 1;
            return 0;
        }
        if is_spam_header(&name) {
            self.spam_headers += 1;
        }
        if self.headers.len() >= MAX_HEADERS {
            self.headers_dropped += 1;
            return 0;
        }
        // The name, ": " and the line end, as in the message.
        let size = name.len() + value.len() + 4;
        if size > room {
            self.truncated = true;
            return 0;
        }
        self.headers.push((name, value));
        size
    }

    /// Splits a message file (RFC 5322, LF or CRLF line ends) into headers and body the way an
    /// MTA presents them: one entry per header, the single space after the colon removed.
    /// Headers are kept as the daemon keeps them ([`Message::push_header`]), the body up to
    /// `max_body` bytes.
    pub fn from_raw(raw: &[u8], max_body: usize) -> Message {
        let mut m = Message::default();
        let body_start = each_header(raw, |name, value| {
            m.push_header(name, value, usize::MAX);
        });
        let body = &raw[body_start..];
        m.truncated = body.len() > max_body;
        m.body = body[..body.len().min(max_body)].to_vec();
        m
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The message reassembled as bytes with CRLF line ends, for MIME parsing.
    pub fn to_raw(&self) -> Vec<u8> {
        // The headers' size and a little room for folds (a bare LF becomes CRLF), then exactly
        // the body's: a header block with more folds grows while it is all that has been
        // copied, and the body, which may be megabytes, is copied once. Counting the folds
        // first read every value twice.
        let mut out = Vec::with_capacity(self.size() - self.body.len() + 64);
        for (name, value) in &self.headers {
            push_header(&mut out, name, value);
        }
        out.reserve_exact(2 + self.body.len());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// Appends one header as `Message::to_raw` writes it: `name: value`, every line ending in
/// CRLF, folds kept.
pub fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    // Line ends found by memchr: most values have none, and a split by a closure looked at
    // every byte of every header.
    let Some(first) = memchr::memchr(b'\n', value) else {
        out.extend_from_slice(value.strip_suffix(b"\r").unwrap_or(value));
        out.extend_from_slice(b"\r\n");
        return;
    };
    let mut start = 0;
    let ends = std::iter::once(first)
        .chain(memchr::memchr_iter(b'\n', &value[first + 1..]).map(|n| first + 1 + n))
        .chain([value.len()]);
    for end in ends {
        if start > 0 {
            out.extend_from_slice(b"\r\n");
        }
        let line = &value[start..end];
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        start = end + 1;
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_raw_ends_every_line_with_crlf_and_keeps_the_folds() {
        let m = Message {
            headers: vec![
                ("Subject".into(), b"one line".to_vec()),
                ("X-Folded".into(), b"first\n\tsecond\r\n third".to_vec()),
                ("X-Lead".into(), b"\n  after an empty first line".to_vec()),
                ("X-Trail".into(), b"ends in a fold\n".to_vec()),
                ("X-Empty".into(), Vec::new()),
                ("X-Cr".into(), b"ends in a carriage return\r".to_vec()),
            ],
            body: b"body\r\n".to_vec(),
            ..Message::default()
        };
        assert_eq!(
            String::from_utf8(m.to_raw()).unwrap(),
            "Subject: one line\r\nX-Folded: first\r\n\tsecond\r\n third\r\n\
             X-Lead: \r\n  after an empty first line\r\nX-Trail: ends in a fold\r\n\r\n\
             X-Empty: \r\nX-Cr: ends in a carriage return\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn lossy_borrows_valid_text_and_replaces_as_the_standard_library() {
        let cases: [&[u8]; 7] = [
            b"",
            b"plain ascii",
            "caf\u{e9} \u{1f600}".as_bytes(),
            b"caf\xe9 latin-1",
            b"\xff\xfe",
            b"cut \xe2\x82",
            b"\xf0\x9f\x98\x80 ok \xc3",
        ];
        // And generated ones: valid text, lone continuation bytes, overlong and surrogate
        // forms, sequences cut short, at every place.
        let pieces: [&[u8]; 12] = [
            b"ab",
            "\u{e9}".as_bytes(),
            "\u{20ac}".as_bytes(),
            "\u{1f600}".as_bytes(),
            b"\x80",
            b"\xc3",
            b"\xe2\x82",
            b"\xf0\x9f\x98",
            b"\xc0\xaf",
            b"\xed\xa0\x80",
            b"\xff",
            b"\xf5\x80",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let generated = (0..5000).map(|_| {
            let mut bytes = Vec::new();
            for _ in 0..seed % 12 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                bytes.extend_from_slice(pieces[(seed % pieces.len() as u64) as usize]);
            }
            seed = seed.wrapping_add(1);
            bytes
        });
        for bytes in cases.map(<[u8]>::to_vec).into_iter().chain(generated) {
            let got = lossy(&bytes);
            assert_eq!(got, String::from_utf8_lossy(&bytes), "{bytes:?}");
            assert_eq!(
                matches!(got, Cow::Borrowed(_)),
                std::str::from_utf8(&bytes).is_ok(),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn splits_headers_and_body_like_an_mta() {
        let m = Message::from_raw(
            b"Subject: hello\r\n  world\r\nFrom:a@b\r\nX-Empty:\r\n\r\nbody\r\nmore\r\n",
            1000,
        );
        assert_eq!(
            m.headers,
            vec![
                ("Subject".to_string(), b"hello\n  world".to_vec()),
                ("From".to_string(), b"a@b".to_vec()),
                ("X-Empty".to_string(), b"".to_vec()),
            ]
        );
        assert_eq!(m.body, b"body\r\nmore\r\n");
        assert!(!m.truncated);
        assert_eq!(m.header("subject"), Some(&b"hello\n  world"[..]));
    }

    #[test]
    fn bare_lf_files_and_truncation() {
        let m = Message::from_raw(b"A: 1\n\n0123456789", 4);
        assert_eq!(m.headers.len(), 1);
        assert_eq!(m.body, b"0123");
        assert!(m.truncated);
    }

    #[test]
    fn headers_past_the_limit_are_counted_not_kept() {
        let mut raw = String::new();
        for i in 0..MAX_HEADERS + 10 {
            raw.push_str(&format!("X-Spam-{i}: forged\r\n"));
        }
        raw.push_str("\r\nbody\r\n");
        let m = Message::from_raw(raw.as_bytes(), 100);
        assert_eq!(m.headers.len(), MAX_HEADERS);
        assert_eq!(m.headers_dropped, 10);
        assert_eq!(m.spam_headers, MAX_HEADERS + 10);
        assert_eq!(m.body, b"body\r\n");
    }

    #[test]
    fn no_blank_line_means_the_rest_is_body() {
        let m = Message::from_raw(b"A: 1\nthis is not a header\n", 100);
        assert_eq!(m.headers.len(), 1);
        assert_eq!(m.body, b"this is not a header\n");
    }
}
