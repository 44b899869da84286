//! Quoted-printable part bodies decoded as mail-parser decodes them, a run at a time.
//!
//! mail-parser's decoder (`decode_quoted_printable_mime`) looks at every byte through a
//! state machine and grows its buffer from 128 bytes: about 28 instructions a byte, the
//! largest single cost of the MIME view on spam. The view hides the encoding from the
//! parser (see `mime::hide_quoted_printable`) and decodes here instead, with the same
//! result byte for byte, quirks included: RFC 2045 is silent on much of what mail-parser
//! decides (white space after `=`, an `=` before a non-hex character, a lone `\r`), and
//! the rules were written against what it gives.
//!
//! What this replicates of it:
//! - Text between `=`, `\r` and `\n` is copied whole; trailing spaces, tabs and form feeds
//!   before a line end are dropped, the line end written as `\r\n` once any `\r` has been
//!   seen in the part and as `\n` before; a `\r` itself is never copied.
//! - `=` then `\n` is a soft line break; `=` then white space waits for what follows; `=`
//!   then two hex digits (either case) is a byte; `=` then anything else is kept as written,
//!   and a second `=` where an escape is open makes the whole part invalid (`None`): the
//!   parser then keeps the part's bytes as they are and calls it an encoding problem.
//! - At the closing boundary the parser has already copied its first `-`, and takes it back
//!   with the line end before it ([`Tail::Boundary`]).

/// What ends the bytes given to [`decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// The end of the message: the part is the root's body.
    End,
    /// The first `-` of the closing boundary delimiter, which `bytes` ends with;
    /// `line_start` when a line end stands right before it.
    Boundary { line_start: bool },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Text,
    /// After `=`.
    Escape,
    /// After `=` and one hex digit (its value).
    Hex(u8),
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// White space as mail-parser counts it for trimming (`is_ascii_whitespace` less the line
/// end bytes, which never reach that test).
fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | 0x0c)
}

/// The decoded bytes of a quoted-printable part body, or None where mail-parser finds it
/// invalid.
pub fn decode(bytes: &[u8], tail: Tail) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut state = State::Text;
    // Blanks at the end of `out` since the last other byte, dropped at a line end.
    let mut blanks = 0usize;
    let mut line_end: &[u8] = b"\n";
    let mut last = 0u8;
    let mut i = 0;
    while i < bytes.len() {
        if state == State::Text {
            let end =
                memchr::memchr3(b'=', b'\n', b'\r', &bytes[i..]).map_or(bytes.len(), |n| i + n);
            if end > i {
                let run = &bytes[i..end];
                out.extend_from_slice(run);
                let trailing = run.iter().rev().take_while(|&&b| is_blank(b)).count();
                blanks = if trailing == run.len() {
                    blanks + trailing
                } else {
                    trailing
                };
                last = run[run.len() - 1];
                i = end;
                continue;
            }
        }
        let b = bytes[i];
        match (b, state) {
            (b'=', State::Text) => state = State::Escape,
            (b'=', _) => return None,
            (b'\n', _) => {
                if state == State::Escape {
                    state = State::Text;
                } else {
                    // (After `=X` the escape stays open across the line end, as in the parser.)
                    out.truncate(out.len() - blanks);
                    out.extend_from_slice(line_end);
                }
                blanks = 0;
            }
            (b'\r', _) => line_end = b"\r\n",
            (_, State::Text) => {
                // Unreachable through the run above; kept whole for clarity.
                out.push(b);
                blanks = if is_blank(b) { blanks + 1 } else { 0 };
            }
            (_, State::Escape) => {
                if let Some(h) = hex(b) {
                    state = State::Hex(h);
                } else if !is_blank(b) {
                    state = State::Text;
                    out.extend_from_slice(&[b'=', b]);
                    blanks = 0;
                }
            }
            (_, State::Hex(high)) => {
                state = State::Text;
                match hex(b) {
                    Some(low) => out.push(high << 4 | low),
                    // The parser writes back the byte before this one, whatever it was.
                    None => out.extend_from_slice(&[b'=', last, b]),
                }
                blanks = 0;
            }
        }
        last = b;
        i += 1;
    }
    if let Tail::Boundary { line_start } = tail {
        // The parser's arithmetic, wrapping as in a release build: a take-back longer than
        // what was written takes nothing back.
        let back = if line_start { line_end.len() + 1 } else { 1 };
        if let Some(keep) = out.len().checked_sub(back) {
            out.truncate(keep);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Option<String> {
        decode(s.as_bytes(), Tail::End).map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    #[test]
    fn decodes_as_mail_parser_does() {
        assert_eq!(
            dec("a=3Db =\nsoft, =7e =3d\n").as_deref(),
            Some("a=b soft, ~ =\n")
        );
        assert_eq!(
            dec("trailing  \t\nnext\r\nline").as_deref(),
            Some("trailing\nnext\r\nline")
        );
        assert_eq!(dec("= \nx").as_deref(), Some("x"));
        assert_eq!(dec("=zz =4g").as_deref(), Some("=zz =4g"));
        assert_eq!(dec("a =20\n").as_deref(), Some("a  \n"));
        assert_eq!(dec("a==b"), None);
        assert_eq!(dec("=4=").as_deref(), None);
        assert_eq!(
            decode(b"text\n-", Tail::Boundary { line_start: true }).as_deref(),
            Some(&b"text"[..])
        );
        assert_eq!(
            decode(b"text-", Tail::Boundary { line_start: false }).as_deref(),
            Some(&b"text"[..])
        );
        assert_eq!(
            decode(b"-", Tail::Boundary { line_start: true }).as_deref(),
            Some(&b"-"[..])
        );
    }
}
